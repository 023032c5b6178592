"""Parallel (dual-stream) spoken dialogue model: a decoder that emits a text token and K speech tokens per step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from wavalign_kit.channels import ChannelLayout
from wavalign_kit.models.base import SpokenDialogueModel, TokenBatch, text_vocab_mask
from wavalign_kit.models.decoding import forward_cache_kwarg, output_cache


class DualStreamConfig(PretrainedConfig):
    """Config of :class:`DualStreamModel`: a standard decoder backbone config plus the stream heads."""

    model_type = "wavalign_dual_stream"
    sub_configs = {"backbone_config": AutoConfig}

    def __init__(self, backbone_config: dict | PretrainedConfig | None = None, vocab_size: int = 1024,
                 num_codebooks: int = 1, initializer_range: float = 0.02, **kwargs) -> None:
        if isinstance(backbone_config, dict):
            cfg = dict(backbone_config)
            backbone_config = AutoConfig.for_model(cfg.pop("model_type", "qwen2"), **cfg)
        self.backbone_config = backbone_config
        self.vocab_size = vocab_size
        self.num_codebooks = num_codebooks
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return self.backbone_config.hidden_size


@dataclass
class DualStreamOutput(ModelOutput):
    """Per-stream next-token logits: text (B, L, V) and speech (B, L, K, V), plus the KV cache."""

    text_logits: Tensor | None = None
    speech_logits: Tensor | None = None
    cache: object | None = None

    @property
    def logits(self) -> Tensor:
        """All streams stacked: (B, L, 1+K, V)."""
        return torch.cat([self.text_logits.unsqueeze(2), self.speech_logits], dim=2)


class DualStreamModel(PreTrainedModel):
    """Shared decoder over summed stream embeddings; a text head and one head per speech codebook.

    At step t the input embedding is embed_text(x_t^0) + sum_k embed_k(x_t^k) and the heads predict every
    stream's token at step t+1 (Kimi-Audio / Moshi style; the layout delays speech behind text).
    """

    config_class = DualStreamConfig
    base_model_prefix = "dual_stream"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: DualStreamConfig) -> None:
        super().__init__(config)
        d, V, K = config.hidden_size, config.vocab_size, config.num_codebooks
        self.backbone = AutoModel.from_config(config.backbone_config)
        self.backbone.embed_tokens = nn.Embedding(V, d)                         # text stream embedding
        self.speech_embeds = nn.ModuleList(nn.Embedding(V, d) for _ in range(K))
        self.text_head = nn.Linear(d, V, bias=False)
        self.speech_heads = nn.ModuleList(nn.Linear(d, V, bias=False) for _ in range(K))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif hasattr(module, "weight") and "Norm" in type(module).__name__:
            nn.init.ones_(module.weight)

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.embed_tokens = value

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None,
                cache=None, use_cache: bool | None = None, logits_to_keep: int = 0, **kwargs) -> DualStreamOutput:
        """``input_ids`` (B, L, 1+K) -> DualStreamOutput with logits for the next step of every stream
        (of the last ``logits_to_keep`` positions only when it is > 0)."""
        if input_ids.dim() != 3 or input_ids.shape[-1] != 1 + self.config.num_codebooks:
            raise ValueError(f"input_ids: expected (B, L, {1 + self.config.num_codebooks}), got {tuple(input_ids.shape)}")
        h = self.backbone.embed_tokens(input_ids[..., 0])                       # (B, L, d)
        for k, emb in enumerate(self.speech_embeds):
            h = h + emb(input_ids[..., 1 + k])
        key = forward_cache_kwarg(self.backbone)
        out = self.backbone(inputs_embeds=h, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=use_cache, **({key: cache} if cache is not None else {}))
        x = out.last_hidden_state[:, -logits_to_keep:]                           # (B, L, d); 0 keeps all
        speech = torch.stack([head(x) for head in self.speech_heads], dim=2)     # (B, L, K, V)
        return DualStreamOutput(text_logits=self.text_head(x), speech_logits=speech,
                                cache=output_cache(out) if use_cache else None)


class ParallelSlots:
    """Per-row state machine of the parallel layout (ChannelLayout.layout_response), the decoder's SlotRules.

    Stream 0 emits text words until ``text_end`` (without one: the first ``text_pad``), then ``text_pad`` while speech runs and ``eos`` once speech has
    ended too; speech streams emit ``speech_pad`` for the first ``speech_delay`` steps, then units until the
    first codebook emits ``speech_pad`` (which ends speech: the other codebooks follow it), then ``speech_pad``.
    A slot left with one token by these rules is forced. All state lives on the device.
    """

    def __init__(self, layout: ChannelLayout, tokenizer, vocab_size: int, rows: int, device: torch.device) -> None:
        self.layout, K = layout, layout.num_codebooks
        self.closer = layout.text_end_id if layout.text_end_id is not None else layout.text_pad_id   # ends text
        text = text_vocab_mask(tokenizer, layout, vocab_size)
        text[self.closer] = True
        speech = torch.zeros(vocab_size, dtype=torch.bool)
        lo = layout.speech_start or 0
        speech[lo: lo + layout.num_units] = True
        speech[layout.speech_pad_id] = True
        self.table = torch.stack([text] + [speech] * K).to(device)                           # (S, V)
        self.speech_stream = torch.arange(1 + K, device=device) >= 1                          # (S,)
        self.follows_first = torch.arange(K, device=device) >= 1                              # (K,) codebooks 2..K
        self.step = torch.zeros(rows, dtype=torch.long, device=device)
        f = torch.zeros(rows, dtype=torch.bool, device=device)
        self.text_done, self.speech_done, self.finished = f.clone(), f.clone(), f.clone()

    def allowed_tokens(self) -> tuple[Tensor, Tensor]:
        R, (S, V) = len(self.step), self.table.shape
        return self.table.expand(R, S, V), self.speech_stream.expand(R, S)

    def resolve(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        lay = self.layout
        waiting = self.speech_done | self.finished | (self.step < lay.speech_delay)         # (R,) speech pad forced
        ends_now = ~waiting & (tokens[:, 1] == lay.speech_pad_id)                           # first codebook ends speech
        speech = torch.where((waiting | ends_now).unsqueeze(-1), lay.speech_pad_id, tokens[:, 1:])   # (R, K)
        speech_forced = waiting.unsqueeze(-1) | (ends_now.unsqueeze(-1) & self.follows_first)
        speech_over = self.speech_done | ((self.step >= lay.speech_delay) & (speech[:, 0] == lay.speech_pad_id))
        text = torch.where(self.text_done, torch.where(speech_over, lay.eos_id, lay.text_pad_id), tokens[:, 0])
        step = torch.where(self.finished.unsqueeze(-1), lay.pad_id, torch.cat([text.unsqueeze(-1), speech], 1))
        forced = torch.cat([(self.text_done | self.finished).unsqueeze(-1), speech_forced], 1)
        return step, forced

    def advance(self, tokens: Tensor) -> None:
        lay = self.layout
        self.speech_done = self.speech_done | ((self.step >= lay.speech_delay) & (tokens[:, 1] == lay.speech_pad_id))
        self.finished = self.finished | (tokens[:, 0] == lay.eos_id)
        self.text_done = self.text_done | (tokens[:, 0] == self.closer)
        self.step = self.step + 1

    def select(self, rows: Tensor) -> None:
        for name in ("step", "text_done", "speech_done", "finished"):
            setattr(self, name, getattr(self, name)[rows])


AutoConfig.register(DualStreamConfig.model_type, DualStreamConfig, exist_ok=True)
AutoModel.register(DualStreamConfig, DualStreamModel, exist_ok=True)


class ParallelModel(SpokenDialogueModel):
    """Dual-stream model: stream 0 text, streams 1..K speech codebooks, one step emits all of them.

    Prompts put the chat template on the text stream; user speech sits on the speech streams under
    ``text_pad`` on the text stream. Responses follow ChannelLayout.layout_response (parallel).
    """

    arch = "parallel"

    def __init__(self, model: torch.nn.Module, tokenizer, layout: ChannelLayout) -> None:
        if layout.kind != "parallel":
            raise ValueError(f"layout: ParallelModel needs a parallel ChannelLayout, got kind={layout.kind!r}")
        super().__init__(model, tokenizer, layout)

    @property
    def streams(self) -> int:
        return 1 + self.layout.num_codebooks

    def encode_prompt(self, example) -> np.ndarray:
        lay = self.layout
        if example.task_type == "s2s" and example.prompt_units is not None:
            units = np.asarray(example.prompt_units, dtype=np.int64).reshape(len(example.prompt_units), -1)
            begin = [i for i in (lay.begin_audio_id,) if i is not None]
            end = [i for i in (lay.end_audio_id,) if i is not None]
            text, start = self.speech_prompt(begin + [lay.text_pad_id] * len(units) + end)
            text = np.asarray(text, dtype=np.int64)
            out = np.full((len(text), self.streams), lay.speech_pad_id, dtype=np.int64)
            out[:, 0] = text
            first = start + len(begin)
            out[first: first + len(units), 1:] = np.asarray(lay.units_to_ids(units)).reshape(units.shape)
            return out
        text = np.asarray(self.chat_ids(example.question_text), dtype=np.int64)
        out = np.full((len(text), self.streams), lay.speech_pad_id, dtype=np.int64)
        out[:, 0] = text
        return out

    def collate(self, prompts: list[np.ndarray], responses: list[np.ndarray]) -> TokenBatch:
        B, S = len(prompts), self.streams
        L = max(len(p) + len(r) for p, r in zip(prompts, responses))
        ids = torch.full((B, L, S), self.layout.pad_id, dtype=torch.long)
        attn = torch.zeros(B, L, dtype=torch.long)
        resp = torch.zeros(B, L - 1, dtype=torch.bool)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            ids[i, : len(p)] = torch.as_tensor(p)
            ids[i, len(p): len(p) + len(r)] = torch.as_tensor(r).reshape(len(r), S)
            attn[i, : len(p) + len(r)] = 1
            resp[i, len(p) - 1: len(p) + len(r) - 1] = True
        text, speech = self.layout.masks(ids[:, 1:], valid=resp)                # (B, L-1, S)
        full = resp.unsqueeze(-1).expand(B, L - 1, S)
        return TokenBatch(ids, attn, torch.tensor([len(p) for p in prompts]), full.reshape(B, -1),
                          (text & full).reshape(B, -1), (speech & full).reshape(B, -1))

    def slot_rules(self, rows: int, vocab_size: int, device: torch.device) -> ParallelSlots:
        return ParallelSlots(self.layout, self.tokenizer, vocab_size, rows, device)
