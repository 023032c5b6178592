"""The common shape of the kit's evaluators: a torch network over unit sequences, a JSON spec, save/load."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn


class UnitEvaluator(ABC):
    """A network rebuilt from `spec` (JSON-able dict); saved as `spec.json` + `model.pt` (state dict)."""

    kind: ClassVar[str]

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.num_units: int = int(spec["num_units"])
        self.net = self.build_net(spec)
        self.net.eval()

    @property
    def device(self) -> torch.device:
        """Where the network's weights are (inputs are moved there)."""
        return next(self.net.parameters()).device

    @staticmethod
    @abstractmethod
    def build_net(spec: dict[str, Any]) -> nn.Module:
        """The network described by `spec`, freshly initialised."""

    @abstractmethod
    def loss(self, units_list: Sequence[np.ndarray], targets: Sequence[Any]) -> Tensor:
        """Training loss of one batch (scalar, mean over the batch)."""

    def save(self, dir: str | Path) -> None:
        d = Path(dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "spec.json").write_text(json.dumps({"kind": self.kind, **self.spec}, indent=1))
        torch.save({k: v.cpu() for k, v in self.net.state_dict().items()}, d / "model.pt")

    @classmethod
    def load(cls, dir: str | Path):
        d = Path(dir)
        for name in ("spec.json", "model.pt"):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name} is missing: {d} is not a saved {cls.__name__} "
                                        "(train it with train_evaluators)")
        spec = json.loads((d / "spec.json").read_text())
        if spec.pop("kind", None) != cls.kind:
            raise ValueError(f"{d / 'spec.json'}: field 'kind' is not {cls.kind!r}; wrong directory for {cls.__name__}")
        model = cls(spec)
        model.net.load_state_dict(torch.load(d / "model.pt", map_location="cpu", weights_only=True))
        return model


def batched(n: int, batch_size: int) -> list[range]:
    """Consecutive index ranges covering range(n)."""
    return [range(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]
