"""Takeaways: the sentences each notebook and the report print under a figure or table, made from its numbers.

No sentence is fixed text about results: each function reads the run's figures and chooses its wording from them
(a change whose interval excludes 0 is a change; one whose interval includes 0 is "no detectable change"), so a
takeaway cannot contradict the numbers next to it. One module per notebook, over one module of phrasing.
"""

from wavalign_kit.takeaways.analysis import (
    channel_reading,
    component_reading,
    dilution_reading,
    gate_reading,
    gradient_reading,
    judge_reading,
    reward_analysis_reading,
    rollout_reading,
)
from wavalign_kit.takeaways.evaluation import claims_reading, deltas_reading, evaluation_reading
from wavalign_kit.takeaways.phrasing import change, compare, estimate
from wavalign_kit.takeaways.training import mask_reading, training_reading, worked_step_reading
from wavalign_kit.takeaways.world import (
    base_model_reading,
    profile_notice,
    quality_table,
    speaking_rate_reading,
    warmstart_reading,
    world_reading,
)

__all__ = ["base_model_reading", "change", "channel_reading", "claims_reading", "compare", "component_reading", "deltas_reading",
           "dilution_reading", "estimate", "evaluation_reading", "gate_reading", "gradient_reading", "judge_reading",
           "mask_reading", "profile_notice", "quality_table", "reward_analysis_reading", "rollout_reading",
           "speaking_rate_reading", "training_reading", "warmstart_reading", "worked_step_reading", "world_reading"]
