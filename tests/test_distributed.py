"""Two processes on the CPU (gloo) under `accelerate launch`: the same metrics layout as one process, one writer,
both processes end at the same step with identical parameters, and the checkpoint is complete."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from wavalign_kit.train.checkpoint import latest_checkpoint
from wavalign_kit.train.metrics_log import metric_columns, read_metrics

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on now (the default 29500 may be taken by another job on a shared CI host)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_cpu_run(tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    out = tmp_path / "ddp"
    cmd = [accelerate, "launch", "--config_file", str(ROOT / "configs/accelerate/ddp.yaml"), "--num_processes", "2",
           "--main_process_port", str(free_port()), "--mixed_precision", "no",
           "-m", "wavalign_kit.train.run", "--preset", "wavalign", "--out", str(out), "world_path=synthetic",
           "steps=3", "save_every=2", "prompts_per_step=2", "max_new_tokens=24", "progress=false", "beta_text=0.01"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired as err:  # show how far the two processes got
        pytest.fail(f"2-process run hung; stdout:\n{err.stdout}\nstderr tail:\n{str(err.stderr)[-3000:]}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    finished = re.findall(r"process (\d)/2 finished at step (\d+), parameter checksum ([0-9.]+e[+-][0-9]+)", done.stdout)
    assert sorted(p for p, _, _ in finished) == ["0", "1"]
    assert {s for _, s, _ in finished} == {"3"} and len({c for _, _, c in finished}) == 1  # in lockstep
    rows = read_metrics(out / "metrics.csv")
    assert list(rows[0]) == metric_columns(["answer_judge", "length_judge"])          # same layout as 1 process
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    import json

    assert json.loads((out / "run.json").read_text())["processes"] == 2
    ckpt = latest_checkpoint(out)
    assert ckpt.name == "checkpoint-000003" and (ckpt / "model").is_dir()
    assert (ckpt / "optimizer.safetensors").is_file() and not list(ckpt.glob("*.pt"))    # no pickle
    assert len(json.loads((ckpt / "rng.json").read_text())) == 2                       # one RNG state per process
    # 2 processes x 2 prompts x G=4 responses per step: the gate saw 4 groups; rewards are on a 1..5 scale
    assert all(1.0 <= float(r["reward_mean"]) <= 5.0 for r in rows)
