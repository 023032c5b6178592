"""Checkpoints: model/adapter, optimizer, scheduler, mixer, RNG states and data position, written atomically.

A checkpoint is written into a temporary directory, renamed into place (``checkpoint-000012``), and only then
does ``DIR/latest`` (itself written then renamed) point to it: a run killed at any moment leaves the previous
complete checkpoint as the latest.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest"
STATE = "trainer_state.json"


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU and CUDA) RNG states of this process."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    with tmp.open() as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(out_dir: str | Path, step: int, *, model, optimizer, scheduler, state: dict[str, Any],
                    rng_states: list[dict[str, Any]], keep: int = 2) -> Path:
    """Write ``out_dir/checkpoint-{step:06d}`` atomically and point ``latest`` at it; keeps the newest ``keep``.

    ``model`` is a SpokenDialogueModel (its ``save`` writes weights or adapters); ``state`` is JSON-ready
    (step, data position, mixer state, config); ``rng_states`` has one entry per process (rank order)."""
    out = Path(out_dir)
    final = out / f"checkpoint-{step:06d}"
    tmp = out / f".checkpoint-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, tmp / "optim.pt")
    torch.save(rng_states, tmp / "rng.pt")
    (tmp / STATE).write_text(json.dumps({**state, "step": step}, indent=2))
    if final.exists():  # a re-run of the same step (after a resume): replace it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_atomic(out / LATEST, final.name)
    for old in sorted(out.glob("checkpoint-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint ``latest`` points to, or None for a fresh run; a dangling pointer is an error."""
    pointer = Path(out_dir) / LATEST
    if not pointer.is_file():
        return None
    path = Path(out_dir) / pointer.read_text().strip()
    if not (path / STATE).is_file():
        raise ValueError(f"{pointer}: points to {path.name}, which is not a complete checkpoint; "
                         "remove the pointer to restart from scratch")
    return path


def load_checkpoint(path: str | Path, *, optimizer, scheduler) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Restore optimizer and scheduler from checkpoint ``path``; returns (trainer state, per-process RNG states).

    The model weights are read by the caller from ``path/model`` (they must be loaded before the optimizer
    is built)."""
    path = Path(path)
    blobs = torch.load(path / "optim.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(blobs["optimizer"])
    scheduler.load_state_dict(blobs["scheduler"])
    rng = torch.load(path / "rng.pt", map_location="cpu", weights_only=False)
    return json.loads((path / STATE).read_text()), rng
