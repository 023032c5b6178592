"""Training configuration: one strict dataclass for every method (GRPO / hybrid RL, DPO, SFT) and preset loading.

A run's configuration is merged in this order (later wins): `TrainConfig` defaults < the profile's ``train:``
section (sizes: steps, batch, lengths) < the preset or ``--config`` YAML (the method) < ``key=value`` overrides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wavalign_kit.config import (
    CONFIG_DIR,
    PROFILE_SECTIONS,
    ConfigError,
    check_range,
    check_sections,
    deep_update,
    from_dict,
    load_yaml,
    suggest,
)
from wavalign_kit.config import check_keys as check_dataclass_keys

PRESET_DIR = CONFIG_DIR / "presets"
# `setup=paper` / `setup=code`: the paper's reported configuration or the authors' public code's, in one override
# (applied over the preset, under any explicit key=value).
SETUPS: dict[str, dict[str, float]] = {
    "kit": {},
    "paper": {"beta_text": 0.01, "beta_speech": 0.01, "temperature": 0.9},
    "code": {"beta_text": 0.0, "beta_speech": 0.0, "temperature": 0.7},
}


@dataclass
class TrainConfig:
    """Every knob of `wavalign train`; DESIGN.md section 2 gives the method, the presets give the recipes."""

    # what to train
    setup: Literal["kit", "paper", "code"] = "kit"  # see SETUPS: paper (beta 0.01, T 0.9) / code (beta 0, T 0.7)
    algorithm: Literal["grpo", "dpo", "sft"] = "grpo"
    arch: Literal["interleaved", "parallel"] | None = None  # None: the profile's models.arch
    base_model: str | None = None          # model directory; default: the profile's warm-started base
    world_path: str | None = None          # world directory ("synthetic": no-build stand-in); default data/<profile>/world
    split: str = "rl"                      # the world split the prompts come from (rl: never seen by the warm start)
    # schedule and optimiser (AdamW + linear warm-up + cosine)
    steps: int = 60
    prompts_per_step: int = 4              # prompts per micro-batch and process
    grad_accum: int = 1                    # micro-batches per optimiser step
    lr: float = 5e-5
    min_lr_ratio: float = 0.1              # cosine floor as a share of lr
    warmup_steps: int = 5
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    grad_clip: float = 1.2
    bf16: bool = True                      # autocast in bf16 on GPU (ignored on CPU)
    # rollouts
    group_size: int = 4                    # G responses per prompt
    temperature: float = 0.7               # paper: 0.9, authors' code: 0.7
    top_p: float = 0.9
    speech_temperature: float | None = None  # None: same as the text channel
    speech_top_p: float | None = None
    max_new_tokens: int = 160
    # rewards
    reward: Any = "holistic"               # a name, {name: weight} or a list (rewards.build_reward)
    reward_options: dict[str, Any] = field(default_factory=dict)  # integer, noise_semantic, seed, ...
    routed: bool = False                   # channel-routed advantages: semantic -> text, acoustic -> speech
    semantic_weight: float = 1.0
    acoustic_weight: float = 1.0
    max_judge_failure_share: float = 0.5   # stop when more reward calls than this fail in one step
    reward_range: list[float] | None = None  # [low, high] of the total reward; None: from the reward functions
    # RL term
    rl_token_type: Literal["all", "text", "speech"] = "text"
    rl_text_weight: float = 1.0
    rl_speech_weight: float = 1.0
    beta_text: float = 0.001               # paper: 0.01, authors' code: 0 (no reference pass)
    beta_speech: float = 0.001
    updates_per_rollout: int = 1           # 1: ratio == 1 (group-baseline REINFORCE); >1: PPO clipping
    clip_eps: float = 0.2
    # acoustic anchor (SFT on the prompts' target responses)
    anchor: bool = True
    anchor_token_type: Literal["all", "text", "speech"] = "all"
    anchor_text_weight: float = 1.0
    anchor_speech_weight: float = 1.0
    anchor_forced: bool = False            # true: the anchor also trains the positions the decoder forces (parallel
                                           # text_pad after text_end, final eos), which RL and DPO leave out
    sft_share: float = 0.0                # two-stage: the first round(sft_share * steps) steps are pure SFT
    # mixing L = lambda * L_pref + (1 - lambda) * L_SFT
    mixer: Literal["none", "fixed", "adaptive"] = "adaptive"
    mix_weight: float = 0.5                # the fixed lambda
    lambda_max: float = 0.8
    ema_alpha: float = 0.9
    use_ema: bool = True
    gate_slope: float = 5.0
    reward_threshold: float = 3.0
    reward_scale: float = 4.0
    # DPO
    # pairs: "sampled" = G responses of the base (reference) model ranked by the reward, as the paper builds them;
    # "online" = sampled from the current policy each step; "offline" = target vs the data set's rejected response
    dpo_source: Literal["sampled", "online", "offline"] = "sampled"
    dpo_beta: float = 0.1                  # authors' launch script: 0.2
    dpo_token_type: Literal["all", "text", "speech"] = "all"
    dpo_reduction: Literal["sum", "mean"] = "sum"
    dpo_sft_weight: float = 0.0
    pair_score_mode: Literal["sum", "semantic", "acoustic"] = "sum"
    pair_min_margin: float = 1.0
    # logging and checkpoints
    seed: int | None = None                # None: the profile's seed
    save_every: int = 20
    keep_checkpoints: int = 2
    eval_every: int = 0                    # anchor loss on `eval_split` every this many steps (0: never)
    eval_split: str = "valid"
    eval_examples: int = 64
    max_nonfinite_steps: int = 3           # consecutive steps with a NaN/inf loss or gradient before the run stops
    grad_norm_per_channel: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        """Check every knob's range (and that it is finite) before anything is loaded."""
        if self.arch not in (None, "interleaved", "parallel"):
            raise ConfigError(f"train.arch: {self.arch!r} is not 'interleaved' or 'parallel'")
        for name in ("steps", "prompts_per_step", "grad_accum", "group_size", "max_new_tokens", "updates_per_rollout",
                     "save_every", "keep_checkpoints", "eval_examples", "max_nonfinite_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.eval_every < 0:
            raise ConfigError("train.warmup_steps and train.eval_every: must be >= 0")
        open_low = ("lr", "grad_clip", "temperature", "clip_eps", "gate_slope", "reward_scale", "dpo_beta")
        for name in open_low:
            check_range(f"train.{name}", getattr(self, name), 0.0, low_open=True)
        for name in ("weight_decay", "beta_text", "beta_speech", "rl_text_weight", "rl_speech_weight",
                     "anchor_text_weight", "anchor_speech_weight", "semantic_weight", "acoustic_weight",
                     "dpo_sft_weight", "pair_min_margin"):
            check_range(f"train.{name}", getattr(self, name), 0.0)
        for name in ("mix_weight", "lambda_max", "max_judge_failure_share", "min_lr_ratio", "sft_share"):
            check_range(f"train.{name}", getattr(self, name), 0.0, 1.0)
        for name in ("adam_beta1", "adam_beta2", "ema_alpha"):
            check_range(f"train.{name}", getattr(self, name), 0.0, 1.0, high_open=True)
        check_range("train.top_p", self.top_p, 0.0, 1.0, low_open=True)
        check_range("train.reward_threshold", self.reward_threshold)
        if self.reward_range is not None:
            if len(self.reward_range) != 2:
                raise ConfigError(f"train.reward_range: give [low, high], got {self.reward_range}")
            for x in self.reward_range:
                check_range("train.reward_range", x)
            if not self.reward_range[0] < self.reward_range[1]:
                raise ConfigError(f"train.reward_range: low must be below high, got {self.reward_range}")
        if self.speech_temperature is not None:
            check_range("train.speech_temperature", self.speech_temperature, 0.0, low_open=True)
        if self.speech_top_p is not None:
            check_range("train.speech_top_p", self.speech_top_p, 0.0, 1.0, low_open=True)
        if self.algorithm != "sft":
            if self.anchor and self.mixer == "none":
                raise ConfigError("train.anchor is true but train.mixer is 'none': set mixer=fixed (mix_weight) or "
                                  "mixer=adaptive, or anchor=false for a preference-only run")
            if not self.anchor and self.mixer != "none":
                raise ConfigError(f"train.mixer is {self.mixer!r} but train.anchor is false: nothing to mix; "
                                  "set mixer=none or anchor=true")
        if self.algorithm == "sft" and not self.anchor:
            raise ConfigError("train.algorithm=sft trains the anchor only: set anchor=true")
        if self.algorithm in ("grpo", "dpo") and self.group_size < 2:
            raise ConfigError(f"train.group_size: {self.algorithm} needs >= 2 responses per prompt (a group advantage "
                              f"or a chosen/rejected pair), got {self.group_size}")

    @property
    def uses_reference(self) -> bool:
        """Whether the step needs reference log-probs (DPO always; RL only with a non-zero KL weight)."""
        return self.algorithm == "dpo" or (self.algorithm == "grpo" and (self.beta_text > 0 or self.beta_speech > 0))


def known_presets() -> list[str]:
    """Names of the presets shipped in configs/presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """The YAML of preset ``name``; an unknown name is a ConfigError with a suggestion."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        known = known_presets()
        raise ConfigError(f"unknown preset '{name}'{suggest(name, known)}; known presets: {', '.join(known)}")
    return path


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split parsed ``key=value`` overrides into (profile sections, train keys): ``world.x=1`` and ``seed=3`` go to
    the profile, ``train.lr=1e-4`` and plain ``lr=1e-4`` to the train section."""
    profile, train = {}, {}
    for key, value in overrides.items():
        if key == "train":
            train = deep_update(train, value)
        else:
            (profile if key in PROFILE_SECTIONS else train)[key] = value
    return profile, train


def check_keys(data: dict[str, Any], where: str) -> None:
    """Reject keys TrainConfig does not have, naming ``where`` and suggesting the closest key."""
    check_dataclass_keys(TrainConfig, data, where)


def resolve_config(profile: dict[str, Any], recipe: dict[str, Any], overrides: dict[str, Any],
                   where: str = "preset") -> tuple[TrainConfig, dict[str, Any]]:
    """Merge profile ``train:`` < recipe < overrides into a TrainConfig; returns it and the updated profile.

    ``where`` names the recipe's file in errors (an unknown key names the file and suggests the right key)."""
    prof_over, train_over = split_overrides(overrides)
    profile = deep_update(profile, prof_over)
    check_sections(profile, "profile")
    base = dict(profile.get("train") or {})
    check_keys(base, "profile train")  # a typo is reported against the file that holds it
    check_keys(recipe, where)
    merged = deep_update(base, recipe)
    setup = train_over.get("setup", merged.get("setup", "kit"))
    if setup not in SETUPS:
        raise ConfigError(f"train.setup: {setup!r} is not one of {list(SETUPS)}")
    merged = deep_update(deep_update(merged, SETUPS[setup]), train_over)
    cfg = from_dict(TrainConfig, merged, "train")
    if cfg.seed is None:
        cfg.seed = from_dict(TrainConfig, {"seed": profile.get("seed", 0)}, "profile").seed
    if cfg.arch is None:
        cfg.arch = (profile.get("models") or {}).get("arch", "interleaved")
    return cfg, profile


def load_recipe(preset: str | None, config: str | Path | None) -> tuple[dict[str, Any], str]:
    """The recipe mapping of ``--preset NAME`` or ``--config FILE`` (exactly one) and its file name."""
    if (preset is None) == (config is None):
        raise ConfigError("wavalign train: give exactly one of --preset NAME or --config FILE")
    path = preset_path(preset) if preset is not None else Path(config)
    return load_yaml(path), str(path)


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as a plain dict (for checkpoints and run records)."""
    return dataclasses.asdict(cfg)


RESUME_FREE = ("progress", "save_every", "keep_checkpoints")  # keys a resumed run may change


def check_resumable(saved: dict[str, Any], cfg: TrainConfig, where: str) -> None:
    """ConfigError when a checkpoint's config differs from ``cfg`` in a key that changes the run."""
    now = config_dict(cfg)
    diff = sorted(k for k in now if k not in RESUME_FREE and saved.get(k) != now[k])
    if diff:
        raise ConfigError(f"{where}: written with a different config (keys {diff}); resume with the same preset and "
                          "overrides or pick a new --out directory")
