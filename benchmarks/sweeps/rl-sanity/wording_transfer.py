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


def wording_halves(world) -> rl_sanity.SplitView:
    """The world with the test split's paraphrase-0 items as its ``rl`` split and its paraphrase-1 items as ``test``."""
    items = world.split("test")
    paraphrase = [e.record["template"].split("+")[-1][-1] for e in items]   # "facts/city/test1" -> "1"
    return rl_sanity.SplitView(world, {"rl": [e for e, k in zip(items, paraphrase) if k == "0"],
                                       "test": [e for e, k in zip(items, paraphrase) if k == "1"]})


if __name__ == "__main__":
    raise SystemExit(rl_sanity.main(["--world", str(ROOT / "data" / "cpu" / "world"), *sys.argv[1:]],
                                    wrap_world=wording_halves))
