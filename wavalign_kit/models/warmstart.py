"""Warm start: supervised fine-tuning of a tiny base model on the world's train split, through the training core
(an ``algorithm: sft`` run with its own data and schedule), resumable, with a loss curve and held-out figures."""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wavalign_kit.config import from_dict, load_profile, parse_overrides
from wavalign_kit.files import write_json
from wavalign_kit.models.base import SpokenDialogueModel
from wavalign_kit.models.factory import ModelsConfig, build_model, count_parameters
from wavalign_kit.models.sampling import Sampling

SUMMARY = "warmstart_summary.json"
TRAINING = "training"      # the SFT run of the training core (metrics.csv, checkpoints)
BEFORE_ITS_KEY: dict[str, Any] = {"forced_tokens": True}   # what a base built before a key existed ran with


@dataclass
class WarmstartConfig:
    """The ``warmstart:`` profile section."""

    size: str = "smoke"              # tiny model size (models/factory.py SIZES)
    steps: int = 60
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 10
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    eval_every: int = 50             # validation loss every this many steps (0 = only at the end)
    valid_examples: int = 64
    checkpoint_every: int = 50       # resumable checkpoint every this many steps
    eval_examples: int = 64          # held-out test examples for the base model's IQ / WER / style figures
    eval_batch: int = 32
    max_new_tokens: int = 200
    temperature: float = 0.7         # sampling for the held-out figures (text and speech)
    top_p: float = 0.9
    text_weight: float = 1.0         # weight of text tokens relative to speech tokens in the SFT loss
    forced_tokens: bool = False      # true: also a loss on positions the decoder forces (parallel text_pad filler)
    seed: int = 0


def _style_names(predicted, styles: list[str]) -> list[str]:
    return [styles[int(p)] if not isinstance(p, str) else p for p in predicted]


@torch.no_grad()
def evaluate_base(model: SpokenDialogueModel, world, examples, cfg: WarmstartConfig) -> dict[str, Any]:
    """Held-out figures of a model: text-channel task accuracy (IQ), accuracy of the recognised speech,
    recogniser WER of its own speech against its own text, and style accuracy of its speech (EQ)."""
    from wavalign_kit.evaluators import word_error_rate
    from wavalign_kit.world.tasks import verify

    sampling = Sampling(cfg.temperature, cfg.top_p)
    texts, units = [], []
    for i in tqdm(range(0, len(examples), cfg.eval_batch), desc="warmstart eval", leave=False):
        chunk = examples[i: i + cfg.eval_batch]
        r = model.generate(chunk, num_samples=1, text_sampling=sampling, speech_sampling=sampling,
                           max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + i)
        texts += r.texts
        units += [np.asarray(u).reshape(len(u), -1)[:, 0] if np.asarray(u).ndim > 1 else np.asarray(u) for u in r.units]
    ev = world.evaluators
    heard = ev.recognizer.transcribe(units)
    styles = [s if len(u) else "" for s, u in                        # no speech: no style heard
              zip(_style_names(ev.style.predict(units), list(getattr(ev.style, "styles", []))), units)]
    text_ok = np.array([verify(ex, t) for ex, t in zip(examples, texts)], dtype=float)
    speech_ok = np.array([verify(ex, h) for ex, h in zip(examples, heard)], dtype=float)
    wer = np.array([min(1.0, float(word_error_rate(t, h))) if t.strip() else 1.0 for t, h in zip(texts, heard)])
    style_ok = np.array([s == ex.style for s, ex in zip(styles, examples)], dtype=float)
    by_type = {tt: float(text_ok[[ex.task_type == tt for ex in examples]].mean())
               for tt in sorted({ex.task_type for ex in examples})}
    return {
        "examples": len(examples),
        "iq_text_accuracy": float(text_ok.mean()),
        "iq_speech_accuracy": float(speech_ok.mean()),
        "iq_text_accuracy_by_type": by_type,
        "wer_speech_vs_text": float(wer.mean()),
        "style_accuracy": float(style_ok.mean()),
        "mean_text_words": float(np.mean([len(t.split()) for t in texts])),
        "mean_speech_units": float(np.mean([len(u) for u in units])),
        "samples": [{"id": ex.id, "question": ex.question_text, "target": ex.target_text, "text": t, "heard": h,
                     "style": ex.style, "predicted_style": s}
                    for ex, t, h, s in list(zip(examples, texts, heard, styles))[:8]],
    }


def _write_curve(out: Path, metrics: Path) -> list[dict[str, float]]:
    """loss.csv (step, loss, lr, valid_loss) and loss.png from the training run's metrics.csv."""
    from wavalign_kit.train.metrics_log import read_metrics

    def number(x: str) -> float:
        return float(x) if x else float("nan")

    rows = [{"step": int(r["step"]), "loss": number(r["loss"]), "lr": number(r["lr"]),
             "valid_loss": number(r.get("valid_loss", ""))} for r in read_metrics(metrics)]
    with open(out / "loss.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "loss", "lr", "valid_loss"])
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="train")
    val = [(r["step"], r["valid_loss"]) for r in rows if r["valid_loss"] == r["valid_loss"]]
    if val:
        ax.plot(*zip(*val), "o-", label="valid")
    ax.set(title="Warm start: response NLL", xlabel="optimizer step", ylabel="loss (nats / token)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)
    return rows


def train_config(cfg: WarmstartConfig, *, progress: bool = True):
    """The warm start as a run of the training core: SFT on the world's ``train`` split with its own schedule
    (AdamW, warm-up + cosine to 10 %), text tokens weighted ``text_weight``, the held-out loss on ``valid``."""
    from wavalign_kit.train.config import TrainConfig

    return TrainConfig(algorithm="sft", split="train", steps=cfg.steps, prompts_per_step=cfg.batch_size, lr=cfg.lr,
                       warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip,
                       min_lr_ratio=0.1, anchor=True, anchor_token_type="all", anchor_text_weight=cfg.text_weight,
                       anchor_forced=cfg.forced_tokens,
                       mixer="none", seed=cfg.seed, save_every=cfg.checkpoint_every, keep_checkpoints=1,
                       eval_every=cfg.eval_every or cfg.steps, eval_split="valid", eval_examples=cfg.valid_examples,
                       bf16=False, progress=progress)


def run_warmstart(world, arch: str, cfg: WarmstartConfig | dict, out_dir: str | Path, *,
                  models_cfg: ModelsConfig | dict | None = None, evaluate: bool = True) -> dict[str, Any]:
    """Warm-start a tiny ``arch`` model on ``world``'s train split into ``out_dir``; returns the summary.

    ``out_dir`` then holds the model (``SpokenDialogueModel.load(out_dir)``), ``loss.csv``/``loss.png``,
    ``warmstart_summary.json`` with the base model's held-out figures, and ``training/`` (the SFT run of the
    training core: metrics.csv and checkpoints). An interrupted warm start resumes from its last checkpoint; a
    finished one is returned as is.
    """
    from wavalign_kit.train.run import train

    cfg = cfg if isinstance(cfg, WarmstartConfig) else from_dict(WarmstartConfig, cfg, "warmstart")
    mcfg = models_cfg if isinstance(models_cfg, ModelsConfig) else from_dict(ModelsConfig, models_cfg or {}, "models")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"arch": arch, "warmstart": asdict(cfg), "ratio": mcfg.tiny_ratio, "speech_delay": mcfg.tiny_delay,
                "world": str(getattr(world, "root", ""))}
    if (out / SUMMARY).is_file():
        done = json.loads((out / SUMMARY).read_text())
        stored = done.get("settings") or {}
        if isinstance(stored.get("warmstart"), dict):        # a key added since it was built: the value it ran with
            stored = {**stored, "warmstart": {**asdict(WarmstartConfig()), **BEFORE_ITS_KEY, **stored["warmstart"]}}
        if stored == settings:
            return done
    model = build_model(arch, cfg.size, world.tokenizer, world.codec, num_units=getattr(world, "num_units", None),
                        ratio=mcfg.tiny_ratio, speech_delay=mcfg.tiny_delay, seed=cfg.seed)
    start = time.perf_counter()
    train(train_config(cfg), model, world, out / TRAINING, log=lambda *_: None)
    train_seconds = time.perf_counter() - start
    model.model.eval()
    model.save(out)
    rows = _write_curve(out, out / TRAINING / "metrics.csv")
    summary: dict[str, Any] = {
        "arch": arch, "size": cfg.size, "parameters": count_parameters(model), "steps": len(rows),
        "train_seconds": round(train_seconds, 1), "first_loss": rows[0]["loss"] if rows else None,
        "final_loss": rows[-1]["loss"] if rows else None,
        "final_valid_loss": rows[-1]["valid_loss"] if rows else None, "settings": settings,
    }
    if evaluate:
        test = world.split("test")[: cfg.eval_examples]
        summary["heldout"] = evaluate_base(model, world, test, cfg)
    write_json(out / SUMMARY, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``wavalign warmstart --profile P --world DIR --arch {interleaved,parallel} --out DIR [key=value ...]``."""
    from wavalign_kit.config import deep_update
    from wavalign_kit.world import load_world

    p = argparse.ArgumentParser(prog="wavalign warmstart", description=__doc__)
    p.add_argument("--profile", default="smoke", help="profile name (smoke, cpu, gpu) or a YAML path")
    p.add_argument("--world", required=True, help="directory of a built world")
    p.add_argument("--arch", choices=["interleaved", "parallel"], default=None, help="default: models.arch")
    p.add_argument("--out", required=True, help="output directory for the warm-started model")
    p.add_argument("overrides", nargs="*", help="warmstart.steps=100 models.ratio='2 8' ...")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    prof = deep_update(load_profile(a.profile), parse_overrides(a.overrides))
    wcfg = from_dict(WarmstartConfig, {"seed": prof.get("seed", 0), **(prof.get("warmstart") or {})}, "warmstart")
    mcfg = from_dict(ModelsConfig, prof.get("models") or {}, "models")
    summary = run_warmstart(load_world(a.world), a.arch or mcfg.arch, wcfg, a.out, models_cfg=mcfg)
    figures = {k: v for k, v in summary.get("heldout", {}).items() if k != "samples"}
    print(json.dumps({k: summary[k] for k in ("arch", "size", "parameters", "steps", "train_seconds",
                                              "first_loss", "final_loss")} | {"heldout": figures}, indent=2))
    return 0
