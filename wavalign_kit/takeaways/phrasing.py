"""Sentences made from numbers: a change with its interval, a mean with its interval, a ratio, a share.

Every takeaway a notebook or the report prints is built from these, so the wording follows the numbers: a change
whose 95 % interval excludes 0 is "raised" / "lowered", one whose interval includes 0 is "no detectable change",
and a quantity that could not be measured says so instead of printing ``nan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def finite(x: Any) -> bool:
    """Whether ``x`` is a real, finite number."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def num(x: Any, digits: int = 3, *, sign: bool = False) -> str:
    """``x`` with ``digits`` decimals (``+`` for positive values with ``sign``); "n/a" when not finite."""
    if not finite(x):
        return "n/a"
    return f"{float(x):+.{digits}f}" if sign else f"{float(x):.{digits}f}"


def interval(low: Any, high: Any, digits: int = 3, *, sign: bool = False) -> str:
    """``[low, high]``."""
    return f"[{num(low, digits, sign=sign)}, {num(high, digits, sign=sign)}]"


def estimate(entry: Mapping[str, Any], digits: int = 3, *, sign: bool = False) -> str:
    """``mean [ci_low, ci_high]`` of an interval entry (`intervals.Interval.as_dict` or a summary metric)."""
    return f"{num(entry.get('mean'), digits, sign=sign)} {interval(entry.get('ci_low'), entry.get('ci_high'), digits, sign=sign)}"


def percent(x: Any, digits: int = 0) -> str:
    """``x`` (a share in [0, 1]) as a percentage."""
    return f"{100 * float(x):.{digits}f} %" if finite(x) else "n/a"


def excludes_zero(entry: Mapping[str, Any]) -> bool:
    """Whether an interval entry's 95 % interval lies entirely on one side of 0."""
    low, high = entry.get("ci_low"), entry.get("ci_high")
    return finite(low) and finite(high) and (float(low) > 0 or float(high) < 0)


def change(subject: str, quantity: str, delta: Mapping[str, Any] | None, *, higher_is_better: bool | None = True,
           against: str = "the base model", digits: int = 3) -> str:
    """One sentence on a paired difference ``delta`` (mean, ci_low, ci_high) of ``quantity`` between ``subject``
    and ``against``; the verb and the verdict follow the interval.

    >>> change("text-only GRPO", "iq_text", {"mean": 0.04, "ci_low": 0.01, "ci_high": 0.07})
    'text-only GRPO raised iq_text by +0.040 [+0.010, +0.070] over the base model (better): the interval excludes 0.'
    """
    if not delta or not finite(delta.get("mean")):
        return f"{subject}: {quantity} could not be compared with {against} (no paired items)."
    mean, low, high = (float(delta.get(k, float("nan"))) for k in ("mean", "ci_low", "ci_high"))
    shown = f"{num(mean, digits, sign=True)} {interval(low, high, digits, sign=True)}"
    if mean == 0 and low == 0 and high == 0:
        return f"{subject} scored exactly as {against} on {quantity} on every paired item ({shown})."
    if not excludes_zero(delta):
        return f"{subject} changed {quantity} by {shown} against {against}: no detectable change at this budget."
    verb = "raised" if mean > 0 else "lowered"
    better = "" if higher_is_better is None else " (better)" if (mean > 0) == higher_is_better else " (worse)"
    return f"{subject} {verb} {quantity} by {shown} over {against}{better}: the interval excludes 0."


def compare(name_a: str, a: Mapping[str, Any], name_b: str, b: Mapping[str, Any], quantity: str,
            digits: int = 2) -> str:
    """Which of two estimates (mean, ci_low, ci_high) is larger, or that their intervals overlap."""
    if not (finite(a.get("mean")) and finite(b.get("mean"))):
        return f"{quantity}: {name_a} {estimate(a, digits)}, {name_b} {estimate(b, digits)}: not comparable."
    shown = f"{name_a} {estimate(a, digits)}, {name_b} {estimate(b, digits)}"
    if float(a["ci_low"]) > float(b["ci_high"]):
        return f"{quantity}: {shown}; {name_a} is higher (the intervals do not overlap)."
    if float(b["ci_low"]) > float(a["ci_high"]):
        return f"{quantity}: {shown}; {name_b} is higher (the intervals do not overlap)."
    return f"{quantity}: {shown}; the intervals overlap, so this run cannot tell them apart."


def mean_interval(values: Any, *, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of ``values`` (one number per unit: prompt, item, step) with a bootstrap 95 % interval."""
    from wavalign_kit.intervals import bootstrap_mean

    x = np.asarray(values, dtype=np.float64).reshape(1, -1)
    if x.size == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    return bootstrap_mean(x, resamples=resamples, seed=seed).as_dict()


def ratio_phrase(ratio: float, larger: str, smaller: str, *, similar: float = 1.5) -> str:
    """"{larger} is 3.1x {smaller}" / "about the same size (ratio 1.03)" / the reverse, from ``ratio`` =
    larger / smaller; within ``similar``x either way counts as about the same."""
    if not finite(ratio) or ratio <= 0:
        return f"the ratio of {larger} to {smaller} could not be measured"
    if ratio >= similar:
        return f"{larger} is {ratio:.1f}x {smaller}"
    if ratio <= 1 / similar:
        return f"{smaller} is {1 / ratio:.1f}x {larger}"
    return f"{larger} and {smaller} are about the same size (ratio {ratio:.2f})"


def bullet_list(lines: list[str]) -> str:
    """Markdown bullets (empty lines dropped)."""
    return "\n".join(f"- {line}" for line in lines if line)
