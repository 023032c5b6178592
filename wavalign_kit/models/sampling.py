"""Per-row token sampling for rollouts: channel masks, temperature, top-k and nucleus (top-p) filtering."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Sampling:
    """Sampling settings of one channel; ``temperature == 0`` means greedy decoding."""

    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"Sampling.temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"Sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"Sampling.top_k must be >= 0 (0 = off), got {self.top_k}")

    @property
    def filters(self) -> bool:
        """True when this channel samples from a truncated distribution (top-k or top-p)."""
        return self.temperature > 0 and (self.top_p < 1.0 or self.top_k > 0)


def channel_settings(text: Sampling, speech: Sampling, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(temperature, top_p, top_k) tensors of shape (2,): index 0 = text slot, 1 = speech slot."""
    return (torch.tensor([text.temperature, speech.temperature], device=device),
            torch.tensor([text.top_p, speech.top_p], device=device),
            torch.tensor([text.top_k, speech.top_k], device=device))


def row_settings(is_speech: Tensor, settings: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row (temperature, top_p, top_k) for rows whose current slot is speech (True) or text."""
    idx = is_speech.long()
    return settings[0][idx], settings[1][idx], settings[2][idx]


def sample_tokens(
    logits: Tensor,
    allowed: Tensor,
    temperature: Tensor,
    top_p: Tensor,
    top_k: Tensor,
    generator: torch.Generator | None = None,
    *,
    filtered: bool = True,
) -> Tensor:
    """Sample one token per row from ``logits`` (B, V) restricted to ``allowed`` (B, V) bool.

    Each row has its own temperature (0 = argmax), top-k (0 = off) and top-p; ``filtered=False`` skips the
    top-k / top-p truncation (callers pass it when no row truncates). Draws invert the CDF at uniforms from
    ``generator`` (the distribution of ``torch.multinomial``, about 10x cheaper on CPU). Rows with a single
    allowed token (forced slots) always return it. Returns (B,) int64.
    """
    logits = logits.float().masked_fill(~allowed, float("-inf"))                   # (B, V)
    greedy = logits.argmax(-1)                                                      # (B,)
    probs = (logits / temperature.clamp(min=1e-5).unsqueeze(-1)).softmax(-1)        # (B, V)
    if not filtered:
        sampled = inverse_cdf(probs, torch.rand(len(probs), 1, generator=generator, device=probs.device))[:, 0]
    elif probs.device.type == "cpu":   # torch's CPU sort costs more than a decode step's sampling otherwise
        sampled = truncated_by_rejection(probs, top_p, top_k, generator)
    else:
        sampled = truncated_by_sort(probs, top_p, top_k, generator)
    return torch.where(temperature <= 0, greedy, sampled)


def inverse_cdf(probs: Tensor, u: Tensor) -> Tensor:
    """(B, K) token indices drawn from unnormalised ``probs`` (B, V) at uniforms ``u`` (B, K) in [0, 1)."""
    cdf = probs.cumsum(-1)                                                          # (B, V)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp(max=cdf.shape[-1] - 1)  # first cdf > u
    return torch.where(probs.gather(-1, idx) > 0, idx, probs.argmax(-1, keepdim=True))    # u rounded up to 1


def truncated_by_sort(probs: Tensor, top_p: Tensor, top_k: Tensor, generator: torch.Generator | None) -> Tensor:
    """(B,) draws from ``probs`` (B, V) kept to each row's top-k tokens and its nucleus (the tokens whose
    higher-ranked mass is below top_p; the first always stays), by sorting."""
    srt, order = probs.sort(-1, descending=True)                                    # (B, V)
    ranks = torch.arange(probs.shape[-1], device=probs.device).unsqueeze(0)         # (1, V)
    drop = (top_k.unsqueeze(-1) > 0) & (ranks >= top_k.unsqueeze(-1))               # top-k
    drop |= (srt.cumsum(-1) - srt) >= top_p.unsqueeze(-1)                           # nucleus: mass above
    u = torch.rand(len(probs), 1, generator=generator, device=probs.device)
    return order.gather(-1, inverse_cdf(srt.masked_fill(drop, 0.0), u))[:, 0]


def truncated_by_rejection(probs: Tensor, top_p: Tensor, top_k: Tensor, generator: torch.Generator | None,
                           draws: int = 4) -> Tensor:
    """The distribution of :func:`truncated_by_sort` without sorting: ``draws`` candidates per row from the
    untruncated ``probs``, the first inside the row's top-k and nucleus wins (accepted draws follow p restricted
    to that set); rows whose candidates all fell outside (chance (1 - nucleus mass) ** draws) are drawn by
    sorting. Tokens tied with the last one inside stay inside."""
    cand = inverse_cdf(probs, torch.rand(len(probs), draws, generator=generator, device=probs.device))  # (B, K)
    above = probs.unsqueeze(1) > probs.gather(-1, cand).unsqueeze(-1)               # (B, K, V) ranked higher
    inside = (probs.unsqueeze(1) * above).sum(-1) < top_p.unsqueeze(-1)             # nucleus
    inside &= (top_k.unsqueeze(-1) <= 0) | (above.sum(-1) < top_k.unsqueeze(-1))    # top-k
    sampled = cand.gather(-1, inside.int().argmax(-1, keepdim=True))[:, 0]          # first accepted candidate
    missed = ~inside.any(-1)
    if missed.any():                                                                # CPU: no device sync
        sampled[missed] = truncated_by_sort(probs[missed], top_p[missed], top_k[missed], generator)
    return sampled


def gather_logprobs(logits: Tensor, tokens: Tensor, with_entropy: bool = False,
                    chunk_elements: int = 1 << 24) -> tuple[Tensor, Tensor | None]:
    """log p(token) of raw logits (..., V) at ``tokens`` (...), in fp32, and the entropy when asked.

    Selective log-softmax: the token's logit minus the logsumexp over the vocabulary, over chunks of about
    ``chunk_elements`` logits, so no full-vocabulary log-softmax is ever built (a 155k vocabulary made that
    gigabytes per micro-batch); the logsumexp runs in the logits' dtype with fp32 accumulation. The entropy
    (logsumexp - sum_v p_v logit_v) is computed without gradient, only when asked."""
    V = logits.shape[-1]
    flat, tok = logits.reshape(-1, V), tokens.reshape(-1, 1)                       # (R, V), (R, 1)
    step = max(1, chunk_elements // V)
    logp, entropy = [], []
    for i in range(0, flat.shape[0], step):
        chunk = flat[i: i + step]
        lse = torch.logsumexp(chunk, dim=-1).float()                                 # (r,)
        logp.append(chunk.gather(-1, tok[i: i + step]).squeeze(-1).float() - lse)
        if with_entropy:
            with torch.no_grad():
                c, p = chunk.detach().float(), chunk.detach().float().softmax(-1)
                entropy.append(lse.detach() - torch.where(p > 0, p * c, torch.zeros((), device=c.device)).sum(-1))
    shape = tokens.shape
    return torch.cat(logp).reshape(shape), (torch.cat(entropy).reshape(shape) if with_entropy else None)
