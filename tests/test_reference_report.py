"""The committed reference report (results/reference, the `cpu` profile) is what the pipeline derives from its metrics."""

import json
from pathlib import Path

import pandas as pd
import pytest

from wavalign_kit.evaluation import summarize_seeds
from wavalign_kit.report import results_table

REFERENCE = Path(__file__).parents[1] / "results" / "reference"


@pytest.mark.skipif(not (REFERENCE / "report.md").is_file(), reason="no reference report committed yet")
def test_reference_table_matches_its_metrics():
    summary = summarize_seeds(pd.read_csv(REFERENCE / "metrics" / "evaluation.csv"))
    assert summary == json.loads((REFERENCE / "summary.json").read_text())
    report = (REFERENCE / "report.md").read_text()
    for row in results_table(summary):
        assert row in report, f"report.md lacks the row {row!r} derived from metrics/evaluation.csv"
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    assert manifest["parameters"]["profile"] == "cpu"
    assert all(n["status"] == "completed" for n in manifest["notebooks"])


LONG = REFERENCE / "long150"


@pytest.mark.skipif(not (LONG / "README.md").is_file(), reason="no 150-step side experiment committed")
def test_long_run_table_matches_its_evaluation_csv():
    summary = summarize_seeds(pd.read_csv(LONG / "evaluation.csv"))
    readme = (LONG / "README.md").read_text()
    for row in results_table(summary):
        assert row in readme, f"long150/README.md lacks the row {row!r} derived from evaluation.csv"
