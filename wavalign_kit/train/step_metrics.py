"""One metrics.csv row per optimiser step: the micro-batches' figures reduced over processes, rewards, the gate.

Losses return their statistics as 0-d tensors; `to_floats` turns a step's worth into Python floats with one host
synchronisation. Figures a step does not produce are None (an empty cell); a NaN/inf loss or gradient norm stays
in the row as such (metrics.csv writes it literally).
"""

from __future__ import annotations

import math
import resource
from typing import Any

import numpy as np
import torch

from wavalign_kit.rollout_stats import group_reward_stats

MEAN_KEYS = ("loss", "loss_rl", "loss_anchor", "loss_dpo", "kl_text", "kl_speech", "chosen_logp_drop_text",
             "chosen_logp_drop_speech", "entropy_text", "entropy_speech",
             "len_text", "len_speech", "dpo_accuracy", "clip_frac", "grad_norm_text", "grad_norm_speech", "valid_loss")
SUM_KEYS = ("rows_skipped", "pairs", "pairs_skipped", "train_tokens")
ROLLOUT_KEYS = ("judge_failures", "time_generate", "time_reward")
GATE_KEYS = ("lambda_raw", "reward_gate", "info_gate", "reward_var")


def step_seed(seed: int, *parts: int) -> int:
    """A generation seed that depends only on (seed, step, micro-batch, rank): resumed runs sample the same."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated (CUDA) or the process's peak resident memory (CPU), in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def to_floats(stats: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The micro-batches' statistics as floats, all tensors moved to the host in one go."""
    keys = [(i, k) for i, st in enumerate(stats) for k, v in st.items() if isinstance(v, torch.Tensor)]
    values = torch.stack([stats[i][k].detach().double().cpu() for i, k in keys]).tolist() if keys else []
    out = [{k: v if isinstance(v, torch.Tensor) else float(v) for k, v in st.items()} for st in stats]
    for (i, k), v in zip(keys, values):
        out[i][k] = v
    return out


def _reduce(acc, values: dict[str, float], keys: tuple[str, ...], mean: bool) -> dict[str, float | None]:
    """Mean (or sum) over processes of the figures each process has (NaN and missing = not produced there)."""
    vec = torch.tensor([[values.get(k, math.nan) for k in keys]], dtype=torch.float64, device=acc.device)
    ok = torch.isfinite(vec)
    total = acc.reduce(torch.cat([torch.where(ok, vec, torch.zeros_like(vec)), ok.double()]), "sum").tolist()
    return {k: (total[0][i] / total[1][i] if mean else total[0][i]) if total[1][i] else None
            for i, k in enumerate(keys)}


def _finite_mean(values: list[float]) -> float:
    ok = [v for v in values if math.isfinite(v)]
    return sum(ok) / len(ok) if ok else math.nan


def step_row(trainer, step: int, stage: str, stats: list[dict[str, float]], batches: list,
             rewards: np.ndarray | None, lam: float, mix_stats: dict[str, float], grad_norm: float | None
             ) -> dict[str, Any]:
    """The step's row of ``trainer``'s metrics.csv (``train_tokens`` is left in for tokens/s)."""
    acc, cfg, columns = trainer.acc, trainer.cfg, trainer.columns
    local = {k: _finite_mean([s[k] for s in stats if k in s]) for k in MEAN_KEYS}
    sums = {k: float(sum(s.get(k, 0.0) for s in stats)) for k in SUM_KEYS}
    names = [c for c in columns if c.startswith("reward/")]
    online = [b for b in batches if getattr(b, "rewards", None) is not None]
    if online:
        sums["judge_failures"] = float(sum(b.rewards.failures for b in online))
        sums["time_generate"] = sum(b.timings["time_generate"] for b in online)
        sums["time_reward"] = sum(b.timings["time_reward"] for b in online)
        local.update({n: float(np.mean(np.concatenate([b.rewards.components[n[7:]] for b in online]))) for n in names})
    row: dict[str, Any] = {"step": step + 1, **_reduce(acc, local, (*MEAN_KEYS, *names), True),
                           **_reduce(acc, sums, (*SUM_KEYS, *ROLLOUT_KEYS), False)}
    for k in ("time_generate", "time_reward"):
        row[k] = None if row[k] is None else row[k] / trainer.procs
    if rewards is not None:
        r = group_reward_stats(rewards)
        row.update({k: r[k] for k in ("reward_mean", "reward_std", "reward_max", "zero_var_share")})
        if trainer.reward_range is not None:  # rewards off the declared scale: the gate reads them wrongly
            low, high = trainer.reward_range
            row["reward_out_of_range"] = float(np.mean((rewards < low) | (rewards > high)))
            if row["reward_out_of_range"] > 0:
                trainer.log(f"[train] warning: {row['reward_out_of_range']:.0%} of the step's rewards lie outside "
                            f"the declared range [{low:g}, {high:g}]; set train.reward_range to the rewards' scale")
    else:
        row.update(judge_failures=None, time_generate=None, time_reward=None)
    row.update({k: mix_stats[k] for k in GATE_KEYS if k in mix_stats})
    row.update({"lambda": lam, "grad_norm": grad_norm, "nonfinite_steps": trainer.nonfinite})
    if trainer.step_nonfinite:
        row["loss"] = math.nan  # a step that did not update because its loss or gradient was not finite
    if cfg.algorithm != "dpo":
        row.update(pairs=None, pairs_skipped=None)
    return {k: v for k, v in row.items() if k in columns or k == "train_tokens"}
