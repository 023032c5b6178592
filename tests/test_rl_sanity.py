"""benchmarks/rl_sanity.py end to end on the smoke world: trains one run per training seed, evaluates the three sets,
pools the runs' gains, saves what it measured."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import torch

from wavalign_kit.models import build_model

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "rl_sanity.py"


@pytest.mark.slow
def test_rl_sanity_reports_gains_on_rl_valid_and_test(smoke_world, smoke_world_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    base = tmp_path / "base"
    build_model("interleaved", "smoke", smoke_world.tokenizer, smoke_world.codec).save(base)
    spec = importlib.util.spec_from_file_location("rl_sanity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rc = module.main(["--profile", "smoke", "--world", str(smoke_world_dir), "--base", str(base), "--seeds", "0",
                      "--samples", "1", "--threads", "1", "--train-seeds", "0", "1", "--save", str(tmp_path / "run"),
                      "steps=2", "prompts_per_step=2", "group_size=2", "max_new_tokens=24"])
    assert rc == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for label in ("rl ", "valid ", "test ", "test/arithmetic"):
        assert any(line.startswith(label) and "gain" in line and "95 % CI" in line for line in lines), label
    test_line = next(line for line in lines if line.startswith("test ") and "iq_text" in line)
    assert "per training seed 0: " in test_line and ", 1: " in test_line
    assert sum(line.startswith("training seed ") for line in lines) == 2
    for split in ("rl", "valid", "test"):
        before = pd.read_csv(tmp_path / "run" / f"responses_{split}_before.csv")
        if split == "test":                                   # cells: (training seed x item), both runs pooled
            graded = before.groupby("example_id")["iq_text"].mean().notna().sum()
            assert f"over {2 * graded} cells" in test_line
        assert len(before) == len(smoke_world.split(split))
        for seed in (0, 1):
            assert len(pd.read_csv(tmp_path / "run" / f"seed-{seed}" / f"responses_{split}_after.csv")) == len(before)
    assert (tmp_path / "run" / "seed-1" / "model").is_dir() and (tmp_path / "run" / "seed-1" / "metrics.csv").is_file()
