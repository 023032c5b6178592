"""DPO step: offline pairs from the data set (rejected_text / rejected_units) or online pairs built from scored
samples, channel-masked sequence log-probs (fp32 sums), optional SFT term, optional anchor via the mixer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from wavalign_kit.losses import anchor_loss, dpo_loss, k3_kl
from wavalign_kit.models.base import TokenBatch
from wavalign_kit.train.config import TrainConfig
from wavalign_kit.train.online import (
    ScoredRollout,
    anchor_rows,
    channel_mask,
    combine,
    reference_logprobs,
    slice_rows,
    token_stats,
)
from wavalign_kit.train.pairs import PairSet, build_pairs, pair_scores


def has_rejected(example) -> bool:
    """Whether an example carries a rejected response for offline DPO."""
    units = getattr(example, "rejected_units", None)
    return bool(getattr(example, "rejected_text", None)) and units is not None and len(units) > 0


@dataclass
class PairBatch:
    """Chosen rows, then rejected rows, then anchor rows, in one TokenBatch; reference log-probs of the pairs."""

    batch: TokenBatch
    pairs: int
    ref_logp: Tensor | None = None   # (2 * pairs, N)
    dropped: int = 0                 # groups without a usable pair (ties or below the margin)


def offline_pairs(model, examples: Sequence) -> tuple[list, list, list]:
    """(prompt ids, chosen ids, rejected ids) from the examples' target and rejected responses."""
    missing = [e.id for e in examples if not has_rejected(e)]
    if missing:
        raise ValueError(f"offline DPO: examples {missing[:5]} have no rejected_text / rejected_units; use "
                         "train.dpo_source=online to sample rejected responses from the model")
    prompts = [model.encode_prompt(e) for e in examples]
    chosen = [model.encode_response(e.target_text, e.target_units) for e in examples]
    rejected = [model.encode_response(e.rejected_text, e.rejected_units) for e in examples]
    return prompts, chosen, rejected


def online_pairs(scored: ScoredRollout, cfg: TrainConfig) -> tuple[list, list, list, PairSet]:
    """Best vs worst of each scored group (pair builder), as (prompt ids, chosen ids, rejected ids, PairSet)."""
    r = scored.rewards
    scores = pair_scores(r.total, r.semantic if len(r.semantic) else None, r.acoustic if len(r.acoustic) else None,
                         cfg.pair_score_mode)
    ps = build_pairs(scores, scored.group_size, cfg.pair_min_margin)
    return ([scored.prompts[i] for i in ps.chosen], [scored.responses[i] for i in ps.chosen],
            [scored.responses[i] for i in ps.rejected], ps)


def build_pair_batch(model, prompts: list, chosen: list, rejected: list, anchor_examples: Sequence,
                     dropped: int = 0) -> PairBatch:
    """One fused batch [chosen; rejected; anchor] and the reference log-probs of the pair rows."""
    n = len(chosen)
    all_p, all_r = prompts + prompts, chosen + rejected
    if anchor_examples:
        ap, ar = anchor_rows(model, anchor_examples)
        all_p, all_r = all_p + ap, all_r + ar
    if not all_p:
        return PairBatch(batch=None, pairs=0, dropped=dropped)
    batch = model.collate(all_p, all_r)
    ref = reference_logprobs(model, slice_rows(batch, slice(0, 2 * n))) if n else None
    return PairBatch(batch, n, ref, dropped)


def dpo_step_loss(model, pb: PairBatch, cfg: TrainConfig, lam: float, *, use_anchor: bool
                  ) -> tuple[Tensor | None, dict[str, float]]:
    """lam * L_DPO + (1 - lam) * L_SFT over one fused forward (either term alone when the other is absent)."""
    stats: dict[str, float] = {"pairs": float(pb.pairs), "pairs_skipped": float(pb.dropped)}
    if pb.batch is None:
        return None, stats
    n, batch = pb.pairs, pb.batch
    logp, entropy = model.token_logprobs(batch, with_entropy=True)
    dev = logp.device
    loss_dpo = loss_anchor = None
    if n:
        c, r = slice_rows(batch, slice(0, n)).to(dev), slice_rows(batch, slice(n, 2 * n)).to(dev)
        stats.update(token_stats(c, entropy[:n]))
        cm, rm = channel_mask(c, cfg.dpo_token_type), channel_mask(r, cfg.dpo_token_type)
        if (cm.sum(1) > 0).logical_and(rm.sum(1) > 0).any():
            ref = pb.ref_logp.to(dev)
            loss_dpo, st = dpo_loss(logp[:n], logp[n: 2 * n], ref[:n], ref[n:], cm, rm, beta=cfg.dpo_beta,
                                    reduction=cfg.dpo_reduction, sft_weight=cfg.dpo_sft_weight)
            stats["pairs_skipped"] += st["pairs_skipped"]
            stats["dpo_accuracy"] = st["accuracy"]
            with torch.no_grad():
                k = k3_kl(logp[:n].detach(), ref[:n])  # chosen responses' per-token KL to the reference
                for ch, m in (("text", c.text_mask), ("speech", c.speech_mask)):
                    stats[f"kl_{ch}"] = float(k[m].mean()) if m.any() else float("nan")
        else:
            stats["pairs_skipped"] += float(n)
    if use_anchor and len(batch.input_ids) > 2 * n:
        an = slice_rows(batch, slice(2 * n, None)).to(dev)
        loss_anchor = anchor_loss(logp[2 * n:], channel_mask(an, cfg.anchor_token_type), text_mask=an.text_mask,
                                  speech_mask=an.speech_mask, text_weight=cfg.anchor_text_weight,
                                  speech_weight=cfg.anchor_speech_weight)
        if not n:
            stats.update(token_stats(an, entropy[2 * n:]))
    stats["loss_dpo"] = float(loss_dpo.detach()) if loss_dpo is not None else float("nan")
    stats["loss_anchor"] = float(loss_anchor.detach()) if loss_anchor is not None else float("nan")
    stats["train_tokens"] = float(batch.attention_mask.sum())
    return combine(loss_dpo, loss_anchor, lam), stats

