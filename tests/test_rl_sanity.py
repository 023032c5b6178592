"""benchmarks/rl_sanity.py end to end on the smoke world: trains, evaluates the three sets, saves what it measured."""

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
                      "--samples", "1", "--threads", "1", "--save", str(tmp_path / "run"), "steps=2",
                      "prompts_per_step=2", "group_size=2", "max_new_tokens=24"])
    assert rc == 0
    out = capsys.readouterr().out
    for label in ("rl ", "valid ", "test ", "test/arithmetic"):
        assert any(line.startswith(label) and "gain" in line and "95 % CI" in line for line in out.splitlines()), label
    for split in ("rl", "valid", "test"):
        before = pd.read_csv(tmp_path / "run" / f"responses_{split}_before.csv")
        after = pd.read_csv(tmp_path / "run" / f"responses_{split}_after.csv")
        assert len(before) == len(after) == len(smoke_world.split(split))
    assert (tmp_path / "run" / "model").is_dir()
