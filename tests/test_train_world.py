"""`wavalign train` on the embedded smoke world: the real rewards (evaluators, naturalness calibration) and the
interface other modules rely on (DIR/metrics.csv columns, DIR/checkpoint-*)."""

from __future__ import annotations

import math

import pytest
import torch

from wavalign_kit.models import build_model
from wavalign_kit.train.metrics_log import read_metrics
from wavalign_kit.train.run import main

INTERFACE = ("step", "lambda", "kl_text", "kl_speech", "reward_mean", "reward_std")


@pytest.fixture(scope="module")
def base_dir(smoke_world, tmp_path_factory):
    """A fresh (not warm-started) smoke model over the world's tokenizer, saved as a kit model directory."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("base") / "interleaved"
    build_model("interleaved", "smoke", smoke_world.tokenizer, smoke_world.codec).save(out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["wavalign", "routed", "dpo_text_anchor"])
def test_cli_on_smoke_world(smoke_world_dir, base_dir, tmp_path, preset):
    out = tmp_path / preset
    rc = main(["--preset", preset, "--profile", "smoke", "--out", str(out), f"world_path={smoke_world_dir}",
               f"base_model={base_dir}", "steps=2", "prompts_per_step=2", "max_new_tokens=40", "progress=false",
               "beta_text=0.01", "beta_speech=0.01"])
    assert rc == 0
    rows = read_metrics(out / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2] and set(INTERFACE) <= set(rows[0])
    assert (out / "latest").read_text() == "checkpoint-000002" and (out / "checkpoint-000002" / "model").is_dir()
    if preset != "dpo_text_anchor":
        assert all(1.0 <= float(r["reward_mean"]) <= 5.0 and float(r["judge_failures"]) == 0 for r in rows)
        assert all(math.isfinite(float(r["kl_text"])) for r in rows)
    if preset == "routed":
        assert {"reward/semantic_judge", "reward/acoustic_judge"} <= set(rows[0])


@pytest.mark.slow
def test_training_runs_in_two_processes(smoke_world, base_dir, tmp_path):
    """Two runs at once in two worker processes finish like runs in this process, and a finished run is reused."""
    import time

    from wavalign_kit.config import deep_update, load_profile
    from wavalign_kit.paths import Workspace
    from wavalign_kit.workspace import training_runs

    profile = deep_update(load_profile("smoke"), {"train": {"steps": 2, "max_new_tokens": 32}})
    ws = Workspace(tmp_path)
    jobs = [("interleaved", "sft", 0), ("interleaved", "grpo_text", 0)]
    said: list[str] = []
    runs = training_runs(profile, ws, jobs, world=smoke_world, bases={"interleaved": base_dir}, workers=2,
                         log=said.append)
    assert runs == [ws.run(*job) for job in jobs] and len(said) == 2
    for run in runs:
        assert [int(r["step"]) for r in read_metrics(run / "metrics.csv")] == [1, 2] and (run / "run.json").is_file()
    start = time.perf_counter()
    assert training_runs(profile, ws, jobs, world=smoke_world, bases={"interleaved": base_dir}) == runs
    assert time.perf_counter() - start < 10                               # reused, not trained again
    with pytest.raises(ValueError, match="as directories"):
        training_runs(profile, ws, jobs, world=smoke_world, bases={"interleaved": object()}, workers=2)
