"""The spoken dialogue model interface shared by both architectures: token batches, rollouts, save/load, reference."""

from __future__ import annotations

import copy
import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from wavalign_kit.channels import ChannelLayout, InterleaveRatio
from wavalign_kit.models.decoding import (
    DecodeOptions,
    SlotRules,
    core_module,
    decode,
    generation_inputs,
    teacher_forced,
)
from wavalign_kit.models.prompts import speech_prompt, text_prompt
from wavalign_kit.models.sampling import Sampling, gather_logprobs

MODEL_CARD = "wavalign_model.json"
CONTROL_CHARACTERS = {c: "\ufffd" for c in [*range(0, 9), *range(11, 32), 127, 0x85, 0x2028, 0x2029]}


@dataclass
class TokenBatch:
    """Prompt + response ids, right-padded; masks over the N next-token predictions (flattened over streams).

    The batch owns its row slicing, its channel masks and its own checks (``check``), so losses validate once, at
    the boundary, and then read like the formulas."""

    input_ids: Tensor  # (B, L) interleaved or (B, L, 1+K) parallel
    attention_mask: Tensor  # (B, L)
    prompt_lengths: Tensor  # (B,)
    response_mask: Tensor  # (B, N) bool, N = (L-1) or (L-1)*(1+K)
    text_mask: Tensor  # (B, N) bool, subset of response_mask
    speech_mask: Tensor  # (B, N) bool, subset of response_mask

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def streams(self) -> int:
        """1 for an interleaved stream, 1+K for parallel streams."""
        return self.input_ids.shape[2] if self.input_ids.dim() == 3 else 1

    def _map(self, fn) -> TokenBatch:
        return TokenBatch(*(fn(getattr(self, f)) for f in self.__dataclass_fields__))

    def to(self, device: torch.device | str) -> TokenBatch:
        """The same batch on ``device``."""
        return self._map(lambda t: t.to(device))

    def channel(self, which: str) -> Tensor:
        """The response mask restricted to a channel: ``all`` | ``text`` | ``speech``."""
        masks = {"all": self.response_mask, "text": self.text_mask, "speech": self.speech_mask}
        if which not in masks:
            raise ValueError(f"channel: {which!r} is not one of {list(masks)}")
        return masks[which]

    def excluding(self, positions: Tensor) -> TokenBatch:
        """The batch with ``positions`` (B, N) bool taken out of its response and channel masks: e.g. the tokens
        the decoder forced, which are not the policy's actions (RL and DPO masks leave them out)."""
        keep = ~positions.to(self.response_mask.device)
        return TokenBatch(self.input_ids, self.attention_mask, self.prompt_lengths, self.response_mask & keep,
                          self.text_mask & keep, self.speech_mask & keep)

    def rows(self, index: slice | Sequence[int] | Tensor, *, trim: bool = False) -> TokenBatch:
        """Rows ``index`` (same L and N, so per-token tensors stay aligned; ``trim`` drops trailing padding)."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        part = self._map(lambda t: t[index])
        return part.padded_to(int(part.attention_mask.sum(1).max()) if trim and len(part) else part.length)

    @property
    def length(self) -> int:
        """L, the padded sequence length."""
        return self.input_ids.shape[1]

    def padded_to(self, length: int, pad_id: int | None = None) -> TokenBatch:
        """The batch cut or right-padded to ``length`` positions (padding: ``pad_id``, attention 0, masks False)."""
        B, L, S = len(self), self.length, self.streams
        if length == L:
            return self
        if length < L:
            ids, attn = self.input_ids[:, :length], self.attention_mask[:, :length]
        else:
            fill = pad_id if pad_id is not None else 0
            ids = self.input_ids.new_full((B, length, *self.input_ids.shape[2:]), fill)
            ids[:, :L] = self.input_ids
            attn = self.attention_mask.new_zeros(B, length)
            attn[:, :L] = self.attention_mask

        def mask(m: Tensor) -> Tensor:
            m = m.reshape(B, L - 1, S)
            out = torch.zeros(B, length - 1, S, dtype=torch.bool, device=m.device)
            n = min(L, length) - 1
            out[:, :n] = m[:, :n]
            return out.reshape(B, -1)

        return TokenBatch(ids, attn, self.prompt_lengths, mask(self.response_mask), mask(self.text_mask),
                          mask(self.speech_mask))

    @staticmethod
    def concat(batches: Sequence[TokenBatch], pad_id: int) -> TokenBatch:
        """Rows of ``batches`` stacked in order, right-padded to the longest (what one collate of all rows gives)."""
        length = max(b.length for b in batches)
        parts = [b.padded_to(length, pad_id) for b in batches]
        return TokenBatch(*(torch.cat([getattr(p, f) for p in parts]) for f in TokenBatch.__dataclass_fields__))

    def check(self) -> TokenBatch:
        """Validate shapes, dtypes and mask nesting once (ValueError naming the field); returns the batch."""
        B, L = self.attention_mask.shape
        N = (L - 1) * self.streams
        if self.input_ids.shape[:2] != (B, L) or self.prompt_lengths.shape != (B,):
            raise ValueError(f"TokenBatch.input_ids {tuple(self.input_ids.shape)} / prompt_lengths "
                             f"{tuple(self.prompt_lengths.shape)} do not match attention_mask {(B, L)}")
        for name in ("response_mask", "text_mask", "speech_mask"):
            m = getattr(self, name)
            if m.dtype != torch.bool or m.shape != (B, N):
                raise ValueError(f"TokenBatch.{name}: expected a bool tensor of shape {(B, N)}, got {m.dtype} "
                                 f"{tuple(m.shape)}")
        if (self.text_mask & self.speech_mask).any():
            raise ValueError("TokenBatch.text_mask, speech_mask: overlap; a token belongs to one channel")
        if ((self.text_mask | self.speech_mask) & ~self.response_mask).any():
            raise ValueError("TokenBatch.text_mask / speech_mask: select tokens outside response_mask")
        return self


@dataclass
class Rollout:
    """G sampled responses per prompt (prompt-major rows) with the sampling-free log-probs of their tokens."""

    batch: TokenBatch
    logprobs: Tensor  # (B, N) log pi(y_t) at temperature 1, full vocabulary; 0 outside response_mask
    group_size: int
    texts: list[str]
    units: list[np.ndarray]
    prompt_index: list[int]
    forced: Tensor  # (B, N) bool: response positions the decoder forced (the slot allowed exactly one token)


def layout_to_dict(layout: ChannelLayout) -> dict[str, Any]:
    """A JSON-ready description of a ChannelLayout."""
    d = {f: getattr(layout, f) for f in layout.__dataclass_fields__}
    d["ratio"] = None if layout.ratio is None else [x for pair in layout.ratio.chunks for x in pair]
    return d


def layout_from_dict(d: dict[str, Any]) -> ChannelLayout:
    """Inverse of :func:`layout_to_dict`."""
    d = dict(d)
    d["ratio"] = None if d.get("ratio") is None else InterleaveRatio.parse(d["ratio"])
    return ChannelLayout(**d)


def text_vocab_mask(tokenizer, layout: ChannelLayout, vocab_size: int) -> Tensor:
    """(V,) bool: plain text tokens (not special, not speech) that a text slot may emit."""
    allowed = torch.zeros(vocab_size, dtype=torch.bool)
    allowed[: min(len(tokenizer), vocab_size)] = True
    special = set(tokenizer.all_special_ids) | {
        i for i in (layout.eos_id, layout.pad_id, layout.text_end_id, layout.begin_audio_id, layout.end_audio_id,
                    layout.text_pad_id, layout.speech_pad_id) if i is not None}
    allowed[[i for i in special if i < vocab_size]] = False
    lo = layout.speech_start or 0
    allowed[lo: lo + layout.num_units] = False
    return allowed


class SpokenDialogueModel(ABC):
    """A policy over interleaved or parallel text/speech token streams.

    ``model`` is the torch module that is trained (peft-wrapped under LoRA); ``reference_logprobs`` scores a batch
    under the frozen starting policy (adapters disabled under LoRA, else a frozen copy).
    """

    arch: str = ""

    def __init__(self, model: torch.nn.Module, tokenizer, layout: ChannelLayout) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.layout = layout
        self.codec: Any = None   # the model's own speech codec (None: the world's); set by workspace.load_model
        self._reference_copy: torch.nn.Module | None = None
        self.lora_config: dict[str, Any] | None = None
        self.decode_options = DecodeOptions()

    # ------------------------------------------------------------------ encoding
    def user_content(self, example) -> str | list[int]:
        """The user turn: the question words (t2s), or the user speech as token ids (s2s): ``begin_audio``, one
        token per unit, ``end_audio`` (boundaries the layout lacks are left out)."""
        if example.task_type == "s2s" and example.prompt_units is not None:
            lay = self.layout
            units = self.layout.units_to_ids(np.asarray(example.prompt_units))
            return [i for i in (lay.begin_audio_id,) if i is not None] + units + \
                [i for i in (lay.end_audio_id,) if i is not None]
        return example.question_text

    def speech_prompt(self, content_ids: Sequence[int]) -> tuple[list[int], int]:
        """The prompt ids of a user turn made of token ids (user speech) and where they start
        (`models.prompts.speech_prompt`: nothing is inserted between speech tokens, whatever the tokenizer)."""
        return speech_prompt(self.tokenizer, content_ids)

    def chat_ids(self, content: str | Sequence[int]) -> list[int]:
        """Token ids of one user turn followed by the assistant's turn opener (chat template or the kit's own);
        ``content``: the user's words, or token ids spliced in unchanged (`speech_prompt`)."""
        if isinstance(content, str):
            return text_prompt(self.tokenizer, content)
        return self.speech_prompt(content)[0]

    @abstractmethod
    def encode_prompt(self, example) -> np.ndarray:
        """The prompt ids of an Example: chat template + user text or user speech units."""

    def text_ids(self, text: str) -> list[int]:
        """Plain text token ids of ``text`` (no special tokens)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_response(self, text: str, units) -> np.ndarray:
        """The target response laid out exactly as the model generates it (ChannelLayout.layout_response)."""
        return self.layout.layout_response(self.text_ids(text), np.asarray(units, dtype=np.int64))

    def decode_text(self, text_ids) -> str:
        """The text string of text token ids (word-level tokenizers without a decoder: words joined by spaces).
        Control characters (what a byte-level tokenizer's arbitrary bytes decode to, e.g. a lone carriage return
        or NUL) become U+FFFD, so that every table storing texts reads back row for row."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is not None and backend.decoder is None and type(backend.model).__name__ == "WordLevel":
            special = set(self.tokenizer.all_special_ids)
            return " ".join(self.tokenizer.convert_ids_to_tokens([int(i) for i in text_ids if int(i) not in special]))
        return self.tokenizer.decode(list(text_ids), skip_special_tokens=True).strip().translate(CONTROL_CHARACTERS)

    @abstractmethod
    def collate(self, prompts: list[np.ndarray], responses: list[np.ndarray]) -> TokenBatch:
        """Right-padded prompt + response batch with response / text / speech masks."""

    def token_logprobs(self, batch: TokenBatch, *, module: torch.nn.Module | None = None,
                       with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
        """(B, N) log p of every next token (0 outside the response) and optionally the entropy (B, N).

        ``module`` is the network to run (default ``self.model``; the trainer passes its accelerate-wrapped one)."""
        batch = batch.to(self.device)
        net = self.model if module is None else module
        logits = net(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits  # (B, L, [S,] V)
        logp, ent = gather_logprobs(logits[:, :-1], batch.input_ids[:, 1:], with_entropy)   # (B, L-1[, S])
        B, m = logp.shape[0], batch.response_mask
        return logp.reshape(B, -1) * m, (ent.reshape(B, -1) * m if ent is not None else None)

    @abstractmethod
    def slot_rules(self, rows: int, vocab_size: int, device: torch.device) -> SlotRules:
        """This architecture's decoding state machine (which tokens each slot allows) for ``rows`` rows."""

    @torch.no_grad()
    def generate(self, examples, *, num_samples: int, text_sampling: Sampling, speech_sampling: Sampling,
                 max_new_tokens: int, seed: int | None = None, reference: bool = False) -> Rollout:
        """``num_samples`` responses per example in one batched decode loop (models/decoding.py): each prompt
        prefilled once, a static KV cache, ``self.decode_options`` for the speed settings. ``reference``: sample
        from the reference policy pi_ref (adapters disabled under LoRA, else the frozen copy), e.g. the base
        model's responses that paper-style DPO ranks into pairs."""
        if reference and self.is_lora():
            with self.model.disable_adapter():
                return self.generate(examples, num_samples=num_samples, text_sampling=text_sampling,
                                     speech_sampling=speech_sampling, max_new_tokens=max_new_tokens, seed=seed)
        if reference and self._reference_copy is None:
            self.snapshot_reference()
        gen, prompts, ids, attn, pos = generation_inputs(self, examples, num_samples, max_new_tokens, seed)
        out = decode(self, ids, attn, pos, group=num_samples, max_new_tokens=max_new_tokens,
                     rules=lambda rows, vocab: self.slot_rules(rows, vocab, self.device), text=text_sampling,
                     speech=speech_sampling, generator=gen, options=self.decode_options,
                     module=self._reference_copy if reference else None)
        responses, logprobs, forced = out.responses(self.layout.eos_id)
        return self._rollout([prompts[i // num_samples] for i in range(len(responses))], responses, logprobs,
                             num_samples, forced)

    def forced_mask(self, prompts: list[np.ndarray], responses: list[np.ndarray]) -> Tensor:
        """(B, N) bool on :meth:`collate`'s N axis: the response positions whose slot allows exactly one token
        (e.g. parallel ``text_pad`` after ``text_end``, ``eos`` once both channels ended), found by
        teacher-forcing each laid-out response through the decoder's slot rules. Equals ``Rollout.forced``
        for generated responses; these positions are not actions of the policy."""
        vocab = getattr(core_module(self.model).config, "vocab_size", None) or len(self.tokenizer)
        flags = teacher_forced(self.slot_rules(len(responses), vocab, torch.device("cpu")), responses,
                               self.layout.pad_id)
        return self._on_response_axis(prompts, responses, flags)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @staticmethod
    def _on_response_axis(prompts: list[np.ndarray], responses: list[np.ndarray], values: list[Tensor]) -> Tensor:
        """Per-row (n, S) values of each response placed on collate's (B, N) axis (N = (L-1) * S), zero elsewhere."""
        steps = max(len(p) + len(r) for p, r in zip(prompts, responses)) - 1
        streams = values[0].shape[-1] if values[0].dim() == 2 else 1
        out = torch.zeros(len(responses), steps, streams, dtype=values[0].dtype)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            out[i, len(p) - 1: len(p) - 1 + len(r)] = values[i].reshape(len(r), streams).cpu()
        return out.reshape(len(responses), -1)

    def _rollout(self, prompts: list[np.ndarray], responses: list[np.ndarray], logprobs: list[Tensor],
                 group_size: int, forced: list[Tensor]) -> Rollout:
        """Assemble a Rollout: collate, place log-probs and forced flags on the batch's N axis, split the channels."""
        batch = self.collate(prompts, responses)
        texts, units = [], []
        for r in responses:
            t, u = self.layout.split_response(r)
            texts.append(self.decode_text(t))
            units.append(u)
        return Rollout(batch=batch, logprobs=self._on_response_axis(prompts, responses, [x.float() for x in logprobs]),
                       group_size=group_size, texts=texts, units=units,
                       prompt_index=[i // group_size for i in range(len(responses))],
                       forced=self._on_response_axis(prompts, responses, forced))

    # ------------------------------------------------------------------ reference policy
    def is_lora(self) -> bool:
        return hasattr(self.model, "disable_adapter") and hasattr(self.model, "peft_config")

    def snapshot_reference(self) -> None:
        """Freeze a copy of the current weights as the reference policy (full fine-tuning only)."""
        if not self.is_lora():
            self._reference_copy = copy.deepcopy(self.model).eval().requires_grad_(False)

    def reference_logprobs(self, batch: TokenBatch) -> Tensor:
        """(B, N) log-probs of ``batch`` under the reference policy pi_ref, under inference mode (no graph).

        LoRA: the same network with its adapters disabled (no second copy). Full fine-tuning: the frozen copy taken
        by :meth:`snapshot_reference`, or at the first call when none was taken."""
        if not self.is_lora() and self._reference_copy is None:
            self.snapshot_reference()
        with torch.inference_mode():
            if self.is_lora():
                with self.model.disable_adapter():
                    logp = self.token_logprobs(batch)[0]
            else:
                logp = self.token_logprobs(batch, module=self._reference_copy)[0]
        return logp.clone()  # outside inference mode: an ordinary tensor the losses may combine with graph tensors

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        """Write weights (safetensors), config, tokenizer and layout so that :meth:`load` restores this model."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        card = {"arch": self.arch, "layout": layout_to_dict(self.layout), "lora": self.lora_config}
        if self.is_lora():
            base = self.model.get_base_model()
            base.config.save_pretrained(out)
            state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
            save_file(state, str(out / "peft_model.safetensors"))
        else:
            self.model.save_pretrained(out, safe_serialization=True)
        # own folder: next to the model's config.json, AutoTokenizer would pick the backbone's tokenizer class
        self.tokenizer.save_pretrained(out / "tokenizer")
        (out / MODEL_CARD).write_text(json.dumps(card, indent=2))

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> SpokenDialogueModel:
        """Restore a model written by :meth:`save` (the architecture is read from the directory)."""
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from wavalign_kit.models.interleaved import InterleavedModel
        from wavalign_kit.models.lora import LoraSettings, wrap_lora
        from wavalign_kit.models.parallel import DualStreamModel, ParallelModel

        root = Path(directory)
        if not (root / MODEL_CARD).is_file():
            raise ValueError(f"{root}: no {MODEL_CARD}; not a directory written by SpokenDialogueModel.save")
        card = json.loads((root / MODEL_CARD).read_text())
        if card.get("arch") not in ("interleaved", "parallel"):
            raise ValueError(f"{root / MODEL_CARD}: field 'arch' must be 'interleaved' or 'parallel', got {card.get('arch')!r}")
        layout = layout_from_dict(card["layout"])
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer" if (root / "tokenizer").is_dir() else root)
        if card["arch"] == "parallel" and "response_audio" not in card["layout"]:   # saved before prompts read
            vocab = tokenizer.get_vocab()                                            # the layout's boundaries
            layout = dataclasses.replace(layout, begin_audio_id=vocab.get("<|begin_of_audio|>"),
                                         end_audio_id=vocab.get("<|end_of_audio|>"))
        impl = InterleavedModel if card["arch"] == "interleaved" else ParallelModel
        if card.get("lora"):
            config = AutoConfig.from_pretrained(root)
            base = AutoModelForCausalLM.from_config(config) if card["arch"] == "interleaved" else DualStreamModel(config)
            wrapped = impl(base, tokenizer, layout)
            wrapped.model = wrap_lora(base, LoraSettings(**card["lora"]), card["arch"])
            wrapped.lora_config = card["lora"]
            wrapped.model.load_state_dict(load_file(str(root / "peft_model.safetensors")), strict=True)
        else:
            klass = AutoModelForCausalLM if card["arch"] == "interleaved" else DualStreamModel
            wrapped = impl(klass.from_pretrained(root), tokenizer, layout)
        if device is not None:
            wrapped.model.to(device)
        wrapped.model.eval()
        return wrapped
