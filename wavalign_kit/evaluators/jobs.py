"""One evaluator model as one job: build it from its spec, train it with early stopping, score it, save it.

Jobs are self-contained and picklable, so the world build can run them on separate processes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wavalign_kit.evaluators.base import UnitEvaluator
from wavalign_kit.evaluators.config import EvaluatorConfig, resolve_device
from wavalign_kit.evaluators.encoder import init_unit_embeddings
from wavalign_kit.evaluators.fit import fit
from wavalign_kit.evaluators.recognizer import Recognizer
from wavalign_kit.evaluators.style import StyleClassifier
from wavalign_kit.evaluators.unit_lm import UnitLM
from wavalign_kit.evaluators.wer import corpus_word_error_rate

KINDS = ("recognizer", "style", "unit_lm")     # also the order jobs start in: the longest first
MODELS: dict[str, type[UnitEvaluator]] = {"recognizer": Recognizer, "style": StyleClassifier, "unit_lm": UnitLM}


@dataclass
class EvaluatorJob:
    """Train the ``kind`` model of set ``set_name`` on ``train`` (early stopping on ``dev``), score it on ``heldout``."""

    kind: str
    set_name: str
    cfg: EvaluatorConfig
    spec: dict[str, Any]
    train: list[dict]
    dev: list[dict]
    heldout: list[dict]
    out_dir: str
    progress: bool = True
    unit_features: np.ndarray | None = None   # (num_units, F): the unit embeddings start from them (init_unit_embeddings)


def model_spec(kind: str, cfg: EvaluatorConfig, num_units: int, train: Sequence[dict]) -> dict[str, Any]:
    """The JSON spec a model of ``kind`` is built from (sizes, and its vocabulary or style list)."""
    common = dict(num_units=num_units, embed_dim=cfg.embed_dim, hidden=cfg.hidden, layers=cfg.layers,
                  dropout=cfg.dropout)
    if kind == "recognizer":
        return {**common, "encoder": cfg.recognizer_encoder,
                **Recognizer.spec_for([it["text"] for it in train], cfg.recognizer_tokens)}
    if kind == "style":
        return {**common, "styles": sorted({it["style"] for it in train})}
    if kind == "unit_lm":
        return {**common, "layers": 1}
    raise ValueError(f"kind={kind!r}: use one of {list(KINDS)}")


def _units(items: Sequence[dict]) -> list[np.ndarray]:
    return [np.asarray(it["units"], dtype=np.int64) for it in items]


def _targets(kind: str, items: Sequence[dict]) -> list[Any]:
    return [it["text"] if kind == "recognizer" else it["style"] if kind == "style" else None for it in items]


def _dev_figure(kind: str):
    """Lower is better: WER of the recogniser, error rate of the style classifier, NLL per unit of the unit LM."""
    if kind == "recognizer":
        return lambda model, units, texts: corpus_word_error_rate(list(texts), model.transcribe(units))
    if kind == "style":
        return lambda model, units, styles: float(np.mean([p != s for p, s in zip(model.predict(units), styles)]))
    return lambda model, units, _: float(-np.mean(model.score(units)))


def heldout_figures(kind: str, model: UnitEvaluator, items: Sequence[dict]) -> dict[str, Any]:
    """The reported figures of a trained model on held-out items."""
    units = _units(items)
    if kind == "recognizer":
        refs, styles = [it["text"] for it in items], [it["style"] for it in items]
        hyps = model.transcribe(units)
        by_style = {s: corpus_word_error_rate([r for r, st in zip(refs, styles) if st == s],
                                              [h for h, st in zip(hyps, styles) if st == s]) for s in sorted(set(styles))}
        return {"recognizer_wer": corpus_word_error_rate(refs, hyps), "recognizer_wer_by_style": by_style,
                "recognizer_lexicon": len(model.lexicon)}
    if kind == "style":
        return {"style_accuracy": float(np.mean([p == it["style"] for p, it in zip(model.predict(units), items)]))}
    return {"unit_lm_nll": float(-np.mean(model.score(units)))}


def run_job(job: EvaluatorJob) -> dict[str, Any]:
    """Train, score and save one model; returns its held-out figures, ``seconds_<kind>`` (wall clock), losses and
    training facts (CPU seconds, updates, early stop, development checks)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    cfg = job.cfg
    torch.manual_seed(cfg.seed)              # initial weights: the same in any process
    model = MODELS[job.kind](job.spec)
    if job.unit_features is not None:
        init_unit_embeddings(model.net.encoder.embed, job.unit_features)
    model.net.to(resolve_device(cfg.device))
    epochs = {"recognizer": cfg.recognizer_epochs, "style": cfg.style_epochs, "unit_lm": cfg.unit_lm_epochs}[job.kind]
    result = fit(model, _units(job.train), _targets(job.kind, job.train), epochs=epochs, cfg=cfg,
                 desc=f"{job.set_name}: {job.kind}", dev=(_units(job.dev), _targets(job.kind, job.dev)),
                 dev_figure=_dev_figure(job.kind), progress=job.progress)
    figures = heldout_figures(job.kind, model, job.heldout)
    model.save(Path(job.out_dir))
    return {**figures, f"seconds_{job.kind}": time.perf_counter() - start, "losses": result.losses,
            "training": {"cpu_seconds": time.process_time() - start_cpu,     # this process's CPU time
                         "updates": result.updates, "planned_updates": result.planned_updates,
                         "stopped_early": result.stopped_early, "best_update": result.best_update,
                         "dev_checks": result.dev_checks}}
