"""Takeaways of notebook 04 (evaluation): which differences from the base model the intervals can see.

Input: the summary of `results.summarize` (per model and metric: mean, interval, and ``delta_vs_base``: the
paired difference from the base model with its bootstrap 95 % interval). A change is reported as a change only
when its interval excludes 0; the paper's expected pattern is then checked against the same intervals.
"""

from __future__ import annotations

from typing import Any

from wavalign_kit.takeaways.phrasing import bullet_list, change, excludes_zero, finite, num
from wavalign_kit.takeaways.world import USABLE_WER, grader_sets

LOWER_IS_BETTER = {"wer"}
KEY_METRICS = ("iq_text", "iq_unseen", "iq_speech", "eq_style", "neutral_adherence", "wer", "naturalness")
RECOGNISED = ("iq_speech", "wer", "eq_style_prob")   # read through the recogniser's transcript
# (model, metric, what the paper reports for it)
PAPER = (("grpo_full", "eq_style", "full-token GRPO lowers style accuracy"),
         ("dpo_full", "eq_style", "full-token DPO lowers style accuracy"),
         ("grpo_text", "eq_style", "text-only GRPO keeps style accuracy"),
         ("wavalign", "iq_text", "WavAlign raises task accuracy"),
         ("wavalign", "eq_style", "WavAlign keeps or raises style accuracy"))


def _short(delta: dict[str, Any]) -> str:
    return (f"{num(delta.get('mean'), 3, sign=True)} [{num(delta.get('ci_low'), 3, sign=True)}, "
            f"{num(delta.get('ci_high'), 3, sign=True)}]")


def metric_line(summary: dict[str, Any], metric: str) -> str:
    """One metric across the models: the detectable changes (better / worse) and the rest in one clause."""
    better = metric not in LOWER_IS_BETTER
    seen, quiet = [], []
    for name, metrics in summary.get("models", {}).items():
        delta = (metrics.get(metric) or {}).get("delta_vs_base")
        if not delta or not finite(delta.get("mean")):
            continue
        if excludes_zero(delta):
            good = (delta["mean"] > 0) == better
            seen.append(f"{name} {_short(delta)} ({'better' if good else 'worse'})")
        else:
            quiet.append((abs(float(delta["mean"])), name, delta))
    if not seen and not quiet:
        return ""
    verb = "differs" if len(seen) == 1 else "differ"
    parts = [f"**{metric}**: " + ("; ".join(seen) + f" {verb} from the base model" if seen
                                  else "no model differs detectably from the base model")]
    if quiet and seen:
        parts.append(f"no detectable change for {', '.join(n for _, n, _ in quiet)}")
    elif all(float(d["mean"]) == float(d["ci_low"]) == float(d["ci_high"]) == 0 for _, _, d in quiet):
        parts[0] = f"**{metric}**: every model scored exactly as the base model on every paired item"
    elif quiet:
        _, name, delta = max(quiet, key=lambda q: q[0])
        parts.append(f"the largest change, {name} {_short(delta)}, has an interval that includes 0")
    return "; ".join(parts) + "."


def paper_lines(summary: dict[str, Any]) -> list[str]:
    """The paper's reported effects, each checked against this run's paired interval (models present only)."""
    lines = []
    models = summary.get("models", {})
    for model, metric, claim in PAPER:
        names = [n for n in models if n == model or n.endswith(f"/{model}")]
        for name in names:
            delta = (models[name].get(metric) or {}).get("delta_vs_base")
            if delta:
                lines.append(f"Paper: {claim}. Here: " + change(name, metric, delta,
                                                                higher_is_better=metric not in LOWER_IS_BETTER))
    return lines


def evaluation_reading(summary: dict[str, Any], world_summary: dict[str, Any] | None = None,
                       metrics: tuple[str, ...] = KEY_METRICS) -> str:
    """Notebook 04's takeaways as Markdown bullets: the design, each metric's detectable changes, the paper's
    pattern, and how far the world's recogniser bounds the speech-side metrics."""
    if not summary.get("models"):
        return "- No evaluation results."
    tests = sum(1 for m in summary["models"].values() for k in metrics if (m.get(k) or {}).get("delta_vs_base"))
    lines = [f"Graded on {summary.get('items', '?')} test items x {summary.get('samples_per_item', '?')} sample(s) "
             f"x seeds {summary.get('seeds', '?')}; every difference is paired with the base model by item and seed, "
             f"and counts only when its 95 % interval excludes 0 (of the {tests} intervals below, about "
             f"{0.05 * tests:.1f} would exclude 0 by chance alone)."]
    lines += [line for m in metrics if (line := metric_line(summary, m))]
    lines += paper_lines(summary)
    if world_summary:
        graders = grader_sets(world_summary)
        label = "examiners" if "examiners" in graders else "reward models"
        wer = (graders.get(label) or {}).get("recognizer_wer")
        if finite(wer) and wer > USABLE_WER:
            lines.append(f"The {label}' recogniser has held-out WER {num(wer, 2)}: {', '.join(RECOGNISED)} mostly "
                         "measure the recogniser here, not the models.")
    return bullet_list(lines)


def deltas_reading(deltas) -> str:
    """How many of the plotted model-metric differences (`results.delta_frame`) have an interval that excludes 0,
    and which."""
    if deltas.empty:
        return "- No paired differences to show."
    hits = deltas[deltas["excludes_zero"]]
    line = f"{len(hits)} of {len(deltas)} model-metric differences from the base model have a 95 % interval that excludes 0"
    chance = (f"- With {len(deltas)} intervals at 95 %, about {0.05 * len(deltas):.1f} would exclude 0 by chance alone, "
              "so a single excluded interval is weak evidence on its own.")
    if hits.empty:
        return f"- {line}: at this budget no method is distinguishable from the base model on any metric."
    shown = "; ".join(f"{r.model} {r.metric} {num(r.mean, 3, sign=True)}" for r in hits.itertuples())
    return f"- {line}: {shown}.\n{chance}"


def claims_reading(table) -> str:
    """The paper's claims (`claims.contrast_table`), one bullet per architecture and claim: its verdict, the
    contrasts that decide it with their intervals, and how many excluded 0 against how many chance would give."""
    from wavalign_kit.claims import claim_verdicts

    if table.empty:
        return "- No claim can be tested: the run evaluated none of the preset pairs the claims compare."

    def detail(rows) -> str:
        return "; ".join(f"{r.contrast} {r.metric} {num(r.delta, 3, sign=True)} [{num(r.ci_low, 3, sign=True)}, "
                         f"{num(r.ci_high, 3, sign=True)}] {r.verdict}" for r in rows.itertuples())

    lines = []
    for row in claim_verdicts(table).itertuples():
        part = table[(table["architecture"] == row.architecture) & (table["claim"] == row.claim)]
        part = part[part["verdict"] != "no data"]
        where = f" ({row.architecture})" if row.architecture else ""
        if part.empty:
            lines.append(f"Claim {row.claim}{where}: no data (its metrics were not measured).")
            continue
        if (part["expected"] == ">= 0").all():                      # an "at least as good" claim
            bad = part[part["verdict"] == "contradicted"]
            lines.append(f"Claim {row.claim}{where}: **{row.verdict}**; " + (
                f"a baseline is better beyond its interval: {detail(bad)}." if not bad.empty else
                f"no baseline is better beyond its interval in {len(part)} contrasts (no detected deficit, not "
                f"proof of equality); the lowest, {detail(part.loc[[part['ci_low'].idxmin()]])}."))
            continue
        decided = part[part["verdict"].isin(["reproduced", "contradicted"])]
        if decided.empty:
            lead, shown = f"no interval of its {len(part)} contrasts excludes 0; the largest", \
                part.loc[[part["delta"].abs().idxmax()]]
        else:
            lead, shown = f"{row.reproduced} of {len(part)} contrasts reproduced, {row.contradicted} contradicted", decided
        lines.append(f"Claim {row.claim}{where}: **{row.verdict}**; {lead}: {detail(shown)}.")
    n = int((table["verdict"] != "no data").sum())
    lines.append(f"Of the {n} intervals, about {0.05 * n:.1f} would exclude 0 by chance alone; a claim resting on "
                 "one contrast is weak evidence on its own.")
    return bullet_list(lines)
