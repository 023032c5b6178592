"""SFT: the acoustic anchor L_SFT (DESIGN.md:39-41) and the supervised method that trains it alone.

The anchor is the token-mean negative log-likelihood of the target response (target text and target speech laid
out exactly as the model generates them) over M_SFT (``anchor_token_type``: all | text | speech), with optional
per-channel weights. It is the whole loss of ``algorithm: sft``, of the first stage of the two-stage baseline and of
the warm start, and the (1 - lambda) term of every hybrid method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from wavalign_kit.errors import ConfigError
from wavalign_kit.models.base import TokenBatch
from wavalign_kit.rollout_stats import token_stats
from wavalign_kit.train.config import TrainConfig


def channel_weights(text_mask: Tensor, speech_mask: Tensor, text_value: float, speech_value: float,
                    other: float, like: Tensor) -> Tensor | float:
    """Per-token value: ``text_value`` on text tokens, ``speech_value`` on speech tokens, ``other`` elsewhere (a plain
    float when all three are equal)."""
    if text_value == speech_value == other:
        return text_value
    out = torch.full_like(like, other)
    out = torch.where(text_mask, torch.as_tensor(text_value, dtype=like.dtype, device=like.device), out)
    return torch.where(speech_mask, torch.as_tensor(speech_value, dtype=like.dtype, device=like.device), out)


def anchor_loss(logp: Tensor, token_mask: Tensor, *, text_mask: Tensor | None = None,
                speech_mask: Tensor | None = None, text_weight: float = 1.0, speech_weight: float = 1.0) -> Tensor:
    """L_SFT = sum_t -logp_t * w_t * M_t / sum_t M_t over the whole batch (DESIGN.md:39-41); ``logp`` (B, N),
    masks (B, N) bool, w the per-channel weight (1 when both weights are 1); half precision reduced in fp32."""
    if token_mask.shape != logp.shape or token_mask.dtype != torch.bool:
        raise ValueError(f"token_mask: expected a bool tensor of logp's shape {tuple(logp.shape)}")
    if (text_weight != 1.0 or speech_weight != 1.0) and (text_mask is None or speech_mask is None):
        raise ValueError("text_mask, speech_mask: both are needed for per-channel weights")
    n = token_mask.sum()
    if n == 0:
        raise ValueError("token_mask: mask selects no token; the anchor needs at least one target token")
    logp = logp.float() if logp.dtype in (torch.float16, torch.bfloat16) else logp            # (B, N)
    w = 1.0 if text_mask is None else channel_weights(text_mask, speech_mask, text_weight, speech_weight, 1.0, logp)
    nll = torch.where(token_mask, -logp * w, torch.zeros((), dtype=logp.dtype, device=logp.device))
    return nll.sum() / n


def anchor_term(logp: Tensor, batch: TokenBatch, cfg: TrainConfig) -> Tensor:
    """The anchor of a config over a batch of target responses (mask ``anchor_token_type``, its channel weights)."""
    batch = batch.to(logp.device)
    return anchor_loss(logp, batch.channel(cfg.anchor_token_type), text_mask=batch.text_mask,
                       speech_mask=batch.speech_mask, text_weight=cfg.anchor_text_weight,
                       speech_weight=cfg.anchor_speech_weight)


def has_target(example: Any) -> bool:
    """Whether an example has an SFT target (text or speech) for the anchor."""
    units = getattr(example, "target_units", None)
    return bool(getattr(example, "target_text", "")) or (units is not None and len(units) > 0)


def check_targets(examples: Sequence[Any], split: str) -> None:
    """ConfigError naming the examples without a target, when the method trains an anchor on them."""
    missing = [e.id for e in examples if not has_target(e)]
    if missing:
        raise ConfigError(f"split {split!r}: {len(missing)} of {len(examples)} examples have no SFT target "
                         f"(target_text / target_units), e.g. {missing[:3]}, but the config asks for an anchor "
                         "(anchor=true, algorithm=sft or sft_share>0); fill the targets or set anchor=false")


def target_batch(model, examples: Sequence[Any], *, forced: bool = True) -> TokenBatch:
    """Prompts and target responses of ``examples``, laid out exactly as the model generates them; ``forced``
    false leaves the positions the decoder forces out of the masks (their logits never decide a token)."""
    prompts = [model.encode_prompt(e) for e in examples]
    responses = [model.encode_response(e.target_text, e.target_units) for e in examples]
    batch = model.collate(prompts, responses)
    return (batch if forced else batch.excluding(model.forced_mask(prompts, responses))).check()


def anchor_batch(model, examples: Sequence[Any], cfg: TrainConfig) -> TokenBatch:
    """The anchor's target responses under ``cfg`` (forced positions in or out: ``anchor_forced``)."""
    return target_batch(model, examples, forced=cfg.anchor_forced)


@dataclass
class SFTBatch:
    """The target responses of one micro-batch."""

    tokens: TokenBatch
    group_rewards: Any = None                       # no rollouts: nothing for the gate
    timings: dict[str, float] = field(default_factory=dict)


def prepare(model, examples: Sequence[Any], cfg: TrainConfig, *, reward=None, codec=None, seed: int = 0) -> SFTBatch:
    """One micro-batch of the supervised method: the examples' targets (no rollout: reward, codec and seed unused)."""
    return SFTBatch(anchor_batch(model, examples, cfg))


def loss(policy, batch: SFTBatch, cfg: TrainConfig, lam: float = 0.0) -> tuple[Tensor, dict[str, Any]]:
    """L_SFT alone (lambda is 0 by definition); stats: loss_anchor and the targets' per-channel length/entropy."""
    logp, entropy = policy(batch.tokens, with_entropy=True)                        # (A, N)
    loss_anchor = anchor_term(logp, batch.tokens, cfg)
    stats = {"loss_anchor": loss_anchor.detach(), **token_stats(batch.tokens.to(logp.device), entropy),
             "train_tokens": batch.tokens.attention_mask.sum()}
    return loss_anchor, stats


@torch.no_grad()
def heldout_loss(policy, module: torch.nn.Module, model, examples: Sequence[Any], cfg: TrainConfig) -> float:
    """Mean anchor loss of held-out ``examples`` (batches of ``prompts_per_step``), in eval mode, without gradient."""
    module.eval()
    size = cfg.prompts_per_step
    losses = [float(loss(policy, prepare(model, examples[i: i + size], cfg), cfg)[0])
              for i in range(0, len(examples), size)]
    module.train()
    return sum(losses) / len(losses)
