"""The committed reference report (results/reference, the `cpu` profile) is what the pipeline derives from its metrics."""

import json
from pathlib import Path

import pandas as pd

from wavalign_kit.evaluation import METRICS
from wavalign_kit.report import results_table
from wavalign_kit.results import summarize

REFERENCE = Path(__file__).parents[1] / "results" / "reference"


def test_reference_tables_match_its_responses():
    summary = summarize(pd.read_csv(REFERENCE / "metrics" / "responses.csv"), list(METRICS))
    committed = json.loads((REFERENCE / "summary.json").read_text())
    assert json.loads(json.dumps(summary)) == {k: committed[k] for k in summary}
    report = (REFERENCE / "report.md").read_text()
    for row in results_table(committed) + results_table(committed, delta=True):
        assert row in report, f"report.md lacks the row {row!r} derived from metrics/responses.csv"
    manifest = json.loads((REFERENCE / "manifest.json").read_text())
    assert manifest["parameters"]["profile"] == "cpu-full"
    assert all(n["status"] == "completed" for n in manifest["notebooks"])
    assert "### The paper's claims" in report


def test_reference_claims_are_derived_from_its_responses():
    from wavalign_kit.claims import contrast_table, read_claims

    derived = contrast_table(pd.read_csv(REFERENCE / "metrics" / "responses.csv"))
    pd.testing.assert_frame_equal(read_claims(REFERENCE / "metrics" / "claims.csv"), derived, check_dtype=False)


def test_readme_results_are_the_reference_runs_numbers():
    """README's results block is rendered from the committed CSVs (python -m wavalign_kit.reference rewrites it)."""
    from wavalign_kit.reference import BLOCKS, readme_block

    for name, render in BLOCKS.items():
        assert readme_block(name) == render(REFERENCE), f"README.md {name} differ: run python -m wavalign_kit.reference"
