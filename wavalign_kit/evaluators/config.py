"""EvaluatorConfig: sizes, encoders and schedules of an evaluator set, its named scales, and the training device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

Scale = Literal["smoke", "cpu", "gpu"]


@dataclass
class EvaluatorConfig:
    """Sizes, encoders and schedules of the three evaluators. The defaults are the `cpu` scale; see `preset`.

    Each model trains for at most its ``*_epochs`` (the cosine schedule's length) and stops early when its
    figure on a development slice of the training utterances (``dev_utterances``, never trained on, apart
    from the reported held-out set) has not improved for ``patience`` checks (``dev_checks`` evenly spaced
    checks over the planned schedule; none stops it in the first half, at a high learning rate or while
    CTC may still sit on its all-blank plateau); the best-scoring weights are kept.
    """

    scale: Scale = "cpu"
    embed_dim: int = 64
    hidden: int = 128                 # conv channels and GRU width per direction; unit-LM GRU width
    layers: int = 3                   # residual conv layers of the recogniser and style encoders
    dropout: float = 0.1
    # The recogniser's encoder: "gru" = convolutions + bidirectional GRU at the unit rate; "half_rate_gru" = the
    # same after a strided convolution that halves the frame rate (about 30 % cheaper; the examiners' encoder).
    recognizer_encoder: Literal["gru", "half_rate_gru"] = "gru"
    recognizer_tokens: Literal["char", "word"] = "char"   # CTC over characters (+ lexicon) or words
    # Start the recogniser's unit embeddings from the codec's unit features (its centroids) where the codec has
    # them (SpeechCodec.unit_features): cpu world, 4 epochs, held-out WER 0.151 -> 0.098.
    recognizer_unit_init: bool = True
    # cpu world (10500 training utterances, batch 32), embeddings started from the codec's unit features: 5 epochs
    # (1645 updates) 8.2 % held-out WER; 4 epochs 9.8 %, 3 epochs 12.2 %. Without that start 7 epochs gave 9.0 %,
    # 4 epochs 15.1 % (benchmarks/sweeps/recognizer).
    recognizer_epochs: float = 5
    style_epochs: float = 1
    unit_lm_epochs: float = 2
    batch_size: int = 32
    lr: float = 4e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    dev_utterances: int = 300         # taken from the training utterances for early stopping
    dev_checks: int = 16              # development checks over each model's planned schedule
    patience: int = 3                 # checks without improvement before a model stops
    seed: int = 0
    num_units: int | None = None      # codec units; None: largest unit seen in the items + 1
    device: str = "auto"              # where the evaluators train: auto (cuda if available, else cpu), cpu, cuda:N

    @classmethod
    def preset(cls, scale: Scale, **overrides: Any) -> EvaluatorConfig:
        """The config of a named scale (smoke: seconds, cpu: minutes on 2 cores, gpu: larger) plus overrides."""
        presets: dict[str, dict[str, Any]] = {
            "smoke": dict(embed_dim=32, hidden=64, layers=2, recognizer_epochs=15, style_epochs=4,
                          unit_lm_epochs=3, batch_size=8, lr=3e-3,
                          dev_utterances=0),   # no early stopping: too few utterances to tell
            "cpu": {},
            "gpu": dict(embed_dim=128, hidden=256, layers=4, recognizer_epochs=20, style_epochs=4,
                        unit_lm_epochs=4, batch_size=64, lr=3e-3),
        }
        if scale not in presets:
            raise ValueError(f"scale={scale!r}: use one of {list(presets)}")
        return cls(scale=scale, **{**presets[scale], **overrides})

    def validate(self) -> EvaluatorConfig:
        """Raise ValueError naming the first unusable field."""
        if self.recognizer_encoder not in ("gru", "half_rate_gru"):
            raise ValueError(f"recognizer_encoder={self.recognizer_encoder!r}: use 'gru' or 'half_rate_gru'")
        if self.recognizer_tokens not in ("char", "word"):
            raise ValueError(f"recognizer_tokens={self.recognizer_tokens!r}: use 'char' or 'word'")
        for name in ("batch_size", "dev_checks", "patience", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        for name in ("recognizer_epochs", "style_epochs", "unit_lm_epochs", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be > 0")
        if self.dev_utterances < 0:
            raise ValueError(f"dev_utterances={self.dev_utterances}: must be >= 0 (0: no early stopping)")
        resolve_device(self.device)
        return self


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else must name a usable torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r}: CUDA is not available here; use auto or cpu")
    return device
