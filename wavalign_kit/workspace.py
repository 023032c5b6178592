"""Where a pipeline run keeps its world, base models and training runs, and the calls that fill them.

Layout of a run directory ``OUT`` (the notebooks' ``out_dir``)::

    OUT/world/                       the embedded world (unless the ``world_dir`` parameter points elsewhere)
    OUT/models/base-<arch>/          warm-started base model per architecture (or ``model_path``: a real model)
    OUT/runs/<arch>/<preset>/seed-<s>/   one post-training run (metrics.csv, checkpoint-*/)
    OUT/metrics/*.csv|json  OUT/figures/*.png  OUT/audio/*.wav   what the notebooks leave for the report

Every ``prepare_*`` call is idempotent: a finished world, base model or training run is reused, an
interrupted one resumes. Notebooks call these so that each of them also runs on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml


@dataclass(frozen=True)
class RunDirs:
    """The directories of one run (created on construction by `run_dirs`)."""

    root: Path
    metrics: Path
    figures: Path
    audio: Path
    models: Path
    runs: Path


def run_dirs(out_dir: str | Path) -> RunDirs:
    """Create (if needed) and return the run's directories."""
    root = Path(out_dir).resolve()
    dirs = RunDirs(root, root / "metrics", root / "figures", root / "audio", root / "models", root / "runs")
    for d in (dirs.metrics, dirs.figures, dirs.audio, dirs.models, dirs.runs):
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def prepare_world(cfg: dict[str, Any], out_dir: str | Path, world_dir: str | Path = "", *, quiet: bool = True):
    """Build the profile's world (a no-op when it is built with the same config) and load it."""
    from wavalign_kit.world import build_world, load_world, world_config

    root = Path(world_dir) if world_dir else run_dirs(out_dir).root / "world"
    build_world(world_config(cfg), root, quiet=quiet)
    return load_world(root)


def base_model_dir(out_dir: str | Path, arch: str, model_path: str | Path = "") -> Path:
    """``model_path`` when given (a real model), else ``OUT/models/base-<arch>``."""
    return Path(model_path) if model_path else run_dirs(out_dir).models / f"base-{arch}"


def prepare_base_model(world: Any, arch: str, cfg: dict[str, Any], out_dir: str | Path,
                       model_path: str | Path = "") -> dict[str, Any]:
    """Warm-start the tiny ``arch`` base model (resumable, cached), or describe the real model at ``model_path``."""
    from wavalign_kit.models.warmstart import run_warmstart

    if model_path:
        if not Path(model_path).is_dir():
            raise ValueError(f"model_path: {model_path} is not a local model directory")
        return {"arch": arch, "path": str(model_path), "real_model": True}
    warm = {"seed": cfg.get("seed", 0), **(cfg.get("warmstart") or {})}
    return run_warmstart(world, arch, warm, base_model_dir(out_dir, arch), models_cfg=cfg.get("models") or {})


def load_base_model(out_dir: str | Path, arch: str, cfg: dict[str, Any], model_path: str | Path = ""):
    """The base model as a SpokenDialogueModel (kit directory, or a real model through `load_pretrained`)."""
    from wavalign_kit.models import SpokenDialogueModel, load_pretrained

    path = base_model_dir(out_dir, arch, model_path)
    if model_path:
        models = cfg.get("models") or {}
        return load_pretrained(path, models.get("layout"), dtype=models.get("dtype", "auto"),
                               attn_implementation=models.get("attn_implementation", "sdpa"),
                               trust_remote_code=models.get("trust_remote_code", False))
    return SpokenDialogueModel.load(path)


def write_profile(cfg: dict[str, Any], out_dir: str | Path) -> Path:
    """The merged profile as ``OUT/profile.yaml`` (what the CLI stages read with ``--profile PATH``)."""
    path = run_dirs(out_dir).root / "profile.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def train_run_dir(out_dir: str | Path, arch: str, preset: str, seed: int) -> Path:
    return run_dirs(out_dir).runs / arch / preset / f"seed-{seed}"


def prepare_training_run(cfg: dict[str, Any], out_dir: str | Path, *, arch: str, preset: str, seed: int,
                         world_root: str | Path, base_dir: str | Path) -> Path:
    """Post-train the base model with ``preset`` (resumes; a finished run is reused); returns the run dir."""
    from wavalign_kit.train.run import main as train_main

    run = train_run_dir(out_dir, arch, preset, seed)
    overrides = [f"world_path={world_root}", f"base_model={base_dir}", f"arch={arch}", f"seed={seed}", "progress=false"]
    rc = train_main(["--preset", preset, "--profile", str(write_profile(cfg, out_dir)), "--out", str(run), *overrides])
    if rc:
        raise RuntimeError(f"training {preset} (arch {arch}, seed {seed}) failed with exit code {rc}; see {run}")
    return run


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write a float waveform (peak-normalised to 0.9 when louder) as 16-bit PCM WAV."""
    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.9:
        audio = audio * (0.9 / peak)
    sf.write(str(path), audio, sample_rate, subtype="PCM_16")
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """JSON with NaN written as null."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not np.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, np.generic):
            return clean(x.item())
        return x

    Path(path).write_text(json.dumps(clean(data), indent=2) + "\n")
    return Path(path)
