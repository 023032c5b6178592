"""Sweep training settings and test the paper's claims at each: which budget makes the effects visible?

    python benchmarks/claims_sweep.py --out results/sweeps/claims --grid train.lr=1e-4,3e-4 train.steps=40
    python benchmarks/claims_sweep.py --presets grpo_full grpo_text --seeds 0 1 --grid train.group_size=4,8

For every point of the grid (the product of the ``KEY=V1,V2`` lists, profile keys), each preset is trained from
the profile's base model (``data/<profile>``, built when missing, or ``--world`` / ``--base``) for every seed,
``--workers`` runs at a time; base model and trained models are evaluated on the test split (graded by the
examiners, sampling seed = training seed) and the paired contrasts of `wavalign_kit.claims` are computed.
Writes, under ``--out``: ``<point>/responses.csv`` and ``<point>/contrasts.csv`` per point, and ``sweep.csv``
(every contrast of every point, with the point's settings and its training time), ``means.csv`` (every model's mean
of each metric at each point, base model included) and ``COMMAND`` (how to reproduce the tables). A finished run or evaluation is reused, so an interrupted sweep resumes.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wavalign_kit.claims import claim_verdicts, contrast_table, paper_contrasts  # noqa: E402
from wavalign_kit.config import deep_update, load_profile, parse_overrides  # noqa: E402
from wavalign_kit.evaluation import eval_config, evaluate_seed  # noqa: E402
from wavalign_kit.paths import Workspace  # noqa: E402
from wavalign_kit.train.checkpoint import model_dir  # noqa: E402
from wavalign_kit.workspace import load_model, open_world, prepare_base_model, prepare_world, training_runs  # noqa: E402

PRESETS = ["sft", "grpo_full", "grpo_text", "dpo_full", "dpo_text"]


def grid_points(grid: list[str]) -> list[dict[str, str]]:
    """``["a=1,2", "b=x"]`` -> ``[{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]``."""
    keys, values = [], []
    for item in grid:
        key, _, raw = item.partition("=")
        keys.append(key)
        values.append(raw.split(","))
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def point_name(point: dict[str, str]) -> str:
    return "_".join(f"{k.split('.')[-1]}-{v}" for k, v in point.items()) or "default"


def evaluated(path: Path, make) -> pd.DataFrame:
    """The cached response frame at ``path``, else ``make()`` written there."""
    if path.is_file():
        return pd.read_csv(path)
    frame = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)
    return frame


def model_means(responses: pd.DataFrame) -> pd.DataFrame:
    """Per model: the mean of each claim metric over seeds and items (each metric over the items it applies to)."""
    metrics = sorted({c.metric for c in paper_contrasts()} & set(responses.columns))
    return responses.groupby("model", sort=False)[metrics].mean().reset_index()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--world", default="", help="a built world (default: data/<profile>/world)")
    p.add_argument("--base", default="", help="a base model directory (default: the profile's warm start)")
    p.add_argument("--arch", default="interleaved")
    p.add_argument("--presets", nargs="+", default=PRESETS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2, help="training runs at once (one torch thread each)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="profile keys for every point, "
                   "e.g. eval.num_examples=0 eval.num_samples=2")
    p.add_argument("--grid", nargs="*", default=[], metavar="KEY=V1,V2", help="profile keys to sweep")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    profile = deep_update(load_profile(args.profile), parse_overrides(args.set))
    cache = Workspace.cache(args.profile)
    world = open_world(args.world, profile) if args.world else prepare_world(profile, cache, quiet=False)
    if not args.base:
        prepare_base_model(world, args.arch, profile, cache)
    base_dir = Path(args.base or cache.base_model(args.arch))
    base = load_model(base_dir, profile)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "COMMAND").write_text("python benchmarks/claims_sweep.py " + shlex.join(sys.argv[1:] if argv is None
                                                                                        else argv) + "\n")
    ecfg = eval_config(profile)
    base_frame = evaluated(args.out / "base_responses.csv", lambda: pd.concat(
        [evaluate_seed(base, "base", world, ecfg, s, architecture=args.arch)[1] for s in args.seeds], ignore_index=True))
    tables, means = [], []
    for point in grid_points(args.grid):
        name = point_name(point)
        cfg = deep_update(profile, parse_overrides([f"{k}={v}" for k, v in point.items()]))
        ws = Workspace(args.out / name)
        jobs = [(args.arch, preset, s) for preset in args.presets for s in args.seeds]
        start = time.perf_counter()
        runs = training_runs(cfg, ws, jobs, world=world, bases={args.arch: base_dir}, workers=args.workers)
        seconds = time.perf_counter() - start

        def evaluate_runs(runs=runs, jobs=jobs, cfg=cfg):
            frames = [evaluate_seed(load_model(model_dir(run), cfg), preset, world, ecfg, s, architecture=args.arch)[1]
                      for run, (_, preset, s) in zip(runs, jobs)]
            return pd.concat(frames, ignore_index=True)

        frame = pd.concat([base_frame, evaluated(ws.root / "responses.csv", evaluate_runs)], ignore_index=True)
        table = contrast_table(frame)
        table.to_csv(ws.root / "contrasts.csv", index=False)
        print(f"== {name}: {len(jobs)} runs in {seconds:.0f} s")
        print(claim_verdicts(table).to_string(index=False))
        tables.append(table.assign(**point, point=name, train_seconds=round(seconds)))
        means.append(model_means(frame).assign(**point, point=name))
    pd.concat(tables, ignore_index=True).to_csv(args.out / "sweep.csv", index=False)
    pd.concat(means, ignore_index=True).to_csv(args.out / "means.csv", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
