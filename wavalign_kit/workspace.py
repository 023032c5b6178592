"""Filling a workspace (`paths.Workspace`): the world, the base models and the training runs, each built once.

Every call is idempotent: a finished world, base model or training run is reused, an interrupted one resumes. The
command line (`wavalign train`), the pipeline's notebooks and Python code all go through these, in-process.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from wavalign_kit.config import from_dict, load_yaml
from wavalign_kit.paths import Workspace


def models_config(profile: dict[str, Any]):
    """The profile's ``models:`` section as a ModelsConfig."""
    from wavalign_kit.models import ModelsConfig

    return from_dict(ModelsConfig, profile.get("models") or {}, "models")


def model_codec(profile: dict[str, Any]) -> Any:
    """The model's own speech codec of ``models.codec`` (import path, loaded from ``models.codec_dir`` when given),
    or None: the world's codec is the model's."""
    from wavalign_kit.world.own_data import check_codec, import_codec

    mcfg = models_config(profile)
    if not mcfg.codec:
        return None
    codec = import_codec(mcfg.codec, mcfg.codec_dir or None)
    check_codec(codec, "models.codec", decode=True)
    return codec


def own_data_dir(root: str | Path) -> bool:
    """Whether ``root`` holds a user's own JSONL data rather than a world the kit builds (world/own_data.py)."""
    from wavalign_kit.world.integrity import SUMMARY
    from wavalign_kit.world.own_data import MANIFEST
    from wavalign_kit.world.protocol import SPLITS

    root = Path(root)
    return (root / MANIFEST).is_file() or (not (root / SUMMARY).is_file()
                                           and any((root / f"{s}.jsonl").is_file() for s in SPLITS))


def open_world(root: str | Path, profile: dict[str, Any]):
    """A built world, or own data: its ``world.yaml``, else the model's codec (``models.codec``) encodes it."""
    from wavalign_kit.world import load_own_data, load_world
    from wavalign_kit.world.own_data import MANIFEST

    if own_data_dir(root) and not (Path(root) / MANIFEST).is_file():
        codec = model_codec(profile)
        if codec is None:
            raise ValueError(f"{root}: own data without a {MANIFEST} needs a codec to encode its audio: set "
                             f"models.codec=package.module:Class, or write {Path(root) / MANIFEST} (codec: ...)")
        return load_own_data(root, codec)
    return load_world(root)


def prepare_world(profile: dict[str, Any], ws: Workspace, world_dir: str | Path = "", *, quiet: bool = True):
    """The profile's world built into ``world_dir`` or ``ws.world`` (a no-op when built with the same config) and
    loaded; a ``world_dir`` holding the user's own data is opened as it is (never built into)."""
    from wavalign_kit.world import build_world, world_config

    root = Path(world_dir) if world_dir else ws.world
    if not own_data_dir(root):
        build_world(world_config(profile), root, quiet=quiet)
    return open_world(root, profile)


def prepare_base_model(world: Any, arch: str, profile: dict[str, Any], ws: Workspace,
                       model_path: str | Path = "") -> dict[str, Any]:
    """Warm-start the tiny ``arch`` base model (resumable, cached), or describe the real model at ``model_path``
    (default ``models.path``)."""
    from wavalign_kit.models.warmstart import run_warmstart

    model_path = model_path or models_config(profile).path
    if model_path:
        if not Path(model_path).is_dir():
            raise ValueError(f"model_path: {model_path} is not a local model directory")
        return {"arch": arch, "path": str(model_path), "real_model": True}
    warm = {"seed": profile.get("seed", 0), **(profile.get("warmstart") or {})}
    return run_warmstart(world, arch, warm, ws.base_model(arch), models_cfg=models_config(profile))


def load_model(path: str | Path, profile: dict[str, Any]):
    """A model directory written by the kit, or a real model through `load_pretrained` with the profile's
    ``models`` settings (layout, dtype, attention, gradient checkpointing), with its own codec (``models.codec``)
    attached. A tiny-model key (``models.ratio`` / ``speech_delay``) or a layout that disagrees with the loaded
    model is an error, never ignored."""
    from wavalign_kit.channels import InterleaveRatio
    from wavalign_kit.errors import ConfigError
    from wavalign_kit.layouts import load_layout
    from wavalign_kit.models import SpokenDialogueModel, load_pretrained
    from wavalign_kit.models.base import MODEL_CARD

    path, mcfg = Path(path), models_config(profile)
    if (path / MODEL_CARD).is_file():
        model = SpokenDialogueModel.load(path)
        layout = load_layout(mcfg.layout)
        if layout is not None and layout.resolve(model.tokenizer) != model.layout:
            raise ConfigError(f"models.layout: differs from the layout stored with the kit's model at {path}; drop "
                              "models.layout (a model the kit saved keeps its own)")
    else:
        model = load_pretrained(path, mcfg.layout, dtype=mcfg.dtype, attn_implementation=mcfg.attn_implementation,
                                gradient_checkpointing=mcfg.gradient_checkpointing,
                                trust_remote_code=mcfg.trust_remote_code)
    lay = model.layout
    if mcfg.ratio is not None and lay.ratio is not None and InterleaveRatio.parse(mcfg.ratio) != lay.ratio:
        raise ConfigError(f"models.ratio={mcfg.ratio!r} shapes the kit's tiny models only; the model at {path} lays "
                          f"out its responses by its own layout (ratio {' '.join(str(x) for p in lay.ratio.chunks for x in p)}"
                          "): drop models.ratio, or set models.layout.ratio for a model the kit did not save")
    if mcfg.speech_delay is not None and lay.kind == "parallel" and mcfg.speech_delay != lay.speech_delay:
        raise ConfigError(f"models.speech_delay={mcfg.speech_delay} shapes the kit's tiny models only; the model at "
                          f"{path} delays speech by {lay.speech_delay}: drop it, or set models.layout.speech_delay")
    model.codec = model_codec(profile)
    return model


def load_base_model(profile: dict[str, Any], arch: str, ws: Workspace, model_path: str | Path = ""):
    """The base model of ``arch``: the real model at ``model_path`` (default ``models.path``), else the
    workspace's warm start."""
    return load_model(model_path or models_config(profile).path or ws.base_model(arch), profile)


def training_world(cfg, profile: dict[str, Any], ws: Workspace):
    """The world of a training config: ``world_path`` (``synthetic``: the no-build stand-in of
    `train.synthetic`; a built world; or your own JSONL data, see `open_world`), else the profile's world in the
    workspace, built when missing."""
    from wavalign_kit.train.synthetic import synthetic_world

    if cfg.world_path == "synthetic":
        return synthetic_world(seed=cfg.seed)
    if cfg.world_path is not None:
        return open_world(cfg.world_path, profile)
    return prepare_world(profile, ws, quiet=False)


def training_model(cfg, profile: dict[str, Any], world: Any, ws: Workspace):
    """The policy to train: ``base_model`` (or ``models.path``), or the workspace's warm start (built on demand; on the synthetic world
    a fresh tiny model); LoRA from the profile's ``models.lora``, its adapters initialised from the run's seed."""
    from wavalign_kit.models import apply_lora, build_model
    from wavalign_kit.train.synthetic import SyntheticWorld

    mcfg = models_config(profile)
    base = cfg.base_model or mcfg.path or None
    if base is None and isinstance(world, SyntheticWorld):
        model = build_model(cfg.arch, mcfg.size, world.tokenizer, num_units=world.num_units, ratio=mcfg.tiny_ratio,
                            speech_delay=mcfg.tiny_delay, seed=cfg.seed)
    else:
        if base is None:
            prepare_base_model(world, cfg.arch, profile, ws)
        model = load_model(base or ws.base_model(cfg.arch), profile)
    if model.arch != cfg.arch:
        raise ValueError(f"train.arch={cfg.arch!r} but the base model is {model.arch!r}; set arch={model.arch} or "
                         f"point base_model at a {cfg.arch} model")
    if mcfg.lora.enabled and not model.is_lora():
        apply_lora(model, mcfg.lora, seed=cfg.seed)
    return model


def training_run(profile: dict[str, Any], ws: Workspace, *, arch: str, preset: str, seed: int, world: Any,
                 base: Any, log=print) -> Path:
    """Post-train a copy of the loaded ``base`` model with ``preset`` into ``ws.run(arch, preset, seed)``, in this
    process (resumes; a finished run is reused); returns the run directory."""
    from wavalign_kit.models import apply_lora
    from wavalign_kit.train.checkpoint import latest_checkpoint
    from wavalign_kit.train.config import preset_path, resolve_config
    from wavalign_kit.train.run import train

    run = ws.run(arch, preset, seed)
    cfg, _ = resolve_config(profile, load_yaml(preset_path(preset)), {"arch": arch, "seed": seed, "progress": False},
                            where=str(preset_path(preset)))
    done = latest_checkpoint(run)
    if done is not None and done.name == f"checkpoint-{cfg.steps:06d}" and (run / "run.json").is_file():
        return run
    model = copy.deepcopy(base)
    mcfg = models_config(profile)
    if mcfg.lora.enabled and not model.is_lora():
        apply_lora(model, mcfg.lora, seed=seed)
    log(f"[train] {arch} {preset} seed {seed} -> {run}")
    train(cfg, model, world, run, log=log, record={"preset": preset})
    return run


def training_runs(profile: dict[str, Any], ws: Workspace, jobs: list[tuple[str, str, int]], *, world: Any,
                  bases: dict[str, Any], workers: int = 1, log=print) -> list[Path]:
    """Every ``(arch, preset, seed)`` job of `training_run`, in job order; ``bases`` maps each architecture to its
    base model (loaded, or a directory). ``workers`` > 1 trains that many runs at once in their own processes (one
    torch thread each; each process loads the world and the base models once): on a 2-core machine two runs
    take about the time of one."""
    import time

    if workers <= 1:
        loaded = {a: load_model(b, profile) if isinstance(b, (str, Path)) else b for a, b in bases.items()}
        return [training_run(profile, ws, arch=a, preset=p, seed=s, world=world, base=loaded[a], log=log)
                for a, p, s in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if not all(isinstance(b, (str, Path)) for b in bases.values()):
        raise ValueError("training_runs: with workers > 1, give the base models as directories (each process loads them)")
    dirs = {a: str(b) for a, b in bases.items()}
    start = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_load_worker,
                             initargs=(profile, str(world.root), dirs)) as pool:
        futures = [pool.submit(_train_in_worker, str(ws.root), job) for job in jobs]
        runs = []
        for (a, p, s), future in zip(jobs, futures):
            runs.append(Path(future.result()))
            log(f"[train] {a} {p} seed {s}: done ({time.perf_counter() - start:.0f} s since the first run started)")
    return runs


_WORKER: dict[str, Any] = {}


def _load_worker(profile: dict[str, Any], world_root: str, base_dirs: dict[str, str]) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER.update(profile=profile, world=open_world(world_root, profile),
                   bases={a: load_model(d, profile) for a, d in base_dirs.items()})


def _train_in_worker(root: str, job: tuple[str, str, int]) -> str:
    arch, preset, seed = job
    return str(training_run(_WORKER["profile"], Workspace(Path(root)), arch=arch, preset=preset, seed=seed,
                            world=_WORKER["world"], base=_WORKER["bases"][arch], log=lambda *_: None))
