"""`train`, the one entry point of post-training, and `wavalign train`, its command line.

    wavalign train --preset wavalign --profile smoke --out results/train/wavalign [key=value ...]
    wavalign train --config my_recipe.yaml --profile cpu --out DIR lr=1e-5 beta_text=0.01
    accelerate launch --num_processes 2 -m wavalign_kit.train.run --preset wavalign --out DIR   (DDP)

Overrides: ``lr=1e-5`` or ``train.lr=1e-5`` set train keys; ``world.x=...``, ``models.lora.enabled=true``,
``seed=3`` set the profile. Every value is checked before anything is loaded. The base model is
``train.base_model`` (a kit model directory or a real model) or the profile's warm-started base in the
command line's workspace ``data/<profile>`` (`paths.Workspace.cache`), built on demand with its world.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from wavalign_kit.config import from_dict, load_profile, parse_overrides
from wavalign_kit.train.config import TrainConfig, config_dict, known_presets, load_recipe, resolve_config

OVERRIDES_HELP = """overrides (KEY=VALUE, values parsed as YAML):
  lr=1e-5 beta_text=0.01 steps=100      train keys (TrainConfig; also train.lr=...)
  seed=3 world.train_size=64            profile keys
  base_model=/models/my-sdm             a real model (or models.path=...) instead of the tiny warm-started one
  models.layout=glm4_voice              its layout: a shipped name (vita_audio_boost, vita_audio_balance,
                                          glm4_voice, kimi_audio_like),
  models.layout=my_layout.yaml            a YAML file, or single keys (over models.layout.file=NAME_OR_PATH):
  models.layout.ratio="3 6" models.layout.text_end=null models.layout.speech_token_pattern="<sp_{i}>"
  models.layout.begin_audio="<speech>" models.layout.end_audio="</speech>" models.layout.response_audio=chunks
  models.codec=mypkg.codecs:MyCodec     the model's own speech codec (decodes its units; encodes own data)
  world_path=/data/mine                 a built world, or your own JSONL data (world.yaml, or models.codec)
  reward="{mypkg.rewards:MyReward: 1.0}"   your own reward by import path (with options: {weight: 1, x: 2})
see wavalign_kit/layouts.py, wavalign_kit/world/own_data.py and README "Bring your own model"."""


def train(cfg: TrainConfig, model, world, out: str | Path, *, reward=None, accelerator=None, log=print,
          record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Post-train ``model`` on ``world`` with ``cfg`` into the run directory ``out`` (resuming from its latest
    checkpoint); writes ``out/run.json`` (config, processes, last row, plus ``record``) and returns the last step's
    metrics. The command line, the pipeline and the notebooks all train through this function."""
    from wavalign_kit.files import write_json
    from wavalign_kit.train.trainer import Trainer

    trainer = Trainer(cfg, model, world, out, reward=reward, accelerator=accelerator, log=log)
    last = trainer.train()
    if trainer.acc.is_main_process:
        write_json(Path(out) / "run.json", {**(record or {}), "train": config_dict(trainer.cfg),
                                             "processes": trainer.procs, "last": last})
    return last


def parse(argv: list[str] | None) -> tuple[TrainConfig, dict[str, Any], str, argparse.Namespace]:
    """Resolve and check the whole configuration (train, models, world sections) before anything is loaded."""
    from wavalign_kit.layouts import load_layout
    from wavalign_kit.models import ModelsConfig
    from wavalign_kit.rewards.build import check_reward_spec
    from wavalign_kit.world import world_config
    from wavalign_kit.world.own_data import import_codec_class

    parser = argparse.ArgumentParser(prog="wavalign train", description="post-train a spoken dialogue model",
                                     epilog=OVERRIDES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", help=f"a shipped recipe: {', '.join(known_presets())}")
    parser.add_argument("--config", help="a recipe YAML (TrainConfig keys) instead of --preset")
    parser.add_argument("--profile", default="smoke", help="smoke, cpu, gpu or a profile YAML path")
    parser.add_argument("--out", required=True, help="run directory: metrics.csv, checkpoint-*/, run.json")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. lr=1e-5 beta_text=0.01")
    args = parser.parse_args(argv)
    recipe, where = load_recipe(args.preset, args.config)
    profile = load_profile(args.profile)
    cfg, profile = resolve_config(profile, recipe, parse_overrides(args.overrides), where)
    mcfg = from_dict(ModelsConfig, profile.get("models") or {}, "models")
    load_layout(mcfg.layout)                                   # a typo in a layout key or file: named now
    if mcfg.codec:
        import_codec_class(mcfg.codec, "models.codec")
    if cfg.world_path != "synthetic":  # the synthetic stand-in brings its own rewards
        check_reward_spec(cfg.reward)
    if cfg.world_path is None:
        world_config(profile)
    return cfg, profile, str(profile.get("profile") or Path(args.profile).stem), args


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``wavalign train``; returns the process exit code (errors are printed by `cli.main`)."""
    from wavalign_kit.paths import Workspace
    from wavalign_kit.train.trainer import make_accelerator
    from wavalign_kit.workspace import training_model, training_world

    cfg, profile, name, args = parse(argv)
    acc = make_accelerator(cfg)
    ws = Workspace.cache(name)
    with acc.main_process_first():  # one process builds the cached world and base model, the others load them
        world = training_world(cfg, profile, ws)
        model = training_model(cfg, profile, world, ws)
    train(cfg, model, world, args.out, accelerator=acc, record={"preset": args.preset, "config_file": args.config,
                                                                 "profile": name})
    acc.wait_for_everyone()  # ranks reach teardown together (uneven arrival at destroy is a known hang pattern)
    acc.end_training()
    return 0


if __name__ == "__main__":
    from wavalign_kit.cli import run_command

    raise SystemExit(run_command("train", main, sys.argv[1:]))
