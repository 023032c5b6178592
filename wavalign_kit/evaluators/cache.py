"""The evaluator cache: a trained set is reused wherever its config and utterances match, instead of retrained.

Key = SHA-256 of the set's config (the training device aside), every utterance's identity (audio path, text,
style, the bytes of its units, its role: training or held-out), the source of this package and the torch
version. Any change to the data, the codec (which changes the units), the config or the training code
gives a new key. Entries live in ``<cache root>/<key>/`` (the set's directory as saved by the training,
``metrics.json`` last); the default root is ``data/cache/evaluators`` under the working directory, or
``$WAVALIGN_EVALUATOR_CACHE``. Delete the directory to reclaim space; nothing else refers to it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wavalign_kit.evaluators.config import EvaluatorConfig

DEFAULT_CACHE_ROOT = Path("data/cache/evaluators")
CACHE_ENV = "WAVALIGN_EVALUATOR_CACHE"
SET_ENTRIES = ("recognizer", "style", "unit_lm", "metrics.json", "utterances.jsonl")   # what a trained set writes


def default_cache_root() -> Path:
    """``$WAVALIGN_EVALUATOR_CACHE`` when set, else ``data/cache/evaluators`` (relative to the working directory)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT)


def _code_digest() -> str:
    """Digest of this package's source: a change to how evaluators train invalidates every cached set."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def set_cache_key(cfg: EvaluatorConfig, train_items: Sequence[dict], heldout_items: Sequence[dict],
                  unit_features: np.ndarray | None = None) -> str:
    """The cache key of a set trained with ``cfg`` on ``train_items`` and scored on ``heldout_items``, its
    recogniser started from ``unit_features`` (None: no init)."""
    h = hashlib.sha256()
    config = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "device"}
    h.update(json.dumps({"config": config, "code": _code_digest(), "torch": torch.__version__},
                        sort_keys=True).encode())
    if unit_features is not None:
        h.update(np.ascontiguousarray(unit_features, dtype=np.float32).tobytes())
    for role, items in (("train", train_items), ("heldout", heldout_items)):
        for it in items:
            h.update(json.dumps([role, it.get("audio"), it["text"], it["style"]]).encode())
            h.update(np.ascontiguousarray(it["units"], dtype=np.int64).tobytes())
    return h.hexdigest()[:24]


def _copy_set(src: Path, dst: Path) -> None:
    """Copy a set's own entries (SET_ENTRIES) from ``src`` into ``dst``, replacing those already there; any other
    file in either folder is left alone."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in SET_ENTRIES:
        target = dst / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if (src / name).is_dir():
            shutil.copytree(src / name, target)
        elif (src / name).exists():
            shutil.copy2(src / name, target)


def reuse_cached_set(root: Path, key: str, out_dir: Path) -> dict[str, Any] | None:
    """Copy the cached set ``key`` into ``out_dir`` and return its figures; None when the cache has no such set."""
    entry = root / key
    if not (entry / "metrics.json").is_file():
        return None
    _copy_set(entry, out_dir)
    figures = json.loads((out_dir / "metrics.json").read_text())
    figures.pop("config", None)
    figures.pop("cache", None)
    return figures


def store_cached_set(root: Path, key: str, set_dir: Path) -> None:
    """Copy a freshly trained set into the cache (atomically: a reader sees the whole entry or none)."""
    entry = root / key
    if (entry / "metrics.json").is_file():
        return
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    _copy_set(set_dir, tmp)
    try:
        tmp.rename(entry)
    except OSError:               # another build stored the same set first
        shutil.rmtree(tmp, ignore_errors=True)
