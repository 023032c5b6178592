"""GRPO and WavAlign: the hybrid RL step of DESIGN.md section 2, formulas first, then the step top to bottom.

rollout (G responses per prompt) -> rewards -> group advantages -> one fused forward over the RL responses and the
anchor targets -> L = lambda * L_RL + (1 - lambda) * L_SFT. M_RL is ``rl_token_type``: text for WavAlign (the
semantic-channel restriction), all tokens or speech for the baselines. lambda comes from the mixer (`mixing.py`),
updated once per optimiser step on the step's reward groups. Shapes: per-token tensors are (B, N) with rows
prompt-major, B = P * G; parallel models flatten their streams into N.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wavalign_kit.mixing import mixed_loss
from wavalign_kit.models.base import TokenBatch
from wavalign_kit.rewards import RewardResult
from wavalign_kit.rollout_stats import token_stats
from wavalign_kit.train import sft
from wavalign_kit.train.config import TrainConfig
from wavalign_kit.train.rollout import collect

# ---------------------------------------------------------------------------------------------------- formulas


def group_advantages(rewards: Tensor, eps: float = 1e-4) -> Tensor:
    """A_i = (r_i - mean(r)) / (std(r) + eps) per prompt group, population std (DESIGN.md:31); (P, G) -> (P, G).
    Rewards are shifted by each group's first one, so a group of equal rewards has exactly zero advantage."""
    if rewards.dim() != 2 or rewards.numel() == 0:
        raise ValueError(f"rewards: expected a non-empty (P, G) tensor (P prompts, G samples), got {tuple(rewards.shape)}")
    r = rewards if rewards.is_floating_point() else rewards.double()
    if not torch.isfinite(r).all():
        raise ValueError("rewards: contain NaN or inf; check the reward functions")
    d = r - r[:, :1]
    centred = d - d.mean(dim=1, keepdim=True)                      # r_i - mean(r)
    return centred / (centred.pow(2).mean(dim=1, keepdim=True).sqrt() + eps)


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 estimator k_t = exp(lr_t) - lr_t - 1, lr_t = ref_logp - logp (DESIGN.md:32); >= 0 elementwise."""
    if logp.shape != ref_logp.shape:
        raise ValueError(f"ref_logp: shape {tuple(ref_logp.shape)} must equal logp's shape {tuple(logp.shape)}")
    lr = ref_logp - logp
    return torch.exp(lr) - lr - 1


def policy_token_term(logp: Tensor, advantages: Tensor, *, ref_logp: Tensor | None = None,
                      beta: Tensor | float = 0.0, old_logp: Tensor | None = None,
                      clip_eps: float | None = None) -> Tensor:
    """Per-token term -(ratio * A - beta_c(t) * k_t) (DESIGN.md:34), (B, N). ``advantages`` (B,) or (B, N); ``beta``
    per token (text: beta_text, speech: beta_speech). ratio = exp(logp - stopgrad(logp)), 1 in value, or
    exp(logp - old_logp) with PPO's clipped surrogate min(ratio*A, clip(ratio, 1 -+ eps)*A) (several updates)."""
    adv = advantages.to(logp.dtype)
    adv = adv[:, None] if adv.dim() == 1 else adv                                     # (B, 1) or (B, N)
    ratio = torch.exp(logp - (logp.detach() if old_logp is None else old_logp.detach()))
    surrogate = ratio * adv
    if clip_eps is not None:
        surrogate = torch.minimum(surrogate, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    if ref_logp is None:
        return -surrogate
    return -(surrogate - beta * k3_kl(logp, ref_logp.detach()))


def rl_loss(logp: Tensor, advantages: Tensor, token_mask: Tensor, *, group_size: int, text_mask: Tensor,
            speech_mask: Tensor, ref_logp: Tensor | None = None, beta_text: float = 0.0, beta_speech: float = 0.0,
            text_weight: float = 1.0, speech_weight: float = 1.0, old_logp: Tensor | None = None,
            clip_eps: float | None = None, count_mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Channel-restricted RL loss (DESIGN.md:35-38): mean over each group of sum_t term*w*M / sum_t M per row,
    summed over prompts and divided by their number; fp32 for half-precision inputs. ``count_mask`` (default
    ``token_mask``) sets the per-row denominator: the full mask splits the full-token loss exactly into its text
    and speech parts.

    ``token_mask`` is M_RL; w is ``text_weight`` on text, ``speech_weight`` on speech tokens. A row whose mask is
    empty is skipped and counted (``rows_skipped``), never widened; a prompt without rows drops out of the mean;
    no token at all is a ValueError. Values are not checked here (that would cost a host synchronisation per call):
    a NaN reaches the loss, and the trainer skips and counts a step whose loss or gradient is not finite. Stats (0-d tensors): rows_skipped, prompts_skipped, tokens, and clip_frac with ``clip_eps``."""
    logp, ref_logp, old_logp = (x.float() if x is not None and x.dtype in (torch.float16, torch.bfloat16) else x
                                for x in (logp, ref_logp, old_logp))
    _check_shapes(logp, group_size, token_mask=token_mask, text_mask=text_mask, speech_mask=speech_mask,
                  ref_logp=ref_logp, old_logp=old_logp, count_mask=count_mask)
    if advantages.shape not in ((logp.shape[0],), logp.shape):
        raise ValueError(f"advantages: shape {tuple(advantages.shape)} must be (B,) or logp's {tuple(logp.shape)}")
    if (beta_text or beta_speech) and ref_logp is None:
        raise ValueError("ref_logp: required when beta_text or beta_speech is non-zero")
    beta = sft.channel_weights(text_mask, speech_mask, beta_text, beta_speech, 0.0, logp)
    term = policy_token_term(logp, advantages, ref_logp=ref_logp, beta=beta, old_logp=old_logp, clip_eps=clip_eps)
    w = sft.channel_weights(text_mask, speech_mask, text_weight, speech_weight, 1.0, logp)
    term = torch.where(token_mask, term * w, torch.zeros((), dtype=term.dtype, device=term.device))   # (B, N)
    counts = token_mask.sum(dim=1)                                                     # (B,)
    if not (counts > 0).any():
        raise ValueError("token_mask: mask selects no token in any row (e.g. rl mask 'text' on responses without text)")
    denominators = counts if count_mask is None else count_mask.sum(dim=1)
    row_loss = term.sum(dim=1) / denominators.clamp(min=1).to(term.dtype)               # sum_t term*M / sum_t M
    keep = (counts > 0).view(-1, group_size).to(term.dtype)                             # (P, G)
    rows_per_prompt = keep.sum(dim=1)                                                  # (P,)
    group_mean = (row_loss.view(-1, group_size) * keep).sum(dim=1) / rows_per_prompt.clamp(min=1)
    prompts = (rows_per_prompt > 0).to(term.dtype)
    loss = (group_mean * prompts).sum() / prompts.sum()
    stats = {"rows_skipped": (counts == 0).sum(), "prompts_skipped": (1 - prompts).sum(), "tokens": counts.sum()}
    if clip_eps is not None and old_logp is not None:
        ratio = torch.exp(logp.detach() - old_logp)[token_mask]
        stats["clip_frac"] = ((ratio - 1).abs() > clip_eps).float().mean()
    return loss, stats


def _check_shapes(logp: Tensor, group_size: int, **tensors: Tensor | None) -> None:
    """Shape and dtype checks of rl_loss's inputs (metadata only: no host synchronisation)."""
    if logp.dim() != 2:
        raise ValueError(f"logp: expected (B, N) per-token log-probs, got {tuple(logp.shape)}")
    if group_size < 1 or logp.shape[0] % group_size:
        raise ValueError(f"group_size: {group_size} does not divide the batch of {logp.shape[0]} rows "
                         "(B = prompts * group_size)")
    for name, x in tensors.items():
        if x is not None and (x.shape != logp.shape or (name.endswith("mask") and x.dtype != torch.bool)):
            raise ValueError(f"{name}: expected {'a bool tensor of ' if name.endswith('mask') else ''}logp's shape "
                             f"{tuple(logp.shape)}, got {x.dtype} {tuple(x.shape)}")


def routed_advantages(semantic_rewards: Tensor, acoustic_rewards: Tensor, text_mask: Tensor, speech_mask: Tensor, *,
                      semantic_weight: float = 1.0, acoustic_weight: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Channel-routed advantages (DESIGN.md:68-70): semantic rewards (P, G), group-normalised, on text tokens;
    acoustic rewards, group-normalised separately, on speech tokens; 0 elsewhere. Returns (B, N)."""
    if semantic_rewards.shape != acoustic_rewards.shape:
        raise ValueError(f"acoustic_rewards: shape {tuple(acoustic_rewards.shape)} must equal semantic_rewards' "
                         f"{tuple(semantic_rewards.shape)}")
    a_sem = group_advantages(semantic_rewards, eps).reshape(-1)                      # (B,)
    a_ac = group_advantages(acoustic_rewards, eps).reshape(-1)
    if text_mask.dim() != 2 or text_mask.shape != speech_mask.shape or text_mask.shape[0] != a_sem.shape[0]:
        raise ValueError(f"text_mask: expected ({a_sem.shape[0]}, N) rows = prompts * group size, like speech_mask, "
                         f"got {tuple(text_mask.shape)} and {tuple(speech_mask.shape)}")
    out = torch.zeros(text_mask.shape, dtype=a_sem.dtype, device=text_mask.device)
    out = torch.where(text_mask, semantic_weight * a_sem[:, None], out)
    return torch.where(speech_mask, acoustic_weight * a_ac[:, None], out)


# ---------------------------------------------------------------------------------------------------- the step


@dataclass
class RLBatch:
    """One micro-batch of the hybrid step: RL responses first, then the anchor's target responses."""

    tokens: TokenBatch               # (B + A) rows
    rl_rows: int                     # B = P * G
    advantages: Tensor               # (B,), or (B, N) for channel-routed rewards
    group_rewards: np.ndarray        # (P, G) total rewards: the gate's input
    rewards: RewardResult
    timings: dict[str, float] = field(default_factory=dict)
    ref_logp: Tensor | None = None   # (B, N) under pi_ref, when a KL term needs it
    old_logp: Tensor | None = None   # (B, N) before the first update, for PPO clipping (updates_per_rollout > 1)


def prepare(model, examples: Sequence[Any], cfg: TrainConfig, *, reward, codec, seed: int) -> RLBatch:
    """Rollout -> rewards -> advantages -> the fused batch (and the reference / old log-probs it needs)."""
    scored = collect(model, examples, cfg, reward, codec, seed)                  # G responses per prompt, scored
    rl = scored.rollout.batch.excluding(scored.rollout.forced)                  # (B, L) sampled tokens: the actions
    tokens = TokenBatch.concat([rl, sft.anchor_batch(model, examples, cfg)], model.layout.pad_id) if cfg.anchor else rl
    B = len(rl)
    rl_part = tokens.rows(slice(0, B)).check()
    if cfg.routed:
        r = scored.rewards
        advantages = routed_advantages(torch.as_tensor(r.semantic.reshape(-1, cfg.group_size)),
                                       torch.as_tensor(r.acoustic.reshape(-1, cfg.group_size)),
                                       rl_part.text_mask, rl_part.speech_mask, semantic_weight=cfg.semantic_weight,
                                       acoustic_weight=cfg.acoustic_weight)
    else:
        advantages = group_advantages(torch.as_tensor(scored.group_rewards)).reshape(-1)     # (B,)
    batch = RLBatch(tokens, B, advantages, scored.group_rewards, scored.rewards, scored.timings)
    if cfg.uses_reference:
        batch.ref_logp = model.reference_logprobs(rl_part)
    if cfg.updates_per_rollout > 1:
        with torch.no_grad():
            batch.old_logp = model.token_logprobs(tokens)[0][:B]
    return batch


def rl_kwargs(batch: RLBatch, cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """The keyword arguments of `rl_loss` for the batch's RL rows under a config (masks, KL, weights, PPO)."""
    rl = batch.tokens.rows(slice(0, batch.rl_rows)).to(device)
    ppo = cfg.updates_per_rollout > 1
    return dict(group_size=cfg.group_size, text_mask=rl.text_mask, speech_mask=rl.speech_mask,
                ref_logp=None if batch.ref_logp is None else batch.ref_logp.to(device), beta_text=cfg.beta_text,
                beta_speech=cfg.beta_speech, text_weight=cfg.rl_text_weight, speech_weight=cfg.rl_speech_weight,
                old_logp=batch.old_logp if ppo else None, clip_eps=cfg.clip_eps if ppo else None)


def loss(policy, batch: RLBatch, cfg: TrainConfig, lam: float) -> tuple[Tensor | None, dict[str, Any]]:
    """One fused forward: L = lam * L_RL + (1 - lam) * L_SFT (either term alone when the other is absent). A
    micro-batch whose M_RL selects no token in any row skips the RL term and counts its rows; None when nothing
    is left to train on."""
    logp, entropy = policy(batch.tokens, with_entropy=True)                      # (B + A, N)
    B = batch.rl_rows
    rl = batch.tokens.rows(slice(0, B)).to(logp.device)
    kl = None if batch.ref_logp is None else k3_kl(logp[:B].detach(), batch.ref_logp.to(logp.device))
    stats: dict[str, Any] = token_stats(rl, entropy[:B], kl)
    loss_rl = loss_anchor = None
    if rl.channel(cfg.rl_token_type).any():
        loss_rl, rl_stats = rl_loss(logp[:B], batch.advantages.to(logp.device), rl.channel(cfg.rl_token_type),
                                    **rl_kwargs(batch, cfg, logp.device))
        stats.update({k: v for k, v in rl_stats.items() if k in ("rows_skipped", "clip_frac")})
        stats["loss_rl"] = loss_rl.detach()
    else:
        stats["rows_skipped"] = float(B)
    if len(batch.tokens) > B:
        loss_anchor = sft.anchor_term(logp[B:], batch.tokens.rows(slice(B, None)), cfg)
        stats["loss_anchor"] = loss_anchor.detach()
    stats["train_tokens"] = batch.tokens.attention_mask.sum()
    return mixed_loss(loss_rl, loss_anchor, lam), stats


def channel_grads(logp: Tensor, advantages: Tensor, mask: Tensor, params: Sequence[Tensor], *,
                  normalisation: str = "channel", **rl_kw: Any) -> dict[str, tuple[Tensor | None, ...]]:
    """Gradients on ``params`` of the RL loss restricted to the text and to the speech tokens of ``mask``, from
    log-probs ``logp`` (B, N) that carry the graph; ``rl_kw`` as for `rl_loss` (group_size, text_mask,
    speech_mask, KL, weights). ``normalisation``: "channel" divides each part by its own token count (each
    channel's per-token mean, as a text-only loss would see it); "full" divides both by the whole mask's count, so
    the two gradients add up to the full-token loss's (the paper's claim is about that loss). A channel without
    tokens is left out."""
    if normalisation not in ("channel", "full"):
        raise ValueError(f"normalisation: {normalisation!r} is not 'channel' or 'full'")
    out = {}
    for ch in ("text", "speech"):
        m = rl_kw[f"{ch}_mask"] & mask
        if m.any():
            count = mask if normalisation == "full" else None
            out[ch] = torch.autograd.grad(rl_loss(logp, advantages, m, count_mask=count, **rl_kw)[0], list(params),
                                          retain_graph=True, allow_unused=True)
    return out


def grad_norm(grads: Sequence[Tensor | None]) -> float:
    """L2 norm of a gradient given as per-parameter tensors (None = zero)."""
    return float(sum(((g.double() ** 2).sum() for g in grads if g is not None), torch.zeros((), dtype=torch.float64))
                 .sqrt())


def channel_grad_norms(policy, batch: RLBatch, cfg: TrainConfig, params: Sequence[Tensor]) -> dict[str, float]:
    """``grad_norm_text`` / ``grad_norm_speech`` of the step's RL loss (a separate forward; nothing is stepped)."""
    logp, _ = policy(batch.tokens)
    B = batch.rl_rows
    rl = batch.tokens.rows(slice(0, B)).to(logp.device)
    grads = channel_grads(logp[:B], batch.advantages.to(logp.device), rl.channel(cfg.rl_token_type), params,
                          **rl_kwargs(batch, cfg, logp.device))
    return {f"grad_norm_{ch}": grad_norm(g) for ch, g in grads.items()}
