# Two commands do all the set-up: `make pipeline` and `make test` (see README.md).
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= auto
OUT     ?=
# (an empty OUT: the pipeline's own default, results/<profile> with auto resolved to cpu or gpu)
# The verified torch build; on a CUDA machine pass e.g. TORCH_SPEC="torch==2.13.0" with your CUDA index.
TORCH_SPEC ?= torch==2.13.0

.PHONY: pipeline test test-fast lint clean-venv

$(VENV)/.installed: pyproject.toml
	@python3 -c 'import sys; assert sys.version_info >= (3, 10), "wavalign-kit needs Python 3.10+"'
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	-git rev-parse --git-dir >/dev/null 2>&1 && $(VENV)/bin/nbstripout --install --attributes .gitattributes
	touch $@

pipeline: $(VENV)/.installed
	$(VENV)/bin/wavalign pipeline --profile $(PROFILE) $(if $(OUT),--out $(OUT))

test: $(VENV)/.installed
	$(PY) -m pytest -q tests notebooks --nbval-lax -p no:cacheprovider

# The inner loop: every test not marked slow, no notebooks (under two minutes on 2 cores).
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q tests -m "not slow" -p no:cacheprovider

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check wavalign_kit tests benchmarks

clean-venv:
	rm -rf $(VENV)
