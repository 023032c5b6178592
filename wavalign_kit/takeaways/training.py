"""Takeaways of notebook 03 (hybrid training): lambda, per-channel drift and the reward's trend, per preset.

The paper's mechanism, as the training logs can show it: a full-token preference update moves the speech channel
further from the reference than a text-only one; the anchor pulls the speech channel toward the target speech
(which also shows as KL, so KL alone cannot tell drift from anchoring); the adaptive gate sets lambda from the
groups' rewards. Whether any of this changes held-out quality is notebook 04's question.
"""

from __future__ import annotations

import pandas as pd

from wavalign_kit.curves import MIN_WINDOW, drift_table, per_step, window_difference
from wavalign_kit.takeaways.phrasing import bullet_list, excludes_zero, finite, interval, num

# (full-token preset, text-only preset, drift column, what it is, below this both count as no drift)
PAIRS = (("grpo_full", "grpo_text", "kl_speech median", "median per-step speech-token KL to the reference", 1e-3),
         ("dpo_full", "dpo_text", "chosen_logp_drop_speech median", "median per-step drop of the chosen responses' "
          "speech log-prob", 1e-2))
ANCHORED = ("grpo_text_fixed", "wavalign", "wavalign_no_ema")


def lambda_lines(curves: pd.DataFrame) -> list[str]:
    """Mean and range of lambda for the presets whose lambda moves (adaptive mixing)."""
    lines = []
    for (arch, preset), part in curves.groupby(["architecture", "preset"], sort=False):
        lam = per_step(part, "lambda")                                     # mean over seeds per step
        if len(lam) < 2 or lam.max() - lam.min() < 1e-9:
            continue
        lean = "leaned on the anchor" if lam.mean() < 0.5 else "leaned on the preference loss"
        lines.append(f"{arch} {preset}: lambda averaged {num(lam.mean(), 3)} (from {num(lam.min(), 3)} to "
                     f"{num(lam.max(), 3)}) over {len(lam)} steps (mean over seeds), so the update {lean}.")
    return lines


def drift_lines(drift: pd.DataFrame) -> list[str]:
    """Full-token vs text-only speech drift, and the anchored presets' speech KL, per architecture."""
    lines = []
    for arch, part in drift.groupby(level="architecture", sort=False):
        part = part.droplevel("architecture")
        for full, text, col, what, negligible in PAIRS:
            if full in part.index and text in part.index and col in part:
                a, b = part.at[full, col], part.at[text, col]
                if not (finite(a) and finite(b)):
                    continue
                if max(abs(a), abs(b)) < negligible:
                    verdict = f"both below {negligible:g} nats: neither moved the speech channel measurably yet"
                elif b > 0 and a / b >= 2:
                    verdict = f"the full-token update moved the speech channel {a / b:.1f}x as far, the paper's mechanism"
                elif b > 0 and a / b <= 0.5:
                    verdict = "the text-only update moved the speech channel further, unlike the paper's mechanism"
                else:
                    verdict = "no clear difference at this budget"
                lines.append(f"{arch}: {what}: {full} {num(a, 4)} vs {text} {num(b, 4)} nats: {verdict}.")
        anchored = [p for p in ANCHORED if p in part.index and "kl_speech median" in part and
                    finite(part.at[p, "kl_speech median"])]
        if anchored:
            shown = ", ".join(f"{p} {num(part.at[p, 'kl_speech median'], 4)}" for p in anchored)
            lines.append(f"{arch}: the anchored presets' median speech KL ({shown} nats) also counts the pull toward "
                         "the target speech the anchor trains on: KL alone cannot tell drift from anchoring.")
    return lines


def reward_lines(curves: pd.DataFrame) -> list[str]:
    """The reward's change from the first to the last third of each run with rollouts (mean over seeds per step)."""
    lines, short = [], []
    for (arch, preset), part in curves.groupby(["architecture", "preset"], sort=False):
        series = per_step(part, "reward_mean")
        if series.empty:
            continue
        diff = window_difference(series)
        if not finite(diff["ci_low"]):
            short.append(f"{preset} {num(diff['first'], 2)} -> {num(diff['last'], 2)}")
            continue
        k = diff["steps"]
        shown = f"{num(diff['mean'], 2, sign=True)} {interval(diff['ci_low'], diff['ci_high'], 2, sign=True)}"
        verdict = ("no detectable trend at this budget" if not excludes_zero(diff) else
                   "it rose: the interval excludes 0" if diff["mean"] > 0 else "it fell: the interval excludes 0")
        lines.append(f"{arch} {preset}: mean rollout reward {num(diff['first'], 2)} over the first {k} steps, "
                     f"{num(diff['last'], 2)} over the last {k}: change {shown}, {verdict}.")
    if short:
        lines.append(f"Too few steps to judge a reward trend (at least {3 * MIN_WINDOW} needed, {MIN_WINDOW} per "
                     f"window); first -> last step: {', '.join(short)}.")
    return lines


def training_reading(curves: pd.DataFrame) -> str:
    """Notebook 03's takeaways as Markdown bullets: budget, lambda, drift, reward trend."""
    drift = drift_table(curves)
    steps = sorted(set(int(s) for s in drift["steps"]))
    seeds = sorted(set(int(s) for s in drift["seeds"]))
    head = [f"Every run is {', '.join(map(str, steps))} optimiser steps ({', '.join(map(str, seeds))} seed(s) per "
            "preset)."]
    return bullet_list(head + lambda_lines(curves) + drift_lines(drift) + reward_lines(curves))


def mask_lines(step) -> list[str]:
    """What M_RL and M_SFT select in a worked step (a `worked_step.WorkedStep`)."""
    r, a, s = step.responses, step.anchors, step.settings
    lines = []
    scored = int(r["text tokens"].sum() + r["speech tokens"].sum())
    lines.append(f"M_RL ({s['rl_token_type']} tokens) selects {int(r['M_RL tokens'].sum())} of the {scored} sampled "
                 f"tokens of the {len(r)} responses ({int(r['text tokens'].sum())} text, {int(r['speech tokens'].sum())} "
                 "speech); only those receive the preference gradient.")
    if len(a):
        lines.append(f"The anchor adds the {len(a)} target responses: M_SFT ({s['anchor_token_type']} tokens) holds "
                     f"{int(a['M_SFT tokens'].sum())} of their tokens, {int(a['speech tokens'].sum())} of them speech.")
    return lines


def worked_step_reading(step) -> str:
    """Notebook 03's worked step (a `worked_step.WorkedStep`) in sentences: the masks, the advantages, the gate's
    terms with their numbers, and the mixed loss."""
    r, s, lo = step.responses, step.settings, step.losses
    lines = mask_lines(step)
    for prompt, group in r.groupby("prompt"):
        lines.append(f"Prompt {prompt}: rewards {num(group['reward'].min(), 2)} to {num(group['reward'].max(), 2)}; "
                     f"advantages (reward - group mean) / group std: {num(group['advantage'].min(), 2)} to "
                     f"{num(group['advantage'].max(), 2)}" + (" (all equal rewards: no signal)"
                                                              if group["reward"].nunique() == 1 else "") + ".")
    if "lambda_max" in s:
        low, high = s["reward_range"]
        for _, g in step.gates.iterrows():
            mx = 1 + 4 * (g["reward_max"] - low) / (high - low)
            var = g["reward_var"] * (4 / (high - low)) ** 2
            lines.append(f"Gate, prompt {int(g['prompt'])}: info_gate = clip({num(var, 3)} / {s['reward_scale']:g}, 0, 1) "
                         f"= {num(g['info_gate'], 3)}; reward_gate = sigmoid({s['gate_slope']:g} x ({num(mx, 2)} - "
                         f"{s['reward_threshold']:g})) = {num(g['reward_gate'], 3)}; lambda_raw = {s['lambda_max']:g} x "
                         f"{num(g['reward_gate'], 3)} x {num(g['info_gate'], 3)} = {num(g['lambda_raw'], 4)}.")
    lam = lo["lambda"]
    lean = ("almost all anchor" if lam < 0.1 else "mostly anchor" if lam < 0.4 else "mostly preference loss"
            if lam > 0.6 else "a mix of both")
    lines.append(f"This step's lambda is {num(lam, 4)}: the update is {lean}.")
    lines.append(f"L = {num(lam, 3)} x L_RL ({num(lo['loss_rl'], 3)} in value; gradient norm {num(lo['grad_norm_rl'], 2)}) "
                 f"+ {num(1 - lam, 3)} x L_SFT ({num(lo['loss_anchor'], 3)}; gradient norm {num(lo['grad_norm_anchor'], 2)}) "
                 f"= {num(lo['loss'], 3)}. Weighted, the preference part of the update has norm at most "
                 f"{num(lam * lo['grad_norm_rl'], 3)} and the anchor's {num((1 - lam) * lo['grad_norm_anchor'], 3)}."
                 + (" L_RL is 0 in value because at a rollout's first update the probability ratio is 1, the policy is "
                    "still the reference (KL 0) and the advantages average 0 in every group; its gradient is what "
                    "moves the model." if finite(lo["loss_rl"]) and abs(lo["loss_rl"]) < 1e-6 else ""))
    return bullet_list(lines)


def mask_reading(step) -> str:
    """The worked step's masks as Markdown bullets (the caption's reading of the masks figure)."""
    return bullet_list(mask_lines(step))
