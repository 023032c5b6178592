"""The README's results section, rendered from the committed reference run (``results/reference``).

Every number the README states about the reference run comes from its files: the run (profile, hardware,
duration per notebook: ``manifest.json``), the paper's claims (``metrics/claims.csv``), the metrics of each
model (``summary.json``) and the world's graders (``metrics/world_summary.json``). Each block sits between
two markers (``<!-- reference-NAME:start -->`` / ``end``); ``python -m wavalign_kit.reference`` rewrites them
and a test checks that the README and the files agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wavalign_kit.report import results_table
from wavalign_kit.report_sections import frame_markdown, read_json

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = ROOT / "results" / "reference"
STYLE_ORDER = ("calm", "slow", "sad", "neutral", "whisper", "happy", "excited")


def markers(name: str) -> tuple[str, str]:
    """The README's start and end markers of block ``name``."""
    return f"<!-- reference-{name}:start -->", f"<!-- reference-{name}:end -->"


def readme_results(ref_dir: Path = REFERENCE_DIR) -> str:
    """The Markdown between the README's markers: the run, the claims' verdicts and deciding contrasts with
    their intervals and reading, and every model's metrics with intervals."""
    from wavalign_kit.claims import claim_verdicts, read_claims
    from wavalign_kit.takeaways import claims_reading

    manifest, summary = read_json(ref_dir / "manifest.json"), read_json(ref_dir / "summary.json")
    if not manifest or not summary:
        raise FileNotFoundError(f"{ref_dir}: no manifest.json / summary.json; run "
                                f"`wavalign pipeline --profile cpu-full --out {ref_dir}` first")
    hw = manifest.get("hardware", {})
    gpus = ", ".join(hw.get("gpus") or []) or "no GPU"
    durations = ", ".join(f"{n['name'][:2]} {n['duration_s']:.0f} s" for n in manifest["notebooks"])
    table = read_claims(ref_dir / "metrics" / "claims.csv")
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


def readme_graders(ref_dir: Path = REFERENCE_DIR) -> str:
    """The held-out figures of the reference world's two grader sets, side by side."""
    world = read_json(ref_dir / "metrics" / "world_summary.json")
    if not world:
        raise FileNotFoundError(f"{ref_dir}: no metrics/world_summary.json")
    lines = [f"| set | recogniser | WER | WER by style ({' / '.join(STYLE_ORDER)}) | style accuracy | unit-LM NLL |",
             "|---|---|---|---|---|---|"]
    for name, role in (("evaluators", "rewards"), ("examiners", "evaluation")):
        f = world[name]
        by_style = " / ".join(f"{100 * f['recognizer_wer_by_style'][s]:.1f}" for s in STYLE_ORDER)
        lines.append(f"| {name} ({role}) | {f['recognizer_encoder']}, {f['recognizer_tokens']} CTC | "
                     f"**{100 * f['recognizer_wer']:.1f} %** | {by_style} % | **{100 * f['style_accuracy']:.1f} %** | "
                     f"{f['unit_lm_nll']:.2f} |")
    timings = world.get("timings", {})
    lines += ["", f"Built in {sum(timings.values()):.0f} s inside the reference run: "
              + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items() if v >= 1) + "."]
    return "\n".join(lines)


BLOCKS = {"results": readme_results, "graders": readme_graders}


def update_readme(readme: Path = ROOT / "README.md", ref_dir: Path = REFERENCE_DIR) -> bool:
    """Rewrite every block of BLOCKS between its markers; True when the README changed."""
    text = original = readme.read_text()
    for name, render in BLOCKS.items():
        start, end = markers(name)
        if start not in text or end not in text:
            raise ValueError(f"{readme}: add the markers {start} and {end} where this block goes")
        head, rest = text.split(start, 1)
        text = f"{head}{start}\n{render(ref_dir)}\n{end}{rest.split(end, 1)[1]}"
    readme.write_text(text)
    return text != original


def readme_block(name: str, readme: Path = ROOT / "README.md") -> str:
    """The README's current block ``name`` (between its markers)."""
    start, end = markers(name)
    text = readme.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{readme}: no {name} block (the markers {start} and {end})")
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


if __name__ == "__main__":
    changed = update_readme()
    print("README.md results " + ("updated" if changed else "unchanged"), file=sys.stderr)
