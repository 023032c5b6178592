"""Pair builder for DPO: from G scored responses per prompt, keep (best, worst) when their gap is large enough."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ScoreMode = Literal["sum", "semantic", "acoustic"]


@dataclass
class PairSet:
    """Chosen / rejected row indices (into the flat, prompt-major rollout) plus what was dropped and why."""

    chosen: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    prompt: list[int] = field(default_factory=list)   # group index of each pair
    margin: list[float] = field(default_factory=list)
    ties: int = 0            # groups whose best and worst score are equal
    below_margin: int = 0    # groups with a gap > 0 but < min_margin

    @property
    def dropped(self) -> int:
        return self.ties + self.below_margin


def pair_scores(total: np.ndarray, semantic: np.ndarray | None, acoustic: np.ndarray | None,
                mode: ScoreMode) -> np.ndarray:
    """The score that ranks responses: the total reward, or its semantic / acoustic channel sum."""
    chosen = {"sum": total, "semantic": semantic, "acoustic": acoustic}[mode]
    if chosen is None or len(chosen) != len(total):
        raise ValueError(f"pair_score_mode={mode!r} needs the rewards' {mode} channel; the reward has no "
                         f"{mode} functions (use pair_score_mode=sum or add a {mode} reward)")
    return np.asarray(chosen, dtype=np.float64)


def build_pairs(scores: Sequence[float] | np.ndarray, group_size: int, min_margin: float = 1.0) -> PairSet:
    """Best vs worst of each group of ``group_size`` consecutive scores when best - worst >= ``min_margin``.

    The first best and the first worst (lowest index) win ties inside a group; a group whose scores are all
    equal is a tie and is dropped and counted, as is a group whose gap is below ``min_margin``."""
    s = np.asarray(scores, dtype=np.float64)
    if group_size < 2 or s.ndim != 1 or len(s) % group_size:
        raise ValueError(f"build_pairs: {len(s)} scores do not split into groups of group_size={group_size} (>= 2)")
    if not np.isfinite(s).all():
        raise ValueError(f"build_pairs: scores at {np.flatnonzero(~np.isfinite(s))[:10].tolist()} are NaN or inf")
    if min_margin < 0:
        raise ValueError(f"build_pairs: min_margin must be >= 0, got {min_margin}")
    out = PairSet()
    for g, group in enumerate(s.reshape(-1, group_size)):
        best, worst = int(np.argmax(group)), int(np.argmin(group))
        gap = float(group[best] - group[worst])
        if gap == 0.0:
            out.ties += 1
        elif gap < min_margin:
            out.below_margin += 1
        else:
            out.chosen.append(g * group_size + best)
            out.rejected.append(g * group_size + worst)
            out.prompt.append(g)
            out.margin.append(gap)
    return out
