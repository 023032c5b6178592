"""The committed reference report (results/reference, the `cpu` profile) is what the pipeline derives from its metrics."""

import json
from pathlib import Path

import pandas as pd
import pytest

from wavalign_kit.evaluation import METRICS
from wavalign_kit.report import results_table
from wavalign_kit.results import summarize

REFERENCE = Path(__file__).parents[1] / "results" / "reference"


@pytest.mark.skipif(not (REFERENCE / "report.md").is_file(), reason="no reference report committed yet")
def test_reference_tables_match_its_responses():
    summary = summarize(pd.read_csv(REFERENCE / "metrics" / "responses.csv"), list(METRICS))
    committed = json.loads((REFERENCE / "summary.json").read_text())
    assert json.loads(json.dumps(summary)) == {k: committed[k] for k in summary}
    report = (REFERENCE / "report.md").read_text()
    for row in results_table(committed) + results_table(committed, delta=True):
        assert row in report, f"report.md lacks the row {row!r} derived from metrics/responses.csv"
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    assert manifest["parameters"]["profile"] == "cpu"
    assert all(n["status"] == "completed" for n in manifest["notebooks"])
