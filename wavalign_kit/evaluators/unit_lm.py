"""Unit language model: a small causal GRU over units whose likelihood is a naturalness proxy (cf. a MOS predictor)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavalign_kit.evaluators.base import UnitEvaluator, batched
from wavalign_kit.evaluators.encoder import check_units, on_nonempty, pad_units


class UnitLMNet(nn.Module):
    """Causal GRU: inputs [BOS, u_1 .. u_{T-1}] -> logits for u_1 .. u_T, (B, T, num_units)."""

    def __init__(self, num_units: int, embed_dim: int, hidden: int, layers: int):
        super().__init__()
        self.bos = num_units
        self.embed = nn.Embedding(num_units + 1, embed_dim)
        self.gru = nn.GRU(embed_dim, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_units)

    def forward(self, units: Tensor) -> Tensor:
        inputs = torch.cat([torch.full_like(units[:, :1], self.bos), units[:, :-1]], dim=1)   # (B, T)
        out, _ = self.gru(self.embed(inputs))                                                # (B, T, H)
        return self.head(out)                                                                # (B, T, U)


class UnitLM(UnitEvaluator):
    """score(units) = mean over the T units of log p(u_t | u_<t) in nats (higher = more like real speech)."""

    kind = "unit_lm"

    @staticmethod
    def build_net(spec: dict[str, Any]) -> nn.Module:
        return UnitLMNet(spec["num_units"], spec["embed_dim"], spec["hidden"], spec["layers"])

    def _token_logp(self, units_list: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
        units, lengths = pad_units(units_list, 0, self.device)
        logp = F.log_softmax(self.net(units), dim=-1).gather(-1, units.unsqueeze(-1)).squeeze(-1)  # (B, T)
        mask = torch.arange(units.shape[1], device=units.device)[None, :] < lengths[:, None]         # (B, T)
        return logp, mask

    def loss(self, units_list: Sequence[np.ndarray], targets: Sequence[Any] | None = None) -> Tensor:
        """Mean negative log-likelihood per unit over the batch."""
        logp, mask = self._token_logp(units_list)
        return -(logp * mask).sum() / mask.sum()

    def score(self, units_list: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """(N,) mean log-likelihood per unit of each sequence, in nats; an empty sequence scores -log(num_units),
        the likelihood of a guess (no speech is no more natural than noise)."""
        units_list = check_units(units_list, self.num_units)
        rows = on_nonempty(units_list, lambda units: self._score(units, batch_size), -float(np.log(self.num_units)))
        return np.asarray(rows, dtype=np.float32)

    @torch.no_grad()
    def _score(self, units_list: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
        self.net.eval()
        scores = []
        for idx in batched(len(units_list), batch_size):
            logp, mask = self._token_logp([units_list[i] for i in idx])
            scores.append(((logp * mask).sum(1) / mask.sum(1)).cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0, np.float32)
