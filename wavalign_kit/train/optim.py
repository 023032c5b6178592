"""AdamW with linear warm-up and cosine decay (DESIGN.md section 2: betas (0.9, 0.95), weight decay 0.01)."""

from __future__ import annotations

import math
import warnings

import torch

from wavalign_kit.train.config import TrainConfig


def warmup_cosine(step: int, *, warmup: int, total: int, floor: float) -> float:
    """LR multiplier: linear from 1/(warmup+1) to 1 over ``warmup`` steps, then cosine from 1 down to ``floor``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(params, cfg: TrainConfig) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable ``params`` (no weight decay on biases and norms) and its warm-up + cosine schedule."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("build_optimizer: the model has no trainable parameter (all frozen?)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, warmup=cfg.warmup_steps, total=cfg.steps, floor=cfg.min_lr_ratio))
    return opt, sched


def step_scheduler(scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Advance the schedule once per optimiser step, also after a step that skipped its update."""
    with warnings.catch_warnings():  # torch warns when the optimizer did not step first; that is intended here
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        scheduler.step()
