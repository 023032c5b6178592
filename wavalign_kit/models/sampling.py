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
    top-k / top-p sort (callers pass it when no row truncates). Sampling inverts the CDF at one uniform draw
    per row from ``generator`` (the distribution of ``torch.multinomial``, about 10x cheaper on CPU).
    Rows with a single allowed token (forced slots) always return it.
    Returns (B,) int64.
    """
    logits = logits.float().masked_fill(~allowed, float("-inf"))                   # (B, V)
    greedy = logits.argmax(-1)                                                      # (B,)
    scaled = logits / temperature.clamp(min=1e-5).unsqueeze(-1)                     # (B, V)
    order = None
    if filtered:
        scaled, order = scaled.sort(-1, descending=True)                            # (B, V) sorted
        ranks = torch.arange(logits.shape[-1], device=logits.device).unsqueeze(0)   # (1, V)
        drop = (top_k.unsqueeze(-1) > 0) & (ranks >= top_k.unsqueeze(-1))           # top-k
        probs = scaled.softmax(-1)
        drop |= (probs.cumsum(-1) - probs) >= top_p.unsqueeze(-1)                   # nucleus: mass above; keeps rank 0
        scaled = scaled.masked_fill(drop, float("-inf"))
    probs = scaled.softmax(-1)                                                      # (B, V)
    cdf = probs.cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    choice = torch.searchsorted(cdf, u, right=True).clamp(max=cdf.shape[-1] - 1)  # (B, 1): first cdf > u
    choice = torch.where(probs.gather(-1, choice) > 0, choice, probs.argmax(-1, keepdim=True))  # u rounded up
    sampled = (order.gather(-1, choice) if order is not None else choice).squeeze(-1)
    return torch.where(temperature <= 0, greedy, sampled)


def gather_logprobs(logits: Tensor, tokens: Tensor, with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """Full-vocabulary log p(token) (fp32) of raw logits (..., V) at ``tokens`` (...), and optionally the entropy."""
    logp_all = logits.float().log_softmax(-1)
    logp = logp_all.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).nansum(-1) if with_entropy else None
    return logp, entropy
