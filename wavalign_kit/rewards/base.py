"""The reward interface: completions in, one score per completion out, composed by weight.

Every reward function is ``fn(prompts, completions) -> list[float]`` (or `JudgeScores`, which adds how many calls
fell back to a default score) with three attributes: ``name``, ``channel`` ("semantic" rewards route to text
tokens, "acoustic" ones to speech tokens) and ``needs_audio`` (speech is decoded to audio only when some reward
needs it), and optionally ``score_range`` ((low, high): the adaptive gate maps rewards onto the 1..5 scale it is
calibrated for, so 0/1 verifiers and summed judges gate like a 1..5 judge). `CompositeReward` is the one place that checks every function's output (length, NaN, inf) and enforces
the share of failed judge calls a step may have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from wavalign_kit.errors import JudgeFailure

Channel = Literal["semantic", "acoustic"]


@dataclass
class Completion:
    """One sampled response: text channel, speech units and, when decoded, its audio at its true rate."""

    text: str
    units: np.ndarray
    audio: np.ndarray | None = None
    sample_rate: int = 16000


@dataclass
class JudgeScores:
    """What a judge returns: one score per completion and how many of them are a default after a failed call."""

    scores: list[float]
    failures: int = 0
    first_error: str | None = None


@runtime_checkable
class RewardFunction(Protocol):
    """What every reward function provides (see the module docstring)."""

    name: str
    channel: Channel
    needs_audio: bool

    def __call__(self, prompts: list[Any], completions: list[Completion]) -> list[float] | JudgeScores: ...


@dataclass
class RewardResult:
    """Weighted rewards of a batch: ``total`` = sum of weight * component; ``semantic`` / ``acoustic`` are the
    same sums restricted to each channel's functions (for channel-routed advantages); ``failures`` counts
    calls that fell back to a default score, per function in ``failures_by_name``."""

    total: np.ndarray
    components: dict[str, np.ndarray]
    failures: int
    semantic: np.ndarray = field(default_factory=lambda: np.zeros(0))
    acoustic: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failures_by_name: dict[str, int] = field(default_factory=dict)


class CompositeReward:
    """Weighted sum of reward functions; checks every function's output and counts (and limits) failures."""

    def __init__(self, items: list[tuple[RewardFunction, float]]):
        if not items:
            raise ValueError("CompositeReward needs at least one (reward function, weight) pair")
        names = [fn.name for fn, _ in items]
        if len(set(names)) != len(names):
            raise ValueError(f"CompositeReward: duplicate reward names {names}; give each function a unique name")
        for fn, w in items:
            if fn.channel not in ("semantic", "acoustic"):
                raise ValueError(f"reward {fn.name!r}: channel must be 'semantic' or 'acoustic', got {fn.channel!r}")
            if not math.isfinite(w):
                raise ValueError(f"reward {fn.name!r}: weight must be finite, got {w}")
        self.items = [(fn, float(w)) for fn, w in items]

    @property
    def needs_audio(self) -> bool:
        return any(fn.needs_audio for fn, _ in self.items)

    @property
    def names(self) -> list[str]:
        return [fn.name for fn, _ in self.items]

    @property
    def channels(self) -> set[str]:
        return {fn.channel for fn, _ in self.items}

    @property
    def score_range(self) -> tuple[float, float] | None:
        """The range of the weighted total, from each function's declared ``score_range`` (None if one has none)."""
        ranges = [getattr(fn, "score_range", None) for fn, _ in self.items]
        if any(r is None for r in ranges):
            return None
        ends = [sorted((w * lo, w * hi)) for (lo, hi), (_, w) in zip(ranges, self.items)]
        return sum(e[0] for e in ends), sum(e[1] for e in ends)

    def score(self, prompts: Sequence[Any], completions: Sequence[Completion],
              max_failure_share: float = 1.0) -> RewardResult:
        """Score ``completions`` (``prompts[i]`` asked for ``completions[i]``). Raises ValueError naming the
        function for a wrong length or a NaN/inf score, and JudgeFailure when more than ``max_failure_share`` of
        one function's calls failed."""
        if len(prompts) != len(completions):
            raise ValueError(f"reward: got {len(prompts)} prompts but {len(completions)} completions; "
                             "repeat each prompt once per completion")
        n = len(completions)
        if self.needs_audio:
            missing = [i for i, c in enumerate(completions) if c.audio is None]
            if missing:
                need = [fn.name for fn, _ in self.items if fn.needs_audio]
                raise ValueError(f"rewards {need} need decoded audio but completions {missing[:10]} have "
                                 "audio=None; decode the speech units when reward.needs_audio is True")
        components: dict[str, np.ndarray] = {}
        total, sums = np.zeros(n), {"semantic": np.zeros(n), "acoustic": np.zeros(n)}
        failures_by_name: dict[str, int] = {}
        for fn, w in self.items:
            out = fn(list(prompts), list(completions))
            judged = out if isinstance(out, JudgeScores) else JudgeScores(out)
            values, failed = judged.scores, judged.failures
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (n,):
                raise ValueError(f"reward {fn.name!r} returned shape {values.shape} for {n} completions")
            if not np.isfinite(values).all():
                bad = np.flatnonzero(~np.isfinite(values))[:10].tolist()
                kind = "NaN" if np.isnan(values).any() else "inf"
                raise ValueError(f"reward {fn.name!r} returned {kind} for completions {bad}")
            if n and failed / n > max_failure_share:
                raise JudgeFailure(f"reward {fn.name!r}: {failed} of {n} calls failed this step (more than "
                                   f"train.max_judge_failure_share={max_failure_share}); check the judge's endpoint, "
                                   "key and whether it accepts audio, or raise the share"
                                   + (f"; first error: {judged.first_error}" if judged.first_error else ""))
            components[fn.name] = values
            total += w * values
            sums[fn.channel] += w * values
            failures_by_name[fn.name] = int(failed)
        return RewardResult(total=total, components=components,
                            failures=sum(failures_by_name.values()), semantic=sums["semantic"],
                            acoustic=sums["acoustic"], failures_by_name=failures_by_name)


def score_responses(reward: CompositeReward, prompts: Sequence[Any], texts: Sequence[str],
                    units: Sequence[np.ndarray], codec: Any = None, max_failure_share: float = 1.0) -> RewardResult:
    """Score generated responses (text channel + speech units), decoding the units to audio with ``codec`` only
    when a reward needs audio."""
    completions = [Completion(text=t, units=np.asarray(u)) for t, u in zip(texts, units)]
    if reward.needs_audio:
        if codec is None:
            raise ValueError("a reward needs audio but no codec was given to decode the speech units")
        for c in completions:
            c.audio, c.sample_rate = codec.decode(c.units), int(codec.sample_rate)
    return reward.score(prompts, completions, max_failure_share)
