"""RL sanity check: does text-only GRPO with a verifiable reward raise held-out accuracy on the cpu world?

    python benchmarks/rl_sanity.py                       # the cpu world and base model of data/cpu (built if missing)
    python benchmarks/rl_sanity.py steps=80 lr=3e-5      # any train key=value override

From the warm-started base model: held-out ``iq_text`` (and ``iq_unseen``) on the test split, graded by the
examiners, before and after ``grpo_text`` with the reward ``text_correct`` on the world's ``rl`` prompts (which the
warm start never saw); the gain with its 95 % bootstrap interval, paired by item and sampling seed. Prints the
training reward's trajectory and the wall-clock time of each phase. The world and base model are cached in
``data/<profile>`` (first run: add their build time).
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wavalign_kit.config import load_profile, load_yaml, parse_overrides  # noqa: E402
from wavalign_kit.evaluation import EvalConfig, evaluate_seed  # noqa: E402
from wavalign_kit.intervals import paired_difference  # noqa: E402
from wavalign_kit.paths import Workspace  # noqa: E402
from wavalign_kit.results import cell_matrix  # noqa: E402
from wavalign_kit.train.config import preset_path, resolve_config  # noqa: E402
from wavalign_kit.train.metrics_log import read_metrics  # noqa: E402
from wavalign_kit.train.run import train  # noqa: E402
from wavalign_kit.workspace import load_base_model, prepare_base_model, prepare_world  # noqa: E402
from wavalign_kit.world import load_world  # noqa: E402

SANITY = {"reward": "text_correct", "split": "rl", "steps": 60, "prompts_per_step": 8, "group_size": 8,
          "lr": 2e-5, "warmup_steps": 5, "beta_text": 0.01, "beta_speech": 0.01, "temperature": 1.0,
          "save_every": 1000, "progress": False}


class SplitView:
    """The world with another split standing in for ``test`` (to measure learning on the RL prompts themselves)."""

    def __init__(self, world, split: str):
        self.world, self.name = world, split

    def split(self, name: str):
        return self.world.split(self.name if name == "test" else name)

    def __getattr__(self, attr: str):
        return getattr(self.world, attr)


def evaluate_all(model, name: str, world, cfg: EvalConfig, seeds: list[int]) -> pd.DataFrame:
    return pd.concat([evaluate_seed(model, name, world, cfg, s)[1] for s in seeds], ignore_index=True)


def report_gain(label: str, before: pd.DataFrame, after: pd.DataFrame, metric: str) -> None:
    a = cell_matrix(after, metric)
    b = cell_matrix(before, metric).reindex_like(a)
    gain = paired_difference(a.to_numpy(), b.to_numpy())
    print(f"{label:9s} {metric:10s} base {np.nanmean(b.to_numpy()):.3f} -> after {np.nanmean(a.to_numpy()):.3f}: "
          f"gain {gain.mean:+.3f} [95 % CI {gain.ci_low:+.3f}, {gain.ci_high:+.3f}] over {gain.n} cells"
          + ("  (excludes 0)" if gain.excludes_zero else "  (includes 0)"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--world", default="", help="a built world (default: the profile's, data/<profile>/world)")
    p.add_argument("--base", default="", help="a base model directory (default: the profile's warm start)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampling seeds of the evaluation")
    p.add_argument("--samples", type=int, default=2, help="responses per test item and seed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="train keys over the sanity defaults")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    profile = load_profile(args.profile)
    ws = Workspace.cache(args.profile)
    t0 = time.perf_counter()
    world = load_world(args.world) if args.world else prepare_world(profile, ws, quiet=False)
    if not args.base:
        prepare_base_model(world, "interleaved", profile, ws)
    base = load_base_model(profile, "interleaved", ws, args.base)
    t_setup = time.perf_counter() - t0
    cfg, _ = resolve_config(profile, load_yaml(preset_path("grpo_text")),
                            {**SANITY, **parse_overrides(args.overrides), "arch": "interleaved"})
    ecfg = EvalConfig(num_examples=0, num_samples=args.samples, temperature=0.7, top_p=0.9)
    t0 = time.perf_counter()
    before = evaluate_all(base, "base", world, ecfg, args.seeds)
    t_eval = time.perf_counter() - t0
    on_rl = SplitView(world, cfg.split)
    before_rl = evaluate_all(base, "base", on_rl, ecfg, args.seeds[:1])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as run:
        model = copy.deepcopy(base)
        train(cfg, model, world, run, log=lambda *_: None)
        rows = read_metrics(Path(run) / "metrics.csv")
    t_train = time.perf_counter() - t0
    after = evaluate_all(model, "grpo_text", world, ecfg, args.seeds)
    after_rl = evaluate_all(model, "grpo_text", on_rl, ecfg, args.seeds[:1])
    reward = np.array([float(r["reward_mean"]) for r in rows])
    thirds = np.array_split(reward, 3)
    print(f"world + base: {t_setup:.0f} s (cached after the first run); evaluation: {t_eval:.0f} s per model; "
          f"training: {t_train:.0f} s ({cfg.steps} steps of {cfg.prompts_per_step} prompts x G={cfg.group_size}, "
          f"lr {cfg.lr:g}, beta {cfg.beta_text:g}, T {cfg.temperature:g})")
    print("training reward (text_correct) by thirds of the run: " + " / ".join(f"{t.mean():.3f}" for t in thirds)
          + f"; zero-variance groups: {np.mean([float(r['zero_var_share']) for r in rows]):.2f}")
    print(f"held-out test split: {before['example_id'].nunique()} items x {args.samples} samples x seeds {args.seeds}; "
          f"the RL prompts ({cfg.split} split): {before_rl['example_id'].nunique()} items, seed {args.seeds[0]}")
    report_gain(cfg.split, before_rl, after_rl, "iq_text")
    for metric in ("iq_text", "iq_unseen"):
        report_gain("test", before, after, metric)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
