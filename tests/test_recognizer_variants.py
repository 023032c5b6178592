"""benchmarks/recognizer_variants.py on the smoke world: retrains the shipped recogniser on the set's own split,
reproduces the world's held-out WER (training is deterministic), and appends its row to a CSV."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import torch

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "recognizer_variants.py"


def test_retraining_the_shipped_recogniser_reproduces_its_wer(smoke_world_dir, tmp_path, capsys):
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("recognizer_variants", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = tmp_path / "sweep.csv"
    assert module.main(["--world", str(smoke_world_dir), "--name", "shipped", "--csv", str(table)]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    shipped = json.loads((smoke_world_dir / "evaluators" / "metrics.json").read_text())
    assert abs(row["heldout_wer"] - shipped["recognizer_wer"]) < 1e-4
    assert pd.read_csv(table)["run"].tolist() == ["shipped"]
