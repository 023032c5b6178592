"""Rewards: the interface and its weighted composition (`base`), the embedded world's rewards (`embedded`), 1..5
judges (`judges`: rubrics and score parsing; `api`: an OpenAI-compatible endpoint; `hf`: a local model) and
`build_reward`, which turns a config spec into a `CompositeReward` over a world (`build`)."""

from wavalign_kit.errors import JudgeFailure
from wavalign_kit.rewards.base import (
    Completion,
    CompositeReward,
    JudgeScores,
    RewardFunction,
    RewardResult,
    score_responses,
)
from wavalign_kit.rewards.build import (
    KNOWN_REWARDS,
    build_reward,
    judge_from_options,
    training_reward,
    world_calibration,
)
from wavalign_kit.rewards.embedded import naturalness_calibration

__all__ = ["KNOWN_REWARDS", "Completion", "CompositeReward", "JudgeFailure", "JudgeScores", "RewardFunction",
           "RewardResult", "build_reward", "judge_from_options", "naturalness_calibration", "score_responses",
           "training_reward", "world_calibration"]
