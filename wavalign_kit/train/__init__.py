"""Post-training: one loss module per method (`sft`, `grpo` = WavAlign and its GRPO baselines, `dpo`), the shared
loop (`trainer`), its configuration and presets (`config`), and `train`, the one entry point (`run`)."""

from wavalign_kit.train.config import TrainConfig, known_presets, preset_path, resolve_config
from wavalign_kit.train.pairs import PairSet, build_pairs
from wavalign_kit.train.run import train
from wavalign_kit.train.trainer import Trainer

__all__ = ["PairSet", "TrainConfig", "Trainer", "build_pairs", "known_presets", "preset_path", "resolve_config",
           "train"]
