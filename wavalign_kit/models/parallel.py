"""Parallel (dual-stream) spoken dialogue model: a decoder that emits a text token and K speech tokens per step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from wavalign_kit.channels import ChannelLayout
from wavalign_kit.models.base import (
    Rollout,
    SpokenDialogueModel,
    TokenBatch,
    forward_cache_kwarg,
    output_cache,
    text_vocab_mask,
)
from wavalign_kit.models.sampling import (
    Sampling,
    channel_settings,
    gather_logprobs,
    row_settings,
    sample_tokens,
)


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
                cache=None, use_cache: bool | None = None, **kwargs) -> DualStreamOutput:
        """``input_ids`` (B, L, 1+K) -> DualStreamOutput with logits for the next step of every stream."""
        if input_ids.dim() != 3 or input_ids.shape[-1] != 1 + self.config.num_codebooks:
            raise ValueError(f"input_ids: expected (B, L, {1 + self.config.num_codebooks}), got {tuple(input_ids.shape)}")
        h = self.backbone.embed_tokens(input_ids[..., 0])                       # (B, L, d)
        for k, emb in enumerate(self.speech_embeds):
            h = h + emb(input_ids[..., 1 + k])
        key = forward_cache_kwarg(self.backbone)
        out = self.backbone(inputs_embeds=h, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=use_cache, **({key: cache} if cache is not None else {}))
        x = out.last_hidden_state                                                # (B, L, d)
        speech = torch.stack([head(x) for head in self.speech_heads], dim=2)     # (B, L, K, V)
        return DualStreamOutput(text_logits=self.text_head(x), speech_logits=speech,
                                cache=output_cache(out) if use_cache else None)


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
        if layout.text_end_id is None:
            raise ValueError("layout.text_end_id: ParallelModel needs a text_end token to close the text stream")
        super().__init__(model, tokenizer, layout)

    @property
    def streams(self) -> int:
        return 1 + self.layout.num_codebooks

    def encode_prompt(self, example) -> np.ndarray:
        lay, tok = self.layout, self.tokenizer
        units = None
        if example.task_type == "s2s" and example.prompt_units is not None:
            units = np.asarray(example.prompt_units, dtype=np.int64).reshape(len(example.prompt_units), -1)
            pad_tok = tok.convert_ids_to_tokens(lay.text_pad_id)
            content = " ".join(["<|begin_of_audio|>", *([pad_tok] * len(units)), "<|end_of_audio|>"])
        else:
            content = example.question_text
        text = np.asarray(self.chat_ids(content), dtype=np.int64)
        out = np.full((len(text), self.streams), lay.speech_pad_id, dtype=np.int64)
        out[:, 0] = text
        if units is not None:
            slots = np.flatnonzero(text == lay.text_pad_id)
            out[slots, 1:] = np.asarray(lay.units_to_ids(units)).reshape(units.shape)
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

    @torch.no_grad()
    def generate(self, examples, *, num_samples: int, text_sampling: Sampling, speech_sampling: Sampling,
                 max_new_tokens: int, seed: int | None = None) -> Rollout:
        # ids (P, Lp, S), attention mask and positions (P, Lp)
        gen, prompts, ids, attn, pos = self._generation_inputs(examples, num_samples, max_new_tokens, seed)
        lay, G, dev = self.layout, num_samples, self.device
        was_training = self.model.training
        self.model.eval()
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
        cache = output_cache(out)
        cache.batch_repeat_interleave(G)
        logits = out.logits[:, -1].repeat_interleave(G, 0)                      # (B, S, V)
        B, Lp, S, V = logits.shape[0], ids.shape[1], self.streams, logits.shape[-1]
        attn_all = torch.ones(B, Lp + max_new_tokens, dtype=torch.long, device=dev)
        attn_all[:, :Lp] = attn.repeat_interleave(G, 0)
        next_pos = pos[:, -1].repeat_interleave(G, 0) + 1
        tokens = torch.full((B, max_new_tokens, S), lay.pad_id, dtype=torch.long, device=dev)
        logps = torch.zeros(B, max_new_tokens, S, device=dev)
        # allowed-token tables: text stream (text words + text_end), speech streams (units + speech_pad)
        text_ok = text_vocab_mask(self.tokenizer, lay, V).to(dev)
        if lay.text_end_id is not None:
            text_ok[lay.text_end_id] = True
        lo = lay.speech_start or 0
        unit_ok = torch.zeros(V, dtype=torch.bool, device=dev)
        unit_ok[lo: lo + lay.num_units] = True
        speech_ok = unit_ok.clone()
        speech_ok[lay.speech_pad_id] = True
        text_done = torch.zeros(B, dtype=torch.bool, device=dev)
        speech_done, finished = text_done.clone(), text_done.clone()
        ones = torch.ones(B, dtype=torch.bool, device=dev)
        steps = max_new_tokens
        settings = channel_settings(text_sampling, speech_sampling, dev)
        key = "cache"
        for t in range(max_new_tokens):
            # speech streams: forced speech_pad before the delay and after the speech ended
            sp_logits = logits[:, 1:].reshape(B * (S - 1), V)
            temp, top_p, top_k = row_settings(ones.repeat_interleave(S - 1), settings)
            sp_allowed = speech_ok.expand(B * (S - 1), V)
            sp = sample_tokens(sp_logits, sp_allowed, temp, top_p, top_k, gen).reshape(B, S - 1)
            forced_pad = (speech_done | finished | (t < lay.speech_delay)).unsqueeze(-1) | (sp[:, :1] == lay.speech_pad_id)
            sp = torch.where(forced_pad, lay.speech_pad_id, sp)
            speech_done |= (t >= lay.speech_delay) & (sp[:, 0] == lay.speech_pad_id)
            # text stream: words until text_end, then text_pad while speech runs, eos once both ended
            temp, top_p, top_k = row_settings(~ones, settings)
            tx = sample_tokens(logits[:, 0], text_ok.expand(B, V), temp, top_p, top_k, gen)
            after_text = torch.where(speech_done, lay.eos_id, lay.text_pad_id)
            tx = torch.where(text_done, after_text, tx)
            step = torch.cat([tx[:, None], sp], dim=1)                            # (B, S)
            step = torch.where(finished.unsqueeze(-1), lay.pad_id, step)
            tokens[:, t] = step
            logps[:, t] = gather_logprobs(logits, step)[0]
            finished |= step[:, 0] == lay.eos_id
            text_done |= step[:, 0] == lay.text_end_id
            if t + 1 == max_new_tokens or ((t % 4 == 3) and bool(finished.all())):
                steps = t + 1
                break
            out = self.model(input_ids=step[:, None], attention_mask=attn_all[:, : Lp + t + 1],
                             position_ids=next_pos[:, None], use_cache=True, **{key: cache})
            cache, logits = output_cache(out), out.logits[:, -1]
            next_pos += 1
        self.model.train(was_training)
        tokens, logps = tokens[:, :steps].cpu(), logps[:, :steps].cpu()
        responses, lps = [], []
        for i in range(B):
            stop = (tokens[i, :, 0] == lay.eos_id).nonzero()
            n = int(stop[0]) + 1 if len(stop) else steps
            responses.append(tokens[i, :n].numpy())
            lps.append(logps[i, :n])
        return self._rollout([prompts[i // G] for i in range(B)], responses, lps, G)
