"""Shared figures: published with caption and reading, KL on a log scale, DPO drift on its own panels, lambda
legible when presets share a value, evaluation deltas coloured by their interval, legends outside the axes."""

import json

import matplotlib
import matplotlib.pyplot
import numpy as np
import pandas as pd

from wavalign_kit.figures import evaluation_deltas, publish, training_curves

matplotlib.use("Agg")


def curves():
    rows = []
    for preset, lam in (("grpo_full", 1.0), ("grpo_text", 1.0), ("dpo_full", 1.0), ("wavalign", None)):
        for step in range(1, 21):
            row = dict(architecture="interleaved", preset=preset, seed=0, step=step,
                       **{"lambda": lam if lam is not None else 0.01 * step}, reward_mean=1 + 0.1 * step,
                       entropy_text=3.0, entropy_speech=4.0)
            if preset.startswith("dpo"):
                row.update(chosen_logp_drop_text=0.1, chosen_logp_drop_speech=12.8 if step == 5 else 0.01)
            else:
                row.update(kl_text=0.0 if step == 1 else 1e-3, kl_speech=2e-3)
            rows.append(row)
    return pd.DataFrame(rows)


def test_training_curves_panels():
    fig = training_curves(curves(), ["grpo_full", "grpo_text", "dpo_full", "wavalign"], "interleaved")
    axes = {ax.get_title(): ax for ax in fig.axes}
    kl = axes["KL to reference, speech (nats, log)"]
    assert kl.get_yscale() == "log"
    assert {line.get_label() for line in kl.lines} >= {"grpo_full", "wavalign"}
    assert "dpo_full" not in {line.get_label() for line in kl.lines}          # DPO drift has its own panels
    assert axes["DPO: chosen log-prob drop, speech (nats)"].get_yscale() == "symlog"
    lam = axes["lambda (share of the preference loss)"]
    assert [line.get_label() for line in lam.lines if not line.get_label().startswith("_")] == ["wavalign"]
    assert any("grpo_full, grpo_text, dpo_full" in t.get_text() for t in lam.texts)   # the constant ones, named
    assert fig.legends and fig.legends[0].get_bbox_to_anchor().x0 >= fig.bbox.x1 - 1   # right of the axes
    matplotlib.pyplot.close(fig)


def test_evaluation_deltas_colour_by_interval():
    deltas = pd.DataFrame([
        {"model": "a", "metric": "iq_text", "mean": 0.1, "ci_low": 0.05, "ci_high": 0.15, "excludes_zero": True},
        {"model": "b", "metric": "iq_text", "mean": 0.1, "ci_low": -0.05, "ci_high": 0.25, "excludes_zero": False},
        {"model": "a", "metric": "wer", "mean": 0.1, "ci_low": 0.05, "ci_high": 0.15, "excludes_zero": True}])
    fig = evaluation_deltas(deltas, ["iq_text", "wer", "eq_style"])
    iq, wer = fig.axes[0], fig.axes[1]
    assert iq.get_title().startswith("iq_text (higher") and wer.get_title().startswith("wer (lower")
    colors = [tuple(np.round(p.get_facecolor()[:3], 2)) for p in iq.patches]
    green, grey, red = (0.17, 0.63, 0.17), (0.7, 0.7, 0.7), (0.84, 0.15, 0.16)
    assert colors == [green, grey]
    assert tuple(np.round(wer.patches[0].get_facecolor()[:3], 2)) == red      # higher WER is worse
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2              # eq_style has no rows
    matplotlib.pyplot.close(fig)


def test_publish_writes_the_figure_and_its_caption(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    publish(fig, tmp_path, "01_line", "a line.", "- it rises.")
    assert (tmp_path / "01_line.png").stat().st_size > 0
    assert json.loads((tmp_path / "01_line.json").read_text()) == {"caption": "a line.", "reading": "- it rises."}
    assert fig.number not in plt.get_fignums()         # closed: not shown twice in a notebook
