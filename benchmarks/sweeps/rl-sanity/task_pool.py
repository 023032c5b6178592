"""Diagnostic: RL on the rl split's items of some task families only; does a skill read from the prompt transfer?

The RL pool is the rl split's items whose template names one of ``TASKS`` (comma-separated substrings of the
template id, e.g. ``context`` also takes style requests and instructions built on context questions); everything
else is `rl_sanity` unchanged, so the valid and test figures are held-out ones.

    python benchmarks/sweeps/rl-sanity/task_pool.py context [rl_sanity args and KEY=VALUE overrides]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[3]), str(Path(__file__).resolve().parents[2])]

import rl_sanity  # noqa: E402


def main(argv: list[str]) -> int:
    keys = argv[0].split(",")

    def task_pool(world):
        pool = [e for e in world.split("rl") if any(k in e.record["template"] for k in keys)]
        print(f"RL pool: {len(pool)} of the rl split's items, templates with {keys}", flush=True)
        return rl_sanity.SplitView(world, {"rl": pool})

    return rl_sanity.main(argv[1:], wrap_world=task_pool)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
