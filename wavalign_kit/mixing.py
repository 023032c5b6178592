"""Mixing weight lambda of L = lambda * L_RL + (1 - lambda) * L_SFT: fixed, or WavAlign's adaptive gate, and the
one `mixed_loss` every method combines its preference term and the acoustic anchor with.

Distributed training: ``update`` takes the reward groups of the whole optimiser step *already gathered from
all processes* (the trainer all-gathers them), so every process computes the same lambda; call it once per
optimiser step, not per micro-batch, and checkpoint ``state_dict()`` so a resumed run keeps its EMA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from torch import Tensor

from .rollout_stats import group_moments


class FixedMixer:
    """Constant lambda (reference presets 0.5, 0.7, 0.8; DESIGN.md:43)."""

    def __init__(self, weight: float) -> None:
        if not 0.0 <= float(weight) <= 1.0:
            raise ValueError(f"weight: lambda must lie in [0, 1], got {weight}")
        self.weight = float(weight)
        self.value = self.weight
        self.stats: dict[str, float] = {"lambda": self.weight}

    def update(self, group_rewards: Sequence[Sequence[float]]) -> float:
        """Returns the constant lambda; logs the groups' mean reward max and variance."""
        _, reward_var, reward_max = group_moments(group_rewards)
        self.stats = {"reward_max": float(reward_max.mean()), "reward_var": float(reward_var.mean()),
                      "lambda": self.weight}
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "fixed", "weight": self.weight}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "fixed":
            raise ValueError(f"state: not a FixedMixer state (kind={state.get('kind')!r})")


class AdaptiveMixer:
    """WavAlign's adaptive lambda (DESIGN.md:44-49), per prompt group with rewards r on a 1..5 scale (rewards on
    another declared ``reward_range`` (low, high) are first mapped onto it: r -> 1 + 4 (r - low) / (high - low)):

    - info_gate   = clip(var(r) / reward_scale, 0, 1), population variance            (DESIGN.md:45)
    - reward_gate = sigmoid(gate_slope * (max(r) - reward_threshold))                    (DESIGN.md:46)
    - lambda_raw  = lambda_max * reward_gate * info_gate                                 (DESIGN.md:47)
    - lambda_g    = (1 - ema_alpha) * lambda_raw + ema_alpha * lambda_prev; first step lambda_raw (DESIGN.md:48)
    - lambda_g clamped to [0, lambda_max]; the step's lambda is the mean of lambda_g over the step's groups and
      becomes lambda_prev                                                                (DESIGN.md:49)

    Reading of DESIGN.md:48-49: the EMA is applied per group against the *previous step's* lambda (not chained
    across the groups of one step), each group's value is clamped, then the groups are averaged. ``use_ema=False``
    is the no-EMA ablation (lambda_g = lambda_raw). Before the first update ``value`` is 0 (pure anchor).
    ``stats`` holds the step's means over groups of reward_max, reward_var, reward_gate, info_gate, lambda_raw,
    lambda. See the module docstring for multi-process use.
    """

    def __init__(self, lambda_max: float = 0.8, ema_alpha: float = 0.9, gate_slope: float = 5.0,
                 reward_threshold: float = 3.0, reward_scale: float = 4.0, use_ema: bool = True,
                 reward_range: tuple[float, float] = (1.0, 5.0)) -> None:
        if not 0.0 <= lambda_max <= 1.0:
            raise ValueError(f"lambda_max: must lie in [0, 1], got {lambda_max}")
        if not 0.0 <= ema_alpha < 1.0:
            raise ValueError(f"ema_alpha: must lie in [0, 1), got {ema_alpha}")
        if reward_scale <= 0:
            raise ValueError(f"reward_scale: must be > 0 (the maximum reward variance, 4 on a 1..5 scale), got {reward_scale}")
        if gate_slope <= 0:
            raise ValueError(f"gate_slope: must be > 0, got {gate_slope}")
        low, high = (float(x) for x in reward_range)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"reward_range: expected (low, high) with low < high, got {reward_range}")
        self.reward_range = (low, high)
        self.lambda_max, self.ema_alpha, self.gate_slope = float(lambda_max), float(ema_alpha), float(gate_slope)
        self.reward_threshold, self.reward_scale, self.use_ema = float(reward_threshold), float(reward_scale), use_ema
        self.lambda_prev: float | None = None
        self.steps = 0
        self.value = 0.0
        self.stats: dict[str, float] = {}

    def _sigmoid(self, x: float) -> float:
        return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))

    def update(self, group_rewards: Sequence[Sequence[float]]) -> float:
        """One optimiser step: the gathered reward groups of all processes -> this step's lambda."""
        rows = []
        low, high = self.reward_range
        _, variances, maxima = group_moments(group_rewards)
        maxima = 1.0 + 4.0 * (maxima - low) / (high - low)            # onto the gate's 1..5 scale
        variances = variances * (4.0 / (high - low)) ** 2
        for reward_max, reward_var in zip(maxima.tolist(), variances.tolist()):
            info_gate = min(max(reward_var / self.reward_scale, 0.0), 1.0)
            reward_gate = self._sigmoid(self.gate_slope * (reward_max - self.reward_threshold))
            lambda_raw = self.lambda_max * reward_gate * info_gate
            lam = lambda_raw
            if self.use_ema and self.lambda_prev is not None:
                lam = (1 - self.ema_alpha) * lambda_raw + self.ema_alpha * self.lambda_prev
            lam = min(max(lam, 0.0), self.lambda_max)
            rows.append((reward_max, reward_var, reward_gate, info_gate, lambda_raw, lam))
        names = ("reward_max", "reward_var", "reward_gate", "info_gate", "lambda_raw", "lambda")
        self.stats = {k: sum(r[i] for r in rows) / len(rows) for i, k in enumerate(names)}
        self.value = self.lambda_prev = self.stats["lambda"]
        self.steps += 1
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "adaptive", "lambda_prev": self.lambda_prev, "steps": self.steps, "value": self.value,
                "config": {"lambda_max": self.lambda_max, "ema_alpha": self.ema_alpha, "gate_slope": self.gate_slope,
                           "reward_threshold": self.reward_threshold, "reward_scale": self.reward_scale,
                           "use_ema": self.use_ema, "reward_range": list(self.reward_range)}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the EMA state (lambda_prev, steps); the mixer keeps its own configuration."""
        if state.get("kind") != "adaptive" or not {"lambda_prev", "steps", "value"} <= state.keys():
            raise ValueError(f"state: not an AdaptiveMixer state (keys {sorted(state)})")
        self.lambda_prev = None if state["lambda_prev"] is None else float(state["lambda_prev"])
        self.steps, self.value = int(state["steps"]), float(state["value"])


def build_mixer(kind: Literal["none", "fixed", "adaptive"], **kw: Any) -> FixedMixer | AdaptiveMixer:
    """``"none"``: lambda = 1 (pure RL, no anchor); ``"fixed"``: FixedMixer(weight); ``"adaptive"``: AdaptiveMixer."""
    if kind == "none":
        if kw:
            raise ValueError(f"mixer: kind 'none' takes no options, got {sorted(kw)}")
        return FixedMixer(1.0)
    cls = {"fixed": FixedMixer, "adaptive": AdaptiveMixer}.get(kind)
    if cls is None:
        raise ValueError(f"kind: {kind!r} is not one of 'none', 'fixed', 'adaptive'")
    allowed = set(cls.__init__.__code__.co_varnames[1:cls.__init__.__code__.co_argcount])
    unknown = set(kw) - allowed
    if unknown:
        raise ValueError(f"mixer: unknown option(s) {sorted(unknown)} for kind {kind!r}; allowed: {sorted(allowed)}")
    return cls(**kw)


PAPER_RANGE = (1.0, 5.0)   # the judge scale the gate's defaults were set for


def reward_range(cfg: Any, reward: Any, log: Any = None) -> tuple[float, float]:
    """The range the gate reads rewards on: ``train.reward_range`` when declared, else the reward functions'
    declared ``score_range``, else the paper's 1..5 judge scale (said through ``log``; the trainer logs the share
    of rewards outside the range in metrics.csv)."""
    declared = cfg.reward_range or getattr(reward, "score_range", None)
    if declared is None and log is not None:
        log(f"[train] warning: the rewards {reward.names} declare no score_range; the gate assumes 1..5 (set "
            "train.reward_range=[low,high]); reward_out_of_range in metrics.csv shows how often that is wrong")
    low, high = declared or PAPER_RANGE
    return float(low), float(high)


def gate_settings(cfg: Any, reward: Any) -> dict[str, Any]:
    """The adaptive gate's settings in a training config (``lambda_max``, ``gate_slope``, ``reward_threshold``,
    ``reward_scale``) and the reward range it reads: what `AdaptiveMixer` and the notebooks' gate figures take."""
    keys = ("lambda_max", "gate_slope", "reward_threshold", "reward_scale")
    return {**{k: getattr(cfg, k) for k in keys}, "reward_range": reward_range(cfg, reward)}


def mixer_for(cfg: Any, reward: Any = None) -> FixedMixer | AdaptiveMixer:
    """The mixer a training config asks for (``mixer``: none -> lambda 1, fixed -> ``mix_weight``, adaptive -> the
    gate of `gate_settings` over ``reward`` with ``ema_alpha`` and ``use_ema``)."""
    if cfg.mixer == "none":
        return build_mixer("none")
    if cfg.mixer == "fixed":
        return build_mixer("fixed", weight=cfg.mix_weight)
    return build_mixer("adaptive", ema_alpha=cfg.ema_alpha, use_ema=cfg.use_ema, **gate_settings(cfg, reward))


def mixed_loss(pref: Tensor | None, anchor: Tensor | None, lam: float | Tensor) -> Tensor | None:
    """L = lam * L_pref + (1 - lam) * L_SFT (DESIGN.md:42). Without an anchor the preference term stands alone; a
    micro-batch whose preference term was skipped keeps (1 - lam) * L_SFT; None when there is nothing to train on."""
    if not 0.0 <= float(lam.detach() if isinstance(lam, Tensor) else lam) <= 1.0:
        raise ValueError(f"lam: mixing weight must lie in [0, 1], got {lam}")
    if anchor is None:
        return pref
    if pref is None:
        return (1.0 - lam) * anchor
    return lam * pref + (1 - lam) * anchor
