"""Training evaluator sets on synthesised speech (never on model outputs), in parallel, with a cache; the loaded bundle.

A *set* is a recogniser, a style classifier and a unit LM trained on one list of utterances. The world trains
two: the reward models (``WORLD/evaluators``, used by rewards) and the examiners (``WORLD/examiners``, used by
evaluation), on disjoint utterances with other seeds (see ``world/evaluator_speech.py``). Every model of
every set is one job; jobs run on ``workers`` processes, the longest (the recognisers) first. A set whose
config and utterances match a set trained before is copied from the cache (``evaluators/cache.py``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wavalign_kit.evaluators.cache import reuse_cached_set, set_cache_key, store_cached_set
from wavalign_kit.evaluators.config import EvaluatorConfig, resolve_device
from wavalign_kit.evaluators.jobs import KINDS, EvaluatorJob, model_spec, run_job
from wavalign_kit.evaluators.recognizer import Recognizer
from wavalign_kit.evaluators.style import StyleClassifier
from wavalign_kit.evaluators.unit_lm import UnitLM
from wavalign_kit.worker_pool import map_in_processes

MANIFEST = "utterances.jsonl"      # one line per utterance a set learnt from or was scored on


@dataclass
class EvaluatorSet:
    """What to train: items dict(units, text, style[, audio]) for training and for the held-out figures."""

    train_items: Sequence[dict]
    heldout_items: Sequence[dict]
    out_dir: str | Path
    cfg: EvaluatorConfig
    unit_features: np.ndarray | None = None    # the codec's (SpeechCodec.unit_features), for the recogniser's init


def _check_items(items: Sequence[dict], name: str) -> None:
    if not items:
        raise ValueError(f"{name}: give at least one item dict(units=..., text=..., style=...)")
    for i, item in enumerate(items):
        missing = {"units", "text", "style"} - set(item)
        if missing:
            raise ValueError(f"{name}[{i}]: missing field(s) {sorted(missing)}; items are dict(units, text, style)")


def dev_split(n_train: int, cfg: EvaluatorConfig) -> np.ndarray:
    """Indices of the training items kept aside for early stopping (at most a tenth of them, seeded)."""
    n_dev = min(cfg.dev_utterances, n_train // 10)
    return np.sort(np.random.default_rng(cfg.seed).choice(n_train, size=n_dev, replace=False))


def recognizer_init(es: EvaluatorSet) -> np.ndarray | None:
    """The unit features the set's recogniser starts from: the codec's, unless its config turns the init off."""
    return es.unit_features if es.cfg.recognizer_unit_init and es.unit_features is not None else None


def _manifest(train: Sequence[dict], dev: Sequence[dict], heldout: Sequence[dict]) -> str:
    rows = [{"audio": it.get("audio"), "text": it["text"], "style": it["style"], "use": use}
            for use, items in (("train", train), ("dev", dev), ("heldout", heldout)) for it in items]
    return "".join(json.dumps(r) + "\n" for r in rows)


def _job_items(items: Sequence[dict]) -> list[dict]:
    """What a job needs of each item (units, text, style): less to send to a worker process."""
    return [{k: it[k] for k in ("units", "text", "style")} for it in items]


def _set_jobs(name: str, es: EvaluatorSet, progress: bool) -> tuple[list[EvaluatorJob], dict[str, Any]]:
    """The three jobs of a set and the set's fixed facts (sizes, device, architecture)."""
    cfg = es.cfg
    num_units = cfg.num_units or 1 + max(int(np.max(it["units"])) for it in [*es.train_items, *es.heldout_items])
    dev_idx = set(dev_split(len(es.train_items), cfg).tolist())
    train = [it for i, it in enumerate(es.train_items) if i not in dev_idx]
    dev = [es.train_items[i] for i in sorted(dev_idx)]
    init = recognizer_init(es)
    jobs = [EvaluatorJob(kind=kind, set_name=name, cfg=cfg, spec=model_spec(kind, cfg, num_units, train),
                         train=_job_items(train), dev=_job_items(dev), heldout=_job_items(es.heldout_items),
                         out_dir=str(Path(es.out_dir) / kind), progress=progress,
                         unit_features=init if kind == "recognizer" else None) for kind in KINDS]
    facts = {"scale": cfg.scale, "train_utterances": len(train), "dev_utterances": len(dev),
             "heldout_utterances": len(es.heldout_items), "num_units": num_units,
             "device": str(resolve_device(cfg.device)), "seed": cfg.seed,
             "recognizer_encoder": cfg.recognizer_encoder, "recognizer_tokens": cfg.recognizer_tokens,
             "recognizer_unit_init": init is not None}
    Path(es.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(es.out_dir) / MANIFEST).write_text(_manifest(train, dev, es.heldout_items))
    return jobs, facts


def train_evaluator_sets(sets: dict[str, EvaluatorSet], *, workers: int = 1, cache_root: str | Path | None = None,
                         progress: bool = True) -> dict[str, dict[str, Any]]:
    """Train (or reuse from ``cache_root``) every set; returns each set's held-out figures, also in its metrics.json.

    Figures per set: ``recognizer_wer`` (corpus WER; per style in ``recognizer_wer_by_style``),
    ``style_accuracy``, ``unit_lm_nll`` (nats per unit), sizes, ``seconds_<model>`` (each model's own
    training and scoring time; ``seconds`` is their sum), ``losses`` (mean training loss per epoch),
    ``training`` (updates, early stop, development checks per model) and ``cache`` (key, trained/reused/off).
    """
    results: dict[str, dict[str, Any]] = {}
    pending: list[EvaluatorJob] = []
    facts: dict[str, dict[str, Any]] = {}
    keys: dict[str, str] = {}
    for name, es in sets.items():
        _check_items(es.train_items, f"{name}.train_items")
        _check_items(es.heldout_items, f"{name}.heldout_items")
        es.cfg.validate()
        keys[name] = set_cache_key(es.cfg, es.train_items, es.heldout_items, recognizer_init(es))
        if cache_root is not None:
            reused = reuse_cached_set(Path(cache_root), keys[name], Path(es.out_dir))
            if reused is not None:
                results[name] = {**reused, "cache": {"key": keys[name], "status": "reused"}}
                (Path(es.out_dir) / "metrics.json").write_text(json.dumps(
                    {**results[name], "config": dataclasses.asdict(es.cfg)}, indent=1, default=float))
                continue
        jobs, facts[name] = _set_jobs(name, es, progress and workers == 1)
        pending += jobs
    on_gpu = any(resolve_device(j.cfg.device).type == "cuda" for j in pending)
    pending.sort(key=lambda j: KINDS.index(j.kind))           # recognisers (the longest jobs) first
    outcomes = map_in_processes(run_job, pending, workers=1 if on_gpu else workers, desc="train evaluators",
                                progress=progress and workers > 1)
    for name in facts:
        figures: dict[str, Any] = dict(facts[name])
        for job, outcome in zip(pending, outcomes):
            if job.set_name == name:
                figures.update({k: v for k, v in outcome.items() if k not in ("losses", "training")})
                figures.setdefault("losses", {})[job.kind] = outcome["losses"]
                figures.setdefault("training", {})[job.kind] = outcome["training"]
        figures["seconds"] = sum(figures[f"seconds_{kind}"] for kind in KINDS)
        figures["cache"] = {"key": keys[name], "status": "trained" if cache_root is not None else "off"}
        out = Path(sets[name].out_dir)
        (out / "metrics.json").write_text(json.dumps(
            {**figures, "config": dataclasses.asdict(sets[name].cfg)}, indent=1, default=float))
        if cache_root is not None:
            store_cached_set(Path(cache_root), keys[name], out)
        results[name] = figures
    for name, figures in results.items():
        print(f"{name} (held-out): " + ", ".join(
            f"{k}={figures[k]:.3f}" for k in ("recognizer_wer", "style_accuracy", "unit_lm_nll", "seconds"))
            + "; recognizer WER by style: "
            + ", ".join(f"{s} {w:.3f}" for s, w in figures["recognizer_wer_by_style"].items())
            + f"; {figures['cache']['status']}", flush=True)
    return {name: results[name] for name in sets}


def train_evaluators(train_items: Sequence[dict], heldout_items: Sequence[dict], out_dir: str | Path,
                     cfg: EvaluatorConfig | None = None, *, workers: int = 1, cache_root: str | Path | None = None,
                     progress: bool = True, unit_features: np.ndarray | None = None) -> dict[str, Any]:
    """Train one set (recogniser, style classifier, unit LM) into ``out_dir``; its held-out figures.

    Items are dict(units=np.ndarray (T,), text=str, style=str[, audio=str]) of synthesised speech. Saves
    out_dir/{recognizer,style,unit_lm}/, out_dir/metrics.json and out_dir/utterances.jsonl (the manifest).
    ``unit_features``: the codec's (SpeechCodec.unit_features), which the recogniser's unit embeddings start from.
    """
    sets = {"evaluators": EvaluatorSet(train_items, heldout_items, out_dir, cfg or EvaluatorConfig(), unit_features)}
    return train_evaluator_sets(sets, workers=workers, cache_root=cache_root, progress=progress)["evaluators"]


@dataclass
class Evaluators:
    """The three trained models of a set, loaded from `dir/{recognizer,style,unit_lm}` (reward models or examiners)."""

    recognizer: Recognizer
    style: StyleClassifier
    unit_lm: UnitLM

    @classmethod
    def load(cls, dir: str | Path) -> Evaluators:
        d = Path(dir)
        return cls(Recognizer.load(d / "recognizer"), StyleClassifier.load(d / "style"), UnitLM.load(d / "unit_lm"))


def read_manifest(dir: str | Path) -> list[dict[str, Any]]:
    """The utterances a saved set learnt from (use "train"/"dev") and was scored on ("heldout")."""
    path = Path(dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {dir} is not a set saved by train_evaluators")
    return [json.loads(line) for line in path.read_text().splitlines()]
