"""Reliability and security, case by case: bad values fail before anything loads, non-finite numbers never reach
the weights or a checkpoint, nothing is unpickled from a run directory, one run per directory, every error is
one line with exit code 2, and secrets are redacted from everything a run writes.

Cases that already held and are tested elsewhere, so they keep holding: malformed JSONL / missing or corrupt audio
/ wrong sample rate / unknown task types (test_schema.py), judge outages counted and limited and redirects never
followed (test_judge.py), SIGKILL then resume bit-identical with no duplicated row (test_resume.py), papermill
resume after a failure (test_pipeline.py).
"""

from __future__ import annotations

import base64
import math
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import torch

from wavalign_kit.cli import main as wavalign
from wavalign_kit.config import load_yaml
from wavalign_kit.errors import KitError, NonFiniteError, RunLocked
from wavalign_kit.models import build_model
from wavalign_kit.train.checkpoint import latest_checkpoint, run_lock
from wavalign_kit.train.config import preset_path, resolve_config
from wavalign_kit.train.metrics_log import read_metrics
from wavalign_kit.train.run import train

ROOT = Path(__file__).resolve().parents[1]
SYNTH = ["world_path=synthetic", "prompts_per_step=2", "max_new_tokens=24", "progress=false"]
SECRET = "sk-live-9f8e7d6c5b4a3210"


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    rc = wavalign(list(argv))
    return rc, capsys.readouterr().err


# ---------------------------------------------------------------------------------------- 1. bad values, early
@pytest.mark.parametrize("override, field", [
    ("beta_text=nan", "train.beta_text"), ("lr=inf", "train.lr"), ("grad_clip=-1", "train.grad_clip"),
    ("temperature=-1", "train.temperature"), ("top_p=0", "train.top_p"),
    ("speech_temperature=abc", "train.speech_temperature"), ("seed=abc", "seed"), ("world_path=123", "train.world_path"),
    ("models.arch=interleavd", "models.arch"), ("reward=holistc", "did you mean 'holistic'"),
    ("group_size=1", "train.group_size"), ("world.train_size=0", "world.train_size"),
])
def test_bad_values_exit_2_before_anything_loads(tmp_path, monkeypatch, capsys, override, field):
    monkeypatch.chdir(tmp_path)  # the command line's workspace would be ./data/<profile>
    start = time.perf_counter()
    rc, err = run_cli(capsys, "train", "--preset", "wavalign", "--profile", "smoke", "--out", "run", override)
    assert rc == 2 and field in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()       # nothing loaded or written
    assert time.perf_counter() - start < 10


def test_profile_section_typo_is_rejected_by_train(tmp_path, capsys):
    profile = tmp_path / "mine.yaml"
    profile.write_text("profile: mine\ntrian:\n  steps: 3\n")
    rc, err = run_cli(capsys, "train", "--preset", "sft", "--profile", str(profile), "--out", str(tmp_path / "r"))
    assert rc == 2 and "unknown section 'trian' (did you mean 'train'?)" in err


# ---------------------------------------------------------------------------------------- 2. non-finite numbers
def config(preset="sft", **over):
    return resolve_config({"seed": 0}, load_yaml(preset_path(preset)),
                          {"steps": 4, "prompts_per_step": 2, "max_new_tokens": 24, "progress": False, **over})[0]


def test_nan_steps_are_skipped_counted_written_literally_and_stop_the_run(synthetic, tmp_path):
    model = build_model("interleaved", "smoke", synthetic.tokenizer, num_units=synthetic.num_units)
    before = [p.detach().clone() for p in model.model.parameters()]
    real = model.token_logprobs

    def poisoned(batch, *, module=None, with_entropy=False):  # a model whose training forward turned to NaN
        logp, ent = real(batch, module=module, with_entropy=with_entropy)
        return logp * float("nan"), ent

    model.token_logprobs = poisoned
    logs: list[str] = []
    with pytest.raises(NonFiniteError, match="3 steps in a row"):
        train(config(max_nonfinite_steps=3, save_every=1), model, synthetic, tmp_path, log=logs.append)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["loss"] for r in rows] == ["nan", "nan"] and [r["nonfinite_steps"] for r in rows] == ["1", "2"]
    assert all(torch.equal(a, b) for a, b in zip(before, model.model.parameters()))   # never stepped
    assert sum("weights were not updated" in line for line in logs) == 3
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt.name == "checkpoint-000002"                                             # the unchanged weights


def test_no_checkpoint_from_non_finite_weights(synthetic, tmp_path):
    from wavalign_kit.train.trainer import Trainer

    model = build_model("interleaved", "smoke", synthetic.tokenizer, num_units=synthetic.num_units)
    trainer = Trainer(config(steps=1), model, synthetic, tmp_path, log=lambda *_: None)
    trainer.train()
    with torch.no_grad():
        next(model.model.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(NonFiniteError, match="no checkpoint was written"):
        trainer.save(2)
    assert latest_checkpoint(tmp_path).name == "checkpoint-000001" and not (tmp_path / "checkpoint-000002").exists()


# ---------------------------------------------------------------------------------------- 3. no pickle
class Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def rewind(run: Path, step: int) -> Path:
    """Point ``latest`` back at an earlier checkpoint, as if the run had been killed right after writing it."""
    (run / "latest").write_text(f"checkpoint-{step:06d}")
    return latest_checkpoint(run)


def test_a_crafted_pickle_in_a_run_directory_is_never_executed(synthetic, tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    cfg = config(steps=3, save_every=1, keep_checkpoints=3)
    model = build_model("interleaved", "smoke", synthetic.tokenizer, num_units=synthetic.num_units)
    train(cfg, model, synthetic, run, log=lambda *_: None)
    ckpt = rewind(run, 2)
    for name in ("rng.pt", "optim.pt"):
        (ckpt / name).write_bytes(pickle.dumps(Payload(marker)))
    train(cfg, model, synthetic, run, log=lambda *_: None)                               # resumes: JSON + safetensors
    assert not marker.exists() and [int(r["step"]) for r in read_metrics(run / "metrics.csv")] == [1, 2, 3]
    # a checkpoint of the old, pickled format is refused with an explanation, still without unpickling
    old = rewind(run, 2)
    for name in ("optimizer.json", "optimizer.safetensors", "rng.json", "rng.safetensors"):
        (old / name).unlink()
    with pytest.raises(KitError, match="no longer loads"):
        train(cfg, model, synthetic, run, log=lambda *_: None)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------- 4. one run per directory
def test_a_second_run_in_a_held_directory_exits_at_once_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "run"
    with run_lock(out):
        (out / "metrics.csv").write_text("step\n1\n")
        rc, err = run_cli(capsys, "train", "--preset", "sft", "--out", str(out), *SYNTH, "steps=2")
    assert rc == 2 and f"in use by process {os.getpid()}" in err
    assert (out / "metrics.csv").read_text() == "step\n1\n"                           # the holder's files intact
    with pytest.raises(RunLocked), run_lock(out), run_lock(out):
        pass


@pytest.mark.slow
def test_two_concurrent_processes_one_directory(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "wavalign_kit.train.run", "--preset", "wavalign", "--out", str(out), *SYNTH,
           "steps=60", "save_every=30"]
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.csv").is_file() and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2 and f"in use by process {first.pid}" in second.stderr
    assert first.wait(timeout=300) == 0, first.stderr[-2000:]
    assert [int(r["step"]) for r in read_metrics(out / "metrics.csv")] == list(range(1, 61))


def test_resume_refuses_a_missing_or_short_log(synthetic, tmp_path):
    cfg = config(steps=3, save_every=1, keep_checkpoints=3)
    model = build_model("interleaved", "smoke", synthetic.tokenizer, num_units=synthetic.num_units)
    train(cfg, model, synthetic, tmp_path, log=lambda *_: None)
    rewind(tmp_path, 2)
    log = tmp_path / "metrics.csv"
    log.write_text("\n".join(log.read_text().splitlines()[:2]) + "\n")                 # step 2's row lost
    with pytest.raises(KitError, match=r"holds steps 1..1 \(1 rows\) but the checkpoint is at step 2"):
        train(cfg, model, synthetic, tmp_path, log=lambda *_: None)
    log.unlink()
    with pytest.raises(KitError, match="metrics.csv: missing"):
        train(cfg, model, synthetic, tmp_path, log=lambda *_: None)


def test_old_checkpoints_are_renamed_before_deletion(synthetic, tmp_path):
    model = build_model("interleaved", "smoke", synthetic.tokenizer, num_units=synthetic.num_units)
    train(config(steps=4, save_every=1, keep_checkpoints=2), model, synthetic, tmp_path, log=lambda *_: None)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-000003", "checkpoint-000004"]
    assert not list(tmp_path.glob(".trash-*")) and not list(tmp_path.glob(".checkpoint-*"))


# ---------------------------------------------------------------------------------------- 5. one error boundary
def test_every_command_prints_one_line_and_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (["train", "--preset", "sft", "--out", str(blocker / "run"), *SYNTH], "file"),          # --out under a file
        (["train", "--preset", "sft", "--out", str(tmp_path / "r"), "world_path=/no/world"], "/no/world"),
        (["evaluate", str(tmp_path / "nothing"), "--world", "/no/world", "--out", str(tmp_path / "e")], "no/world"),
        (["warmstart", "--world", "/no/world", "--out", str(tmp_path / "w")], "/no/world"),
        (["world", "--profile", "smok", "--out", str(tmp_path / "wd")], "did you mean 'smoke'"),
        (["pipeline", "--profile", "smoke", "--notebooks", str(tmp_path), "--out", str(tmp_path / "p")], "notebooks"),
    ]
    for argv, needle in cases:
        rc, err = run_cli(capsys, *argv)
        assert rc == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
    rc, err = run_cli(capsys, "train", "--preset", "sft", "--out", str(tmp_path / "r"), "world_path=/no/world",
                      "--debug")
    assert rc == 2 and "Traceback" in err
    rc, err = run_cli(capsys, "trian")
    assert rc == 2 and "did you mean 'train'" in err
    assert wavalign(["--version"]) == 0 and "wavalign-kit" in capsys.readouterr().out


def test_resume_with_another_config_is_one_clear_line(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert run_cli(capsys, "train", "--preset", "sft", "--out", out, *SYNTH, "steps=2", "save_every=1")[0] == 0
    rc, err = run_cli(capsys, "train", "--preset", "sft", "--out", out, *SYNTH, "steps=2", "lr=1e-3")
    assert rc == 2 and "written with a different config (keys ['lr'])" in err


# ---------------------------------------------------------------------------------------- 6. secrets
def notebook(path: Path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('out_dir = "."', metadata={"tags": ["parameters"]}),
                *(nbformat.v4.new_code_cell(c) for c in cells)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_secrets_are_redacted_from_every_file_in_any_encoding(tmp_path, monkeypatch):
    from wavalign_kit.pipeline import SecretLeak, run_pipeline

    monkeypatch.setenv("WAVALIGN_JUDGE_API_KEY", SECRET)
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    notebook(nbdir / "00_write.ipynb",
             "import base64, os, json\nfrom pathlib import Path\nkey = os.environ['WAVALIGN_JUDGE_API_KEY']\n"
             "Path(out_dir, 'metrics', 'x.csv').write_text('a,b\\n1,' + key + '\\n')\n"
             "blob = base64.b64encode(('header:' + key).encode()).decode()\n"
             "Path(out_dir, 'metrics', 'y.json').write_text(json.dumps({'blob': blob}))")
    out = tmp_path / "run"
    with pytest.raises(SecretLeak, match="WAVALIGN_JUDGE_API_KEY"):
        run_pipeline({"out_dir": str(out)}, out, notebook_dir=nbdir)
    csv_text, json_text = (out / "metrics" / "x.csv").read_text(), (out / "metrics" / "y.json").read_text()
    assert SECRET not in csv_text and "[REDACTED:WAVALIGN_JUDGE_API_KEY]" in csv_text
    encoded = base64.b64encode(("header:" + SECRET).encode()).decode()
    assert encoded[12:30] not in json_text and "[REDACTED:WAVALIGN_JUDGE_API_KEY]" in json_text


def test_an_interrupted_run_is_redacted_too(tmp_path, monkeypatch):
    import papermill

    from wavalign_kit.pipeline import run_pipeline

    monkeypatch.setenv("MY_SERVICE_TOKEN", SECRET)
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    notebook(nbdir / "00_slow.ipynb", "print('working')")

    def interrupted(src, dst, **kw):  # the kernel printed the key, then the user pressed Ctrl-C
        Path(dst).write_text('{"cells": [{"outputs": ["token ' + SECRET + '"]}]}')
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_pipeline({"out_dir": str(out)}, out, notebook_dir=nbdir)
    text = (out / "notebooks" / "00_slow.ipynb").read_text()
    assert SECRET not in text and "[REDACTED:MY_SERVICE_TOKEN]" in text


def test_secret_forms_cover_every_base64_alignment():
    from wavalign_kit.redaction import secret_forms

    forms = secret_forms(SECRET)
    for prefix in ("", "a", "ab", "abc"):
        encoded = base64.b64encode((prefix + SECRET + "tail").encode()).decode()
        assert any(f in encoded for f in forms[1:]), prefix
    assert math.isclose(len(forms), 4)
