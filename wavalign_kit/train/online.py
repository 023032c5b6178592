"""The online hybrid step (DESIGN.md section 2): rollouts, rewards, group advantages, and one fused forward
over the RL responses and the SFT anchor targets combined as L = lambda * L_RL + (1 - lambda) * L_SFT."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from wavalign_kit.losses import anchor_loss, group_advantages, mixed_loss, rl_loss, routed_advantages
from wavalign_kit.models.base import TokenBatch
from wavalign_kit.models.sampling import Sampling
from wavalign_kit.rewards import Completion, CompositeReward, RewardResult
from wavalign_kit.train.config import TrainConfig


class JudgeFailure(RuntimeError):
    """Too many reward calls fell back to a default score in one step (e.g. an API that rejects audio)."""


@dataclass
class ScoredRollout:
    """One micro-batch of P prompts x G responses with their rewards; rows are prompt-major."""

    examples: list                   # the P prompts (world Examples)
    prompts: list[np.ndarray]        # (B,) prompt ids per row
    responses: list[np.ndarray]      # (B,) response ids per row
    rewards: RewardResult
    group_size: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def group_rewards(self) -> np.ndarray:
        """Total rewards as (P, G)."""
        return self.rewards.total.reshape(-1, self.group_size)


def rollout_rows(batch: TokenBatch) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split a right-padded TokenBatch back into per-row prompt ids and response ids."""
    ids = batch.input_ids.cpu().numpy()
    lengths = batch.attention_mask.sum(1).cpu().numpy()
    starts = batch.prompt_lengths.cpu().numpy()
    return ([ids[i, : starts[i]] for i in range(len(ids))], [ids[i, starts[i]: lengths[i]] for i in range(len(ids))])


def slice_rows(batch: TokenBatch, rows: slice) -> TokenBatch:
    """Rows ``rows`` of a TokenBatch (same L and N, so log-probs stay aligned)."""
    return TokenBatch(*(getattr(batch, f)[rows] for f in batch.__dataclass_fields__))


def samplings(cfg: TrainConfig) -> tuple[Sampling, Sampling]:
    """(text, speech) sampling settings; the speech channel inherits the text settings unless given."""
    text = Sampling(temperature=cfg.temperature, top_p=cfg.top_p)
    speech = Sampling(temperature=cfg.temperature if cfg.speech_temperature is None else cfg.speech_temperature,
                      top_p=cfg.top_p if cfg.speech_top_p is None else cfg.speech_top_p)
    return text, speech


def score_completions(reward: CompositeReward, examples: Sequence, texts: list[str], units: list[np.ndarray],
                      prompt_index: list[int], codec, max_failure_share: float) -> RewardResult:
    """Score responses (decoding speech to audio only when a reward needs it); stop on too many judge failures."""
    completions = [Completion(text=t, units=np.asarray(u)) for t, u in zip(texts, units)]
    if reward.needs_audio:
        if codec is None:
            raise ValueError("a reward needs audio but no codec was given to decode the speech units")
        for c in completions:
            c.audio, c.sample_rate = codec.decode(c.units), int(codec.sample_rate)
    result = reward.score([examples[i] for i in prompt_index], completions)
    n = max(1, len(completions))
    for name, failed in result.failures_by_name.items():
        if failed / n > max_failure_share:
            raise JudgeFailure(f"reward {name!r}: {failed} of {n} calls failed this step (more than "
                               f"train.max_judge_failure_share={max_failure_share}); check the judge's endpoint, "
                               "key and whether it accepts audio, or raise the share")
    return result


def collect(model, examples: list, cfg: TrainConfig, reward: CompositeReward, codec, seed: int) -> ScoredRollout:
    """Generate G responses per prompt in one batched call, then score them."""
    text, speech = samplings(cfg)
    t0 = time.perf_counter()
    rollout = model.generate(examples, num_samples=cfg.group_size, text_sampling=text, speech_sampling=speech,
                             max_new_tokens=cfg.max_new_tokens, seed=seed)
    t1 = time.perf_counter()
    result = score_completions(reward, examples, rollout.texts, rollout.units, rollout.prompt_index, codec,
                               cfg.max_judge_failure_share)
    t2 = time.perf_counter()
    prompts, responses = rollout_rows(rollout.batch)
    return ScoredRollout(examples, prompts, responses, result, cfg.group_size,
                         {"time_generate": t1 - t0, "time_reward": t2 - t1})


def anchor_rows(model, examples: Sequence) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Prompt ids and target-response ids (laid out exactly as the model generates them) of the anchor."""
    return ([model.encode_prompt(e) for e in examples],
            [model.encode_response(e.target_text, e.target_units) for e in examples])


def channel_mask(batch: TokenBatch, which: str) -> Tensor:
    """The response mask restricted to a channel: all | text | speech."""
    return {"all": batch.response_mask, "text": batch.text_mask, "speech": batch.speech_mask}[which]


def token_stats(batch: TokenBatch, entropy: Tensor | None) -> dict[str, float]:
    """Mean per-channel entropy over tokens and mean per-channel length per response of a batch."""
    out = {"len_text": float(batch.text_mask.sum(1).float().mean()),
           "len_speech": float(batch.speech_mask.sum(1).float().mean())}
    if entropy is not None:
        ent = entropy.detach().float()
        for ch, m in (("text", batch.text_mask), ("speech", batch.speech_mask)):
            m = m.to(ent.device)
            out[f"entropy_{ch}"] = float(ent[m].mean()) if m.any() else float("nan")
    return out


@dataclass
class HybridBatch:
    """The fused forward's inputs: RL rows first, then anchor rows, in one TokenBatch."""

    batch: TokenBatch
    rl_rows: int
    advantages: Tensor | None       # (B,) or (B, N) for routed rewards
    ref_logp: Tensor | None = None  # (B, N) reference log-probs of the RL rows
    old_logp: Tensor | None = None  # (B, N) log-probs at the first update (PPO clipping)


def build_hybrid_batch(model, scored: ScoredRollout | None, anchor_examples: Sequence, cfg: TrainConfig) -> HybridBatch:
    """Concatenate the RL responses and the anchor targets into one batch and compute the advantages."""
    prompts, responses = ([], []) if scored is None else (list(scored.prompts), list(scored.responses))
    rl_rows = len(prompts)
    if anchor_examples:
        ap, ar = anchor_rows(model, anchor_examples)
        prompts, responses = prompts + ap, responses + ar
    batch = model.collate(prompts, responses)
    advantages = None
    if scored is not None:
        if cfg.routed:
            rl = slice_rows(batch, slice(0, rl_rows))
            advantages = routed_advantages(
                torch.as_tensor(scored.rewards.semantic.reshape(-1, cfg.group_size)),
                torch.as_tensor(scored.rewards.acoustic.reshape(-1, cfg.group_size)),
                rl.text_mask, rl.speech_mask, semantic_weight=cfg.semantic_weight,
                acoustic_weight=cfg.acoustic_weight)
        else:
            advantages = group_advantages(torch.as_tensor(scored.group_rewards)).reshape(-1)
    return HybridBatch(batch, rl_rows, advantages)


def reference_logprobs(model, batch: TokenBatch) -> Tensor:
    """Log-probs of ``batch`` under the reference policy (adapters disabled under LoRA, else the frozen copy)."""
    with torch.no_grad(), model.reference():
        return model.token_logprobs(batch)[0].detach()


def hybrid_loss(model, hb: HybridBatch, cfg: TrainConfig, lam: float, *, use_anchor: bool,
                channel_grads: bool = False) -> tuple[Tensor | None, dict[str, float], dict[str, Tensor]]:
    """One fused forward: L = lam * L_RL + (1 - lam) * L_SFT (or either term alone).

    Returns (loss or None when there is nothing to train on, stats, per-channel RL losses when
    ``channel_grads``). A micro-batch whose RL mask selects no token in any row is skipped for the RL term
    and counted in ``rows_skipped``, never widened."""
    batch, B = hb.batch, hb.rl_rows
    logp, entropy = model.token_logprobs(batch, with_entropy=True)     # (B + A, N)
    dev = logp.device
    stats: dict[str, float] = {}
    parts: dict[str, Tensor] = {}
    loss_rl = loss_anchor = None
    if B:
        rl = slice_rows(batch, slice(0, B)).to(dev)
        stats.update(token_stats(rl, entropy[:B]))
        lp = logp[:B]
        if hb.old_logp is None and cfg.updates_per_rollout > 1:
            hb.old_logp = lp.detach()
        mask = channel_mask(rl, cfg.rl_token_type)
        kw = dict(group_size=cfg.group_size, text_mask=rl.text_mask, speech_mask=rl.speech_mask,
                  ref_logp=hb.ref_logp, beta_text=cfg.beta_text, beta_speech=cfg.beta_speech,
                  text_weight=cfg.rl_text_weight, speech_weight=cfg.rl_speech_weight,
                  old_logp=hb.old_logp if cfg.updates_per_rollout > 1 else None,
                  clip_eps=cfg.clip_eps if cfg.updates_per_rollout > 1 else None)
        adv = hb.advantages.to(dev)
        if mask.any():
            loss_rl, rl_stats = rl_loss(lp, adv, mask, **kw)
            stats.update({k: v for k, v in rl_stats.items() if k in ("kl_text", "kl_speech", "rows_skipped",
                                                                   "clip_frac")})
        else:
            stats["rows_skipped"] = float(B)
        if channel_grads:
            for ch, m in (("text", rl.text_mask & mask), ("speech", rl.speech_mask & mask)):
                if m.any():
                    parts[ch] = rl_loss(lp, adv, m, **kw)[0]
    if use_anchor and len(batch.input_ids) > B:
        an = slice_rows(batch, slice(B, None)).to(dev)
        mask = channel_mask(an, cfg.anchor_token_type)
        loss_anchor = anchor_loss(logp[B:], mask, text_mask=an.text_mask, speech_mask=an.speech_mask,
                                  text_weight=cfg.anchor_text_weight, speech_weight=cfg.anchor_speech_weight)
        if not B:
            stats.update(token_stats(an, entropy[B:]))
    loss = combine(loss_rl, loss_anchor, lam)
    stats["loss_rl"] = float(loss_rl.detach()) if loss_rl is not None else float("nan")
    stats["loss_anchor"] = float(loss_anchor.detach()) if loss_anchor is not None else float("nan")
    stats["train_tokens"] = float(batch.attention_mask.sum())
    return loss, stats, parts


def combine(pref: Tensor | None, anchor: Tensor | None, lam: float) -> Tensor | None:
    """lam * L_pref + (1 - lam) * L_SFT. Without an anchor the preference term stands alone; a micro-batch whose
    preference term was skipped keeps only (1 - lam) * L_SFT; None when there is nothing to train on."""
    if anchor is None:
        return pref
    return mixed_loss(pref, anchor, lam) if pref is not None else (1.0 - lam) * anchor
