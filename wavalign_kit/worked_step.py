"""One WavAlign step taken apart: every intermediate of `train.grpo` on one micro-batch, nothing updated.

`explain_step` runs the trainer's own halves of a step on ``prompts_per_step`` prompts: `grpo.prepare` (G sampled
responses per prompt, their rewards, the group advantages, the anchor's target rows appended), the mixer's update
on the step's reward groups (`mixing.mixer_for`: the adaptive gate's reward and information terms and lambda),
and `grpo.loss` (one fused forward: L = lambda * L_RL + (1 - lambda) * L_SFT). It returns what each stage
produced as tables (`WorkedStep`) and which tokens each loss term reads (`ROLES`), so notebook 03 can show the
masks over real tokens before training anything.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

# What each response position is to the step's loss: the RL rows' tokens by channel and by M_RL, then the anchor
# rows' tokens by M_SFT. "not scored": prompt, padding, and tokens the decoder forced (not the policy's actions).
ROLES = ("not scored", "text, in M_RL", "text, not in M_RL", "speech, in M_RL", "speech, not in M_RL",
         "anchor text (M_SFT)", "anchor speech (M_SFT)", "anchor, not in M_SFT")


@dataclass
class WorkedStep:
    """The intermediates of one step (see the module docstring)."""

    responses: pd.DataFrame   # per RL row: prompt, sample, text channel, token counts, reward components, advantage
    anchors: pd.DataFrame     # per anchor row: prompt, target text, its text / speech / M_SFT token counts
    roles: np.ndarray         # (B + A, N) int: index into ROLES per response position
    tokens: pd.DataFrame      # the first RL response's scored positions: token, channel, in M_RL
    gates: pd.DataFrame       # per prompt group: reward max / var, info_gate, reward_gate, lambda_raw
    gate: dict[str, float]    # the step's gate (means over the groups) and lambda
    losses: dict[str, float]  # loss_rl, loss_anchor, lambda, loss, grad_norm_rl, grad_norm_anchor
    settings: dict[str, Any]  # the config values the step read


def _roles(batch, cfg) -> np.ndarray:
    """(B + A, N) role codes of `ROLES` for the fused batch of an `RLBatch`."""
    B, t = batch.rl_rows, batch.tokens
    text, speech = t.text_mask.cpu().numpy(), t.speech_mask.cpu().numpy()
    rl = t.channel(cfg.rl_token_type).cpu().numpy()
    sft_mask = t.channel(cfg.anchor_token_type).cpu().numpy()
    roles = np.zeros(text.shape, dtype=np.int64)
    top = slice(0, B)
    roles[top][text[top] & rl[top]] = 1
    roles[top][text[top] & ~rl[top]] = 2
    roles[top][speech[top] & rl[top]] = 3
    roles[top][speech[top] & ~rl[top]] = 4
    rest = slice(B, None)
    scored = t.response_mask.cpu().numpy()[rest]
    roles[rest][scored & sft_mask[rest] & text[rest]] = 5
    roles[rest][scored & sft_mask[rest] & speech[rest]] = 6
    roles[rest][scored & ~sft_mask[rest]] = 7
    return roles


def _response_ids(batch, row: int) -> np.ndarray:
    """The response token ids of one row (after its prompt, before its padding)."""
    start, end = int(batch.prompt_lengths[row]), int(batch.attention_mask[row].sum())
    return batch.input_ids[row, start:end].cpu().numpy()


def _token_table(model, batch, cfg, row: int, limit: int) -> pd.DataFrame:
    """The first ``limit`` scored positions of ``row``: the token predicted there, its channel, whether M_RL holds it."""
    ids = batch.input_ids[row, 1:].reshape(-1).cpu()               # flat like the (B, N) masks
    scored = batch.response_mask[row].cpu()
    positions = torch.nonzero(scored).flatten()[:limit].tolist()
    names = model.tokenizer.convert_ids_to_tokens([int(ids[p]) for p in positions])
    text, rl = batch.text_mask[row].cpu(), batch.channel(cfg.rl_token_type)[row].cpu()
    return pd.DataFrame({"position": positions, "token": names,
                         "channel": ["text" if text[p] else "speech" for p in positions],
                         "in M_RL": [bool(rl[p]) for p in positions]})


def explain_step(model, examples, cfg, *, reward, codec=None, seed: int = 0, token_limit: int = 24) -> WorkedStep:
    """One WavAlign step of ``cfg`` (a GRPO config, e.g. the ``wavalign`` preset) on ``examples`` (one micro-batch of
    prompts), with the model as it is: rollout, rewards, advantages, gate, lambda, both loss terms and the norm of
    each term's gradient (L_RL is 0 in value at a rollout's first update: ratio 1 and advantages of mean 0 per
    group; its gradient is not). No weight changes; with a KL term, the model's reference is taken as in training."""
    from wavalign_kit.analysis import group_gates
    from wavalign_kit.mixing import gate_settings, mixer_for
    from wavalign_kit.rollout_stats import group_moments
    from wavalign_kit.train import grpo

    if cfg.algorithm != "grpo":
        raise ValueError(f"explain_step: the config's algorithm is {cfg.algorithm!r}; the worked step is the GRPO / "
                         "WavAlign step (use the wavalign, grpo_text or grpo_full preset)")
    was_training = model.model.training
    model.model.eval()
    try:
        batch = grpo.prepare(model, list(examples), cfg, reward=reward, codec=codec, seed=seed)
        mixer = mixer_for(cfg, reward)
        lam = mixer.update(batch.group_rewards.tolist()) if cfg.mixer == "adaptive" else mixer.value
        policy = functools.partial(model.token_logprobs)
        with torch.no_grad():
            loss, stats = grpo.loss(policy, batch, cfg, lam)
        params = [p for p in model.model.parameters() if p.requires_grad]
        norms = {}
        for name, weight in (("grad_norm_rl", 1.0), ("grad_norm_anchor", 0.0)):   # lambda 1: L_RL; 0: L_SFT
            term, _ = grpo.loss(policy, batch, cfg, weight)
            norms[name] = (grpo.grad_norm(torch.autograd.grad(term, params, allow_unused=True))
                           if term is not None and term.requires_grad else float("nan"))
    finally:
        model.model.train(was_training)

    B, G, t = batch.rl_rows, cfg.group_size, batch.tokens
    rl_mask = t.channel(cfg.rl_token_type)
    responses = []
    for row in range(B):
        text_ids, units = model.layout.split_response(_response_ids(t, row))
        responses.append({"prompt": row // G, "sample": row % G, "text channel": model.decode_text(text_ids),
                          "text tokens": int(t.text_mask[row].sum()), "speech tokens": int(t.speech_mask[row].sum()),
                          "M_RL tokens": int(rl_mask[row].sum()),
                          **{f"reward: {k}": float(v[row]) for k, v in batch.rewards.components.items()},
                          "reward": float(batch.rewards.total[row]),
                          "advantage": float(batch.advantages.reshape(B, -1)[row, 0]) if batch.advantages.dim() == 1
                          else float("nan")})
    anchor_mask = t.channel(cfg.anchor_token_type)
    anchors = pd.DataFrame([{"prompt": i, "target text": ex.target_text,
                             "text tokens": int(t.text_mask[B + i].sum()), "speech tokens": int(t.speech_mask[B + i].sum()),
                             "M_SFT tokens": int(anchor_mask[B + i].sum())}
                            for i, ex in enumerate(examples)] if len(t) > B else [])
    _, var, mx = group_moments(batch.group_rewards)
    gates = group_gates(batch.group_rewards, **gate_settings(cfg, reward)).assign(reward_max=mx, reward_var=var)
    gates = gates[["prompt", "reward_max", "reward_var", "info_gate", "reward_gate", "lambda_raw"]]
    losses = {"loss_rl": float(stats.get("loss_rl", float("nan"))),
              "loss_anchor": float(stats.get("loss_anchor", float("nan"))), "lambda": float(lam),
              "loss": float(loss) if loss is not None else float("nan"), **norms}
    settings = {k: getattr(cfg, k) for k in ("rl_token_type", "anchor", "anchor_token_type", "mixer", "group_size",
                                              "prompts_per_step", "temperature", "beta_text", "beta_speech")}
    settings.update(gate_settings(cfg, reward) if cfg.mixer == "adaptive" else {"mix_weight": mixer.value})
    return WorkedStep(pd.DataFrame(responses), anchors, _roles(batch, cfg), _token_table(model, t, cfg, 0, token_limit),
                      gates, dict(mixer.stats) if cfg.mixer == "adaptive" else {"lambda": float(lam)}, losses, settings)


def plot_roles(step: WorkedStep, group_size: int):
    """The fused batch as an image: one row per RL response (grouped by prompt) then per anchor target, one column
    per position of the response (each row shifted so its response starts at 0), coloured by `ROLES`. Returns the
    figure."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colors = ["0.93", "tab:blue", "lightsteelblue", "tab:red", "lightsalmon", "tab:green", "yellowgreen", "0.75"]
    starts = [int(np.flatnonzero(r)[0]) if r.any() else 0 for r in step.roles]
    width = max(int(np.flatnonzero(r)[-1]) + 1 - s if r.any() else 1 for r, s in zip(step.roles, starts))
    roles = np.zeros((len(step.roles), width), dtype=np.int64)
    for i, (r, s) in enumerate(zip(step.roles, starts)):
        part = r[s: s + width]
        roles[i, : len(part)] = part
    B = len(step.responses)
    fig, ax = plt.subplots(figsize=(12, 0.28 * len(roles) + 1.4))
    ax.imshow(roles, cmap=ListedColormap(colors), vmin=-0.5, vmax=len(ROLES) - 0.5, aspect="auto",
              interpolation="nearest")
    labels = [f"prompt {r // group_size} sample {r % group_size}" for r in range(B)]
    labels += [f"anchor: target of prompt {i}" for i in range(len(roles) - B)]
    ax.set_yticks(range(len(roles)), labels, fontsize=7)
    for r in range(group_size, B + 1, group_size):
        ax.axhline(r - 0.5, color="white", lw=2)
    ax.set_xlabel("position in the response (tokens)")
    present = sorted(set(np.unique(roles).tolist()))
    fig.legend(handles=[Patch(color=colors[i], label=ROLES[i]) for i in present], loc="center left",
               bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
