"""Warm start: supervised fine-tuning of a tiny base model on the world's train split, resumable, with a loss curve."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wavalign_kit.config import from_dict, load_profile, parse_overrides
from wavalign_kit.models.base import SpokenDialogueModel
from wavalign_kit.models.factory import ModelsConfig, build_model, count_parameters
from wavalign_kit.models.sampling import Sampling

SUMMARY = "warmstart_summary.json"
CHECKPOINT = "checkpoint.pt"


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
    seed: int = 0


def sft_pairs(model: SpokenDialogueModel, examples) -> list[tuple[np.ndarray, np.ndarray]]:
    """(prompt ids, target response ids) of each example, the target laid out as the model generates it."""
    return [(model.encode_prompt(ex), model.encode_response(ex.target_text, ex.target_units)) for ex in examples]


def sft_loss(model: SpokenDialogueModel, pairs: list[tuple[np.ndarray, np.ndarray]],
             text_weight: float = 1.0) -> torch.Tensor:
    """Weighted token-mean negative log-likelihood of the responses (both channels; text tokens count
    ``text_weight`` times: a response holds several speech tokens per text token)."""
    batch = model.collate([p for p, _ in pairs], [r for _, r in pairs])
    logp, _ = model.token_logprobs(batch)
    w = batch.response_mask.float() + (text_weight - 1.0) * batch.text_mask.float()   # (B, N)
    w = w.to(logp.device)
    return -(logp * w).sum() / w.sum().clamp(min=1e-6)


def lr_lambda(cfg: WarmstartConfig):
    """Linear warm-up then cosine decay to 10 % of the peak rate."""
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return f


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
    nonempty = [u if len(u) else np.zeros(1, dtype=np.int64) for u in units]
    heard = ev.recognizer.transcribe(nonempty)
    styles = _style_names(ev.style.predict(nonempty), list(getattr(ev.style, "styles", [])))
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


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint


def _write_curve(out: Path, rows: list[dict[str, float]]) -> None:
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


def run_warmstart(world, arch: str, cfg: WarmstartConfig | dict, out_dir: str | Path, *,
                  models_cfg: ModelsConfig | dict | None = None, evaluate: bool = True) -> dict[str, Any]:
    """Warm-start a tiny ``arch`` model on ``world``'s train split into ``out_dir``; returns the summary.

    ``out_dir`` then holds the model (``SpokenDialogueModel.load(out_dir)``), ``loss.csv``/``loss.png`` and
    ``warmstart_summary.json`` with the base model's held-out figures. An interrupted run resumes from
    ``checkpoint.pt`` (model, optimizer, scheduler, RNG, step); a finished one is returned as is.
    """
    cfg = cfg if isinstance(cfg, WarmstartConfig) else from_dict(WarmstartConfig, cfg, "warmstart")
    mcfg = models_cfg if isinstance(models_cfg, ModelsConfig) else from_dict(ModelsConfig, models_cfg or {}, "models")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"arch": arch, "warmstart": asdict(cfg), "ratio": mcfg.ratio, "speech_delay": mcfg.speech_delay,
                "world": str(getattr(world, "root", ""))}
    if (out / SUMMARY).is_file():
        done = json.loads((out / SUMMARY).read_text())
        if done.get("settings") == settings:
            return done
    model = build_model(arch, cfg.size, world.tokenizer, world.codec, ratio=mcfg.ratio,
                        speech_delay=mcfg.speech_delay, seed=cfg.seed)
    train = sft_pairs(model, world.split("train"))
    valid = sft_pairs(model, world.split("valid")[: cfg.valid_examples])
    opt = torch.optim.AdamW(model.model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    step, rows, elapsed = 0, [], 0.0
    ckpt = out / CHECKPOINT
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        if state["settings"] != settings:
            raise ValueError(f"{ckpt}: written with other settings; remove it or use another --out")
        model.model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        step, rows, elapsed = state["step"], state["rows"], state["elapsed_s"]
    model.model.train()
    start = time.perf_counter() - elapsed
    bar = tqdm(total=cfg.steps, initial=step, desc=f"warmstart {arch}-{cfg.size}")
    while step < cfg.steps:
        idx = rng.choice(len(train), size=min(cfg.batch_size, len(train)), replace=False)
        loss = sft_loss(model, [train[i] for i in idx], cfg.text_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        row = {"step": step, "loss": float(loss.detach()), "lr": sched.get_last_lr()[0], "valid_loss": float("nan")}
        if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
            model.model.eval()
            with torch.no_grad():
                row["valid_loss"] = float(np.mean([float(sft_loss(model, valid[i: i + cfg.batch_size], cfg.text_weight))
                                                   for i in range(0, len(valid), cfg.batch_size)]))
            model.model.train()
        rows.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_checkpoint(ckpt, {"settings": settings, "model": model.model.state_dict(),
                                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                    "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                                    "step": step, "rows": rows, "elapsed_s": time.perf_counter() - start})
    bar.close()
    train_seconds = time.perf_counter() - start
    model.model.eval()
    model.save(out)
    _write_curve(out, rows)
    summary: dict[str, Any] = {
        "arch": arch, "size": cfg.size, "parameters": count_parameters(model), "steps": step,
        "train_seconds": round(train_seconds, 1), "first_loss": rows[0]["loss"] if rows else None,
        "final_loss": rows[-1]["loss"] if rows else None,
        "final_valid_loss": rows[-1]["valid_loss"] if rows else None, "settings": settings,
    }
    if evaluate:
        test = world.split("test")[: cfg.eval_examples]
        summary["heldout"] = evaluate_base(model, world, test, cfg)
    tmp = out / (SUMMARY + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / SUMMARY)
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
