"""The evaluators' training loop: length-bucketed batches, AdamW with warm-up and cosine decay, early stopping."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wavalign_kit.evaluators.base import UnitEvaluator, batched
from wavalign_kit.evaluators.config import EvaluatorConfig

# A development figure of a model on (units, targets): lower is better (WER, error rate, NLL).
DevFigure = Callable[[UnitEvaluator, Sequence[np.ndarray], Sequence[Any]], float]


@dataclass
class FitResult:
    """What one model's training did: mean loss per (possibly partial) epoch, updates, the development checks."""

    losses: list[float]
    updates: int
    planned_updates: int
    stopped_early: bool = False
    best_update: int | None = None                                   # the update whose weights were kept
    dev_checks: list[tuple[int, float]] = field(default_factory=list)   # (update, development figure)


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Batches of indices of similar length (sorted by length, then cut): little padding in each batch."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[list(r)] for r in batched(len(order), batch_size)]


def fit(model: UnitEvaluator, units: list[np.ndarray], targets: list[Any], *, epochs: float, cfg: EvaluatorConfig,
        desc: str, dev: tuple[list[np.ndarray], list[Any]] | None = None, dev_figure: DevFigure | None = None,
        progress: bool = True) -> FitResult:
    """Train ``model`` for at most ``epochs`` passes over length-bucketed batches (shuffled batch order).

    With ``dev`` and ``dev_figure``, the figure is checked ``cfg.dev_checks`` times, evenly over the planned
    updates; in the second half of them (learning rate below half its peak), training stops after
    ``cfg.patience`` checks without a new best. The best-scoring weights are restored at the end.
    Stopping earlier would keep a snapshot taken at a high learning rate: on the cpu world's style
    classifier that gave 92 % held-out accuracy instead of 97 %.
    """
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    batches = length_buckets([len(u) for u in units], cfg.batch_size)
    steps = max(1, math.ceil(epochs * len(batches)))
    warmup = max(1, steps // 20)
    opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    checking = dev is not None and dev_figure is not None and len(dev[0]) > 0
    check_at = {math.ceil(steps * (k + 1) / cfg.dev_checks) for k in range(cfg.dev_checks)}
    result = FitResult(losses=[], updates=0, planned_updates=steps)
    best, best_state, since_best = math.inf, None, 0
    model.net.train()
    with tqdm(total=steps, desc=desc, leave=False, disable=not progress, mininterval=1.0) as bar:
        while result.updates < steps and not result.stopped_early:
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
                result.updates += 1
                bar.update()
                if checking and result.updates in check_at:
                    figure = dev_figure(model, *dev)
                    model.net.train()
                    result.dev_checks.append((result.updates, figure))
                    bar.set_postfix(dev=f"{figure:.3f}")
                    if figure < best:
                        best, since_best, result.best_update = figure, 0, result.updates
                        best_state = copy.deepcopy(model.net.state_dict())
                    else:
                        since_best += 1
                        result.stopped_early = (since_best >= cfg.patience and 2 * result.updates > steps
                                                and result.updates < steps)
                if result.updates >= steps or result.stopped_early:
                    break
            result.losses.append(float(np.mean(losses)))
    if best_state is not None:
        model.net.load_state_dict(best_state)
    model.net.eval()
    return result
