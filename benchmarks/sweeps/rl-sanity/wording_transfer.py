"""Diagnostic, not an evaluation: does RL transfer between the two held-out wordings of the test split?

RL (rl_sanity's settings) trains on the test items whose question template is held-out paraphrase 0 and is
measured on those of paraphrase 1; both halves share held-out content (the same new operand pairs and facts in
context), so a gain here mixes wording and content transfer. It trains on test items, so its figures never stand
for held-out accuracy; they say how near RL prompts must be to the items they should improve.

    python benchmarks/sweeps/rl-sanity/wording_transfer.py --threads 1 [--save DIR] [KEY=VALUE ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import rl_sanity  # noqa: E402

from wavalign_kit.world import load_world  # noqa: E402


class WordingHalves:
    """The world with the test split's paraphrase-0 items as its ``rl`` split and its paraphrase-1 items as ``test``."""

    def __init__(self, world):
        self.world = world
        items = world.split("test")
        paraphrase = [e.record["template"].split("+")[-1][-1] for e in items]   # "facts/city/test1" -> "1"
        self.halves = {"rl": [e for e, k in zip(items, paraphrase) if k == "0"],
                       "test": [e for e, k in zip(items, paraphrase) if k == "1"]}

    def split(self, name: str):
        return self.halves[name] if name in self.halves else self.world.split(name)

    def __getattr__(self, attr: str):
        return getattr(self.world, attr)


if __name__ == "__main__":
    rl_sanity.load_world = lambda path: WordingHalves(load_world(path))
    raise SystemExit(rl_sanity.main(["--world", str(ROOT / "data" / "cpu" / "world"), *sys.argv[1:]]))
