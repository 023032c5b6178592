"""Post-training engine: online hybrid RL (WavAlign and its GRPO baselines), DPO with a pair builder, SFT."""

from wavalign_kit.train.config import TrainConfig, known_presets, preset_path, resolve_config
from wavalign_kit.train.pairs import PairSet, build_pairs
from wavalign_kit.train.trainer import Trainer

__all__ = ["PairSet", "TrainConfig", "Trainer", "build_pairs", "known_presets", "preset_path", "resolve_config"]
