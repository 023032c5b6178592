"""Training the evaluators on synthesised speech (never on model outputs), their config and the loaded bundle."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from wavalign_kit.evaluators.base import UnitEvaluator, batched
from wavalign_kit.evaluators.recognizer import Recognizer
from wavalign_kit.evaluators.style import StyleClassifier
from wavalign_kit.evaluators.unit_lm import UnitLM
from wavalign_kit.evaluators.wer import corpus_word_error_rate

Scale = Literal["smoke", "cpu", "gpu"]


@dataclass
class EvaluatorConfig:
    """Sizes and schedules of the three evaluators. The defaults are the `cpu` scale; see `preset`."""

    scale: Scale = "cpu"
    embed_dim: int = 64
    hidden: int = 128                 # conv channels and GRU width per direction; unit-LM GRU width
    layers: int = 3                   # residual conv layers of the recogniser and style encoders
    dropout: float = 0.1
    # cpu world (10800 training utterances, batch 16): ~5400 recogniser updates. Held-out WER fell with both
    # data and updates: 3200 utt x 10 epochs 17.8 %, x 20 epochs 13.7 %; 7200 x 10 9.3 %; 11200 x 8 8.2 %.
    recognizer_epochs: int = 8
    style_epochs: int = 1             # 675 updates: 98.5 % held-out accuracy
    unit_lm_epochs: int = 2
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    num_units: int | None = None      # codec units; None: largest unit seen in the items + 1
    recognizer_tokens: Literal["char", "word"] = "char"   # CTC over characters (+ lexicon) or words
    device: str = "auto"              # where the evaluators train: auto (cuda if available, else cpu), cpu, cuda:N

    @classmethod
    def preset(cls, scale: Scale, **overrides: Any) -> EvaluatorConfig:
        """The config of a named scale (smoke: seconds, cpu: minutes on 2 cores, gpu: larger) plus overrides."""
        presets: dict[str, dict[str, Any]] = {
            "smoke": dict(embed_dim=32, hidden=64, layers=2, recognizer_epochs=15, style_epochs=4,
                          unit_lm_epochs=3, batch_size=8),
            "cpu": {},
            "gpu": dict(embed_dim=128, hidden=256, layers=4, recognizer_epochs=20, style_epochs=4,
                        unit_lm_epochs=4, batch_size=64),
        }
        if scale not in presets:
            raise ValueError(f"scale={scale!r}: use one of {list(presets)}")
        return cls(scale=scale, **{**presets[scale], **overrides})


def _check_items(items: Sequence[dict], name: str) -> None:
    if not items:
        raise ValueError(f"{name}: give at least one item dict(units=..., text=..., style=...)")
    for i, item in enumerate(items):
        missing = {"units", "text", "style"} - set(item)
        if missing:
            raise ValueError(f"{name}[{i}]: missing field(s) {sorted(missing)}; items are dict(units, text, style)")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else must name a usable torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"evaluators.device={name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"evaluators.device={name!r}: CUDA is not available here; use auto or cpu")
    return device


def fit(model: UnitEvaluator, units: list[np.ndarray], targets: list[Any], *, epochs: int, cfg: EvaluatorConfig,
        desc: str) -> list[float]:
    """AdamW with linear warm-up and cosine decay; batches of similar length. Returns the mean loss per epoch."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    order = np.argsort([len(u) for u in units], kind="stable")
    batches = [order[list(r)] for r in batched(len(order), cfg.batch_size)]
    steps = max(1, epochs * len(batches))
    warmup = max(1, steps // 20)
    opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    model.net.train()
    history = []
    with tqdm(total=steps, desc=desc, leave=False) as bar:
        for _ in range(epochs):
            losses = []
            for b in rng.permutation(len(batches)):
                idx = batches[b]
                loss = model.loss([units[i] for i in idx], [targets[i] for i in idx])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.net.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                losses.append(loss.item())
                bar.update()
            history.append(float(np.mean(losses)))
            bar.set_postfix(loss=f"{history[-1]:.3f}")
    model.net.eval()
    return history


def train_evaluators(train_items: Sequence[dict], heldout_items: Sequence[dict], out_dir: str | Path,
                     cfg: EvaluatorConfig | None = None) -> dict[str, Any]:
    """Train the recogniser, style classifier and unit LM on `train_items`, score them on `heldout_items`.

    Items are dict(units=np.ndarray (T,), text=str, style=str) of synthesised speech. Saves
    out_dir/{recognizer,style,unit_lm}/ and out_dir/metrics.json; returns (and prints) the held-out figures
    `recognizer_wer` (corpus WER; per style in `recognizer_wer_by_style`), `style_accuracy`, `unit_lm_nll`
    (nats per unit), with sizes, seconds and `losses` (mean training loss per epoch of each evaluator).
    """
    cfg = cfg or EvaluatorConfig()
    device = resolve_device(cfg.device)
    _check_items(train_items, "train_items")
    _check_items(heldout_items, "heldout_items")
    num_units = cfg.num_units or 1 + max(int(np.max(it["units"])) for it in [*train_items, *heldout_items])
    units = [np.asarray(it["units"], dtype=np.int64) for it in train_items]
    held_units = [np.asarray(it["units"], dtype=np.int64) for it in heldout_items]
    common = dict(num_units=num_units, embed_dim=cfg.embed_dim, hidden=cfg.hidden, layers=cfg.layers,
                  dropout=cfg.dropout)
    texts = [it["text"] for it in train_items]
    styles = [it["style"] for it in train_items]
    out = Path(out_dir)
    result: dict[str, Any] = {"scale": cfg.scale, "train_utterances": len(units), "heldout_utterances": len(held_units),
                              "num_units": num_units, "device": str(device)}
    start = time.perf_counter()

    t0 = time.perf_counter()
    recognizer = Recognizer({**common, **Recognizer.spec_for(texts, cfg.recognizer_tokens)})
    recognizer.net.to(device)
    losses: dict[str, list[float]] = {}
    losses["recognizer"] = fit(recognizer, units, texts, epochs=cfg.recognizer_epochs, cfg=cfg, desc="recognizer (CTC)")
    hyps = recognizer.transcribe(held_units)
    refs, held_styles = [it["text"] for it in heldout_items], [it["style"] for it in heldout_items]
    result["recognizer_wer"] = corpus_word_error_rate(refs, hyps)
    result["recognizer_wer_by_style"] = {
        s: corpus_word_error_rate([r for r, st in zip(refs, held_styles) if st == s],
                                  [h for h, st in zip(hyps, held_styles) if st == s]) for s in sorted(set(held_styles))}
    result["recognizer_lexicon"] = len(recognizer.lexicon)
    result["seconds_recognizer"] = time.perf_counter() - t0
    recognizer.save(out / "recognizer")

    t0 = time.perf_counter()
    style = StyleClassifier({**common, "styles": sorted(set(styles))})
    style.net.to(device)
    losses["style"] = fit(style, units, styles, epochs=cfg.style_epochs, cfg=cfg, desc="style classifier")
    predicted = style.predict(held_units)
    result["style_accuracy"] = float(np.mean([p == it["style"] for p, it in zip(predicted, heldout_items)]))
    result["seconds_style"] = time.perf_counter() - t0
    style.save(out / "style")

    t0 = time.perf_counter()
    unit_lm = UnitLM({**common, "layers": 1})
    unit_lm.net.to(device)
    losses["unit_lm"] = fit(unit_lm, units, [None] * len(units), epochs=cfg.unit_lm_epochs, cfg=cfg, desc="unit LM")
    result["unit_lm_nll"] = float(-np.mean(unit_lm.score(held_units)))
    result["seconds_unit_lm"] = time.perf_counter() - t0
    unit_lm.save(out / "unit_lm")

    result["seconds"] = time.perf_counter() - start
    result["losses"] = losses
    (out / "metrics.json").write_text(json.dumps({**result, "config": dataclasses.asdict(cfg)}, indent=1))
    print("evaluators (held-out): " + ", ".join(
        f"{k}={result[k]:.3f}" for k in ("recognizer_wer", "style_accuracy", "unit_lm_nll", "seconds"))
        + "; recognizer WER by style: " + ", ".join(f"{s} {w:.3f}" for s, w in result["recognizer_wer_by_style"].items()))
    return result


@dataclass
class Evaluators:
    """The three trained evaluators of a world, loaded from `dir/{recognizer,style,unit_lm}`."""

    recognizer: Recognizer
    style: StyleClassifier
    unit_lm: UnitLM

    @classmethod
    def load(cls, dir: str | Path) -> Evaluators:
        d = Path(dir)
        return cls(Recognizer.load(d / "recognizer"), StyleClassifier.load(d / "style"), UnitLM.load(d / "unit_lm"))
