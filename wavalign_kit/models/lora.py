"""LoRA (peft) on both architectures: target modules per architecture, heads optionally trainable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from peft import LoraConfig, get_peft_model

# Projection names of Llama/Qwen2/Mistral-style decoders (attention and MLP).
DECODER_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSettings:
    """LoRA hyper-parameters; ``enabled: false`` means full fine-tuning."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=list)   # empty: the architecture's defaults
    train_heads: bool = False                                  # output heads fully trainable (modules_to_save)


def default_targets(module: torch.nn.Module) -> list[str]:
    """The decoder projections present in ``module``; else every Linear outside the output heads."""
    leaves = {name.rsplit(".", 1)[-1] for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
    found = [n for n in DECODER_PROJECTIONS if n in leaves]
    if found:
        return found
    heads = {"lm_head", "text_head", "output", "embed_out"}
    rest = sorted(n for n in leaves if n not in heads and not n.isdigit())
    if not rest:
        raise ValueError("lora.target_modules: found no Linear layers to adapt; name them explicitly")
    return rest


def head_modules(module: torch.nn.Module, arch: str) -> list[str]:
    """Output heads that ``train_heads`` makes fully trainable."""
    if arch == "parallel":
        return ["text_head"] + [f"speech_heads.{k}" for k in range(len(module.speech_heads))]
    return ["lm_head"]


def wrap_lora(module: torch.nn.Module, settings: LoraSettings, arch: str) -> torch.nn.Module:
    """``module`` wrapped by peft with LoRA adapters per ``settings``."""
    if settings.r <= 0:
        raise ValueError(f"lora.r must be positive, got {settings.r}")
    config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules) or default_targets(module),
        modules_to_save=head_modules(module, arch) if settings.train_heads else None,
        task_type="CAUSAL_LM" if arch == "interleaved" else None,
    )
    return get_peft_model(module, config)


def apply_lora(model, cfg: LoraSettings | dict, seed: int = 0):
    """Turn a SpokenDialogueModel's module into a LoRA model in place (no-op when ``cfg.enabled`` is false).

    The adapters are initialised from ``seed`` (two runs with the same seed start from the same adapters) without
    touching the caller's random streams. The reference policy is the network with its adapters disabled
    (``model.reference_logprobs``).
    """
    from wavalign_kit.config import from_dict

    settings = cfg if isinstance(cfg, LoraSettings) else from_dict(LoraSettings, cfg, "models.lora")
    if not settings.enabled:
        return model
    if model.is_lora():
        raise ValueError("apply_lora: the model already carries LoRA adapters")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model.model = wrap_lora(model.model, settings, model.arch)
    model.lora_config = asdict(settings)
    model._reference_copy = None
    return model
