"""Rollout statistics: reward spread per prompt group and per-channel token counts, entropy and KL.

Plain dicts for logs (stable names such as ``rollout/zero_var_share`` are up to the caller's prefix) and
pandas DataFrames for notebooks. Rows of per-token tensors are prompt-major: the G samples of prompt 0,
then those of prompt 1, and so on (``B = sum of group sizes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor


def group_moments(group_rewards: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group ``(mean, population variance, max)``, each ``(P,)`` float64.

    Identical rewards give variance exactly 0 (computed after shifting by the group's first reward).
    ValueError for no groups, an empty group, or a NaN/inf reward, naming the group."""
    if isinstance(group_rewards, (str, bytes)) or len(group_rewards) == 0:
        raise ValueError("group_rewards: expected a non-empty list of reward groups (one list of G scores per prompt)")
    means, variances, maxima = [], [], []
    for i, group in enumerate(group_rewards):
        r = np.asarray(group.detach().cpu() if isinstance(group, Tensor) else group, dtype=np.float64).reshape(-1)
        if r.size == 0:
            raise ValueError(f"group_rewards[{i}]: empty group; every prompt needs at least one scored sample")
        if not np.isfinite(r).all():
            raise ValueError(f"group_rewards[{i}]: contains NaN or inf ({r.tolist()}); check the reward function")
        d = r - r[0]
        means.append(r[0] + d.mean())
        variances.append(float(((d - d.mean()) ** 2).mean()))
        maxima.append(r.max())
    return np.asarray(means), np.asarray(variances), np.asarray(maxima)


def group_reward_stats(group_rewards: Sequence[Sequence[float]]) -> dict[str, float]:
    """Means over groups of the group reward mean / variance / max, the share of zero-variance groups (no learning
    signal for GRPO: the same exact-zero test as the group advantages), the overall reward mean, population std and
    max, and the number of groups."""
    mean, var, mx = group_moments(group_rewards)
    flat = np.concatenate([np.asarray(g, dtype=np.float64).reshape(-1) for g in group_rewards])
    return {"groups": float(len(mean)), "reward_mean": float(flat.mean()), "reward_std": float(flat.std()),
            "reward_max": float(flat.max()), "group_mean": float(mean.mean()), "group_var": float(var.mean()),
            "group_max": float(mx.mean()), "zero_var_share": float((var == 0).mean())}


def channel_means(values: Tensor, text_mask: Tensor, speech_mask: Tensor) -> dict[str, Tensor]:
    """Mean of ``values`` (B, N) over each channel's tokens, as 0-d tensors (NaN for an empty channel; no host
    synchronisation): ``{"text": ..., "speech": ...}``."""
    v = values.detach().float()
    return {ch: torch.where(m, v, torch.zeros((), device=v.device)).sum() / m.sum()
            for ch, m in (("text", text_mask), ("speech", speech_mask))}


def token_stats(batch: Any, entropy: Tensor | None = None, kl: Tensor | None = None) -> dict[str, Tensor]:
    """The training log's per-channel figures of a TokenBatch, as 0-d tensors: ``len_text`` / ``len_speech`` (tokens
    per response), ``entropy_*`` with per-token ``entropy``, ``kl_*`` with per-token ``kl`` (B, N)."""
    out = {"len_text": batch.text_mask.sum(1).float().mean(), "len_speech": batch.speech_mask.sum(1).float().mean()}
    for name, values in (("entropy", entropy), ("kl", kl)):
        if values is not None:
            out.update({f"{name}_{ch}": v for ch, v in channel_means(values, batch.text_mask, batch.speech_mask).items()})
    return out


def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """The k3 KL estimator of `train.grpo` (imported when needed: the GRPO module imports this one)."""
    from wavalign_kit.train.grpo import k3_kl

    return k3_kl(logp, ref_logp)


def _check_token_inputs(logp: Tensor, text_mask: Tensor, speech_mask: Tensor, entropy: Tensor | None,
                        ref_logp: Tensor | None) -> None:
    if logp.dim() != 2:
        raise ValueError(f"logp: expected (B, N) per-token log-probs, got {tuple(logp.shape)}")
    for name, m in (("text_mask", text_mask), ("speech_mask", speech_mask)):
        if m.dtype != torch.bool or m.shape != logp.shape:
            raise ValueError(f"{name}: expected a bool tensor of logp's shape {tuple(logp.shape)}, "
                             f"got {m.dtype} {tuple(m.shape)}")
    if (text_mask & speech_mask).any():
        raise ValueError("text_mask, speech_mask: overlap; a token belongs to one channel")
    used = text_mask | speech_mask
    for name, x in (("logp", logp), ("entropy", entropy), ("ref_logp", ref_logp)):
        if x is None:
            continue
        if x.shape != logp.shape:
            raise ValueError(f"{name}: shape {tuple(x.shape)} must equal logp's shape {tuple(logp.shape)}")
        if not torch.isfinite(x.detach()[used]).all():
            raise ValueError(f"{name}: contains NaN or inf at text/speech tokens")


def _row_means(x: Tensor, mask: Tensor) -> np.ndarray:
    """Mean of ``x`` over each row's masked tokens, NaN for rows without such a token: ``(B,)``."""
    x = x.detach().double()
    n = mask.sum(dim=1)
    total = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    return torch.where(n > 0, total / n.clamp(min=1), torch.full_like(total, float("nan"))).cpu().numpy()


def _channel_values(logp: Tensor, entropy: Tensor | None, ref_logp: Tensor | None) -> dict[str, Tensor]:
    vals = {"nll": -logp.detach()}
    if entropy is not None:
        vals["entropy"] = entropy.detach()
    if ref_logp is not None:
        vals["kl"] = k3(logp.detach(), ref_logp.detach())
    return vals


def channel_token_stats(logp: Tensor, entropy: Tensor | None, text_mask: Tensor, speech_mask: Tensor,
                        ref_logp: Tensor | None = None) -> dict[str, float]:
    """Per-channel token statistics of a rollout batch ``(B, N)``.

    Keys: tokens_text / tokens_speech (totals), tokens_text_per_seq / tokens_speech_per_seq, text_speech_ratio
    (text tokens / speech tokens; NaN without speech), and per channel the token means nll_*, entropy_*
    (when ``entropy`` is given) and kl_* (k3 estimator, when ``ref_logp`` is given); NaN for an empty channel."""
    _check_token_inputs(logp, text_mask, speech_mask, entropy, ref_logp)
    n_text, n_speech = int(text_mask.sum()), int(speech_mask.sum())
    stats = {"tokens_text": float(n_text), "tokens_speech": float(n_speech),
             "tokens_text_per_seq": n_text / logp.shape[0], "tokens_speech_per_seq": n_speech / logp.shape[0],
             "text_speech_ratio": n_text / n_speech if n_speech else float("nan")}
    for key, x in _channel_values(logp, entropy, ref_logp).items():
        for ch, m in (("text", text_mask), ("speech", speech_mask)):
            stats[f"{key}_{ch}"] = float(x[m].double().mean()) if m.any() else float("nan")
    return stats


def rollout_frame(group_rewards: Sequence[Sequence[float]], logp: Tensor | None = None,
                  entropy: Tensor | None = None, text_mask: Tensor | None = None, speech_mask: Tensor | None = None,
                  ref_logp: Tensor | None = None) -> pd.DataFrame:
    """One row per sampled response: prompt, sample, reward, its group's mean / var / max, zero_var (bool),
    and, when per-token tensors are given, tokens_text, tokens_speech and per-channel nll / entropy / kl means."""
    mean, var, mx = group_moments(group_rewards)
    rows = [{"prompt": p, "sample": g, "reward": float(r), "group_mean": mean[p], "group_var": var[p],
             "group_max": mx[p], "zero_var": bool(var[p] == 0)}
            for p, group in enumerate(group_rewards) for g, r in enumerate(np.asarray(group, dtype=np.float64).reshape(-1))]
    frame = pd.DataFrame(rows)
    if logp is None:
        return frame
    if text_mask is None or speech_mask is None:
        raise ValueError("text_mask, speech_mask: both are needed with logp")
    _check_token_inputs(logp, text_mask, speech_mask, entropy, ref_logp)
    if logp.shape[0] != len(frame):
        raise ValueError(f"logp: {logp.shape[0]} rows but group_rewards holds {len(frame)} samples (prompt-major)")
    frame["tokens_text"] = text_mask.sum(dim=1).cpu().numpy()
    frame["tokens_speech"] = speech_mask.sum(dim=1).cpu().numpy()
    for key, x in _channel_values(logp, entropy, ref_logp).items():
        for ch, m in (("text", text_mask), ("speech", speech_mask)):
            frame[f"{key}_{ch}"] = _row_means(x, m)
    return frame
