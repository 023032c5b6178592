"""A run's parameters: the profile, ``-f`` files and ``-p`` overrides merged into one nested config, checked as a
whole before anything runs, and the flat parameter set every notebook receives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wavalign_kit.config import (
    ConfigError,
    check_sections,
    deep_update,
    from_dict,
    load_profile,
    load_yaml,
    parse_scalar,
    suggest,
)

PROFILE_KEYS = ("profile", "seed")
SECTIONS = ("world", "models", "warmstart", "train", "eval", "pipeline")   # module sections of a profile


def resolve_profile_name(profile: str) -> str:
    """``auto`` becomes ``gpu`` when CUDA is available, else ``cpu``; other names pass through."""
    if profile != "auto":
        return profile
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def merged_config(profile: str, files: list[str | Path] = (), params: list[tuple[str, str]] = ()) -> dict:
    """The nested profile: the named (or path) profile, then each ``-f`` YAML, then each ``-p key value``.

    A dotted key (``train.lr``) lands in its section; a bare key that is not ``profile``/``seed`` or a section
    name is a notebook parameter and lands in the ``pipeline`` section (``-p seeds [0,1,2]``).
    """
    cfg = load_profile(profile)
    for f in files:
        extra = load_yaml(f)
        check_sections(extra, str(f))
        cfg = deep_update(cfg, extra)
    for key, raw in params:
        parts = key.split(".")
        if len(parts) == 1 and key not in PROFILE_KEYS and key not in SECTIONS:
            parts = ["pipeline", key]
        cfg = deep_update(cfg, _nest(parts, parse_scalar(raw)))
    return cfg


def _nest(parts: list[str], value: Any) -> dict:
    out: Any = value
    for part in reversed(parts):
        out = {part: out}
    return out


def notebook_parameters(cfg: dict, out_dir: Path) -> dict[str, Any]:
    """The ONE flat parameter set given to every notebook.

    ``out_dir``, ``profile``, ``seed``, every key of the ``pipeline`` section (seeds, architectures, presets...)
    and ``config``: the merged module sections (world, models, warmstart, train, eval). Each notebook receives
    the names its ``parameters`` cell declares.
    """
    params: dict[str, Any] = {"out_dir": str(out_dir), "profile": cfg.get("profile", "custom"), "seed": cfg.get("seed", 0)}
    params.update(cfg.get("pipeline") or {})
    params["config"] = {k: cfg[k] for k in SECTIONS if k != "pipeline" and k in cfg}
    return params


def notebook_config(profile: str, config: dict | None = None) -> dict:
    """Inside a notebook: the named profile with ``config`` merged into it key by key (``{"train": {"steps": 20}}``
    changes the steps and keeps the profile's other train keys).

    The pipeline passes every section, so a notebook runs with exactly the parameters recorded in the manifest
    even when the profile file changes during the run; standalone, ``config={}`` means the profile as is.
    """
    cfg = deep_update(load_profile(profile), config or {})
    check_sections(cfg, "notebook parameter config")
    return cfg


MODEL_PARAMETERS = {"model_path": "", "layout": "", "codec": "", "judge": ""}   # notebook parameters -> sections


def apply_model_parameters(cfg: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The config with the notebooks' bring-your-own parameters applied: ``model_path`` -> ``models.path``,
    ``layout`` -> over ``models.layout`` (key by key), ``codec`` -> ``models.codec``, ``judge`` -> ``train.reward``
    (a reward name, a mapping, or ``package.module:Name``). Empty values leave the profile as it is."""
    from wavalign_kit.layouts import merge_layout

    models = dict(cfg.get("models") or {})
    if params.get("model_path"):
        models["path"] = str(params["model_path"])
    if params.get("layout"):
        models["layout"] = merge_layout(models.get("layout"), params["layout"])
    if params.get("codec"):
        models["codec"] = str(params["codec"])
    out = {**cfg, "models": models}
    if params.get("judge"):
        out["train"] = {**(cfg.get("train") or {}), "reward": params["judge"]}
    return out


def check_run_config(cfg: dict[str, Any], notebooks: list[Path], given: list[str] = ()) -> None:
    """Fail fast (seconds, nothing loaded) on any key or value the run would trip on: a notebook parameter
    given on the command line (``given``: the bare ``-p`` keys) that no notebook declares, and every module
    section's keys and values, presets included."""
    from wavalign_kit.evaluation import EvalConfig
    from wavalign_kit.layouts import load_layout
    from wavalign_kit.models import ModelsConfig
    from wavalign_kit.models.warmstart import WarmstartConfig
    from wavalign_kit.pipeline import declared_parameters
    from wavalign_kit.train.config import preset_path, resolve_config
    from wavalign_kit.world import world_config
    from wavalign_kit.world.own_data import import_codec_class

    declared = set().union(*(declared_parameters(p) for p in notebooks)) if notebooks else set()
    for key in given:
        if key not in declared:
            raise ConfigError(f"pipeline parameter '{key}'{suggest(key, sorted(declared))}: no notebook declares it; "
                              f"known: {', '.join(sorted(declared - {'out_dir', 'profile', 'config'}))}")
    cfg = apply_model_parameters(cfg, cfg.get("pipeline") or {})
    world_config(cfg)
    mcfg = from_dict(ModelsConfig, cfg.get("models") or {}, "models")
    load_layout(mcfg.layout)
    if mcfg.codec:
        import_codec_class(mcfg.codec, "models.codec")
    from_dict(WarmstartConfig, cfg.get("warmstart"), "warmstart")
    from_dict(EvalConfig, cfg.get("eval"), "eval")
    train_cfg, _ = resolve_config(cfg, {}, {})
    if (cfg.get("pipeline") or {}).get("judge"):
        from wavalign_kit.rewards.build import check_reward_spec

        check_reward_spec(train_cfg.reward, "pipeline.judge")
    for preset in (cfg.get("pipeline") or {}).get("presets") or []:
        resolve_config(cfg, load_yaml(preset_path(preset)), {}, where=str(preset_path(preset)))
