"""Loading a real spoken dialogue model from a local directory (no hub access assumed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from wavalign_kit.channels import ChannelLayout
from wavalign_kit.models.base import MODEL_CARD, SpokenDialogueModel
from wavalign_kit.models.interleaved import InterleavedModel

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device | None = None) -> torch.dtype:
    """``auto`` -> bf16 on CUDA, fp32 on CPU; otherwise the named dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        on_cuda = (str(device).startswith("cuda")) if device is not None else torch.cuda.is_available()
        return torch.bfloat16 if on_cuda else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype: {dtype!r} is not one of {['auto', *DTYPES]}")
    return DTYPES[dtype]


def _is_causal_lm(config) -> bool:
    archs = getattr(config, "architectures", None) or []
    return config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or any(a.endswith("ForCausalLM") for a in archs)


def load_pretrained(path: str | Path, layout_cfg: dict[str, Any] | None = None, dtype: str | torch.dtype = "auto",
                    attn_implementation: str | None = "sdpa", gradient_checkpointing: bool = False,
                    trust_remote_code: bool = False, device: str | torch.device | None = None) -> SpokenDialogueModel:
    """An interleaved spoken dialogue model from a local causal-LM directory (or a directory saved by the kit).

    ``layout_cfg`` holds ChannelLayout.from_tokenizer keyword arguments (speech_token_pattern, num_units,
    begin_audio, end_audio, text_end, eos, ratio). A tokenizer without the declared speech tokens, or a config
    that is not a causal LM, raises one ValueError naming the path and the fix.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"path: {root} is not a local model directory (no hub access is assumed)")
    torch_dtype = resolve_dtype(dtype, device)
    if (root / MODEL_CARD).is_file():
        model = SpokenDialogueModel.load(root, device=device)
        model.model.to(torch_dtype)
    else:
        config = AutoConfig.from_pretrained(root, trust_remote_code=trust_remote_code)
        if not _is_causal_lm(config):
            raise ValueError(f"{root}: config model_type {config.model_type!r} is not a causal language model; the "
                             "interleaved adapter needs an AutoModelForCausalLM checkpoint (e.g. Qwen2/Llama-style)")
        tokenizer = AutoTokenizer.from_pretrained(root, trust_remote_code=trust_remote_code)
        try:
            layout = ChannelLayout.from_tokenizer(tokenizer, **(layout_cfg or {}))
        except ValueError as e:
            raise ValueError(f"{root}: tokenizer does not hold the declared speech tokens: {e}") from None
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        module = AutoModelForCausalLM.from_pretrained(root, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                                      **kwargs)
        model = InterleavedModel(module, tokenizer, layout)
        if device is not None:
            model.model.to(device)
    if gradient_checkpointing:
        model.model.gradient_checkpointing_enable()
        model.model.config.use_cache = False
    return model
