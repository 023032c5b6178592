"""The README's results section, rendered from the committed reference run (``results/reference``).

Every number the README states about the reference run comes from its files: the run (profile, hardware,
duration per notebook: ``manifest.json``), the paper's claims (``metrics/claims.csv``) and the metrics of each
model (``summary.json``). ``python -m wavalign_kit.reference`` rewrites the part of README.md between the two
markers; a test checks that the README and the files agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from wavalign_kit.report import results_table
from wavalign_kit.report_sections import frame_markdown, read_json

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = ROOT / "results" / "reference"
START, END = "<!-- reference-results:start -->", "<!-- reference-results:end -->"


def claims_frame(ref_dir: Path) -> pd.DataFrame:
    """A run's ``metrics/claims.csv`` (empty architecture names read back as "")."""
    return pd.read_csv(ref_dir / "metrics" / "claims.csv", dtype={"architecture": str}).fillna({"architecture": ""})


def readme_results(ref_dir: Path = REFERENCE_DIR) -> str:
    """The Markdown between the README's markers: the run, the claims' verdicts and deciding contrasts with
    their intervals and reading, and every model's metrics with intervals."""
    from wavalign_kit.claims import claim_verdicts
    from wavalign_kit.takeaways import claims_reading

    manifest, summary = read_json(ref_dir / "manifest.json"), read_json(ref_dir / "summary.json")
    if not manifest or not summary:
        raise FileNotFoundError(f"{ref_dir}: no manifest.json / summary.json; run "
                                f"`wavalign pipeline --profile cpu-full --out {ref_dir}` first")
    hw = manifest.get("hardware", {})
    gpus = ", ".join(hw.get("gpus") or []) or "no GPU"
    durations = ", ".join(f"{n['name'][:2]} {n['duration_s']:.0f} s" for n in manifest["notebooks"])
    table = claims_frame(ref_dir)
    decided = table[table["verdict"].isin(["reproduced", "contradicted"])]
    lines = [f"Profile `{manifest['profile']}`, seeds {manifest['seeds']}, {hw.get('cpu_count')} CPU cores, {gpus}: "
             f"the notebooks took {manifest['total_notebook_s']:.0f} s ({durations}); {summary.get('items')} "
             f"held-out test items x {summary.get('samples_per_item')} sample(s) per seed.", "",
             "**The paper's claims** (paired by item and seed; a contrast counts when its 95 % interval excludes 0):",
             "", *frame_markdown(claim_verdicts(table).set_index("architecture")), "",
             "The contrasts whose interval excludes 0 (all of them: `metrics/claims.csv`):", "",
             *(frame_markdown(decided.set_index("architecture")) if not decided.empty else ["(none)"]), "",
             claims_reading(table), "",
             "**Every model** (mean [95 % bootstrap interval over seeds and items]):", "", *results_table(summary)]
    return "\n".join(lines)


def update_readme(readme: Path = ROOT / "README.md", ref_dir: Path = REFERENCE_DIR) -> bool:
    """Rewrite the README's block between the markers; True when it changed."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: add the markers {START} and {END} where the results go")
    head, rest = text.split(START, 1)
    new = f"{head}{START}\n{readme_results(ref_dir)}\n{END}{rest.split(END, 1)[1]}"
    readme.write_text(new)
    return new != text


def readme_block(readme: Path = ROOT / "README.md") -> str:
    """The README's current block between the markers."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: no results block (the markers {START} and {END})")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


if __name__ == "__main__":
    changed = update_readme()
    print("README.md results " + ("updated" if changed else "unchanged"), file=sys.stderr)
