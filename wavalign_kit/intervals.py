"""Bootstrap 95 % intervals for the evaluation: a model's mean and its paired difference from the base model.

Scores are arrays (S, I): seeds x test items (each cell the mean over that item's samples under that seed; NaN
where the metric is undefined). The bootstrap resamples seeds and, within them, items, with replacement (both
levels: the spread between training seeds is real uncertainty, not only the choice of test items), and takes the
mean of each resample; the interval is the 2.5 / 97.5 percentiles. A difference vs the base model is computed on
matched cells (same seed, same item), so the variation both models share cancels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap interval and how many (seed, item) cells it rests on."""

    mean: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def as_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def bootstrap_mean(scores: np.ndarray, *, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Mean of ``scores`` (S, I) over its finite cells, with a two-level (seeds, items) bootstrap interval."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores: expected a non-empty (seeds, items) array, got shape {x.shape}")
    ok = np.isfinite(x)
    if not ok.any():
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    values = np.where(ok, x, 0.0)
    S, n_items = x.shape
    rng = np.random.default_rng(seed)
    seed_counts = _counts(rng, resamples, S) if S > 1 else np.ones((resamples, 1))     # (R, S)
    item_counts = _counts(rng, resamples, n_items)                                     # (R, I)
    total = np.einsum("rs,si,ri->r", seed_counts, values, item_counts)
    weight = np.einsum("rs,si,ri->r", seed_counts, ok.astype(np.float64), item_counts)
    boot = total[weight > 0] / weight[weight > 0]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return Interval(float(values.sum() / ok.sum()), float(low), float(high), int(ok.sum()))


def paired_difference(model: np.ndarray, base: np.ndarray, **kw) -> Interval:
    """``model - base`` on matched (seed, item) cells, with the bootstrap interval of its mean."""
    a, b = np.asarray(model, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"model and base scores must cover the same seeds and items, got {a.shape} and {b.shape}")
    return bootstrap_mean(a - b, **kw)


def _counts(rng: np.random.Generator, resamples: int, n: int) -> np.ndarray:
    """How often each of ``n`` units is drawn in each of ``resamples`` resamples of size n: (resamples, n)."""
    draws = rng.integers(0, n, size=(resamples, n))
    return np.apply_along_axis(np.bincount, 1, draws, minlength=n).astype(np.float64)
