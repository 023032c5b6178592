"""`wavalign train`: resolve preset + profile + overrides, get the world and base model (cached), train.

    wavalign train --preset wavalign --profile smoke --out results/train/wavalign [key=value ...]
    wavalign train --config my_recipe.yaml --profile cpu --out DIR lr=1e-5 beta_text=0.01
    accelerate launch --num_processes 2 -m wavalign_kit.train.run --preset wavalign --out DIR   (DDP)

Overrides: ``lr=1e-5`` or ``train.lr=1e-5`` set train keys; ``world.x=...``, ``models.lora.enabled=true``,
``seed=3`` set the profile. The base model is ``train.base_model`` (a directory written by
SpokenDialogueModel.save) or the profile's warm-started base ``data/models/<profile>-<arch>``, built on demand
(with the world ``data/worlds/<profile>``) and cached.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from wavalign_kit.config import ConfigError, load_profile, parse_overrides
from wavalign_kit.train.config import TrainConfig, config_dict, known_presets, load_recipe, resolve_config

DATA_DIR = Path("data")


def profile_name(profile: dict[str, Any], given: str) -> str:
    """The profile's name (its ``profile:`` key, else the file stem)."""
    return str(profile.get("profile") or Path(given).stem)


def prepare_world(cfg: TrainConfig, profile: dict[str, Any], name: str):
    """The training world: ``train.world_path`` if given (``synthetic``: the world-free stand-in of
    `wavalign_kit.train.synthetic`, for tests and benchmarks), else ``data/worlds/<profile>`` (built when missing)."""
    from wavalign_kit.train.synthetic import synthetic_world
    from wavalign_kit.world import build_world, load_world, world_config

    if cfg.world_path == "synthetic":
        return synthetic_world(seed=cfg.seed)
    if cfg.world_path is not None:
        return load_world(cfg.world_path)
    root = DATA_DIR / "worlds" / name
    build_world(world_config(profile), root)
    return load_world(root)


def prepare_model(cfg: TrainConfig, profile: dict[str, Any], world, name: str):
    """The base policy: ``train.base_model`` or the cached warm start (on the synthetic world: a fresh tiny
    model of the profile's ``models.size``); LoRA from the profile's ``models.lora``."""
    from wavalign_kit.config import from_dict
    from wavalign_kit.models import (
        ModelsConfig,
        SpokenDialogueModel,
        apply_lora,
        build_model,
        load_pretrained,
    )
    from wavalign_kit.models.base import MODEL_CARD
    from wavalign_kit.models.warmstart import run_warmstart
    from wavalign_kit.train.synthetic import SyntheticWorld

    raw = dict(profile.get("models") or {})
    layout = raw.pop("layout", None)  # ChannelLayout.from_tokenizer arguments of a real model
    mcfg = from_dict(ModelsConfig, raw, "models")
    if cfg.base_model is None and isinstance(world, SyntheticWorld):
        model = build_model(cfg.arch, mcfg.size, world.tokenizer, num_units=world.num_units, ratio=mcfg.ratio,
                            speech_delay=mcfg.speech_delay, seed=cfg.seed)
        return apply_lora(model, mcfg.lora) if mcfg.lora.enabled else model
    if cfg.base_model is not None:
        path = Path(cfg.base_model)
    else:
        path = DATA_DIR / "models" / f"{name}-{cfg.arch}"
        run_warmstart(world, cfg.arch, {"seed": profile.get("seed", 0), **(profile.get("warmstart") or {})}, path,
                      models_cfg=mcfg)
    if (path / MODEL_CARD).is_file():
        model = SpokenDialogueModel.load(path)
    else:  # a real model directory (transformers causal LM with the speech tokens)
        model = load_pretrained(path, layout, dtype=mcfg.dtype, attn_implementation=mcfg.attn_implementation,
                                gradient_checkpointing=mcfg.gradient_checkpointing,
                                trust_remote_code=mcfg.trust_remote_code)
    if model.arch != cfg.arch:
        raise ValueError(f"train.arch={cfg.arch!r} but the base model {path} is {model.arch!r}; "
                         f"set arch={model.arch} or point base_model at a {cfg.arch} model")
    if mcfg.lora.enabled and not model.is_lora():
        apply_lora(model, mcfg.lora)
    return model


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``wavalign train``; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="wavalign train", description="post-train a spoken dialogue model")
    parser.add_argument("--preset", help=f"a shipped recipe: {', '.join(known_presets())}")
    parser.add_argument("--config", help="a recipe YAML (TrainConfig keys) instead of --preset")
    parser.add_argument("--profile", default="smoke", help="smoke, cpu, gpu or a profile YAML path")
    parser.add_argument("--out", required=True, help="run directory: metrics.csv, checkpoint-*/, run.json")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. lr=1e-5 beta_text=0.01")
    args = parser.parse_args(argv)
    try:
        recipe, where = load_recipe(args.preset, args.config)
        profile = load_profile(args.profile)
        cfg, profile = resolve_config(profile, recipe, parse_overrides(args.overrides), where)
    except ConfigError as err:
        print(f"wavalign train: error: {err}", file=sys.stderr)
        return 2
    name = profile_name(profile, args.profile)

    import torch
    from accelerate import Accelerator

    from wavalign_kit.train.trainer import Trainer

    cuda = torch.cuda.is_available()
    acc = Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda and cfg.bf16 else "no")
    with acc.main_process_first():  # one process builds the cached world and base model, the others load them
        world = prepare_world(cfg, profile, name)
        model = prepare_model(cfg, profile, world, name)
    out = Path(args.out)
    trainer = Trainer(cfg, model, world, out, accelerator=acc)
    last = trainer.train()
    if acc.is_main_process:
        record = {"preset": args.preset, "config_file": args.config, "profile": name, "train": config_dict(cfg),
                  "processes": acc.num_processes, "last": last}
        (out / "run.json").write_text(json.dumps(record, indent=2, default=str))
    acc.wait_for_everyone()  # ranks reach teardown together (uneven arrival at destroy is a known hang pattern)
    acc.end_training()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
