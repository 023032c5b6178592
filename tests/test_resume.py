"""Resume: a `wavalign train` process killed with SIGKILL mid-run resumes from its last complete checkpoint,
ends with the same number of steps, has each step exactly once in metrics.csv and reproduces the figures of an
uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wavalign_kit.train.checkpoint import latest_checkpoint
from wavalign_kit.train.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--preset", "wavalign", "world_path=synthetic", "steps=6", "save_every=2", "prompts_per_step=2",
        "max_new_tokens=24", "progress=false", "beta_text=0.01"]


def command(out: Path) -> list[str]:
    return [sys.executable, "-m", "wavalign_kit.train.run", "--out", str(out), *ARGS]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def rows_written(path: Path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else 0


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    ref = tmp_path / "ref"
    subprocess.run(command(ref), check=True, cwd=ROOT, env=env(), capture_output=True, timeout=600)

    out = tmp_path / "killed"
    proc = subprocess.Popen(command(out), cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while rows_written(out / "metrics.csv") < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = rows_written(out / "metrics.csv")
    ckpt = latest_checkpoint(out)
    assert ckpt is not None and int(ckpt.name.split("-")[1]) in (2, 4)   # a complete checkpoint is the latest
    assert killed_at >= 3

    done = subprocess.run(command(out), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resumed from {ckpt.name}" in done.stdout
    rows, ref_rows = read_metrics(out / "metrics.csv"), read_metrics(ref / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]         # no duplicated or missing step
    assert latest_checkpoint(out).name == "checkpoint-000006"
    assert not list(out.glob(".checkpoint-*"))                            # no partial checkpoint left over
    for key in ("reward_mean", "lambda", "loss", "kl_text"):
        got, want = [float(r[key]) for r in rows], [float(r[key]) for r in ref_rows]
        assert got == pytest.approx(want, rel=1e-4, abs=1e-7), key
