"""Speaking-style classifier over units (the embedded world's analogue of emotion2vec)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wavalign_kit.evaluators.base import UnitEvaluator, batched
from wavalign_kit.evaluators.encoder import UnitEncoder, check_units, on_nonempty, pad_units


class StyleNet(nn.Module):
    """UnitEncoder (convolutions only) -> masked mean and max pooling over time -> style logits (B, S)."""

    def __init__(self, num_units: int, num_styles: int, embed_dim: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.encoder = UnitEncoder(num_units, embed_dim, hidden, layers, dropout, rnn=False)
        self.head = nn.Linear(2 * self.encoder.out_dim, num_styles)

    def forward(self, units: Tensor, lengths: Tensor) -> Tensor:
        h = self.encoder(units, lengths)                                              # (B, T, H)
        valid = (torch.arange(units.shape[1], device=units.device)[None, :] < lengths[:, None]).unsqueeze(-1)
        mean = (h * valid).sum(1) / lengths[:, None].clamp(min=1)                     # (B, H)
        top = h.masked_fill(~valid, float("-inf")).amax(1)                            # (B, H)
        return self.head(torch.cat([mean, top], dim=-1))                              # (B, S)


class StyleClassifier(UnitEvaluator):
    """Units -> probabilities over `styles` (the style names seen in training, sorted)."""

    kind = "style"

    def __init__(self, spec: dict[str, Any]):
        super().__init__(spec)
        self.styles: list[str] = list(spec["styles"])
        self.style_ids = {s: i for i, s in enumerate(self.styles)}

    @staticmethod
    def build_net(spec: dict[str, Any]) -> nn.Module:
        return StyleNet(spec["num_units"], len(spec["styles"]), spec["embed_dim"], spec["hidden"],
                        spec["layers"], spec["dropout"])

    def loss(self, units_list: Sequence[np.ndarray], targets: Sequence[str]) -> Tensor:
        """Mean cross-entropy per utterance."""
        units, lengths = pad_units(units_list, self.num_units, self.device)
        labels = torch.tensor([self.style_ids[s] for s in targets], dtype=torch.long, device=self.device)
        return F.cross_entropy(self.net(units, lengths), labels)

    def predict_proba(self, units_list: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """(N, S) style probabilities, columns in the order of `styles` (uniform for an empty sequence)."""
        units_list = check_units(units_list, self.num_units)
        uniform = np.full(len(self.styles), 1.0 / len(self.styles), np.float32)
        rows = on_nonempty(units_list, lambda units: self._predict_proba(units, batch_size), uniform)
        return np.stack(rows) if rows else np.zeros((0, len(self.styles)), np.float32)

    @torch.no_grad()
    def _predict_proba(self, units_list: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
        self.net.eval()
        probs = []
        for idx in batched(len(units_list), batch_size):
            units, lengths = pad_units([units_list[i] for i in idx], self.num_units, self.device)
            probs.append(torch.softmax(self.net(units, lengths), dim=-1).cpu().numpy())
        return np.concatenate(probs) if probs else np.zeros((0, len(self.styles)), np.float32)

    def predict(self, units_list: Sequence[np.ndarray]) -> list[str]:
        """The most probable style of each unit sequence."""
        return [self.styles[k] for k in self.predict_proba(units_list).argmax(axis=1)]
