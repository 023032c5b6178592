"""Training curves read from the runs' metrics.csv: smoothing, the per-preset KL / drift table, reward windows.

Input: the notebooks' ``training_curves.csv``: every run's metrics.csv rows with ``architecture``, ``preset`` and
``seed`` columns. Per-step KL is spiky (a single DPO step can move a sequence's log-prob by nats), so the table
gives the median next to the mean and the figures smooth with a rolling mean. GRPO's drift is the k3 KL to the
reference on sampled tokens (``kl_*``); DPO's is the drop of the chosen responses' log-probs
(``chosen_logp_drop_*``): different quantities, kept in different columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KL = ("kl_text", "kl_speech")
DPO_DRIFT = ("chosen_logp_drop_text", "chosen_logp_drop_speech")
KEYS = ["architecture", "preset"]


def smoothing_window(steps: int) -> int:
    """Rolling-mean window for a run of ``steps`` steps: about a tenth of it, 1 to 25 steps."""
    return int(min(25, max(1, round(steps / 10))))


def per_step(curves: pd.DataFrame, column: str) -> pd.Series:
    """Mean over seeds of ``column`` per step (one architecture and preset), NaN steps dropped."""
    return curves.groupby("step")[column].mean().dropna() if column in curves else pd.Series(dtype=float)


def rolling_band(series: pd.Series, window: int) -> pd.DataFrame:
    """Rolling mean of ``series`` with a band of +-1 rolling standard deviation (centred, partial windows at the
    ends): columns mean, low, high, indexed like ``series``."""
    roll = series.rolling(window, center=True, min_periods=1)
    mean, std = roll.mean(), roll.std().fillna(0.0)
    return pd.DataFrame({"mean": mean, "low": mean - std, "high": mean + std})


def drift_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Per architecture and preset, over all steps and seeds: steps, mean lambda, and the median and mean of each
    per-channel KL (GRPO) and chosen log-prob drop (DPO) a run logged (columns ``<name> median`` / ``mean``)."""
    rows = []
    for (arch, preset), part in curves.groupby(KEYS, sort=False):
        runs = part.groupby("seed") if "seed" in part else [(0, part)]
        row = {"architecture": arch, "preset": preset, "steps": max(len(run) for _, run in runs),
               "seeds": int(part["seed"].nunique()) if "seed" in part else 1}
        if "lambda" in part and part["lambda"].notna().any():
            row["lambda mean"] = float(part["lambda"].mean())
        for col in KL + DPO_DRIFT:
            values = part[col].dropna() if col in part else pd.Series(dtype=float)
            if len(values):
                row[f"{col} median"] = float(values.median())
                row[f"{col} mean"] = float(values.mean())
        rows.append(row)
    return pd.DataFrame(rows).set_index(KEYS)


MIN_WINDOW = 3   # steps per window below which a trend is not judged


def window_difference(values: pd.Series, fraction: float = 1 / 3, *, resamples: int = 2000,
                      seed: int = 0) -> dict[str, float]:
    """Mean of the last ``fraction`` of a per-step series minus the mean of its first ``fraction``, with a bootstrap
    95 % interval (steps of each window resampled independently); also ``first``, ``last`` and the window's
    ``steps``. With fewer than `MIN_WINDOW` steps per window the interval is NaN (too few steps to judge)."""
    x = values.dropna().to_numpy(dtype=np.float64)
    k = max(1, int(len(x) * fraction))
    nan = float("nan")
    if k < MIN_WINDOW:
        first, last = (x[:k].mean(), x[-k:].mean()) if len(x) else (nan, nan)
        return {"mean": float(last - first), "ci_low": nan, "ci_high": nan, "first": float(first),
                "last": float(last), "steps": k}
    if len(x) < 2:
        return {"mean": nan, "ci_low": nan, "ci_high": nan, "first": nan, "last": nan, "steps": k}
    first, last = x[:k], x[-k:]
    rng = np.random.default_rng(seed)
    boot = (rng.choice(last, (resamples, k)).mean(axis=1) - rng.choice(first, (resamples, k)).mean(axis=1))
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"mean": float(last.mean() - first.mean()), "ci_low": float(low), "ci_high": float(high),
            "first": float(first.mean()), "last": float(last.mean()), "steps": k}
