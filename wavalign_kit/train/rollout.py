"""Rollouts for the online methods: G sampled responses per prompt in one batched decode, then their rewards."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wavalign_kit.models.base import Rollout
from wavalign_kit.models.sampling import Sampling
from wavalign_kit.rewards import CompositeReward, RewardResult, score_responses
from wavalign_kit.train.config import TrainConfig


@dataclass
class ScoredRollout:
    """One micro-batch of P prompts x G responses (rows prompt-major, tokens kept as the rollout's TokenBatch) and
    their rewards."""

    examples: list                   # the P prompts (world Examples)
    rollout: Rollout
    rewards: RewardResult
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def group_size(self) -> int:
        return self.rollout.group_size

    @property
    def group_rewards(self) -> np.ndarray:
        """Total rewards as (P, G)."""
        return self.rewards.total.reshape(-1, self.group_size)


def samplings(cfg: TrainConfig) -> tuple[Sampling, Sampling]:
    """(text, speech) sampling settings; the speech channel inherits the text settings unless given."""
    text = Sampling(temperature=cfg.temperature, top_p=cfg.top_p)
    speech = Sampling(temperature=cfg.temperature if cfg.speech_temperature is None else cfg.speech_temperature,
                      top_p=cfg.top_p if cfg.speech_top_p is None else cfg.speech_top_p)
    return text, speech


def collect(model, examples: Sequence[Any], cfg: TrainConfig, reward: CompositeReward, codec: Any,
            seed: int, reference: bool = False) -> ScoredRollout:
    """Generate ``cfg.group_size`` responses per prompt in one batched call (from the reference policy with
    ``reference``), then score them (speech decoded to audio only when a reward needs it; the step stops when too
    many judge calls fail)."""
    text, speech = samplings(cfg)
    t0 = time.perf_counter()
    rollout = model.generate(list(examples), num_samples=cfg.group_size, text_sampling=text, speech_sampling=speech,
                             max_new_tokens=cfg.max_new_tokens, seed=seed, reference=reference)
    t1 = time.perf_counter()
    rewards = score_responses(reward, [examples[i] for i in rollout.prompt_index], rollout.texts, rollout.units,
                              codec, cfg.max_judge_failure_share)
    return ScoredRollout(list(examples), rollout, rewards,
                         {"time_generate": t1 - t0, "time_reward": time.perf_counter() - t1})
