"""A lean cached decode step for Qwen2- and Llama-family decoders, the kit's default backbones.

At rollout batch sizes a transformers decode step spends more time in its Python layers (module calls, mask
building, cache bookkeeping) than in its matmuls. ``LeanStep`` runs the same math in plain torch ops: the
q/k/v and gate/up projections fused into one matmul each, one rotary call per step (the backbone's own
``rotary_emb``, so every RoPE variant it supports stays right), keys and values written in place into a cache
pre-allocated for prompt + new tokens, and SDPA over the filled positions only. Any other backbone, or one
whose projections are not plain ``nn.Linear`` (LoRA adapters, quantised layers), keeps the transformers
forward: ``LeanStep.unsupported`` says why. So do FSDP-sharded layers, whose weights exist only inside their
own forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BACKBONES = ("Qwen2Model", "LlamaModel")


@dataclass
class _Layer:
    """One decoder layer's weights, the projections fused."""

    norm_in: Tensor
    qkv: Tensor            # (H*hd + 2*KVH*hd, d)
    qkv_bias: Tensor | None
    out: Tensor            # (d, H*hd)
    out_bias: Tensor | None
    norm_post: Tensor
    gate_up: Tensor        # (2*F, d)
    down: Tensor           # (d, F)
    scaling: float


def _io(core: nn.Module) -> tuple[nn.Module, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]] | None:
    """(backbone, step ids -> (R, d) embedding, (R, d) hidden -> logits) of a causal LM (ids (R, 1), logits
    (R, V)) or of the dual-stream model (ids (R, 1, S), logits (R, S, V)); None for another wrapper."""
    if hasattr(core, "speech_embeds") and hasattr(core, "backbone"):               # DualStreamModel
        def embed_streams(ids: Tensor) -> Tensor:
            h = core.backbone.embed_tokens(ids[:, 0, 0])
            for k, emb in enumerate(core.speech_embeds):
                h = h + emb(ids[:, 0, 1 + k])
            return h

        def heads(x: Tensor) -> Tensor:
            return torch.stack([core.text_head(x)] + [head(x) for head in core.speech_heads], dim=1)

        return core.backbone, embed_streams, heads
    if hasattr(core, "model") and isinstance(getattr(core, "lm_head", None), nn.Linear):
        return core.model, lambda ids: core.model.embed_tokens(ids[:, 0]), core.lm_head
    return None


def _unsupported(backbone: nn.Module) -> str | None:
    """Why ``backbone`` cannot run the lean step, or None."""
    name, cfg = type(backbone).__name__, backbone.config
    if name not in BACKBONES:
        return f"backbone {name} (lean step: {', '.join(BACKBONES)})"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"activation {cfg.hidden_act}"
    if any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or ()) or getattr(
            cfg, "use_sliding_window", False):
        return "sliding-window layers"
    if any("FSDP" in type(m).__name__ or "FullySharded" in type(m).__name__ for m in backbone.modules()):
        return "FSDP-sharded layers (their weights are gathered only inside their own forward)"
    for layer in backbone.layers:
        a, m = layer.self_attn, layer.mlp
        for proj in (a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj):
            if type(proj) is not nn.Linear:
                kind = f"{type(proj).__module__}.{type(proj).__name__}"
                return f"projection {kind} (not a plain nn.Linear: adapters or quantisation)"
        if hasattr(a, "q_norm"):
            return "q/k norms"
        if len({p.bias is None for p in (a.q_proj, a.k_proj, a.v_proj)}) > 1:
            return "q/k/v projections with and without bias"
    return None


def _fused(layer: nn.Module) -> _Layer:
    a, m = layer.self_attn, layer.mlp
    qkv = (a.q_proj, a.k_proj, a.v_proj)
    bias = torch.cat([p.bias for p in qkv]) if a.q_proj.bias is not None else None
    return _Layer(layer.input_layernorm.weight, torch.cat([p.weight for p in qkv]), bias, a.o_proj.weight,
                  a.o_proj.bias, layer.post_attention_layernorm.weight,
                  torch.cat([m.gate_proj.weight, m.up_proj.weight]), m.down_proj.weight, float(a.scaling))


def _rotate(x: Tensor, cos: Tensor, signed_sin: Tensor) -> Tensor:
    """RoPE: x * cos + rotate_half(x) * sin, with rotate_half(x) * sin = roll(x, hd / 2) * signed_sin."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * signed_sin


class LeanStep:
    """Cached decode steps of one network after its prefill: ``step(ids, mask, pos) -> next-token logits``.

    The cache holds ``max_len`` positions per row; the prompt's prefill fills the first ``Lp`` of them and
    each call writes the next one. ``mask`` (R, >= filled + 1) is the rows' attention mask (0 on prompt
    padding); ``pos`` (R, 1) their position ids.
    """

    def __init__(self, backbone: nn.Module, embed: Callable, heads: Callable, keys: list[Tensor],
                 values: list[Tensor], filled: int):
        cfg = backbone.config
        self.backbone, self.embed, self.heads = backbone, embed, heads
        self.layers = [_fused(layer) for layer in backbone.layers[: cfg.num_hidden_layers]]
        self.eps = float(cfg.rms_norm_eps)
        self.heads_q = cfg.num_attention_heads
        self.heads_kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        self.head_dim = hd = keys[0].shape[-1]
        self.keys, self.values, self.filled = keys, values, filled
        ones = keys[0].new_ones(hd // 2)
        self.sin_sign = torch.cat([-ones, keys[0].new_ones(hd - hd // 2)])      # rotate_half's sign, for _rotate

    @staticmethod
    def unsupported(net: nn.Module, prefill: Any) -> str | None:
        """Why ``net`` (a transformers causal LM or the dual-stream model, not wrapped) with its ``prefill`` cache
        cannot decode with the lean step, or None."""
        io = _io(net)
        if io is None:
            return "model wrapper " + type(net).__name__
        layers = getattr(prefill, "layers", None)
        if layers is None or any(not hasattr(layer, "keys") for layer in layers):
            return f"cache {type(prefill).__name__}"
        return _unsupported(io[0])

    @classmethod
    def build(cls, net: nn.Module, prefill: Any, group: int, max_len: int) -> LeanStep:
        """The lean step of ``net`` holding each prompt's ``prefill`` cache ``group`` times (``unsupported`` is
        None for them)."""
        io, layers = _io(net), prefill.layers
        keys, values = [], []
        for layer in layers:
            P, kv, Lp, hd = layer.keys.shape
            for src, dst in ((layer.keys, keys), (layer.values, values)):
                buf = src.new_zeros(P * group, kv, max_len, hd)
                buf[:, :, :Lp] = src.repeat_interleave(group, 0)
                dst.append(buf)
        return cls(io[0], io[1], io[2], keys, values, layers[0].keys.shape[2])

    def select(self, rows: Tensor) -> None:
        """Keep only the cache rows at ``rows``."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]

    def __call__(self, ids: Tensor, mask: Tensor, pos: Tensor) -> Tensor:
        slot, R = self.filled, ids.shape[0]
        if slot >= self.keys[0].shape[2]:
            raise RuntimeError(f"LeanStep: the cache holds {self.keys[0].shape[2]} positions, all filled")
        h = self.embed(ids)                                                       # (R, d)
        d, H, KV, hd = h.shape[-1], self.heads_q, self.heads_kv, self.head_dim
        cos, sin = self.backbone.rotary_emb(h, pos)                                # (R, 1, hd)
        sin = sin * self.sin_sign
        attend = mask[:, None, None, : slot + 1].bool()                            # (R, 1, 1, slot + 1)
        for layer, keys, values in zip(self.layers, self.keys, self.values):
            x = F.rms_norm(h, (d,), layer.norm_in, self.eps)
            qk, v = F.linear(x, layer.qkv, layer.qkv_bias).split([(H + KV) * hd, KV * hd], dim=-1)
            qk = _rotate(qk.view(R, H + KV, hd), cos, sin)                          # q and k heads at once
            keys[:, :, slot], values[:, :, slot] = qk[:, H:], v.view(R, KV, hd)
            att = F.scaled_dot_product_attention(
                qk[:, :H].unsqueeze(2), keys[:, :, : slot + 1], values[:, :, : slot + 1],
                attn_mask=attend, scale=layer.scaling, enable_gqa=H != KV)       # (R, H, 1, hd)
            h = h + F.linear(att.reshape(R, H * hd), layer.out, layer.out_bias)
            gate, up = F.linear(F.rms_norm(h, (d,), layer.norm_post, self.eps), layer.gate_up).chunk(2, dim=-1)
            h = h + F.linear(F.silu(gate) * up, layer.down)
        self.filled = slot + 1
        return self.heads(F.rms_norm(h, (d,), self.backbone.norm.weight, self.eps))
