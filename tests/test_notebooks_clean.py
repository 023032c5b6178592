"""Committed notebooks follow the kit's conventions: no outputs, first code cell tagged `parameters`."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stripped_and_parameterised(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cell"
    assert "parameters" in code[0].get("metadata", {}).get("tags", []), f"{path.name}: first code cell not tagged"
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; run `nbstripout {path}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_in_the_git_filters_normal_form(path):
    """The committed source is what the installed nbstripout filter writes, so running the notebooks or the
    tests leaves a fresh clone's `git status` clean."""
    import subprocess
    import sys

    normal = subprocess.run([sys.executable, "-m", "nbstripout", "-t"], input=path.read_text(), capture_output=True,
                            text=True, check=True).stdout
    assert normal == path.read_text(), f"{path.name}: run `nbstripout {path}` (cell ids, metadata)"


def test_colab_keeps_outputs_inside_content(monkeypatch, tmp_path):
    import sys
    import types

    from wavalign_kit.notebook import output_root

    monkeypatch.chdir(tmp_path)
    assert output_root("../results/x") == (tmp_path / "../results/x").resolve()
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert output_root("../results/notebooks-smoke") == Path("/content/results/notebooks-smoke")
    assert output_root("/data/run") == Path("/data/run")


REFERENCE_NOTEBOOKS = sorted((Path(__file__).parents[1] / "results" / "reference" / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", REFERENCE_NOTEBOOKS, ids=[p.name for p in REFERENCE_NOTEBOOKS])
def test_reference_notebooks_keep_their_outputs(path):
    """The README links the reference run's executed notebooks: they carry figures, and the git filter that strips
    the notebook sources leaves them alone (a filter on every *.ipynb once committed them stripped)."""
    import subprocess

    nb = json.loads(path.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no figure among its outputs"
    attr = subprocess.run(["git", "check-attr", "filter", "--", str(path)], capture_output=True, text=True,
                          cwd=path.parent)
    if attr.returncode == 0:   # a git checkout (CI's clone); a tarball has no filters
        assert "nbstripout" not in attr.stdout, f"{path.name} would be committed stripped: {attr.stdout.strip()}"
