"""WavAlign losses (pure torch): group advantages, k3 KL, the channel-masked RL term, the anchor, DPO, mixing.

Every formula cites the line of docs/DESIGN.md section 2 ("The method") it implements, as ``DESIGN.md:L``.
Shapes: per-token log-probs ``logp`` are ``(B, N)`` with bool masks ``(B, N)``; rows are prompt-major,
``B = P * G`` for P prompts with G samples each (parallel models flatten their streams into N).
Bad input raises ``ValueError`` naming the argument.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_mask(name: str, mask: Tensor | None, shape: torch.Size) -> None:
    if mask is None:
        return
    if mask.dtype != torch.bool:
        raise ValueError(f"{name}: must be a bool tensor, got {mask.dtype}")
    if mask.shape != shape:
        raise ValueError(f"{name}: shape {tuple(mask.shape)} must equal the log-probs' shape {tuple(shape)}")


def _check_finite(name: str, x: Tensor, where: Tensor | None = None) -> None:
    vals = x.detach() if where is None else x.detach()[where]
    if not torch.isfinite(vals).all():
        raise ValueError(f"{name}: contains NaN or inf{'' if where is None else ' at masked tokens'}")


def _check_logp(name: str, x: Tensor | None, shape: torch.Size, where: Tensor) -> None:
    if x is None:
        return
    if x.shape != shape:
        raise ValueError(f"{name}: shape {tuple(x.shape)} must equal logp's shape {tuple(shape)}")
    _check_finite(name, x, where)


def _fp32(x: Tensor | None) -> Tensor | None:
    """Half-precision log-probs are reduced in fp32 (float64 stays float64 for gradcheck)."""
    return x.float() if x is not None and x.dtype in (torch.float16, torch.bfloat16) else x


def _channel_weights(text_mask: Tensor | None, speech_mask: Tensor | None, text_value: float, speech_value: float,
                     what: str, like: Tensor, other: float) -> Tensor | float:
    """Per-token value: ``text_value`` on text tokens, ``speech_value`` on speech tokens, ``other`` elsewhere
    (a scalar when both values are equal and the channel masks are not given)."""
    if text_mask is None or speech_mask is None:
        if text_value == speech_value:
            return text_value
        raise ValueError(f"text_mask, speech_mask: both are needed for per-channel {what}")
    out = torch.full_like(like, other)
    out = torch.where(text_mask, torch.as_tensor(text_value, dtype=like.dtype, device=like.device), out)
    return torch.where(speech_mask, torch.as_tensor(speech_value, dtype=like.dtype, device=like.device), out)


def group_advantages(rewards: Tensor, eps: float = 1e-4) -> Tensor:
    """A_i = (r_i - mean(r)) / (std(r) + eps) per prompt group, population std (DESIGN.md:31).

    ``rewards``: ``(P, G)``; returns ``(P, G)`` in the rewards' float dtype. A group whose rewards are all equal
    has zero advantage."""
    if rewards.dim() != 2 or rewards.shape[0] == 0 or rewards.shape[1] == 0:
        raise ValueError(f"rewards: expected a non-empty (P, G) tensor (P prompts, G samples), got {tuple(rewards.shape)}")
    r = rewards.double() if not rewards.is_floating_point() else rewards
    _check_finite("rewards", r)
    d = r - r[:, :1]  # shift by the first reward: identical rewards give exactly 0, free of rounding in the mean
    centred = d - d.mean(dim=1, keepdim=True)  # r_i - mean(r)
    std = centred.pow(2).mean(dim=1, keepdim=True).sqrt()  # population std
    return centred / (std + eps)


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 estimator k_t = exp(lr_t) - lr_t - 1, lr_t = ref_logp - logp (DESIGN.md:32); >= 0 elementwise."""
    if logp.shape != ref_logp.shape:
        raise ValueError(f"ref_logp: shape {tuple(ref_logp.shape)} must equal logp's shape {tuple(logp.shape)}")
    lr = ref_logp - logp
    return torch.exp(lr) - lr - 1


def policy_token_term(logp: Tensor, advantages: Tensor, *, ref_logp: Tensor | None = None,
                      text_mask: Tensor | None = None, speech_mask: Tensor | None = None,
                      beta_text: float = 0.0, beta_speech: float = 0.0, old_logp: Tensor | None = None,
                      clip_eps: float | None = None) -> Tensor:
    """Per-token term -(exp(logp - stopgrad(logp)) * A - beta_c(t) * k_t) (DESIGN.md:34), ``(B, N)``.

    ``advantages``: ``(B,)`` per sequence or ``(B, N)`` per token. beta_c(t) is ``beta_text`` on text tokens and
    ``beta_speech`` on speech tokens (DESIGN.md:33). With ``old_logp`` the ratio is exp(logp - old_logp), and
    with ``clip_eps`` the PPO clipped surrogate min(ratio*A, clip(ratio, 1-eps, 1+eps)*A) replaces ratio*A
    (several updates per rollout; with one update and no old_logp the ratio is identically 1)."""
    adv = advantages.to(logp.dtype)
    if adv.dim() == 1:
        if adv.shape[0] != logp.shape[0]:
            raise ValueError(f"advantages: {adv.shape[0]} rows, logp has {logp.shape[0]}")
        adv = adv[:, None]
    elif adv.shape != logp.shape:
        raise ValueError(f"advantages: shape {tuple(adv.shape)} must be (B,) or logp's shape {tuple(logp.shape)}")
    ratio = torch.exp(logp - (logp.detach() if old_logp is None else old_logp.detach()))  # 1 in value on-policy
    surrogate = ratio * adv
    if clip_eps is not None:
        if clip_eps <= 0:
            raise ValueError(f"clip_eps: must be > 0, got {clip_eps}")
        surrogate = torch.minimum(surrogate, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    if beta_text == 0 and beta_speech == 0:
        return -surrogate
    if ref_logp is None:
        raise ValueError("ref_logp: required when beta_text or beta_speech is non-zero")
    beta = _channel_weights(text_mask, speech_mask, beta_text, beta_speech, "KL betas", logp, other=0.0)
    return -(surrogate - beta * k3_kl(logp, ref_logp.detach()))


def rl_loss(logp: Tensor, advantages: Tensor, token_mask: Tensor, *, group_size: int, text_mask: Tensor,
            speech_mask: Tensor, ref_logp: Tensor | None = None, beta_text: float = 0.0, beta_speech: float = 0.0,
            text_weight: float = 1.0, speech_weight: float = 1.0, old_logp: Tensor | None = None,
            clip_eps: float | None = None) -> tuple[Tensor, dict[str, float]]:
    """Channel-restricted RL loss (DESIGN.md:35-38): mean over the group of (sum_t term*w*M / sum_t M),
    summed over prompts and divided by the number of prompts. Half-precision inputs are reduced in fp32.

    ``token_mask`` is M_RL (WavAlign: text tokens); w is ``text_weight`` on text and ``speech_weight`` on speech
    tokens. A row whose mask is empty is skipped and counted (``rows_skipped``), never widened; a prompt whose
    rows are all skipped drops out of the prompt mean (``prompts_skipped``). If no row selects a token the
    call raises ``ValueError``. Stats: kl_text / kl_speech (mean k3 over that channel's tokens; NaN without
    ``ref_logp``), rows_skipped, prompts_skipped, tokens (selected), and clip_frac with ``clip_eps``.
    """
    if logp.dim() != 2:
        raise ValueError(f"logp: expected (B, N) per-token log-probs, got {tuple(logp.shape)}")
    logp, ref_logp, old_logp = (_fp32(x) for x in (logp, ref_logp, old_logp))
    B = logp.shape[0]
    if group_size < 1 or B % group_size:
        raise ValueError(f"group_size: {group_size} does not divide the batch of {B} rows (B = prompts * group_size)")
    for name, m in (("token_mask", token_mask), ("text_mask", text_mask), ("speech_mask", speech_mask)):
        _check_mask(name, m, logp.shape)
    _check_logp("logp", logp, logp.shape, token_mask)
    _check_logp("ref_logp", ref_logp, logp.shape, token_mask)
    _check_logp("old_logp", old_logp, logp.shape, token_mask)
    _check_finite("advantages", advantages)
    counts = token_mask.sum(dim=1)  # (B,)
    kept = counts > 0
    if not kept.any():
        raise ValueError("token_mask: mask selects no token in any row (e.g. rl mask 'text' on responses without text)")
    term = policy_token_term(logp, advantages, ref_logp=ref_logp, text_mask=text_mask, speech_mask=speech_mask,
                             beta_text=beta_text, beta_speech=beta_speech, old_logp=old_logp, clip_eps=clip_eps)
    w = _channel_weights(text_mask, speech_mask, text_weight, speech_weight, "weights", logp, other=1.0)
    term = torch.where(token_mask, term * w, torch.zeros((), dtype=term.dtype, device=term.device))
    row_loss = term.sum(dim=1) / counts.clamp(min=1).to(term.dtype)  # (B,) sum_t term*M / sum_t M
    keep = kept.view(-1, group_size).to(term.dtype)  # (P, G)
    rows_per_prompt = keep.sum(dim=1)  # (P,)
    group_mean = (row_loss.view(-1, group_size) * keep).sum(dim=1) / rows_per_prompt.clamp(min=1)
    prompts = rows_per_prompt > 0
    loss = group_mean[prompts].sum() / prompts.sum()
    stats = {"rows_skipped": float((~kept).sum()), "prompts_skipped": float((~prompts).sum()),
             "tokens": float(counts.sum())}
    with torch.no_grad():
        for ch, m in (("text", text_mask), ("speech", speech_mask)):
            stats[f"kl_{ch}"] = (float(k3_kl(logp[m], ref_logp[m]).mean()) if ref_logp is not None and m.any()
                                 else float("nan"))
        if clip_eps is not None and old_logp is not None:
            ratio = torch.exp(logp.detach() - old_logp)[token_mask]
            stats["clip_frac"] = float(((ratio - 1).abs() > clip_eps).float().mean())
    return loss, stats


def anchor_loss(logp: Tensor, token_mask: Tensor, *, text_mask: Tensor | None = None,
                speech_mask: Tensor | None = None, text_weight: float = 1.0, speech_weight: float = 1.0) -> Tensor:
    """Acoustic anchor L_SFT: token-mean NLL of the target over M_SFT (DESIGN.md:39-41), sum_t -logp*w*M / sum_t M
    over the whole batch, w = per-channel weight (1 when both weights are 1); half precision reduced in fp32."""
    _check_mask("token_mask", token_mask, logp.shape)
    _check_mask("text_mask", text_mask, logp.shape)
    _check_mask("speech_mask", speech_mask, logp.shape)
    n = token_mask.sum()
    if n == 0:
        raise ValueError("token_mask: mask selects no token; the anchor needs at least one target token")
    _check_finite("logp", logp, token_mask)
    logp = _fp32(logp)
    w = _channel_weights(text_mask, speech_mask, text_weight, speech_weight, "weights", logp, other=1.0)
    nll = torch.where(token_mask, -logp * w, torch.zeros((), dtype=logp.dtype, device=logp.device))
    return nll.sum() / n


def sequence_logps(logp: Tensor, mask: Tensor, reduction: Literal["sum", "mean"] = "sum",
                   allow_empty: bool = False) -> Tensor:
    """Sequence log-probability over a channel mask (DESIGN.md:56-57), accumulated in fp32: ``(B,)``.

    A row whose mask is empty raises ``ValueError`` unless ``allow_empty`` (then that row is 0)."""
    if logp.dim() != 2:
        raise ValueError(f"logp: expected (B, N) per-token log-probs, got {tuple(logp.shape)}")
    _check_mask("mask", mask, logp.shape)
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction: {reduction!r} is not 'sum' or 'mean'")
    counts = mask.sum(dim=1)
    if not allow_empty and (counts == 0).any():
        raise ValueError(f"mask: rows {(counts == 0).nonzero().flatten().tolist()} select no token")
    _check_finite("logp", logp, mask)
    total = torch.where(mask, logp.float(), torch.zeros((), device=logp.device)).sum(dim=1)
    return total if reduction == "sum" else total / counts.clamp(min=1)


def dpo_loss(chosen_logp: Tensor, rejected_logp: Tensor, ref_chosen_logp: Tensor, ref_rejected_logp: Tensor,
             chosen_mask: Tensor, rejected_mask: Tensor, *, beta: float = 0.1,
             reduction: Literal["sum", "mean"] = "sum", sft_weight: float = 0.0) -> tuple[Tensor, dict[str, float]]:
    """DPO: -log sigmoid(beta * ((c - r) - (ref_c - ref_r))) averaged over pairs (DESIGN.md:58), plus
    ``sft_weight`` x token-mean NLL of the chosen response over ``chosen_mask`` (DESIGN.md:58-59).

    Inputs are per-token ``(B, Nc)`` / ``(B, Nr)`` log-probs; c, r are their sequence log-probs over the masks
    (``reduction`` sum or mean, fp32). A pair whose chosen or rejected mask is empty is skipped and counted
    (``pairs_skipped``); all pairs empty raises ``ValueError``. Stats: dpo_loss, sft_loss, reward_chosen,
    reward_rejected (beta * (logp - ref)), reward_margin, accuracy (share with chosen reward > rejected)."""
    for name, lp, ref in (("chosen_logp", chosen_logp, ref_chosen_logp),
                          ("rejected_logp", rejected_logp, ref_rejected_logp)):
        if lp.shape != ref.shape:
            raise ValueError(f"ref_{name}: shape {tuple(ref.shape)} must equal {name}'s shape {tuple(lp.shape)}")
    if chosen_logp.shape[0] != rejected_logp.shape[0]:
        raise ValueError(f"rejected_logp: {rejected_logp.shape[0]} rows but chosen_logp has {chosen_logp.shape[0]}")
    for name, lp, m in (("chosen_logp", chosen_logp, chosen_mask), ("rejected_logp", rejected_logp, rejected_mask),
                        ("ref_chosen_logp", ref_chosen_logp, chosen_mask),
                        ("ref_rejected_logp", ref_rejected_logp, rejected_mask)):
        _check_mask(name.replace("ref_", "").replace("logp", "mask"), m, lp.shape)
        _check_finite(name, lp, m)
    if beta <= 0:
        raise ValueError(f"beta: must be > 0, got {beta}")
    kept = (chosen_mask.sum(dim=1) > 0) & (rejected_mask.sum(dim=1) > 0)
    if not kept.any():
        raise ValueError("chosen_mask, rejected_mask: no pair has a token selected in both responses")
    c = sequence_logps(chosen_logp, chosen_mask, reduction, allow_empty=True)[kept]
    r = sequence_logps(rejected_logp, rejected_mask, reduction, allow_empty=True)[kept]
    rc = sequence_logps(ref_chosen_logp.detach(), chosen_mask, reduction, allow_empty=True)[kept]
    rr = sequence_logps(ref_rejected_logp.detach(), rejected_mask, reduction, allow_empty=True)[kept]
    logits = beta * ((c - r) - (rc - rr))
    dpo = -F.logsigmoid(logits).mean()
    loss = dpo
    stats: dict[str, float] = {"pairs_skipped": float((~kept).sum())}
    if sft_weight:
        sft = anchor_loss(chosen_logp[kept], chosen_mask[kept])
        loss = loss + sft_weight * sft
        stats["sft_loss"] = float(sft.detach())
    with torch.no_grad():
        reward_c, reward_r = beta * (c - rc), beta * (r - rr)
        stats.update(dpo_loss=float(dpo), reward_chosen=float(reward_c.mean()), reward_rejected=float(reward_r.mean()),
                     reward_margin=float((reward_c - reward_r).mean()),
                     accuracy=float((reward_c > reward_r).float().mean()))
    return loss, stats


def routed_advantages(semantic_rewards: Tensor, acoustic_rewards: Tensor, text_mask: Tensor, speech_mask: Tensor, *,
                      semantic_weight: float = 1.0, acoustic_weight: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Channel-routed advantages (DESIGN.md:68-70): semantic rewards, group-normalised, on text tokens;
    acoustic rewards, group-normalised separately, on speech tokens; 0 elsewhere. Returns ``(B, N)``."""
    if semantic_rewards.shape != acoustic_rewards.shape:
        raise ValueError(f"acoustic_rewards: shape {tuple(acoustic_rewards.shape)} must equal semantic_rewards' "
                         f"{tuple(semantic_rewards.shape)}")
    _check_mask("speech_mask", speech_mask, text_mask.shape)
    _check_mask("text_mask", text_mask, text_mask.shape)
    a_sem = group_advantages(semantic_rewards, eps).reshape(-1)  # (B,)
    a_ac = group_advantages(acoustic_rewards, eps).reshape(-1)
    if text_mask.dim() != 2 or text_mask.shape[0] != a_sem.shape[0]:
        raise ValueError(f"text_mask: expected ({a_sem.shape[0]}, N) rows = prompts * group size, got {tuple(text_mask.shape)}")
    dtype = a_sem.dtype if a_sem.is_floating_point() else torch.float32
    out = torch.zeros(text_mask.shape, dtype=dtype, device=text_mask.device)
    out = torch.where(text_mask, semantic_weight * a_sem[:, None].to(dtype), out)
    return torch.where(speech_mask, acoustic_weight * a_ac[:, None].to(dtype), out)


def mixed_loss(rl: Tensor, anchor: Tensor, lam: float | Tensor) -> Tensor:
    """Hybrid objective L = lambda * L_RL + (1 - lambda) * L_SFT (DESIGN.md:42)."""
    lam_value = float(lam.detach()) if isinstance(lam, Tensor) else float(lam)
    if not 0.0 <= lam_value <= 1.0:
        raise ValueError(f"lam: mixing weight must lie in [0, 1], got {lam_value}")
    return lam * rl + (1 - lam) * anchor
