"""Takeaways of notebook 00 and of every notebook's introduction: the run's scale, the world's graders, the base model.

The world's recogniser and style classifier grade every speech-side metric, so their held-out error bounds what
any later figure can show; these functions say how far, from the numbers in the world's ``summary.json``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from wavalign_kit.takeaways.phrasing import bullet_list, finite, num, percent

GOOD_WER = 0.10      # the kit's target for the cpu world's recogniser
USABLE_WER = 0.30    # above this most speech-side scores measure the recogniser, not the model
GRADER_SETS = (("evaluators", "reward models"), ("examiners", "examiners"))


def grader_sets(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The world's sets of speech graders with held-out figures: ``{label: figures}`` (reward models always;
    examiners when the world has them)."""
    sets = {label: summary.get(key) for key, label in GRADER_SETS}
    if not sets["reward models"]:
        sets["reward models"] = {k: summary[k] for k in ("recognizer_wer", "style_accuracy", "unit_lm_nll")
                                 if k in summary}
    return {label: figures for label, figures in sets.items() if figures}


def quality_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Held-out quality of the world's graders: recogniser WER overall and per style, style accuracy, unit-LM NLL;
    one column per grader set."""
    rows: dict[str, dict[str, float]] = {}
    for label, figures in grader_sets(summary).items():
        col = {"recogniser WER (all styles)": figures.get("recognizer_wer")}
        col.update({f"recogniser WER ({style})": wer
                    for style, wer in sorted((figures.get("recognizer_wer_by_style") or {}).items())})
        col["style accuracy"] = figures.get("style_accuracy")
        col.update({f"style accuracy ({style})": acc
                    for style, acc in sorted((figures.get("style_accuracy_by_style") or {}).items())})
        col["unit-LM NLL (nats/unit)"] = figures.get("unit_lm_nll")
        rows[label] = col
    return pd.DataFrame(rows).dropna(how="all")


def recogniser_verdict(wer: float) -> str:
    """What a recogniser with held-out ``wer`` allows the speech-side metrics to say."""
    if not finite(wer):
        return "its error was not measured, so speech-side scores cannot be judged"
    if wer <= GOOD_WER:
        return f"good enough to grade speech (the kit's target is WER <= {GOOD_WER:.2f})"
    if wer <= USABLE_WER:
        return "usable but noisy: speech-side scores (iq_speech, wer, eq_style_prob) carry its errors"
    return ("too poor to grade speech: iq_speech, the text-speech wer and eq_style_prob mostly measure the "
            "recogniser, not the model")


def world_reading(summary: dict[str, Any]) -> str:
    """Markdown bullets on the graders' held-out quality, per grader set."""
    lines = []
    styles = summary.get("styles", {}).get("train") or {}
    chance = 1 / len(styles) if styles else float("nan")
    for label, figures in grader_sets(summary).items():
        wer = figures.get("recognizer_wer")
        by_style = {s: w for s, w in (figures.get("recognizer_wer_by_style") or {}).items() if finite(w)}
        spread = ""
        if len(by_style) > 1:
            worst, best = max(by_style, key=by_style.get), min(by_style, key=by_style.get)
            spread = f"; by style from {num(by_style[best], 2)} ({best}) to {num(by_style[worst], 2)} ({worst})"
        lines.append(f"The {label}' recogniser mishears {percent(wer)} of the words of held-out speech (WER "
                     f"{num(wer)}{spread}): {recogniser_verdict(wer)}.")
        acc = figures.get("style_accuracy")
        if finite(acc):
            level = ("reliable" if acc >= 0.9 else "usable but noisy" if finite(chance) and acc >= 2 * chance
                     else "close to chance")
            lines.append(f"The {label}' style classifier names the right style for {percent(acc)} of held-out "
                         f"utterances (chance {percent(chance)}): {level}.")
    return bullet_list(lines)


def base_model_reading(heldout: pd.DataFrame, summary: dict[str, Any]) -> str:
    """Markdown bullets on each base model's held-out figures (index: architecture; columns of
    ``warmstart_summary.json``'s ``heldout``), read against the recogniser that graded them."""
    wer = (grader_sets(summary).get("reward models") or {}).get("recognizer_wer")
    lines = []
    for arch, row in heldout.iterrows():
        n = row.get("examples")
        lines.append(f"The {arch} base model answers {percent(row.get('iq_text_accuracy'))} of "
                     f"{int(n) if finite(n) else '?'} held-out questions right in its text channel and "
                     f"{percent(row.get('iq_speech_accuracy'))} from its recognised speech; its speech differs from "
                     f"its own text by WER {num(row.get('wer_speech_vs_text'), 2)}, and the style classifier hears "
                     f"the requested style in {percent(row.get('style_accuracy'))} of its answers.")
    if finite(wer) and wer > USABLE_WER:
        lines.append(f"With a recogniser at WER {num(wer, 2)}, the speech-side figures above say little about "
                     "the model.")
    return bullet_list(lines)


def profile_notice(cfg: dict[str, Any], reference: dict[str, Any], *, reference_runtime: str = "") -> str:
    """A loud Markdown notice when ``cfg`` is the ``smoke`` profile: its sizes next to those of ``reference`` (the
    ``cpu`` profile) and how to get meaningful numbers; "" for any other profile."""
    if cfg.get("profile") != "smoke":
        return ""

    def sizes(c: dict[str, Any]) -> str:
        w, t, p = c.get("world") or {}, c.get("train") or {}, c.get("pipeline") or {}
        return (f"{w.get('evaluator_utterances', '?')} utterances to train the graders, {t.get('steps', '?')} "
                f"training steps of {t.get('prompts_per_step', '?')} prompts x {t.get('group_size', '?')} samples, "
                f"{w.get('test_size', '?')} test items, seeds {p.get('seeds', '?')}")

    runtime = f" ({reference_runtime})" if reference_runtime else ""
    return (f"> **This is the `smoke` profile: it checks that the code runs, and its numbers are not meaningful.** "
            f"It uses {sizes(cfg)}; the `{reference.get('profile', 'cpu')}` profile uses {sizes(reference)}. "
            f"For numbers worth reading, run `wavalign pipeline --profile {reference.get('profile', 'cpu')}`"
            f"{runtime}, or open the reference run's executed notebooks in `results/reference/notebooks/`.")


def speaking_rate_reading(rates: pd.Series) -> str:
    """The slowest and fastest style by target speech units per word (``rates``: per style)."""
    rates = rates.dropna()
    if len(rates) < 2:
        return ""
    slow, fast = rates.idxmax(), rates.idxmin()
    return (f"- The targets' tempo spans {num(rates[fast], 1)} units per word ({fast}) to {num(rates[slow], 1)} "
            f"({slow}), {num(rates[slow] / rates[fast], 2)}x: a model that keeps each style's tempo scores high on "
            "prosody match.")


def warmstart_reading(losses: dict[str, pd.DataFrame]) -> str:
    """Per architecture: first and last training loss, and the last validation loss (``loss.csv`` frames with
    ``step``, ``loss``, ``valid_loss``)."""
    lines = []
    for arch, loss in losses.items():
        train = loss["loss"].dropna()
        valid = loss["valid_loss"].dropna() if "valid_loss" in loss else pd.Series(dtype=float)
        if train.empty:
            continue
        line = (f"{arch}: training loss {num(train.iloc[0], 2)} -> {num(train.iloc[-1], 2)} nats per token over "
                f"{int(loss['step'].max())} steps")
        if len(valid):
            gap = valid.iloc[-1] - train.iloc[-1]
            line += (f"; held-out loss {num(valid.iloc[-1], 2)}, " + ("close to the training loss" if gap < 0.25 else
                     f"{num(gap, 2)} above the training loss: the warm start fits its data better than new prompts"))
        lines.append(line + ".")
    return bullet_list(lines)
