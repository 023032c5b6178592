"""Paired text-accuracy differences between base models on one world's test split (issue 13.2).

    python benchmarks/sweeps/parallel-base/paired_accuracy.py --world data/cpu/world \
        noforced=data/ws/parallel-800-noforced filler=results/cpu-full/models/base-parallel \
        interleaved=data/cpu/models/base-interleaved

Each model's text channel is sampled as ``base_difficulty.py`` samples it (temperature 0.7, top-p 0.9, the same
seeds); the first model is compared with each of the others, paired by item and sampling seed, with the kit's
bootstrap 95 % interval.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from base_difficulty import text_accuracy  # noqa: E402

from wavalign_kit.intervals import paired_difference  # noqa: E402
from wavalign_kit.models import SpokenDialogueModel  # noqa: E402
from wavalign_kit.world import has_kit_check, load_world  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("models", nargs="+", metavar="NAME=DIR", help="the first is compared with each of the others")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    examples = [ex for ex in load_world(a.world).split("test") if has_kit_check(ex)]
    ok = {}
    for spec in a.models:
        name, path = spec.split("=", 1)
        model = SpokenDialogueModel.load(path)
        model.model.eval()
        with torch.no_grad():
            ok[name] = np.stack([text_accuracy(model, examples, s, batch=50, max_new_tokens=64, temperature=0.7,
                                               top_p=0.9) for s in a.seeds])         # (seeds, items) 1/0
        print(f"{name}: test accuracy {ok[name].mean():.3f}")
    first, *others = ok
    for other in others:
        g = paired_difference(ok[first], ok[other])
        print(f"{first} - {other}: {g.mean:+.3f} [95 % CI {g.ci_low:+.3f}, {g.ci_high:+.3f}] over {g.n} cells")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
