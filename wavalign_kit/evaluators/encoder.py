"""Unit sequences as torch batches, and the convolutional / bidirectional-GRU encoder of the recogniser and style classifier."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_units(units_list: Sequence[np.ndarray], num_units: int, name: str = "units_list") -> list[np.ndarray]:
    """Validate a list of 1-D unit arrays with values in [0, num_units) (empty arrays allowed: no speech)."""
    out = []
    for i, u in enumerate(units_list):
        u = np.asarray(u)
        if u.ndim != 1 or (u.size and not np.issubdtype(u.dtype, np.integer)):
            raise ValueError(f"{name}[{i}]: expected an int array of shape (T,), got {u.dtype} {u.shape}")
        if u.size and (u.min() < 0 or u.max() >= num_units):
            raise ValueError(f"{name}[{i}]: unit values must lie in [0, {num_units}) (the codec the evaluators "
                             f"were trained with), got [{u.min()}, {u.max()}]")
        out.append(u.astype(np.int64))
    return out


def on_nonempty(units_list: Sequence[np.ndarray], compute: Callable[[list[np.ndarray]], Sequence[Any]],
                silence: Any) -> list[Any]:
    """``compute`` on the non-empty sequences, ``silence`` in the rows of empty ones: a response without speech
    (a model that emitted no speech token) is scored as silence, never an error."""
    keep = [i for i, u in enumerate(units_list) if np.size(u)]
    results = list(compute([units_list[i] for i in keep])) if keep else []
    out = [silence] * len(units_list)
    for i, result in zip(keep, results):
        out[i] = result
    return out


def pad_units(units_list: Sequence[np.ndarray], pad_id: int, device: torch.device | str = "cpu"
              ) -> tuple[Tensor, Tensor]:
    """Right-pad to (B, T_max) int64 with `pad_id`; also returns lengths (B,); both on `device`."""
    lengths = torch.tensor([len(u) for u in units_list], dtype=torch.long)
    batch = torch.full((len(units_list), int(lengths.max())), pad_id, dtype=torch.long)
    for i, u in enumerate(units_list):
        batch[i, : len(u)] = torch.from_numpy(np.asarray(u, dtype=np.int64))
    return batch.to(device), lengths.to(device)


def init_unit_embeddings(embedding: nn.Embedding, features: np.ndarray) -> None:
    """Start the unit embeddings (rows 0..num_units-1) from per-unit acoustic ``features`` (num_units, F): their
    standardised principal components, as many as fit (the other columns keep their random init), scaled to
    the unit variance of nn.Embedding's init. On the cpu world this took the recogniser's held-out WER from
    0.151 to 0.098 at the same 1316 updates (benchmarks/sweeps/recognizer)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] > embedding.num_embeddings or not np.isfinite(f).all():
        raise ValueError(f"unit features: expected finite (num_units <= {embedding.num_embeddings}, F), "
                         f"got shape {f.shape}")
    f = (f - f.mean(0)) / (f.std(0) + 1e-8)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    k = min(embedding.embedding_dim, u.shape[1])
    pcs = u[:, :k] * s[:k]
    with torch.no_grad():
        embedding.weight[: len(f), :k] = torch.as_tensor(pcs / (pcs.std() + 1e-12), dtype=embedding.weight.dtype)


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """(B, T, C) -> each row's first lengths[b] frames in reverse order; padding frames stay where they are."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]                                  # (1, T)
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)                  # (B, T)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class UnitEncoder(nn.Module):
    """Unit embeddings -> `layers` residual 1-D convolutions (kernel 5) -> optional bidirectional GRU.

    Input (B, T) unit ids (pad id = num_units) and lengths (B,); output (B, T', out_dim) with
    out_dim = 2 * hidden with the GRU, hidden without, and T' = T, or ceil(T / 2) with `half_rate`: a
    strided convolution after the first residual block halves the frame rate (25 -> 12.5 Hz), so the later
    convolutions and the GRU cost half as much (`frame_step` = 2; see `output_lengths`). The convolutions
    see +-2 frames each; the GRU adds whole-utterance context. Each convolution block and the output are
    layer-normalised: without it CTC training of the recogniser sits on the all-blank plateau (loss ~3.1
    per character) for the whole cpu-scale schedule.
    """

    def __init__(self, num_units: int, embed_dim: int, hidden: int, layers: int, dropout: float, rnn: bool = True,
                 half_rate: bool = False):
        super().__init__()
        self.embed = nn.Embedding(num_units + 1, embed_dim, padding_idx=num_units)
        self.conv_in = nn.Conv1d(embed_dim, hidden, kernel_size=5, padding=2)
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel_size=5, padding=2) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers + 1 + half_rate))
        self.downsample = nn.Conv1d(hidden, hidden, kernel_size=4, stride=2, padding=1) if half_rate else None
        self.frame_step = 2 if half_rate else 1
        # (forward, backward) GRUs over padded batches: the backward one reads each sequence reversed within its
        # length. Same outputs as a packed bidirectional GRU, whose backward pass on a CPU zero-fills a
        # (frames x 3 hidden) gradient at every time step.
        self.gru = nn.ModuleList(nn.GRU(hidden, hidden, batch_first=True) for _ in range(2)) if rnn else None
        self.dropout = nn.Dropout(dropout)
        self.out_dim = 2 * hidden if rnn else hidden
        self.norm_out = nn.LayerNorm(self.out_dim) if rnn else nn.Identity()

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Valid output frames per sequence: ceil(lengths / frame_step)."""
        return (lengths + self.frame_step - 1) // self.frame_step

    def forward(self, units: Tensor, lengths: Tensor) -> Tensor:
        valid = (torch.arange(units.shape[1], device=units.device)[None, :] < lengths[:, None]).unsqueeze(1)
        x = self.dropout(self.embed(units)).transpose(1, 2)                                 # (B, E, T)
        x = self._norm(0, torch.relu(self.conv_in(x)), valid)                                # (B, H, T)
        for i, conv in enumerate(self.convs, start=1):
            x = self._norm(i, x + self.dropout(torch.relu(conv(x))), valid)                  # (B, H, T)
            if i == 1 and self.downsample is not None:
                lengths = self.output_lengths(lengths)
                x = F.pad(x, (0, x.shape[2] % 2))                                            # (B, H, 2 T')
                valid = (torch.arange(x.shape[2] // 2, device=x.device)[None, :] < lengths[:, None]).unsqueeze(1)
                x = self._norm(len(self.norms) - 1, torch.relu(self.downsample(x)), valid)   # (B, H, T')
        x = x.transpose(1, 2)                                                                # (B, T', H)
        if self.gru is None:
            return x
        forward, _ = self.gru[0](x)                                                          # (B, T', H)
        backward, _ = self.gru[1](reverse_within_lengths(x, lengths))                        # (B, T', H)
        out = torch.cat([forward, reverse_within_lengths(backward, lengths)], dim=-1)        # (B, T', 2H)
        return self.norm_out(self.dropout(out))                                              # (B, T', 2H)

    def _norm(self, i: int, x: Tensor, valid: Tensor) -> Tensor:
        """Layer norm over channels of (B, H, T) features, padding frames zeroed."""
        return self.norms[i](x.transpose(1, 2)).transpose(1, 2) * valid
