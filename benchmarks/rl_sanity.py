"""RL sanity check: does text-only GRPO with a verifiable reward raise held-out accuracy on the cpu world?

    python benchmarks/rl_sanity.py                       # the cpu world and base model of data/cpu (built if missing)
    python benchmarks/rl_sanity.py steps=80 lr=3e-5      # any train key=value override
    python benchmarks/rl_sanity.py --train-seeds 0       # one RL run instead of three

From the warm-started base model: ``iq_text`` graded by the examiners before and after ``grpo_text`` with the
reward ``text_correct`` on the world's ``rl`` prompts (which the warm start never saw), on three sets from nearest
to farthest from what RL trained on: the RL prompts themselves, the ``valid`` split (unseen questions in the
trained wording) and the held-out ``test`` split (held-out wording and content; also ``iq_unseen``), overall and
per task. One RL run per training seed; each gain pools them, paired by item, with its 95 % bootstrap interval
over training seeds and items (each cell: one training seed's mean over the item's sampling seeds and samples),
and each run's own gain (paired by item and sampling seed) is printed too; a single run's gains are paired by item
and sampling seed. Prints the training reward's trajectory and the wall-clock time of each
phase. The world and base model are cached in ``data/<profile>`` (first run: add their build time).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wavalign_kit.config import load_profile, load_yaml, parse_overrides  # noqa: E402
from wavalign_kit.evaluation import EvalConfig, evaluate_seed  # noqa: E402
from wavalign_kit.intervals import Interval, paired_difference  # noqa: E402
from wavalign_kit.paths import Workspace  # noqa: E402
from wavalign_kit.results import cell_matrix  # noqa: E402
from wavalign_kit.train.config import preset_path, resolve_config  # noqa: E402
from wavalign_kit.train.metrics_log import read_metrics  # noqa: E402
from wavalign_kit.train.run import train  # noqa: E402
from wavalign_kit.workspace import load_base_model, prepare_base_model, prepare_world  # noqa: E402
from wavalign_kit.world import load_world  # noqa: E402

# lr 1e-4 and the evaluation's temperature 0.7: the fastest learner on the RL prompts in benchmarks/sweeps/rl-sanity
SANITY = {"reward": "text_correct", "split": "rl", "steps": 60, "prompts_per_step": 8, "group_size": 8,
          "lr": 1e-4, "warmup_steps": 5, "beta_text": 0.01, "beta_speech": 0.01, "temperature": 0.7,
          "save_every": 1000, "progress": False}


class SplitView:
    """The world with some splits replaced by other items, e.g. ``{"test": world.split("rl")}`` to measure learning
    on the RL prompts themselves."""

    def __init__(self, world, splits: dict[str, list]):
        self.world, self.splits = world, splits

    def split(self, name: str):
        return self.splits[name] if name in self.splits else self.world.split(name)

    def __getattr__(self, attr: str):
        return getattr(self.world, attr)


def evaluate_all(model, name: str, world, cfg: EvalConfig, seeds: list[int]) -> pd.DataFrame:
    return pd.concat([evaluate_seed(model, name, world, cfg, s)[1] for s in seeds], ignore_index=True)


def pooled(frames: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """One frame of several training seeds' responses whose ``seed`` column is the training seed, so that
    ``cell_matrix`` gives (training seed x item) cells, each averaged over sampling seeds and samples."""
    return pd.concat([f.assign(seed=s) for s, f in frames.items()], ignore_index=True)


def paired_gain(before: pd.DataFrame, after: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, Interval]:
    """(before cells, after cells, after - before on matched cells with its interval)."""
    a = cell_matrix(after, metric)
    b = cell_matrix(before, metric).reindex_like(a).to_numpy()
    return b, a.to_numpy(), paired_difference(a.to_numpy(), b)


def report_gain(label: str, before: pd.DataFrame, after: pd.DataFrame, metric: str, *, per_run: str = "") -> None:
    b, a, gain = paired_gain(before, after, metric)
    print(f"{label:18s} {metric:10s} base {np.nanmean(b):.3f} -> after {np.nanmean(a):.3f}: "
          f"gain {gain.mean:+.3f} [95 % CI {gain.ci_low:+.3f}, {gain.ci_high:+.3f}] over {gain.n} cells"
          + ("  (excludes 0)" if gain.excludes_zero else "  (includes 0)") + per_run)


def per_run_gains(before: pd.DataFrame, after: dict[int, pd.DataFrame], metric: str) -> str:
    """Each training seed's own gain with its interval (paired by item and sampling seed)."""
    if len(after) < 2:
        return ""
    gains = {s: paired_gain(before, frame, metric)[2] for s, frame in after.items()}
    return "; per training seed " + ", ".join(f"{s}: {g.mean:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}]"
                                              for s, g in gains.items())


def main(argv: list[str] | None = None, wrap_world: Callable[[Any], Any] = lambda world: world) -> int:
    """The benchmark; ``wrap_world`` replaces the loaded world by a view of it (a diagnostic's other splits)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--world", default="", help="a built world (default: the profile's, data/<profile>/world)")
    p.add_argument("--base", default="", help="a base model directory (default: the profile's warm start)")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2], help="one RL run per seed; gains pool them")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sampling seeds of the evaluation")
    p.add_argument("--samples", type=int, default=2, help="responses per test item and seed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save", default="", help="keep each run (SAVE/seed-N: metrics, trained model, every response "
                                             "after) and the base model's responses (SAVE) here")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="train keys over the sanity defaults")
    args = p.parse_args(argv)
    overrides = parse_overrides(args.overrides)
    if "seed" in overrides:
        p.error("the training seed comes from --train-seeds, not seed=")
    torch.set_num_threads(args.threads)
    profile = load_profile(args.profile)
    ws = Workspace.cache(args.profile)
    t0 = time.perf_counter()
    world = wrap_world(load_world(args.world) if args.world else prepare_world(profile, ws, quiet=False))
    if not args.base:
        prepare_base_model(world, "interleaved", profile, ws)
    base = load_base_model(profile, "interleaved", ws, args.base)
    t_setup = time.perf_counter() - t0
    preset = load_yaml(preset_path("grpo_text"))
    configs = {s: resolve_config(profile, preset, {**SANITY, **overrides, "arch": "interleaved", "seed": s})[0]
               for s in args.train_seeds}
    cfg = next(iter(configs.values()))
    ecfg = EvalConfig(num_examples=0, num_samples=args.samples, temperature=0.7, top_p=0.9)
    # where the gain is measured, from nearest to farthest from what RL trained on: its own prompts; unseen
    # questions in the trained wording (valid: the warm start only measured its loss there); the held-out test split
    views = {cfg.split: (SplitView(world, {"test": world.split(cfg.split)}), args.seeds[:1])}
    if cfg.split != "valid":
        views["valid"] = (SplitView(world, {"test": world.split("valid")}), args.seeds)
    views["test"] = (world, args.seeds)
    t0 = time.perf_counter()
    before = {name: evaluate_all(base, "base", view, ecfg, seeds) for name, (view, seeds) in views.items()}
    t_eval = time.perf_counter() - t0
    after: dict[str, dict[int, pd.DataFrame]] = {name: {} for name in views}
    t_train, rewards, zero_var = 0.0, {}, {}
    for seed, run_cfg in configs.items():
        t0 = time.perf_counter()
        saved = Path(args.save) / f"seed-{seed}" if args.save else None
        with contextlib.nullcontext(saved) if saved else tempfile.TemporaryDirectory() as run:
            model = copy.deepcopy(base)
            train(run_cfg, model, world, Path(run), log=lambda *_: None)
            rows = read_metrics(Path(run) / "metrics.csv")
        t_train += time.perf_counter() - t0
        rewards[seed] = np.array([float(r["reward_mean"]) for r in rows])
        zero_var[seed] = np.mean([float(r["zero_var_share"]) for r in rows])
        for name, (view, seeds) in views.items():
            after[name][seed] = evaluate_all(model, "grpo_text", view, ecfg, seeds)
        if saved:
            model.save(saved / "model")
            for name, frames in after.items():
                frames[seed].to_csv(saved / f"responses_{name}_after.csv", index=False)
    print(f"world + base: {t_setup:.0f} s (cached after the first run); evaluation: {t_eval:.0f} s per model; "
          f"training: {t_train / len(configs):.0f} s per run, {len(configs)} runs (training seeds {args.train_seeds}; "
          f"{cfg.steps} steps of {cfg.prompts_per_step} prompts x G={cfg.group_size}, lr {cfg.lr:g}, "
          f"beta {cfg.beta_text:g}, T {cfg.temperature:g})")
    for seed, reward in rewards.items():
        thirds = [t for t in np.array_split(reward, 3) if len(t)]
        print(f"training seed {seed}: reward (text_correct) by thirds of the run "
              + " / ".join(f"{t.mean():.3f}" for t in thirds) + f"; zero-variance groups: {zero_var[seed]:.2f}")
    print(f"evaluated at T {ecfg.temperature:g}, top-p {ecfg.top_p:g}, {args.samples} samples per item: " + "; ".join(
        f"{name} {before[name]['example_id'].nunique()} items x seeds {seeds}" for name, (_, seeds) in views.items()))
    if len(configs) > 1:
        print(f"gains pooled over training seeds {args.train_seeds} (cells: training seed x item)")
        base_pooled = {name: pooled(dict.fromkeys(args.train_seeds, before[name])) for name in views}
        after_pooled = {name: pooled(frames) for name, frames in after.items()}
    else:                                          # one run: cells are (sampling seed x item), paired as before
        base_pooled, after_pooled = before, {name: next(iter(frames.values())) for name, frames in after.items()}
    for name in views:
        report_gain(name, base_pooled[name], after_pooled[name], "iq_text",
                    per_run=per_run_gains(before[name], after[name], "iq_text"))
    report_gain("test", base_pooled["test"], after_pooled["test"], "iq_unseen",
                per_run=per_run_gains(before["test"], after["test"], "iq_unseen"))
    for name in [n for n in ("valid", "test") if n in views]:
        b, a = base_pooled[name], after_pooled[name]
        for task in sorted(b["task"].unique()):
            report_gain(f"{name}/{task}", b[b["task"] == task], a[a["task"] == task], "iq_text")
    if args.save:
        for name in views:
            before[name].to_csv(Path(args.save) / f"responses_{name}_before.csv", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
