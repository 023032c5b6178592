"""The notebooks' shared figures and how a figure is published: PNG + caption + reading, shown and saved at once.

`publish` saves ``figures/<name>.png`` (dpi 100) with a sidecar ``figures/<name>.json`` holding its caption and its
reading (a takeaway computed from the numbers); report.md shows both under the figure, ordered by the notebook
number that starts ``name``. The figures drawn here from the logs: training curves (rolling means, log-scale KL,
DPO drift on its own panels, lambda legible when several presets sit at one value) and evaluation deltas (each
model's paired difference from the base model with its 95 % interval).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wavalign_kit.curves import per_step, rolling_band, smoothing_window

DPI = 100
KL_FLOOR = 1e-6   # k3 KL is >= 0; zeros are drawn at this floor on the log axis


def publish(fig, figures_dir: str | Path, name: str, caption: str, reading: str = "") -> None:
    """Save ``fig`` as ``figures_dir/name.png`` with its caption and reading beside it (``name.json``), show it,
    then the caption and the reading (Markdown), and close it. ``name`` starts with the notebook's number."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, display

    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    (out / f"{name}.json").write_text(json.dumps({"caption": caption, "reading": reading}, indent=1) + "\n")
    display(fig)
    plt.close(fig)
    display(Markdown(f"*Figure: {caption}*" + (f"\n\n{reading}" if reading else "")))


def legend_outside(fig, axes: Any, **kw: Any) -> None:
    """One legend for the figure, right of the axes (handles collected from every axis, each label once)."""
    handles: dict[str, Any] = {}
    for ax in np.ravel(axes):
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, **kw)


def _constant(series: pd.Series) -> bool:
    return len(series) > 0 and float(series.max() - series.min()) < 1e-9


def _lambda_panel(ax, part: pd.DataFrame, presets: list[str], colors: dict[str, str]) -> None:
    """Presets whose lambda moves as lines; presets at a constant lambda listed per value instead of overdrawn."""
    constant: dict[float, list[str]] = {}
    for preset in presets:
        lam = per_step(part[part.preset == preset], "lambda")
        if lam.empty:
            continue
        if _constant(lam):
            constant.setdefault(round(float(lam.iloc[0]), 3), []).append(preset)
        else:
            ax.plot(lam.index, lam.to_numpy(), color=colors[preset], label=preset)
    for value, names in sorted(constant.items()):
        ax.axhline(value, color="0.6", lw=0.8, ls=":")
        ax.annotate(f"{', '.join(names)}", (0.01, value), xycoords=("axes fraction", "data"), fontsize=7,
                    va="bottom", color="0.3")
    ax.set_ylim(-0.05, 1.12)
    ax.set_title("lambda (share of the preference loss)")


def training_curves(curves: pd.DataFrame, presets: list[str], arch: str):
    """Per preset (mean over seeds per step): reward (rolling mean, +-1 std band), lambda, entropy per channel,
    KL per channel (log scale: raw steps faint, rolling mean solid) and DPO's chosen log-prob drop per channel
    (symmetric log scale). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    part = curves[curves.architecture == arch]
    steps = int(part["step"].max()) if len(part) else 1
    window = smoothing_window(steps)
    colors = {p: f"C{i % 10}" for i, p in enumerate(presets)}
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.2), sharex=True)
    panels = {"reward_mean": (axes[0, 0], "mean rollout reward", "linear"),
              "entropy_text": (axes[0, 2], "entropy, text tokens (nats)", "linear"),
              "entropy_speech": (axes[0, 3], "entropy, speech tokens (nats)", "linear"),
              "kl_text": (axes[1, 0], "KL to reference, text (nats, log)", "log"),
              "kl_speech": (axes[1, 1], "KL to reference, speech (nats, log)", "log"),
              "chosen_logp_drop_text": (axes[1, 2], "DPO: chosen log-prob drop, text (nats)", "symlog"),
              "chosen_logp_drop_speech": (axes[1, 3], "DPO: chosen log-prob drop, speech (nats)", "symlog")}
    for col, (ax, title, scale) in panels.items():
        for preset in presets:
            series = per_step(part[part.preset == preset], col)
            if series.empty:
                continue
            if scale == "log":
                series = series.clip(lower=KL_FLOOR)
            band = rolling_band(series, window)
            if col == "reward_mean":
                ax.fill_between(band.index, band["low"], band["high"], color=colors[preset], alpha=0.15, lw=0)
            elif len(series) > window:
                ax.plot(series.index, series.to_numpy(), color=colors[preset], alpha=0.25, lw=0.7)
            ax.plot(band.index, band["mean"], color=colors[preset], label=preset)
        ax.set_title(title, fontsize=10)
        if scale == "log":
            ax.set_yscale("log")
        elif scale == "symlog":
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.axhline(0, color="0.6", lw=0.6)
        if not ax.lines:
            ax.text(0.5, 0.5, "no preset logs this", transform=ax.transAxes, ha="center", color="0.5")
    _lambda_panel(axes[0, 1], part, presets, colors)
    for ax in axes[1]:
        ax.set_xlabel("optimiser step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    legend_outside(fig, axes)
    seeds = sorted(part["seed"].unique()) if "seed" in part else [0]
    fig.suptitle(f"Training curves ({arch}; mean over seeds {list(map(int, seeds))}; rolling mean over "
                 f"{window} step(s))")
    fig.tight_layout()
    return fig


def evaluation_deltas(deltas: pd.DataFrame, metrics: list[str], *, lower_is_better: tuple[str, ...] = ("wer",),
                      title: str = ""):
    """One panel per metric: each model's paired difference from the base model (bar) with its 95 % interval
    (whisker); green / red where the interval excludes 0 and the change is better / worse, grey where it includes 0.
    ``deltas``: `results.delta_frame`. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    metrics = [m for m in metrics if m in set(deltas["metric"])]
    models = list(dict.fromkeys(deltas["model"]))
    cols = min(4, max(1, len(metrics)))
    rows = int(np.ceil(len(metrics) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 0.35 * len(models) * rows + 1.6 * rows),
                             squeeze=False, sharey=True)
    y = np.arange(len(models))
    for ax, metric in zip(axes.ravel(), metrics):
        d = deltas[deltas.metric == metric].set_index("model").reindex(models)
        better = d["mean"] < 0 if metric in lower_is_better else d["mean"] > 0
        color = np.where(~d["excludes_zero"].fillna(False).astype(bool), "0.7", np.where(better, "tab:green", "tab:red"))
        err = np.vstack([d["mean"] - d["ci_low"], d["ci_high"] - d["mean"]]).clip(min=0)
        ax.barh(y, d["mean"].fillna(0), xerr=err, color=color, capsize=2, height=0.6, ecolor="0.2")
        ax.axvline(0, color="0.2", lw=0.8)
        reach = float(np.nanmax(np.abs(d[["ci_low", "ci_high"]].to_numpy()))) if d["mean"].notna().any() else 0.0
        if reach > 0:
            ax.set_xlim(-1.1 * reach, 1.1 * reach)                     # 0 in the middle: up and down alike
        ax.set_title(f"{metric} ({'lower' if metric in lower_is_better else 'higher'} is better)", fontsize=10)
        ax.set_xlabel("difference from base")
    for ax in axes.ravel()[len(metrics):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_yticks(y, models)
    axes[0, 0].invert_yaxis()      # shared: the first model on top in every panel
    fig.legend(handles=[Patch(color="tab:green", label="better: interval excludes 0"),
                        Patch(color="tab:red", label="worse: interval excludes 0"),
                        Patch(color="0.7", label="interval includes 0")],
               loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
