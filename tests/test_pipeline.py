"""The papermill pipeline on tiny throwaway notebooks: resume, failure report, secret redaction, manifest, report."""

import json

import nbformat
import pandas as pd
import pytest

from wavalign_kit import pipeline, profiles
from wavalign_kit.config import ConfigError, load_profile
from wavalign_kit.pipeline import NotebookFailed, SecretLeak, run_pipeline
from wavalign_kit.profiles import merged_config, notebook_parameters

SECRET = "sk-test-0123456789abcdef"


def write_notebook(path, parameters: str, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"),
                nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


LOG_RUN = "from pathlib import Path\nPath(out_dir, 'runs.log').open('a').write('{name}\\n')"


@pytest.fixture
def three_notebooks(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    params = 'out_dir = "."\nfail_marker = ""'
    write_notebook(nbdir / "00_first.ipynb", params, LOG_RUN.format(name="00"))
    write_notebook(nbdir / "01_second.ipynb", params, LOG_RUN.format(name="01"),
                   "import os\nx = 1 + 1",
                   "if os.path.exists(fail_marker):\n    raise RuntimeError('marker present: ' + fail_marker)")
    write_notebook(nbdir / "02_third.ipynb", 'out_dir = "."', LOG_RUN.format(name="02"))
    return nbdir


def runs_log(out):
    return (out / "runs.log").read_text().split()


def test_failure_names_notebook_and_cell_then_resume_runs_only_unfinished(tmp_path, three_notebooks):
    out = tmp_path / "run"
    marker = tmp_path / "fail.flag"
    marker.write_text("x")
    params = {"out_dir": str(out), "fail_marker": str(marker)}
    with pytest.raises(NotebookFailed) as err:
        run_pipeline(params, out, notebook_dir=three_notebooks)
    msg = str(err.value)
    executed = out / "notebooks" / "01_second.ipynb"
    assert str(executed) in msg and "RuntimeError: marker present" in msg
    # the failing cell: papermill's injected-parameters cell shifts the stored cell index by one
    assert "cell 5" in msg and "if os.path.exists(fail_marker)" in msg
    assert executed.is_file() and runs_log(out) == ["00", "01"]
    state = json.loads((out / "pipeline_state.json").read_text())
    assert state["notebooks"]["00_first.ipynb"]["status"] == "completed"
    assert state["notebooks"]["01_second.ipynb"]["status"] == "failed"

    marker.unlink()
    runs = run_pipeline(params, out, notebook_dir=three_notebooks)
    assert [(r.name, r.status) for r in runs] == [
        ("00_first.ipynb", "skipped"), ("01_second.ipynb", "completed"), ("02_third.ipynb", "completed")]
    assert runs_log(out) == ["00", "01", "01", "02"]
    # third run: everything done with the same parameters -> nothing executes
    run_pipeline(params, out, notebook_dir=three_notebooks)
    assert runs_log(out) == ["00", "01", "01", "02"]
    # changed parameters re-run everything; a parameter not declared by 02 is not injected there
    params["fail_marker"] = str(tmp_path / "other.flag")
    run_pipeline(params, out, notebook_dir=three_notebooks)
    assert runs_log(out)[4:] == ["00", "01", "02"]
    third = (out / "notebooks" / "02_third.ipynb").read_text()
    assert "fail_marker" not in third


def test_secret_printed_by_a_cell_is_redacted_and_fails_loudly(tmp_path, monkeypatch):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    write_notebook(nbdir / "00_leak.ipynb", 'out_dir = "."',
                   "import os\nprint('key is', os.environ['WAVALIGN_JUDGE_API_KEY'])")
    monkeypatch.setenv("WAVALIGN_JUDGE_API_KEY", SECRET)
    out = tmp_path / "run"
    with pytest.raises(SecretLeak, match="WAVALIGN_JUDGE_API_KEY.*redacted"):
        run_pipeline({"out_dir": str(out)}, out, notebook_dir=nbdir)
    text = (out / "notebooks" / "00_leak.ipynb").read_text()
    assert SECRET not in text and "[REDACTED:WAVALIGN_JUDGE_API_KEY]" in text
    assert json.loads((out / "pipeline_state.json").read_text())["notebooks"]["00_leak.ipynb"]["status"] == "secret_leak"
    # a secret value is never accepted as a notebook parameter
    with pytest.raises(ConfigError, match="WAVALIGN_JUDGE_API_KEY"):
        run_pipeline({"out_dir": str(out), "judge_key": SECRET}, out, notebook_dir=nbdir)


def test_parameters_merge_profile_files_and_overrides(tmp_path):
    extra = tmp_path / "my.yaml"
    extra.write_text("train:\n  lr: 0.5\npipeline:\n  seeds: [4]\n")
    cfg = merged_config("smoke", [extra], [("seeds", "[1, 2]"), ("train.steps", "7"), ("seed", "3")])
    assert cfg["pipeline"]["seeds"] == [1, 2] and cfg["train"] == {**cfg["train"], "lr": 0.5, "steps": 7}
    params = notebook_parameters(cfg, tmp_path)
    assert params["seeds"] == [1, 2] and params["seed"] == 3 and params["profile"] == "smoke"
    assert params["out_dir"] == str(tmp_path) and params["config"]["train"]["lr"] == 0.5
    assert "pipeline" not in params["config"]
    import torch

    assert profiles.resolve_profile_name("auto") == ("gpu" if torch.cuda.is_available() else "cpu")
    assert profiles.resolve_profile_name("smoke") == "smoke"
    bad = tmp_path / "bad.yaml"
    bad.write_text("trian: {}\n")
    with pytest.raises(ConfigError, match="trian"):
        merged_config("smoke", [bad])


def test_main_writes_summary_report_and_manifest_matching_metrics(tmp_path, monkeypatch):
    from wavalign_kit.report import results_table

    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    write_notebook(
        nbdir / "00_eval.ipynb", 'out_dir = "."\nseeds = [0]',
        "import numpy as np, pandas as pd, soundfile as sf, matplotlib\nmatplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\nfrom pathlib import Path\nout = Path(out_dir)\nrows = []\n"
        "for model in ['base', 'wavalign']:\n"
        "    for s in seeds:\n"
        "        rng = np.random.default_rng(s + (10 if model == 'base' else 0))\n"
        "        for item in range(6):\n"
        "            rows.append(dict(model=model, seed=s, example_id=f'ex{item}', style='happy', **{m: rng.random()\n"
        "                for m in ['iq_text', 'iq_speech', 'eq_style', 'neutral_adherence', 'wer', 'naturalness']}))\n"
        "pd.DataFrame(rows).to_csv(out / 'metrics' / 'responses.csv', index=False)\n"
        "plt.plot([0, 1]); plt.title('t'); plt.savefig(out / 'figures' / 'curve.png')\n"
        "sf.write(out / 'audio' / 'base_sample.wav', np.zeros(1600, dtype='float32'), 16000)")
    monkeypatch.setenv("WAVALIGN_TEST_TOKEN", SECRET)
    out = tmp_path / "run"
    rc = pipeline.main(["--profile", "smoke", "--notebooks", str(nbdir), "-p", "seeds", "[0, 1, 2]",
                        "--out", str(out)])
    assert rc == 0
    responses = pd.read_csv(out / "metrics" / "responses.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2] and set(summary["models"]) == {"base", "wavalign"}
    report = (out / "report.md").read_text()
    for model, group in responses.groupby("model"):
        for m in ("iq_text", "iq_speech", "eq_style", "wer", "naturalness"):
            entry = summary["models"][model][m]
            assert entry["mean"] == pytest.approx(group[m].mean())
            assert entry["std"] == pytest.approx(group.groupby("seed")[m].mean().std(ddof=1))
            assert entry["ci_low"] <= entry["mean"] <= entry["ci_high"]
    for row in results_table(summary) + results_table(summary, delta=True):
        assert row in report
    assert "![curve](figures/curve.png)" in report and "[base_sample](audio/base_sample.wav)" in report
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profile"] == "smoke" and manifest["seeds"] == [0, 1, 2]
    assert manifest["versions"]["torch"] and manifest["versions"]["papermill"]
    assert manifest["hardware"]["cpu_count"] >= 1 and "commit" in manifest["git"]
    assert [n["name"] for n in manifest["notebooks"]] == ["00_eval.ipynb"]
    assert manifest["notebooks"][0]["duration_s"] > 0 and manifest["parameters"]["seeds"] == [0, 1, 2]
    assert SECRET not in json.dumps(manifest)
    # a failing run exits 2 with the message on stderr (the command line's error boundary)
    from wavalign_kit.cli import main

    assert main(["pipeline", "--profile", "smoke", "--notebooks", str(tmp_path / "none"), "--out", str(out)]) == 2


def test_notebook_defaults_live_in_the_profile():
    """Parameter defaults have one home, the profile: every notebook parameter but out_dir / profile / config
    defaults to None, which `notebook.setup` resolves from the smoke profile; every pipeline key is declared."""
    import ast

    import papermill

    from wavalign_kit.config import load_profile
    from wavalign_kit.notebook import resolve_parameters

    smoke = load_profile("smoke")
    notebooks = pipeline.discover_notebooks(pipeline.NOTEBOOK_DIR)
    assert [p.name[:3] for p in notebooks] == ["00_", "01_", "02_", "03_", "04_"]
    common = {"out_dir", "profile", "seed", "config", "architectures", "world_dir", "model_path", "num_threads"}
    seen = set()
    for path in notebooks:
        declared = {k: ast.literal_eval(v["default"]) for k, v in papermill.inspect_notebook(str(path)).items()}
        assert common <= set(declared), f"{path.name}: papermill does not see {common - set(declared)}"
        seen |= set(declared)
        assert (declared.pop("profile"), declared.pop("config")) == ("smoke", {}), path.name
        declared.pop("out_dir")
        assert all(v is None for v in declared.values()), f"{path.name}: defaults repeat the profile: {declared}"
        resolved = resolve_parameters(smoke, declared)
        assert resolved == {k: smoke["seed"] if k == "seed" else smoke["pipeline"][k] for k in declared}
    assert set(smoke["pipeline"]) <= seen, f"no notebook declares {set(smoke['pipeline']) - seen}"


def test_notebook_config_merges_the_sections_the_pipeline_passed():
    """``config`` is merged key by key: {"train": {"steps": 3}} keeps the profile's lr, group size and lengths."""
    from wavalign_kit.profiles import notebook_config

    smoke = load_profile("smoke")
    assert notebook_config("smoke") == smoke
    cfg = notebook_config("smoke", {"train": {"steps": 3}})
    assert cfg["train"] == {**smoke["train"], "steps": 3} and cfg["world"] == smoke["world"]
    with pytest.raises(ConfigError, match="trian"):
        notebook_config("smoke", {"trian": {"steps": 3}})


@pytest.mark.parametrize("param, message", [
    (("seedz", "[0]"), "pipeline parameter 'seedz' (did you mean 'seed"),
    (("train.lrr", "1e-4"), "unknown key 'lrr' (did you mean 'lr'?)"),
    (("train.lr", "nan"), "train.lr: expected a finite number"),
    (("presets", "[wavalign, grpo_txt]"), "unknown preset 'grpo_txt' (did you mean 'grpo_text'?)"),
    (("world.test_size", "0"), "world.test_size"),
])
def test_a_mistyped_parameter_fails_in_seconds_before_any_notebook(tmp_path, capsys, param, message):
    import time

    from wavalign_kit.cli import main

    start = time.perf_counter()
    assert main(["pipeline", "--profile", "smoke", "-p", *param, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err and time.perf_counter() - start < 5
    assert not (tmp_path / "run").exists()


def test_stage_lines_reach_the_terminal_prefixed_as_they_come():
    import io

    from wavalign_kit.pipeline import StageLines

    stream = io.StringIO()
    lines = StageLines("03", stream)
    lines.write("[train] run 1 ")
    assert stream.getvalue() == ""                       # a partial line waits for its end
    lines.write("started\n[train] run 1 done\n\n")
    assert stream.getvalue() == "[03] [train] run 1 started\n[03] [train] run 1 done\n"


def test_pipeline_kernels_draw_no_progress_bars_and_use_ipc():
    import io

    import tqdm
    import tqdm.auto

    from wavalign_kit.pipeline import kernel_transport_config, quiet_progress_bars

    saved = tqdm.tqdm, tqdm.auto.tqdm, tqdm.std.tqdm
    try:
        quiet_progress_bars()
        out = io.StringIO()
        for _ in tqdm.auto.tqdm(range(3), disable=False, file=out):
            pass
        assert out.getvalue() == "" and tqdm.tqdm(range(1), disable=False).disable
    finally:
        tqdm.tqdm, tqdm.auto.tqdm, tqdm.std.tqdm = saved
    import os

    transport = kernel_transport_config().get("KernelManager", {}).get("transport", "tcp")
    assert transport == ("ipc" if os.name == "posix" else "tcp")


def test_every_notebook_shows_its_measured_needs():
    from wavalign_kit.config import CONFIG_DIR
    from wavalign_kit.notebook import RUNTIMES, about, pipeline_runtime

    notebooks = pipeline.discover_notebooks(pipeline.NOTEBOOK_DIR)
    assert sorted(RUNTIMES) == [p.stem for p in notebooks]
    for path in notebooks:
        assert f'requirements("{path.stem}", profile, config)' in path.read_text().replace('\\"', '"'), path.name
        assert set(RUNTIMES[path.stem]) == {p.stem for p in (CONFIG_DIR / "profiles").glob("*.yaml")}
    assert about((20, 20)) == "about 20 s" and about((630, 690)) == "about 10-12 min" and about(None) == "not measured yet"
    assert pipeline_runtime("gpu") == "not measured yet" and pipeline_runtime("cpu").endswith("on 2 CPU cores")
