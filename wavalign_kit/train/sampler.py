"""Prompt sampler with a checkpointable position: seeded shuffles per epoch, the same order on every process."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PromptSampler:
    """Draws ``count`` example indices at a time from ``size`` examples, epoch after epoch, each epoch a fresh
    seeded permutation. ``state()`` / ``load_state()`` carry (epoch, offset) through checkpoints, so a resumed
    run sees exactly the prompts the uninterrupted run would have seen."""

    size: int
    seed: int
    epoch: int = 0
    offset: int = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("PromptSampler: the training split is empty; build the world or pick another split")
        self._order = self._permutation(self.epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def take(self, count: int) -> list[int]:
        """The next ``count`` indices (wrapping into the next epoch)."""
        out: list[int] = []
        while len(out) < count:
            if self.offset == self.size:
                self.epoch, self.offset = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            n = min(count - len(out), self.size - self.offset)
            out += self._order[self.offset: self.offset + n].tolist()
            self.offset += n
        return out

    def micro_batches(self, examples: list, prompts: int, count: int, rank: int = 0, processes: int = 1) -> list[list]:
        """``count`` micro-batches of ``prompts`` examples for process ``rank`` (every process draws the same global
        order and takes its own slice)."""
        return [[examples[i] for i in self.take(prompts * processes)[rank * prompts: (rank + 1) * prompts]]
                for _ in range(count)]

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._order = self._permutation(self.epoch)
