"""The paper's claims, tested on one evaluation: paired contrasts between presets with 95 % intervals.

Input: the per-response frame of `evaluation.evaluate_seed` for every model and seed (columns ``model``,
``seed``, ``example_id``, optional ``architecture``, the metrics). Each contrast ``a - b`` of a metric is paired on
the (seed, item) cells both models answered (`results.cell_matrix`, `intervals.paired_difference`: a two-level
bootstrap over seeds and items). Its verdict, in the direction the paper predicts: **reproduced** when the
interval excludes 0 on the predicted side, **contradicted** when it excludes 0 on the other side,
**inconclusive** otherwise. A claim of "at least as good" (claim 3) is **contradicted** only when a baseline is
better beyond its interval and reads **not worse** otherwise: absence of a detected difference, not proof of
equality. A directional claim holds when at least one of its contrasts is reproduced and none is contradicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wavalign_kit.intervals import paired_difference
from wavalign_kit.results import cell_matrix

ACOUSTIC = (("wer", +1), ("naturalness", -1), ("eq_style", -1))     # full-token minus text-only: worse speech


@dataclass(frozen=True)
class Contrast:
    """``a - b`` on ``metric``; ``expect`` +1 / -1: the paper predicts a positive / negative difference; 0: it
    predicts "at least as good" (a - b not below 0)."""

    claim: str
    a: str
    b: str
    metric: str
    expect: int


def paper_contrasts() -> list[Contrast]:
    """DESIGN.md section 5, claims 1-3, as contrasts between the shipped presets."""
    out = [Contrast("1 full-token updates degrade speech", full, text, m, sign)
           for full, text in (("grpo_full", "grpo_text"), ("dpo_full", "dpo_text")) for m, sign in ACOUSTIC]
    out += [Contrast("2 text-only RL raises IQ", "grpo_text", ref, m, +1)
            for ref in ("base", "sft") for m in ("iq_text", "iq_unseen")]
    out += [Contrast("3 WavAlign at least as good", "wavalign", ref, m, 0)
            for ref in ("sft", "grpo_text", "grpo_text_fixed", "wavalign_no_ema", "dpo_text")
            for m in ("iq_text", "eq_style")]
    return out


def verdict(low: float, high: float, expect: int) -> str:
    """reproduced / contradicted / inconclusive (``expect`` != 0), or not worse / contradicted (``expect`` 0)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "no data"
    if expect == 0:
        return "contradicted" if high < 0 else "not worse"
    if (low > 0 and expect > 0) or (high < 0 and expect < 0):
        return "reproduced"
    if low > 0 or high < 0:
        return "contradicted"
    return "inconclusive"


def contrast_table(responses: pd.DataFrame, contrasts: list[Contrast] | None = None, *,
                   resamples: int = 2000) -> pd.DataFrame:
    """One row per architecture and contrast whose two models were both evaluated: the mean difference, its
    interval, the cells it is paired over and the verdict."""
    contrasts = paper_contrasts() if contrasts is None else contrasts
    frame = responses if "architecture" in responses else responses.assign(architecture="")
    rows: list[dict[str, Any]] = []
    for arch, part in frame.groupby("architecture", sort=False):
        models = {m: g for m, g in part.groupby("model", sort=False)}
        for c in contrasts:
            if c.a not in models or c.b not in models or c.metric not in part:
                continue
            a = cell_matrix(models[c.a], c.metric)
            b = cell_matrix(models[c.b], c.metric).reindex(index=a.index, columns=a.columns)
            d = paired_difference(a.to_numpy(), b.to_numpy(), resamples=resamples)
            rows.append({"architecture": arch, "claim": c.claim, "contrast": f"{c.a} - {c.b}", "metric": c.metric,
                         "expected": {1: "> 0", -1: "< 0", 0: ">= 0"}[c.expect], "delta": d.mean,
                         "ci_low": d.ci_low, "ci_high": d.ci_high, "cells": d.n,
                         "verdict": verdict(d.ci_low, d.ci_high, c.expect)})
    return pd.DataFrame(rows, columns=["architecture", "claim", "contrast", "metric", "expected", "delta", "ci_low",
                                       "ci_high", "cells", "verdict"])


def read_claims(path: str | Path) -> pd.DataFrame:
    """A ``claims.csv`` written from `contrast_table` (empty architecture names read back as "")."""
    return pd.read_csv(path, dtype={"architecture": str}).fillna({"architecture": ""})


def claim_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Per architecture and claim: holds / contradicted / mixed / inconclusive from its contrasts' verdicts."""
    rows = []
    for (arch, claim), part in table.groupby(["architecture", "claim"], sort=False):
        v = set(part["verdict"])
        good, bad = "reproduced" in v, "contradicted" in v
        if "not worse" in v:                                   # an "at least as good" claim
            overall = "contradicted" if bad else "not worse"
        else:
            overall = "mixed" if good and bad else "contradicted" if bad else "holds" if good else "inconclusive"
        rows.append({"architecture": arch, "claim": claim, "verdict": overall,
                     "reproduced": int((part["verdict"] == "reproduced").sum()),
                     "contradicted": int((part["verdict"] == "contradicted").sum()), "contrasts": len(part)})
    return pd.DataFrame(rows, columns=["architecture", "claim", "verdict", "reproduced", "contradicted", "contrasts"])
