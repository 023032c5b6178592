"""The rollout decoder of both architectures: one prefill per prompt shared by its G samples, a static KV cache,
on-device sampling and slot rules (no host sync per token), finished rows leaving the batch, an optional
compiled decode step; and the teacher-forced slot rules that find forced positions in any laid-out response."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor
from transformers import StaticCache
from transformers.cache_utils import DynamicLayer, StaticLayer

from wavalign_kit.models.lean_step import LeanStep
from wavalign_kit.models.sampling import (
    Sampling,
    channel_settings,
    gather_logprobs,
    row_settings,
    sample_tokens,
)

if TYPE_CHECKING:
    from wavalign_kit.models.base import SpokenDialogueModel

log = logging.getLogger(__name__)
_SAID: set[str] = set()


def _say_once(key: str, message: str, level: int = logging.WARNING) -> None:
    if key not in _SAID:
        _SAID.add(key)
        log.log(level, message)


@dataclass
class DecodeOptions:
    """How ``generate`` decodes: speed settings that leave the sampled distribution unchanged. A seed draws the
    same tokens under any static_cache / compile_step (bar float rounding); compaction changes which ones (the
    rows left after it draw their own random numbers)."""

    static_cache: bool = True       # KV cache pre-allocated for prompt + max_new_tokens (else transformers' dynamic one)
    lean_step: bool = True          # Qwen2/Llama backbones: the plain-torch decode step of models.lean_step (static
    #                                 cache only; not with compile_step, which compiles the transformers forward)
    compile_step: bool = False      # torch.compile the decode step's forward (CUDA: with CUDA graphs); static cache
    #                                 only; off by default: on the CPU it did not pay (benchmarks/generate.py --compile)
    stop_check_every: int = 4       # steps between the host-side "all rows finished?" checks (the only host sync)
    compact_finished: bool = True   # at a stop check, drop finished rows from the batch once >= 1/4 of it has finished

    def __post_init__(self) -> None:
        if self.stop_check_every < 1:
            raise ValueError(f"DecodeOptions.stop_check_every must be >= 1, got {self.stop_check_every}")


class SlotRules(Protocol):
    """One architecture's decoding state machine over R rows and S streams per step (interleaved: S = 1)."""

    finished: Tensor  # (R,) bool: the row has emitted eos

    def allowed_tokens(self) -> tuple[Tensor, Tensor]:
        """(R, S, V) bool: the tokens each stream may emit next; (R, S) bool: the slot belongs to the speech channel."""

    def resolve(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Sampled (or teacher-forced) tokens (R, S) -> the step's tokens after the layout's forcing, and (R, S)
        bool: the slot allowed exactly one token. Does not change the state."""

    def advance(self, tokens: Tensor) -> None:
        """Move every row's state past the step ``tokens`` (R, S)."""

    def select(self, rows: Tensor) -> None:
        """Keep only the rows at indices ``rows`` (finished rows leaving the batch)."""


@dataclass
class Decoded:
    """What the decode loop produced for B rows over its T steps (CPU tensors)."""

    tokens: Tensor    # (B, T, S)
    logprobs: Tensor  # (B, T, S) full-vocabulary log p at temperature 1
    forced: Tensor    # (B, T, S) bool: the slot allowed exactly one token
    one_stream: bool  # interleaved: responses are (n,) token arrays, else (n, S)

    def responses(self, eos_id: int) -> tuple[list[np.ndarray], list[Tensor], list[Tensor]]:
        """Per row: the response up to and including its first eos, and its (n, S) log-probs and forced flags."""
        T = self.tokens.shape[1]
        ends = self.tokens[:, :, 0] == eos_id                                    # (B, T)
        lengths = torch.where(ends.any(1), ends.int().argmax(1) + 1, T).tolist()
        out: tuple[list, list, list] = ([], [], [])
        for i, n in enumerate(lengths):
            r = self.tokens[i, :n]
            out[0].append((r[:, 0] if self.one_stream else r).numpy())
            out[1].append(self.logprobs[i, :n])
            out[2].append(self.forced[i, :n])
        return out


def forward_cache_kwarg(module: torch.nn.Module) -> str:
    """The keyword a transformers forward takes its KV cache under (``cache`` in v5, ``past_key_values`` before)."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def output_cache(out: Any) -> Any:
    """The KV cache of a transformers model output, whichever name it carries."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def left_pad(seqs: Sequence[np.ndarray], pad_row: np.ndarray | int) -> tuple[Tensor, Tensor]:
    """Left-pad 1-D (or (T, S)) id arrays to one (P, L[, S]) tensor plus its (P, L) attention mask."""
    length = max(len(s) for s in seqs)
    shape = (len(seqs), length) + tuple(np.asarray(seqs[0]).shape[1:])
    ids = np.empty(shape, dtype=np.int64)
    ids[...] = pad_row
    mask = np.zeros((len(seqs), length), dtype=np.int64)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, length - len(s):] = s
            mask[i, length - len(s):] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def generation_inputs(model: SpokenDialogueModel, examples, num_samples: int, max_new_tokens: int, seed: int | None
                      ) -> tuple[torch.Generator, list[np.ndarray], Tensor, Tensor, Tensor]:
    """Checked sizes, then the seeded sampling generator, the encoded prompts and their left-padded batch on
    the model's device: ``(generator, prompts, ids, attention_mask, position_ids)``."""
    if num_samples < 1 or max_new_tokens < 1:
        raise ValueError(f"num_samples ({num_samples}) and max_new_tokens ({max_new_tokens}) must be >= 1")
    gen = torch.Generator(device=model.device)
    gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    prompts = [model.encode_prompt(e) for e in examples]
    ids, attn = left_pad(prompts, model.layout.pad_id)
    ids, attn = ids.to(model.device), attn.to(model.device)
    return gen, prompts, ids, attn, (attn.cumsum(-1) - 1).clamp(min=0)


def core_module(module: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft wrapper (or the module itself)."""
    return module.get_base_model() if hasattr(module, "get_base_model") and hasattr(module, "peft_config") else module


def _cache_config(core: torch.nn.Module):
    cfg = core.config
    return getattr(cfg, "backbone_config", None) or cfg


def _static_from_prefill(prefill: Any, core: torch.nn.Module, group: int, max_len: int) -> StaticCache | None:
    """A static cache of ``max_len`` positions per row holding each prompt's prefill ``group`` times, or None
    (with the reason logged once) when this model's cache layers are not plain full-attention layers."""
    name = type(core).__name__
    try:
        static = StaticCache(config=_cache_config(core), max_cache_len=max_len)
    except Exception as e:  # a config transformers cannot size a static cache from
        _say_once(name, f"{name}: no static KV cache ({type(e).__name__}: {e}); decoding with the dynamic cache")
        return None
    layers = getattr(prefill, "layers", None)
    plain = (layers is not None and len(layers) == len(static.layers)
             and all(type(a) is DynamicLayer for a in layers) and all(type(b) is StaticLayer for b in static.layers))
    if not plain:
        _say_once(name, f"{name}: its KV cache is not plain full attention ({type(prefill).__name__}); "
                        "decoding with the dynamic cache")
        return None
    for i, layer in enumerate(layers):
        static.update(layer.keys.repeat_interleave(group, 0), layer.values.repeat_interleave(group, 0), i)
    return static


def _keep_rows(cache: Any, rows: Tensor) -> None:
    """Keep only ``rows`` of a lean step's, a static or a dynamic cache, in place."""
    if isinstance(cache, LeanStep):
        cache.select(rows)
        return
    for layer in cache.layers:
        layer.keys, layer.values = layer.keys.index_select(0, rows), layer.values.index_select(0, rows)
        if hasattr(layer, "batch_size"):
            layer.batch_size = len(rows)


def _step_forward(model: SpokenDialogueModel, module: torch.nn.Module, cache_key: str, compiled: bool) -> Callable:
    """``(ids, attention_mask, position_ids, cache) -> next-token logits``, compiled once per module if asked."""

    def forward(ids: Tensor, mask: Tensor, pos: Tensor, cache: Any) -> Tensor:
        return module(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                      **{cache_key: cache}).logits[:, -1]

    if not compiled:
        return forward
    store = model.__dict__.setdefault("_compiled_decode_steps", {})
    if id(module) not in store:
        cuda = next(module.parameters()).device.type == "cuda"
        store[id(module)] = torch.compile(forward, mode="reduce-overhead" if cuda else None, dynamic=False)
    return store[id(module)]


def _prefill(net: torch.nn.Module, ids: Tensor, attn: Tensor, pos: Tensor, group: int, max_len: int,
             options: DecodeOptions) -> tuple[Tensor, Any]:
    """One forward over the P prompts; returns the last position's logits repeated for the G rows of each
    prompt, (B, S, V) with S = 1 for one stream, and the KV cache of the B rows: a LeanStep holding it where
    the options and the backbone allow, else static when possible, else transformers' dynamic cache."""
    core = core_module(net)
    keep_last = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(core.forward).parameters else {}
    out = net(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **keep_last)
    prefill = output_cache(out)
    cache = None
    if options.static_cache and options.lean_step and not options.compile_step:
        reason = LeanStep.unsupported(core, prefill)
        if reason is None:
            cache = LeanStep.build(core, prefill, group, max_len)
        else:      # a note, not a problem: the transformers forward decodes the same tokens
            _say_once(f"lean: {reason}", f"decoding with the transformers forward: {reason}", logging.INFO)
    if cache is None and options.static_cache:
        cache = _static_from_prefill(prefill, core, group, max_len)
    if cache is None:
        prefill.batch_repeat_interleave(group)
        cache = prefill
    logits = out.logits[:, -1].repeat_interleave(group, 0)                          # (B, V) or (B, S, V)
    return (logits.unsqueeze(1) if ids.dim() == 2 else logits), cache


@torch.no_grad()
def decode(model: SpokenDialogueModel, ids: Tensor, attn: Tensor, pos: Tensor, *, group: int, max_new_tokens: int,
           rules: Callable[[int, int], SlotRules], text: Sampling, speech: Sampling, generator: torch.Generator,
           options: DecodeOptions, module: torch.nn.Module | None = None) -> Decoded:
    """Sample ``group`` continuations of each left-padded prompt (P, Lp[, S]) under the slot rules.

    ``rules(rows, vocab_size)`` builds the architecture's state machine. The prompt is prefilled once and its
    KV cache repeated for its G rows; each step samples every row on the device, records the token, its
    temperature-1 log-prob and whether the slot was forced, and runs one cached forward. ``module``: the network
    to sample from (default ``model.model``; e.g. the frozen reference copy).
    """
    net = model.model if module is None else module
    was_training = net.training
    net.eval()
    try:
        return _decode_loop(model, net, ids, attn, pos, group, max_new_tokens, rules, text, speech, generator,
                            options)
    finally:
        net.train(was_training)


def _decode_loop(model: SpokenDialogueModel, net: torch.nn.Module, ids: Tensor, attn: Tensor, pos: Tensor, group: int,
                 max_new_tokens: int, rules: Callable[[int, int], SlotRules], text: Sampling, speech: Sampling,
                 generator: torch.Generator, options: DecodeOptions) -> Decoded:
    dev, one_stream, Lp, N = ids.device, ids.dim() == 2, ids.shape[1], max_new_tokens
    logits, cache = _prefill(net, ids, attn, pos, group, Lp + N, options)            # (B, S, V)
    lean, static = isinstance(cache, LeanStep), isinstance(cache, (StaticCache, LeanStep))
    if options.compile_step and not static:
        _say_once("compile", "DecodeOptions.compile_step needs the static KV cache; decoding uncompiled")
    compiled = options.compile_step and static
    forward = (lambda ids, mask, pos, step: step(ids, mask, pos)) if lean else _step_forward(
        model, net, forward_cache_kwarg(core_module(net)), compiled)
    B, S, V = logits.shape
    state = rules(B, V)
    mask = torch.ones(B, Lp + N, dtype=attn.dtype, device=dev)                       # prompt padding + response
    mask[:, :Lp] = attn.repeat_interleave(group, 0)
    next_pos = (pos[:, -1].repeat_interleave(group, 0) + 1).unsqueeze(1)             # (B, 1)
    tokens = torch.full((B, N, S), model.layout.pad_id, dtype=torch.long, device=dev)
    logps = torch.zeros(B, N, S, device=dev)
    forced = torch.zeros(B, N, S, dtype=torch.bool, device=dev)
    settings = channel_settings(text, speech, dev)
    greedy = text.temperature == 0 and speech.temperature == 0
    filtered = text.filters or speech.filters
    rows: Tensor | None = None                                                      # original index of each row
    steps = N
    for t in range(N):
        allowed, is_speech = state.allowed_tokens()                                 # (R, S, V), (R, S)
        R = allowed.shape[0]
        flat, ok = logits.reshape(R * S, V), allowed.reshape(R * S, V)
        if greedy:
            pick = flat.float().masked_fill(~ok, float("-inf")).argmax(-1)
        else:
            temp, top_p, top_k = row_settings(is_speech.reshape(-1), settings)
            pick = sample_tokens(flat, ok, temp, top_p, top_k, generator, filtered=filtered)
        tok, frc = state.resolve(pick.view(R, S))                                   # (R, S)
        where = (slice(None), t) if rows is None else (rows, t)
        tokens[where], forced[where] = tok, frc
        logps[where] = gather_logprobs(logits, tok)[0]
        state.advance(tok)
        if t + 1 == N:
            break
        if (t + 1) % options.stop_check_every == 0:                                 # the only host sync
            done = int(state.finished.sum())
            if done == R:
                steps = t + 1
                break
            if options.compact_finished and not compiled and 4 * done >= R:          # finished rows leave
                keep = (~state.finished).nonzero().squeeze(1)
                rows = keep if rows is None else rows[keep]
                state.select(keep)
                _keep_rows(cache, keep)
                tok, mask, next_pos = tok[keep], mask[keep], next_pos[keep]
        if compiled and dev.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        step_ids = tok if one_stream else tok.unsqueeze(1)                           # (R, 1) or (R, 1, S)
        logits = forward(step_ids, mask if static else mask[:, : Lp + t + 1], next_pos, cache)
        logits = logits.unsqueeze(1) if one_stream else logits                      # (R, S, V)
        next_pos = next_pos + 1
    return Decoded(tokens[:, :steps].cpu(), logps[:, :steps].cpu(), forced[:, :steps].cpu(), one_stream)


def teacher_forced(rules: SlotRules, responses: Sequence[np.ndarray], pad_id: int) -> list[Tensor]:
    """Per response, the (n, S) bool forced flags that the decoder would have recorded had it emitted exactly
    this response: every step runs through the same slot rules, advanced by the given tokens."""
    steps = [np.asarray(r, dtype=np.int64).reshape(len(r), -1) for r in responses]
    T, S = max((len(r) for r in steps), default=0), steps[0].shape[1] if steps else 1
    ids = torch.full((len(steps), T, S), pad_id, dtype=torch.long)
    for i, r in enumerate(steps):
        ids[i, : len(r)] = torch.from_numpy(r)
    flags = torch.zeros(len(steps), T, S, dtype=torch.bool)
    for t in range(T):
        rules.allowed_tokens()
        flags[:, t] = rules.resolve(ids[:, t])[1]
        rules.advance(ids[:, t])
    return [flags[i, : len(r)] for i, r in enumerate(steps)]
