"""Tiny model factory: both architectures at named sizes from the world's tokenizer and codec, no download."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import AutoModelForCausalLM, Qwen2Config

from wavalign_kit.channels import ChannelLayout
from wavalign_kit.models.base import SpokenDialogueModel
from wavalign_kit.models.interleaved import InterleavedModel
from wavalign_kit.models.lora import LoraSettings
from wavalign_kit.models.parallel import DualStreamConfig, DualStreamModel, ParallelModel

# Decoder shapes per named size: (hidden, layers, heads, kv heads, MLP width).
SIZES: dict[str, tuple[int, int, int, int, int]] = {
    "smoke": (128, 4, 4, 2, 384),    # about 1M parameters with the world's ~600-token vocabulary
    "cpu": (256, 4, 8, 4, 768),      # about 3.5M
    "gpu": (512, 8, 8, 4, 1536),    # about 26M
}


TINY_RATIO, TINY_DELAY = "2 8", 2     # the kit's tiny models' layout unless models.ratio / models.speech_delay say


@dataclass
class ModelsConfig:
    """The ``models:`` profile section: which base model to build (or load) and how to adapt it.

    ``ratio`` / ``speech_delay`` shape the kit's tiny models (None: 2 8 / 2); a real model (``path``, or
    ``train.base_model``) brings its own layout in ``layout`` (`wavalign_kit.layouts.LayoutConfig`: a shipped
    name, a YAML path or a mapping), and ``codec`` names its speech codec by import path (None: the world's)."""

    arch: Literal["interleaved", "parallel"] = "interleaved"
    size: Literal["smoke", "cpu", "gpu"] = "smoke"
    ratio: str | None = None           # tiny interleaved models' text:speech chunk sizes (None: 2 8)
    speech_delay: int | None = None    # tiny parallel models: speech starts this many steps after text (None: 2)
    path: str = ""                     # a local pretrained model directory instead of a tiny model
    layout: Any = None                 # a real model's layout: a shipped name, a YAML path or a mapping (layouts.py)
    codec: str = ""                    # the model's own speech codec, "package.module:Class" ("": the world's)
    codec_dir: str = ""                # passed to the codec class's load(codec_dir) when given
    dtype: str = "auto"                # auto: bf16 on CUDA, fp32 on CPU
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)

    @property
    def tiny_ratio(self) -> str:
        return TINY_RATIO if self.ratio is None else self.ratio

    @property
    def tiny_delay(self) -> int:
        return TINY_DELAY if self.speech_delay is None else self.speech_delay


def world_layout(arch: str, tokenizer, num_units: int, *, ratio: str = TINY_RATIO,
                 speech_delay: int = TINY_DELAY) -> ChannelLayout:
    """The ChannelLayout of a tiny model over the kit's tokenizer (shared vocabulary for all streams)."""
    interleaved = ChannelLayout.from_tokenizer(tokenizer, num_units=num_units, ratio=ratio)
    if arch == "interleaved":
        return interleaved
    if arch != "parallel":
        raise ValueError(f"arch: {arch!r} is not 'interleaved' or 'parallel'")
    vocab = tokenizer.get_vocab()
    return ChannelLayout.parallel(
        num_codebooks=1, num_units=num_units, text_pad_id=vocab["<|text_pad|>"], speech_pad_id=vocab["<|speech_pad|>"],
        text_end_id=interleaved.text_end_id, eos_id=interleaved.eos_id, pad_id=interleaved.pad_id,
        speech_delay=speech_delay, speech_start=interleaved.speech_start, begin_audio_id=interleaved.begin_audio_id,
        end_audio_id=interleaved.end_audio_id)


def _backbone_config(size: str, vocab_size: int, max_positions: int) -> Qwen2Config:
    if size not in SIZES:
        raise ValueError(f"size: {size!r} is not one of {list(SIZES)}")
    d, layers, heads, kv, ff = SIZES[size]
    return Qwen2Config(vocab_size=vocab_size, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                       num_key_value_heads=kv, intermediate_size=ff, max_position_embeddings=max_positions,
                       tie_word_embeddings=False, rope_theta=10000.0)


def build_model(arch: Literal["interleaved", "parallel"], size: Literal["smoke", "cpu", "gpu"], tokenizer,
                codec=None, *, num_units: int | None = None, ratio: str = TINY_RATIO, speech_delay: int = TINY_DELAY,
                max_positions: int = 2048, seed: int = 0) -> SpokenDialogueModel:
    """A freshly initialised tiny model (Qwen2-style decoder) over ``tokenizer``'s text and speech tokens.

    ``codec`` (or ``num_units``) gives the number of speech units the tokenizer holds.
    """
    units = num_units if num_units is not None else getattr(codec, "num_units", None)
    if units is None:
        raise ValueError("build_model: pass codec (with .num_units) or num_units")
    layout = world_layout(arch, tokenizer, units, ratio=ratio, speech_delay=speech_delay)
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    backbone = _backbone_config(size, vocab, max_positions)
    if arch == "interleaved":
        return InterleavedModel(AutoModelForCausalLM.from_config(backbone), tokenizer, layout)
    config = DualStreamConfig(backbone_config=backbone, vocab_size=vocab, num_codebooks=layout.num_codebooks)
    return ParallelModel(DualStreamModel(config), tokenizer, layout)


def count_parameters(model: SpokenDialogueModel, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters of the model's module."""
    return sum(p.numel() for p in model.model.parameters() if p.requires_grad or not trainable_only)
