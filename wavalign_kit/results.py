"""Evaluation results with their uncertainty: the summary.json layout, the per-style table, the display table.

Input: the per-response frame of `evaluation.evaluate` for every model and seed (columns ``model``, ``seed``,
``example_id``, optional ``architecture``, the metrics of `evaluation.METRICS` from the examiners and ``rm_*`` from
the reward models). Each metric becomes a (seed x item) matrix (the mean of an item's samples under a seed; NaN
where the metric does not apply, e.g. ``eq_style`` on a neutral item); a model's mean has a two-level bootstrap
interval (`intervals.bootstrap_mean`) and its difference from the base model of its architecture is paired on
the same (seed, item) cells (`intervals.paired_difference`). ``std`` is the sample standard deviation of the
per-seed means (0 with one seed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from wavalign_kit.intervals import bootstrap_mean, paired_difference

BASE = "base"
REWARD_MODEL_PREFIX = "rm_"


def cell_matrix(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(seed x item) means of ``metric`` over each item's samples; NaN where it does not apply."""
    return frame.groupby(["seed", "example_id"])[metric].mean().unstack("example_id")


def _model_names(frame: pd.DataFrame) -> pd.Series:
    several = "architecture" in frame.columns and frame["architecture"].nunique() > 1
    return frame["architecture"].astype(str) + "/" + frame["model"].astype(str) if several else frame["model"]


def metric_entry(frame: pd.DataFrame, base: pd.DataFrame | None, metric: str, **boot: Any) -> dict[str, Any]:
    """mean, std over seeds, bootstrap interval, n; ``delta_vs_base`` (paired, with its interval) when given."""
    cells = cell_matrix(frame, metric)
    per_seed = cells.mean(axis=1, skipna=True).dropna()
    mean = bootstrap_mean(cells.to_numpy(), **boot)
    entry: dict[str, Any] = {"mean": mean.mean, "std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
                             "ci_low": mean.ci_low, "ci_high": mean.ci_high, "n": mean.n}
    if base is not None:
        ref = cell_matrix(base, metric).reindex(index=cells.index, columns=cells.columns)
        entry["delta_vs_base"] = paired_difference(cells.to_numpy(), ref.to_numpy(), **boot).as_dict()
    return entry


def summarize(responses: pd.DataFrame, metrics: list[str], *, resamples: int = 2000) -> dict[str, Any]:
    """summary.json: per model (``architecture/model`` with several architectures) and metric, the examiners'
    figures under ``models`` and the reward models' (``rm_*`` columns) under ``reward_models``."""
    missing = [c for c in ("model", "seed", "example_id") if c not in responses.columns]
    if missing:
        raise ValueError(f"summarize: the responses lack columns {missing} (one row per response: model, seed, "
                         "example_id and the metrics)")
    frame = responses.reset_index(drop=True)
    frame = frame.assign(_name=_model_names(frame))
    arch = frame["architecture"] if "architecture" in frame.columns else pd.Series("", index=frame.index)
    boot = {"resamples": resamples}
    out: dict[str, Any] = {"models": {}, "reward_models": {}}
    for name, group in frame.groupby("_name", sort=False):
        base_rows = frame[(frame["model"] == BASE) & (arch == arch[group.index[0]])]
        base = None if group["model"].iloc[0] == BASE or base_rows.empty else base_rows
        out["models"][str(name)] = {m: metric_entry(group, base, m, **boot) for m in metrics if m in group}
        rm = [c for c in group.columns if c.startswith(REWARD_MODEL_PREFIX)]
        out["reward_models"][str(name)] = {c[len(REWARD_MODEL_PREFIX):]: metric_entry(group, base, c, **boot)
                                           for c in rm}
    out["seeds"] = sorted(int(s) for s in frame["seed"].unique())
    out["items"] = int(frame["example_id"].nunique())
    out["samples_per_item"] = int(frame.groupby(["_name", "seed", "example_id"]).size().max())
    out["bootstrap"] = {"resamples": resamples, "level": 0.95, "levels": ["seeds", "items"]}
    return out


def _cell(entry: dict[str, Any] | None, delta: bool) -> str:
    if not entry or entry.get("mean") is None or not np.isfinite(entry["mean"]):
        return "n/a"
    if delta:
        d = entry.get("delta_vs_base")
        if not d:
            return "-"
        mark = " *" if d["excludes_zero"] else ""
        return f"{d['mean']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]{mark}"
    return f"{entry['mean']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def summary_table(summary: dict[str, Any], metrics: list[str], *, delta: bool = False,
                  section: str = "models") -> pd.DataFrame:
    """One row per model: ``mean [95 % interval]`` per metric, or with ``delta`` the paired difference from the
    base model, marked `` *`` where its interval excludes 0."""
    return pd.DataFrame({name: {m: _cell(v.get(m), delta) for m in metrics}
                         for name, v in summary[section].items()}).T


def delta_frame(summary: dict[str, Any], metrics: list[str], *, section: str = "models") -> pd.DataFrame:
    """Long form of the paired differences from the base model, for plots: one row per model (base excluded) and
    metric with ``mean``, ``ci_low``, ``ci_high`` and ``excludes_zero``."""
    rows = []
    for name, entries in summary[section].items():
        for metric in metrics:
            delta = (entries.get(metric) or {}).get("delta_vs_base")
            if delta and np.isfinite(delta.get("mean", np.nan)):
                rows.append({"model": name, "metric": metric, **{k: delta[k] for k in ("mean", "ci_low", "ci_high")},
                             "excludes_zero": bool(delta["excludes_zero"])})
    return pd.DataFrame(rows, columns=["model", "metric", "mean", "ci_low", "ci_high", "excludes_zero"])


def per_style_table(responses: pd.DataFrame) -> pd.DataFrame:
    """Per model and target style: style accuracy (``eq_style`` on style requests, ``neutral_adherence`` on
    neutral items) and how many responses each figure rests on."""
    frame = responses.assign(_name=_model_names(responses))
    accuracy = frame["eq_style"].fillna(frame["neutral_adherence"])
    return (frame.assign(style_accuracy=accuracy).groupby(["_name", "style"])["style_accuracy"]
            .agg(["mean", "count"]).rename_axis(["model", "style"]).reset_index())
