"""Takeaways choose their wording from the numbers: hand-made numbers on each side of every verdict."""

import numpy as np
import pandas as pd
import pytest

from wavalign_kit import takeaways as T
from wavalign_kit.config import load_profile
from wavalign_kit.curves import drift_table, rolling_band, smoothing_window, window_difference
from wavalign_kit.takeaways.phrasing import change, compare, mean_interval, ratio_phrase


def delta(mean, low, high):
    return {"mean": mean, "ci_low": low, "ci_high": high, "excludes_zero": low > 0 or high < 0}


def test_change_follows_the_interval():
    up = change("text-only GRPO", "iq_text", delta(0.04, 0.01, 0.07))
    assert up == ("text-only GRPO raised iq_text by +0.040 [+0.010, +0.070] over the base model (better): the "
                  "interval excludes 0.")
    assert "lowered wer by -0.050" in change("m", "wer", delta(-0.05, -0.08, -0.01), higher_is_better=False)
    assert "(better)" in change("m", "wer", delta(-0.05, -0.08, -0.01), higher_is_better=False)
    assert "(worse)" in change("m", "iq_text", delta(-0.05, -0.08, -0.01))
    flat = change("m", "iq_text", delta(0.015, -0.02, 0.05))
    assert "no detectable change" in flat and "[-0.020, +0.050]" in flat and "raised" not in flat
    assert "exactly as the base model" in change("m", "eq_style", delta(0.0, 0.0, 0.0))
    assert "could not be compared" in change("m", "x", {"mean": float("nan")}) and "could not" in change("m", "x", None)


def test_compare_and_ratio_wording():
    a, b = {"mean": 0.6, "ci_low": 0.5, "ci_high": 0.7}, {"mean": 0.3, "ci_low": 0.2, "ci_high": 0.4}
    assert "semantic is higher" in compare("semantic", a, "acoustic", b, "agreement")
    assert "acoustic is higher" in compare("semantic", b, "acoustic", a, "agreement")
    assert "cannot tell them apart" in compare("x", a, "y", {"mean": 0.55, "ci_low": 0.45, "ci_high": 0.65}, "q")
    assert ratio_phrase(3.1, "text", "speech") == "text is 3.1x speech"
    assert ratio_phrase(0.25, "text", "speech") == "speech is 4.0x text"
    assert "about the same size (ratio 1.03)" in ratio_phrase(1.03, "text", "speech")
    m = mean_interval([0.2, 0.4, 0.6])
    assert m["mean"] == pytest.approx(0.4) and m["ci_low"] <= 0.4 <= m["ci_high"] and m["n"] == 3


def summary(wer, acc=0.9, by_style=None):
    return {"styles": {"train": dict.fromkeys(["neutral", "happy", "sad", "calm"], 1)},
            "evaluators": {"recognizer_wer": wer, "style_accuracy": acc,
                           "recognizer_wer_by_style": by_style or {"calm": wer / 2, "happy": wer * 2}}}


def test_world_reading_grades_the_recogniser_by_its_error():
    assert "good enough to grade speech" in T.world_reading(summary(0.07))
    assert "usable but noisy" in T.world_reading(summary(0.2))
    bad = T.world_reading(summary(0.95, acc=0.2))
    assert "too poor to grade speech" in bad and "95 %" in bad and "close to chance" in bad
    assert "from 0.47 (calm) to 1.90 (happy)" in bad
    both = {**summary(0.07), "examiners": {"recognizer_wer": 0.5, "style_accuracy": 0.95}}
    table = T.quality_table(both)
    assert list(table.columns) == ["reward models", "examiners"]
    assert table.loc["recogniser WER (all styles)", "examiners"] == 0.5
    assert "The examiners' recogniser" in T.world_reading(both)
    heldout = pd.DataFrame({"examples": [8], "iq_text_accuracy": [0.25], "iq_speech_accuracy": [0.125],
                            "wer_speech_vs_text": [0.5], "style_accuracy": [0.5]}, index=["interleaved"])
    assert "say little about the model" in T.base_model_reading(heldout, summary(0.9))
    assert "say little" not in T.base_model_reading(heldout, summary(0.05))
    assert "25 % of 8 held-out questions" in T.base_model_reading(heldout, summary(0.05))


def test_profile_notice_only_for_smoke_with_both_profiles_sizes():
    smoke, cpu = load_profile("smoke"), load_profile("cpu")
    notice = T.profile_notice(smoke, cpu, reference_runtime="about 30 min")
    assert "not meaningful" in notice and "--profile cpu" in notice and "(about 30 min)" in notice
    assert f"{smoke['train']['steps']} training steps" in notice and f"{cpu['train']['steps']} training steps" in notice
    assert T.profile_notice(cpu, cpu) == ""


def agreement_frame(semantic, acoustic):
    rows = [{"architecture": "interleaved", "judge": j, "prompt": p, "agreement": a}
            for j, values in (("semantic_judge", semantic), ("acoustic_judge", acoustic)) for p, a in enumerate(values)]
    return pd.DataFrame(rows)


def test_reward_analysis_readings_test_the_papers_claims():
    clear = T.judge_reading(agreement_frame([0.8, 0.9, 0.85, 0.8] * 5, [0.2, 0.3, 0.25, 0.2] * 5))
    assert "acoustic judge is the noisier signal, as the paper reports" in clear
    overlap = T.judge_reading(agreement_frame([0.1, 0.9] * 3, [0.2, 0.8] * 3))
    assert "cannot tell them apart" in overlap and "paper reports" not in overlap
    grads = pd.DataFrame({"architecture": ["a", "b", "c"], "norm_ratio": [4.0, 1.03, 0.3], "cosine": [0.02, -0.5, 0.4]})
    lines = T.gradient_reading(grads).splitlines()
    assert "4.0x" in lines[0] and "the paper's direction" in lines[0] and "nearly orthogonal" in lines[0]
    assert "about the same size (ratio 1.03)" in lines[1] and "does not show" in lines[1] and "pull against" in lines[1]
    assert "speech-token gradient is 3.3x" in lines[2] and "partly agree" in lines[2]
    counts = pd.DataFrame({"architecture": "a", "text_tokens": [2, 4], "speech_tokens": [8, 6],
                           "text_share": [0.2, 0.4]})
    assert "3.0 text and 7.0 speech tokens" in T.dilution_reading(counts) and "70 %" in T.dilution_reading(counts)


def test_rollout_and_gate_readings():
    table = pd.DataFrame({"architecture": "a", "temperature": [0.5, 0.5, 1.0, 1.0], "group_size": [2, 4, 2, 4],
                          "zero_var_share": [0.8, 0.6, 0.4, 0.1]}).set_index(["architecture", "temperature", "group_size"])
    text = T.rollout_reading(table)
    assert "falls from 60 % at temperature 0.5 to 10 % at 1" in text
    flat = T.rollout_reading(table.assign(zero_var_share=0.0))
    assert "stays at 0 % from at temperature 0.5" not in flat and "stays at 0 % from temperature 0.5 to 1" in flat
    gates = pd.DataFrame({"scores": ["continuous"] * 4 + ["whole points"] * 4,
                          "lambda_raw": [0.7, 0.75, 0.8, 0.7, 0.0, 0.01, 0.0, 0.3]})
    lines = T.gate_reading(gates, 0.8).splitlines()
    assert "mostly follows the preference loss" in lines[0] and "mostly follows the anchor" in lines[1]


def curves_frame(steps=30, seeds=(0, 1)):
    rows = []
    rng = np.random.default_rng(0)
    for s in seeds:
        for step in range(1, steps + 1):
            rows.append(dict(architecture="interleaved", preset="grpo_full", seed=s, step=step, **{"lambda": 1.0},
                             reward_mean=1 + step / 10 + rng.normal(0, 0.05), kl_text=0.01, kl_speech=0.02))
            rows.append(dict(architecture="interleaved", preset="grpo_text", seed=s, step=step, **{"lambda": 1.0},
                             reward_mean=2 + rng.normal(0, 0.3), kl_text=0.01, kl_speech=0.004))
            rows.append(dict(architecture="interleaved", preset="wavalign", seed=s, step=step,
                             **{"lambda": 0.1 + 0.01 * step}, reward_mean=2.0, kl_text=0.01, kl_speech=0.01))
    return pd.DataFrame(rows)


def test_curves_helpers():
    c = curves_frame()
    table = drift_table(c)
    assert table.loc[("interleaved", "grpo_full"), "steps"] == 30 and table.loc[("interleaved", "grpo_full"), "seeds"] == 2
    assert table.loc[("interleaved", "grpo_text"), "kl_speech median"] == pytest.approx(0.004)
    assert "chosen_logp_drop_speech median" not in table
    assert smoothing_window(4) == 1 and smoothing_window(30) == 3 and smoothing_window(1000) == 25
    band = rolling_band(pd.Series([1.0, 2.0, 3.0]), 3)
    assert band["mean"].tolist() == pytest.approx([1.5, 2.0, 2.5]) and (band["low"] <= band["high"]).all()
    rising = window_difference(pd.Series(np.arange(30, dtype=float)))
    assert rising["mean"] == pytest.approx(20.0) and rising["ci_low"] > 0
    assert np.isnan(window_difference(pd.Series([1.0, 2.0, 3.0]))["ci_low"])


def test_training_reading():
    text = T.training_reading(curves_frame())
    assert "Every run is 30 optimiser steps (2 seed(s) per preset)" in text
    assert "grpo_full 0.0200 vs grpo_text 0.0040 nats: the full-token update moved the speech channel 5.0x as far" in text
    assert "interleaved grpo_full: mean rollout reward" in text and "it rose: the interval excludes 0" in text
    assert "interleaved wavalign: lambda averaged" in text and "grpo_full: lambda" not in text
    assert "anchored presets' median speech KL (wavalign 0.0100" in text
    short = T.training_reading(curves_frame(steps=4, seeds=(0,)))
    assert "Too few steps to judge a reward trend" in short and "it rose" not in short
    tiny = curves_frame().assign(kl_speech=1e-5)
    assert "neither moved the speech channel measurably" in T.training_reading(tiny)


def test_evaluation_readings():
    s = {"items": 50, "samples_per_item": 1, "seeds": [0, 1, 2], "models": {
        "base": {"iq_text": {"mean": 0.3}, "eq_style": {"mean": 0.5}},
        "grpo_full": {"iq_text": {"mean": 0.3, "delta_vs_base": delta(0.0, -0.05, 0.05)},
                      "eq_style": {"mean": 0.3, "delta_vs_base": delta(-0.2, -0.3, -0.1)}},
        "wavalign": {"iq_text": {"mean": 0.35, "delta_vs_base": delta(0.05, 0.01, 0.09)},
                     "eq_style": {"mean": 0.5, "delta_vs_base": delta(0.0, -0.1, 0.1)}}}}
    text = T.evaluation_reading(s, summary(0.9), metrics=("iq_text", "eq_style"))
    assert "**iq_text**: wavalign +0.050 [+0.010, +0.090] (better) differs from the base model; no detectable " \
           "change for grpo_full" in text
    assert "**eq_style**: grpo_full -0.200 [-0.300, -0.100] (worse) differs" in text
    assert "Paper: full-token GRPO lowers style accuracy. Here: grpo_full lowered eq_style" in text
    assert "Paper: WavAlign raises task accuracy. Here: wavalign raised iq_text" in text
    assert "mostly measure the recogniser" in text
    assert "mostly measure" not in T.evaluation_reading(s, summary(0.05))
    frame = pd.DataFrame([{"model": "wavalign", "metric": "iq_text", "mean": 0.05, "ci_low": 0.01, "ci_high": 0.09,
                           "excludes_zero": True},
                          {"model": "grpo_full", "metric": "iq_text", "mean": 0.0, "ci_low": -0.05, "ci_high": 0.05,
                           "excludes_zero": False}])
    assert T.deltas_reading(frame).startswith("- 1 of 2 model-metric differences from the base model have a 95 % "
                                              "interval that excludes 0: wavalign iq_text +0.050.\n")
    assert "about 0.1 would exclude 0 by chance alone" in T.deltas_reading(frame)
    assert "of the 4 intervals below, about 0.2 would exclude 0 by chance alone" in text
    assert "no method is distinguishable" in T.deltas_reading(frame.assign(excludes_zero=False))
