"""DPO (DESIGN.md:56-60): pairs (chosen, rejected) per prompt, sequence log-probabilities over a channel mask
(``dpo_token_type``: all | text | speech, fp32 sums or means), an optional SFT term on the chosen response and an
optional anchor mixed in by the mixer. Pairs (``dpo_source``): G responses sampled from the base model and ranked
by the reward (``sampled``, the paper's construction and the presets' default: best vs worst, a minimum margin,
ties dropped and counted, `train.pairs`), the same from the current policy (``online``), or the data set's
target vs its rejected response (``offline``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from wavalign_kit.errors import ConfigError
from wavalign_kit.mixing import mixed_loss
from wavalign_kit.models.base import TokenBatch
from wavalign_kit.rewards import RewardResult
from wavalign_kit.rollout_stats import channel_means, token_stats
from wavalign_kit.train import sft
from wavalign_kit.train.config import TrainConfig
from wavalign_kit.train.pairs import build_pairs, pair_scores
from wavalign_kit.train.rollout import collect

# ---------------------------------------------------------------------------------------------------- formulas


def sequence_logps(logp: Tensor, mask: Tensor, reduction: Literal["sum", "mean"] = "sum",
                   allow_empty: bool = False) -> Tensor:
    """Sequence log-probability over a channel mask (DESIGN.md:56-57), accumulated in fp32: (B, N) -> (B,). A row
    whose mask is empty is a ValueError, or 0 with ``allow_empty``."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction: {reduction!r} is not 'sum' or 'mean'")
    if mask.shape != logp.shape or mask.dtype != torch.bool:
        raise ValueError(f"mask: expected a bool tensor of logp's shape {tuple(logp.shape)}")
    if not allow_empty and (mask.sum(dim=1) == 0).any():
        raise ValueError(f"mask: rows {(mask.sum(dim=1) == 0).nonzero().flatten().tolist()} select no token")
    total = torch.where(mask, logp.float(), torch.zeros((), device=logp.device)).sum(dim=1)
    return total if reduction == "sum" else total / mask.sum(dim=1).clamp(min=1)


def dpo_loss(chosen_logp: Tensor, rejected_logp: Tensor, ref_chosen_logp: Tensor, ref_rejected_logp: Tensor,
             chosen_mask: Tensor, rejected_mask: Tensor, *, beta: float = 0.1,
             reduction: Literal["sum", "mean"] = "sum", sft_weight: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """-log sigmoid(beta * ((c - r) - (ref_c - ref_r))) averaged over pairs (DESIGN.md:58), plus ``sft_weight`` x
    the token-mean NLL of the chosen responses (DESIGN.md:58-59). Inputs per token (P, N); c, r are sequence
    log-probs over the masks. A pair whose chosen or rejected mask is empty is skipped and counted
    (``pairs_skipped``). Stats: dpo_loss, sft_loss, reward_chosen / reward_rejected (beta * (logp - ref)),
    reward_margin, accuracy (share of pairs whose chosen reward is larger)."""
    for name, x in (("rejected_logp", rejected_logp), ("ref_chosen_logp", ref_chosen_logp),
                    ("ref_rejected_logp", ref_rejected_logp)):
        if x.shape[0] != chosen_logp.shape[0]:
            raise ValueError(f"{name}: {x.shape[0]} rows but chosen_logp has {chosen_logp.shape[0]}")
    kept = (chosen_mask.sum(dim=1) > 0) & (rejected_mask.sum(dim=1) > 0)              # (P,)
    if not kept.any():
        raise ValueError("chosen_mask, rejected_mask: no pair has a token selected in both responses")
    c = sequence_logps(chosen_logp, chosen_mask, reduction, allow_empty=True)[kept]
    r = sequence_logps(rejected_logp, rejected_mask, reduction, allow_empty=True)[kept]
    rc = sequence_logps(ref_chosen_logp.detach(), chosen_mask, reduction, allow_empty=True)[kept]
    rr = sequence_logps(ref_rejected_logp.detach(), rejected_mask, reduction, allow_empty=True)[kept]
    logits = beta * ((c - r) - (rc - rr))
    dpo = -F.logsigmoid(logits).mean()
    loss = dpo
    stats: dict[str, Tensor] = {"pairs_skipped": (~kept).sum()}
    if sft_weight:
        sft_term = sft.anchor_loss(chosen_logp[kept], chosen_mask[kept])
        loss = loss + sft_weight * sft_term
        stats["sft_loss"] = sft_term.detach()
    with torch.no_grad():
        reward_c, reward_r = beta * (c - rc), beta * (r - rr)
        stats.update(dpo_loss=dpo.detach(), reward_chosen=reward_c.mean(), reward_rejected=reward_r.mean(),
                     reward_margin=(reward_c - reward_r).mean(), accuracy=(reward_c > reward_r).float().mean())
    return loss, stats


# ---------------------------------------------------------------------------------------------------- the step


def has_rejected(example: Any) -> bool:
    """Whether an example carries a rejected response for offline DPO."""
    units = getattr(example, "rejected_units", None)
    return bool(getattr(example, "rejected_text", None)) and units is not None and len(units) > 0


def check_rejected(examples: Sequence[Any], split: str) -> None:
    """ConfigError naming the examples without a rejected response (offline DPO needs one per example)."""
    missing = [e.id for e in examples if not has_rejected(e)]
    if missing:
        raise ConfigError(f"train.dpo_source=offline but {len(missing)} examples of split {split!r} have no "
                          f"rejected response, e.g. {missing[:3]}; use dpo_source=sampled")


@dataclass
class PairBatch:
    """Chosen rows, then rejected rows, then anchor rows, in one TokenBatch; reference log-probs of the pairs."""

    tokens: TokenBatch | None
    pairs: int
    ref_logp: Tensor | None = None           # (2 * pairs, N)
    dropped: int = 0                         # groups without a usable pair (ties or below the margin)
    group_rewards: np.ndarray | None = None  # (P, G) of the online samples
    rewards: RewardResult | None = None
    timings: dict[str, float] = field(default_factory=dict)


def offline_pairs(model, examples: Sequence[Any]) -> tuple[TokenBatch, TokenBatch]:
    """(chosen, rejected) batches from the examples' target and rejected responses, their forced tokens (those the
    layout dictates) left out of the masks."""
    missing = [e.id for e in examples if not has_rejected(e)]
    if missing:
        raise ValueError(f"offline DPO: examples {missing[:5]} have no rejected_text / rejected_units; use "
                         "train.dpo_source=sampled to rank responses sampled from the model")
    prompts = [model.encode_prompt(e) for e in examples]
    chosen = [model.encode_response(e.target_text, e.target_units) for e in examples]
    rejected = [model.encode_response(e.rejected_text, e.rejected_units) for e in examples]
    both = model.collate(prompts + prompts, chosen + rejected)
    both = both.excluding(model.forced_mask(prompts + prompts, chosen + rejected))     # not the choices compared
    n = len(examples)
    return both.rows(slice(0, n)), both.rows(slice(n, 2 * n))


def prepare(model, examples: Sequence[Any], cfg: TrainConfig, *, reward=None, codec=None, seed: int = 0) -> PairBatch:
    """The step's pairs (sampled and ranked, or from the data set) fused with the anchor rows, and the pairs'
    reference log-probs."""
    parts, extra = [], {}
    if cfg.dpo_source != "offline":                                             # G responses per prompt, scored
        scored = collect(model, examples, cfg, reward, codec, seed, reference=cfg.dpo_source == "sampled")
        r = scored.rewards
        scores = pair_scores(r.total, r.semantic if len(r.semantic) else None,
                             r.acoustic if len(r.acoustic) else None, cfg.pair_score_mode)
        ps = build_pairs(scores, cfg.group_size, cfg.pair_min_margin)            # best vs worst of each group
        batch = scored.rollout.batch.excluding(scored.rollout.forced)            # forced tokens are not choices
        if ps.chosen:
            parts = [batch.rows(ps.chosen, trim=True), batch.rows(ps.rejected, trim=True)]
        extra = dict(dropped=ps.dropped, group_rewards=scored.group_rewards, rewards=r, timings=scored.timings)
    else:
        parts = list(offline_pairs(model, examples))
    n = len(parts[0]) if parts else 0
    if cfg.anchor:
        parts.append(sft.anchor_batch(model, examples, cfg))
    if not parts:
        return PairBatch(None, 0, **extra)
    tokens = TokenBatch.concat(parts, model.layout.pad_id).check()
    ref = model.reference_logprobs(tokens.rows(slice(0, 2 * n))) if n else None
    return PairBatch(tokens, n, ref, **extra)


def loss(policy, batch: PairBatch, cfg: TrainConfig, lam: float) -> tuple[Tensor | None, dict[str, Any]]:
    """lam * L_DPO + (1 - lam) * L_SFT over one fused forward (either term alone when the other is absent)."""
    stats: dict[str, Any] = {"pairs": float(batch.pairs), "pairs_skipped": float(batch.dropped)}
    if batch.tokens is None:
        return None, stats
    logp, entropy = policy(batch.tokens, with_entropy=True)                      # (2P + A, N)
    n, tokens = batch.pairs, batch.tokens
    loss_dpo = loss_anchor = None
    if n:
        c, r = tokens.rows(slice(0, n)).to(logp.device), tokens.rows(slice(n, 2 * n)).to(logp.device)
        ref = batch.ref_logp.to(logp.device)
        stats.update(token_stats(c, entropy[:n]))
        # how far the chosen responses' own log-probs fell below the reference's, per token (what DPO's implicit
        # reward moves; a drop, not a KL: DPO never samples from the policy)
        drop = channel_means(ref[:n] - logp[:n].detach(), c.text_mask, c.speech_mask)
        stats.update({f"chosen_logp_drop_{ch}": v for ch, v in drop.items()})
        cm, rm = c.channel(cfg.dpo_token_type), r.channel(cfg.dpo_token_type)
        if ((cm.sum(1) > 0) & (rm.sum(1) > 0)).any():
            loss_dpo, st = dpo_loss(logp[:n], logp[n: 2 * n], ref[:n], ref[n:], cm, rm, beta=cfg.dpo_beta,
                                    reduction=cfg.dpo_reduction, sft_weight=cfg.dpo_sft_weight)
            stats["pairs_skipped"] = stats["pairs_skipped"] + st["pairs_skipped"]
            stats.update(dpo_accuracy=st["accuracy"], loss_dpo=loss_dpo.detach())
        else:
            stats["pairs_skipped"] += float(n)
    if len(tokens) > 2 * n:
        anchor = tokens.rows(slice(2 * n, None)).to(logp.device)
        loss_anchor = sft.anchor_term(logp[2 * n:], anchor, cfg)
        stats["loss_anchor"] = loss_anchor.detach()
        if not n:
            stats.update(token_stats(anchor, entropy[2 * n:]))
    stats["train_tokens"] = tokens.attention_mask.sum()
    return mixed_loss(loss_dpo, loss_anchor, lam), stats
