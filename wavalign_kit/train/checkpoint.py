"""Run directories: an exclusive lock, and checkpoints written atomically without pickle.

A checkpoint holds the model (safetensors, `SpokenDialogueModel.save`), the optimizer's tensors
(``optimizer.safetensors``) and the rest of its and the scheduler's state (``optimizer.json``), every process's RNG
states (``rng.safetensors`` + ``rng.json``) and the trainer state (``trainer_state.json``: step, data position,
mixer, config). Nothing is unpickled on resume, so a crafted file in a shared run directory cannot execute code;
checkpoints of older kit versions (``optim.pt`` / ``rng.pt``) are refused with an explanation.

A checkpoint is written into a temporary directory and renamed into place (``checkpoint-000012``); only then does
``DIR/latest`` (itself written then renamed) point to it. Old checkpoints are renamed away before they are
deleted, so a run killed at any moment leaves the previous complete checkpoint as the latest.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from wavalign_kit.errors import KitError, RunLocked
from wavalign_kit.files import write_text_atomic

LATEST = "latest"
STATE = "trainer_state.json"
LOCK = ".lock"
PICKLED = ("optim.pt", "rng.pt")


@contextlib.contextmanager
def run_lock(out_dir: str | Path) -> Iterator[None]:
    """Hold ``out_dir/.lock`` exclusively for the duration of a run; a second run fails at once naming the holder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunLocked(f"{out} is in use by {holder}; wait for that run to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch (CPU and CUDA) RNG states of this process."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (a fresh run)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` (or `load_checkpoint`) returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _split_optimizer(optimizer, scheduler) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer + scheduler state as (tensors for safetensors, everything else for JSON)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars, "scheduler": scheduler.state_dict()}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _split_rng(states: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors, rest = {}, []
    for rank, s in enumerate(states):
        tensors[f"{rank}.torch"] = s["torch"]
        for i, c in enumerate(s.get("cuda", [])):
            tensors[f"{rank}.cuda.{i}"] = c
        kind, keys, pos, has_gauss, gauss = s["numpy"]
        rest.append({"python": [s["python"][0], list(s["python"][1]), s["python"][2]], "cuda": len(s.get("cuda", [])),
                     "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]})
    return tensors, rest


def _join_rng(tensors: dict[str, torch.Tensor], rest: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for rank, s in enumerate(rest):
        version, internal, gauss = s["python"]
        kind, keys, pos, has_gauss, cached = s["numpy"]
        out.append({"python": (version, tuple(internal), gauss),
                    "numpy": (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
                    "torch": tensors[f"{rank}.torch"], "cuda": [tensors[f"{rank}.cuda.{i}"] for i in range(s["cuda"])]})
    return out


def save_checkpoint(out_dir: str | Path, step: int, *, model, optimizer, scheduler, state: dict[str, Any],
                    rng_states: list[dict[str, Any]], keep: int = 2) -> Path:
    """Write ``out_dir/checkpoint-{step:06d}`` atomically and point ``latest`` at it; keeps the newest ``keep``.

    ``model`` is a SpokenDialogueModel (its ``save`` writes weights or adapters); ``state`` is JSON-ready; one RNG
    state per process (rank order)."""
    out = Path(out_dir)
    final, tmp = out / f"checkpoint-{step:06d}", out / f".checkpoint-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model")
    tensors, meta = _split_optimizer(optimizer, scheduler)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    rng_tensors, rng_rest = _split_rng(rng_states)
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    (tmp / "rng.json").write_text(json.dumps(rng_rest))
    (tmp / STATE).write_text(json.dumps({**state, "step": step}, indent=2))
    if final.exists():  # a re-run of the same step (after a resume): replace it
        _remove(final)
    os.replace(tmp, final)
    write_text_atomic(out / LATEST, final.name)
    for old in sorted(out.glob("checkpoint-*"))[:-keep]:
        _remove(old)
    for leftover in out.glob(".trash-*"):  # a kill between rename and delete left these
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def _remove(path: Path) -> None:
    """Rename, then delete: a kill in between leaves a ``.trash-*`` directory, never a half-deleted checkpoint."""
    trash = path.with_name(f".trash-{path.name}")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The checkpoint ``latest`` points to, or None for a fresh run; a dangling pointer is an error."""
    pointer = Path(out_dir) / LATEST
    if not pointer.is_file():
        return None
    path = Path(out_dir) / pointer.read_text().strip()
    if not (path / STATE).is_file():
        raise KitError(f"{pointer}: points to {path.name}, which is not a complete checkpoint; "
                       "remove the pointer to restart from scratch")
    return path


def model_dir(path: str | Path) -> Path:
    """The model directory of ``path``: itself when it holds a saved model (the kit's, or a transformers model
    directory), else the model of the training run's latest checkpoint."""
    path = Path(path)
    if (path / "wavalign_model.json").is_file() or (path / "config.json").is_file():
        return path
    ckpt = latest_checkpoint(path) if path.is_dir() else None
    if ckpt is None:
        raise KitError(f"{path}: neither a saved model (wavalign_model.json or config.json) nor a training run with a checkpoint; "
                       "pass a model directory or a `wavalign train --out` directory")
    return ckpt / "model"


def load_checkpoint(path: str | Path, *, optimizer, scheduler) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Restore optimizer and scheduler from checkpoint ``path``; returns (trainer state, per-process RNG states).

    The model weights are read by the caller from ``path/model`` (before the optimizer is built)."""
    path = Path(path)
    if any((path / name).exists() for name in PICKLED) and not (path / "optimizer.json").is_file():
        raise KitError(f"{path}: written by an older wavalign-kit with pickle files ({', '.join(PICKLED)}), which the "
                       "kit no longer loads (unpickling a file can execute code). Its weights are safe: start a new "
                       f"run from them with base_model={path / 'model'}, or delete {path.parent / LATEST} to restart")
    meta = json.loads((path / "optimizer.json").read_text())
    optimizer.load_state_dict(_join_optimizer(load_file(str(path / "optimizer.safetensors")), meta))
    scheduler.load_state_dict(meta["scheduler"])
    rngs = _join_rng(load_file(str(path / "rng.safetensors")), json.loads((path / "rng.json").read_text()))
    return json.loads((path / STATE).read_text()), rngs
