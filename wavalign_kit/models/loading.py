"""Loading a real spoken dialogue model from a local directory (no hub access assumed), with its layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from wavalign_kit.models.base import MODEL_CARD, SpokenDialogueModel
from wavalign_kit.models.interleaved import InterleavedModel
from wavalign_kit.models.parallel import DualStreamConfig, DualStreamModel, ParallelModel

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


def load_pretrained(path: str | Path, layout: Any = None, dtype: str | torch.dtype = "auto",
                    attn_implementation: str | None = "sdpa", gradient_checkpointing: bool = False,
                    trust_remote_code: bool = False, device: str | torch.device | None = None) -> SpokenDialogueModel:
    """A spoken dialogue model from a local directory: a causal LM (interleaved), a checkpoint of the kit's
    dual-stream model (parallel), or a directory saved by the kit (its layout is stored with it).

    ``layout``: a `LayoutConfig`, a mapping of its keys, a shipped layout name or a YAML path (wavalign_kit/
    layouts.py): the speech-token naming, boundary tokens, closing tokens and interleave ratio, checked against
    the tokenizer. A layout that does not fit the tokenizer, or a config the adapter cannot run, raises one
    ValueError naming the path, the layout key and the fix.
    """
    from wavalign_kit.layouts import load_layout

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"path: {root} is not a local model directory (no hub access is assumed)")
    torch_dtype = resolve_dtype(dtype, device)
    if (root / MODEL_CARD).is_file():
        model = SpokenDialogueModel.load(root, device=device)
        model.model.to(torch_dtype)
    else:
        cfg = load_layout(layout)
        config = AutoConfig.from_pretrained(root, trust_remote_code=trust_remote_code)
        parallel = cfg is not None and cfg.kind == "parallel"
        if parallel and config.model_type != DualStreamConfig.model_type:
            raise ValueError(f"{root}: config model_type {config.model_type!r}: the parallel adapter runs checkpoints "
                             f"of the kit's dual-stream model ({DualStreamConfig.model_type}: streams (B, L, 1+K) in, "
                             "per-stream logits out); wrap the model in that interface")
        if not parallel and not _is_causal_lm(config):
            raise ValueError(f"{root}: config model_type {config.model_type!r} is not a causal language model; the "
                             "interleaved adapter needs an AutoModelForCausalLM checkpoint (e.g. Qwen2/Llama-style)")
        if cfg is None:
            raise ValueError(f"{root}: no layout was given, so the kit cannot tell which tokens are speech tokens: set "
                             "models.layout to a shipped layout (e.g. models.layout=glm4_voice), a YAML file, or the keys "
                             "themselves (models.layout.speech_token_pattern='<|audio_{i}|>' models.layout.ratio='1 10 4 10' "
                             "...; see wavalign_kit/layouts.py)")
        tokenizer = AutoTokenizer.from_pretrained(root, trust_remote_code=trust_remote_code)
        try:
            channel_layout = cfg.resolve(tokenizer)
        except ValueError as e:
            raise ValueError(f"{root}: the layout does not fit the model's tokenizer (its speech tokens, boundaries or "
                             f"closing tokens): {e}") from None
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        if parallel:
            module = DualStreamModel.from_pretrained(root, dtype=torch_dtype, **kwargs)
            model = ParallelModel(module, tokenizer, channel_layout)
        else:
            module = AutoModelForCausalLM.from_pretrained(root, dtype=torch_dtype, trust_remote_code=trust_remote_code,
                                                          **kwargs)
            model = InterleavedModel(module, tokenizer, channel_layout)
        if device is not None:
            model.model.to(device)
    if gradient_checkpointing:
        model.model.gradient_checkpointing_enable()
        model.model.config.use_cache = False
    return model
