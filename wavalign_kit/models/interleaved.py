"""Interleaved spoken dialogue model: any causal LM whose vocabulary holds the speech tokens (GLM-4-Voice, VITA-Audio)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from wavalign_kit.channels import ChannelLayout
from wavalign_kit.models.base import SpokenDialogueModel, TokenBatch, text_vocab_mask

# Slot kinds of the interleaved decoding state machine (rows of the allowed-token table).
TEXT_SLOT, TEXT_OR_AUDIO_END, SPEECH_SLOT, EOS_SLOT, PAD_SLOT, FIRST_UNIT = range(6)


class InterleavedSlots:
    """Per-row state machine that says which tokens each row may emit next, following layout_response.

    While both channels are open, positions follow the ratio's chunks (text slots then speech slots);
    ``text_end`` closes the text channel (then speech only), ``end_audio`` closes speech (then text only);
    ``end_audio`` always directly follows a unit, also right after a full speech chunk, where layout_response
    puts it, so a speech run starts with a unit (FIRST_UNIT slot); when both are closed
    the row emits ``eos``, then padding. All state lives on the device: no host synchronisation.
    Implements the decoder's SlotRules with one stream; a slot kind that allows one token (``eos``) is forced.
    """

    def __init__(self, layout: ChannelLayout, tokenizer, vocab_size: int, rows: int, device: torch.device) -> None:
        self.layout = layout
        lo, n = layout.speech_start, layout.num_units
        text = text_vocab_mask(tokenizer, layout, vocab_size)
        if layout.text_end_id is not None:
            text[layout.text_end_id] = True
        speech = torch.zeros(vocab_size, dtype=torch.bool)
        speech[lo: lo + n] = True
        if layout.end_audio_id is not None:
            speech[layout.end_audio_id] = True
        text_or_end = text.clone()
        if layout.end_audio_id is not None:
            text_or_end[layout.end_audio_id] = True
        eos = torch.zeros(vocab_size, dtype=torch.bool)
        eos[layout.eos_id] = True
        pad = torch.zeros(vocab_size, dtype=torch.bool)
        pad[layout.pad_id] = True
        first_unit = speech.clone()
        if layout.end_audio_id is not None:
            first_unit[layout.end_audio_id] = False
        self.table = torch.stack([text, text_or_end, speech, eos, pad, first_unit]).to(device)  # (6, V)
        self.single = self.table.sum(-1) == 1                                                    # (6,) forced kinds
        self.speech_kind = torch.tensor([k in (SPEECH_SLOT, FIRST_UNIT) for k in range(6)], device=device)
        self.chunks = torch.tensor(layout.ratio.chunks, device=device)  # (C, 2)
        z = torch.zeros(rows, dtype=torch.long, device=device)
        self.chunk, self.rem_text, self.rem_speech = z.clone(), z + self.chunks[0, 0], z + self.chunks[0, 1]
        f = torch.zeros(rows, dtype=torch.bool, device=device)
        self.text_done, self.speech_done, self.finished, self.last_unit = f.clone(), f.clone(), f.clone(), f.clone()
        self.kind = z.clone()

    def slots(self) -> Tensor:
        """(B,) slot kind of the next position of every row."""
        both_open = ~self.text_done & ~self.speech_done
        text_turn = (self.speech_done & ~self.text_done) | (both_open & (self.rem_text > 0))
        kind = torch.where(self.last_unit, SPEECH_SLOT, FIRST_UNIT)
        kind = torch.where(text_turn, torch.where(both_open & self.last_unit,
                                                  TEXT_OR_AUDIO_END, TEXT_SLOT), kind)
        kind = torch.where(self.text_done & self.speech_done, EOS_SLOT, kind)
        return torch.where(self.finished, PAD_SLOT, kind)

    def allowed(self, kind: Tensor) -> Tensor:
        """(B, V) bool of the tokens each row may emit."""
        return self.table[kind]

    def update(self, kind: Tensor, tok: Tensor) -> None:
        """Advance every row's state after it emitted ``tok`` at a slot of kind ``kind``."""
        lay = self.layout
        is_unit = (tok >= lay.speech_start) & (tok < lay.speech_start + lay.num_units)
        end_audio = tok == lay.end_audio_id if lay.end_audio_id is not None else torch.zeros_like(is_unit)
        text_end = tok == lay.text_end_id if lay.text_end_id is not None else torch.zeros_like(is_unit)
        in_text_slot = ((kind == TEXT_SLOT) | (kind == TEXT_OR_AUDIO_END)) & ~end_audio
        in_speech_slot = is_unit
        self.rem_text = self.rem_text - in_text_slot.long()
        self.rem_speech = self.rem_speech - in_speech_slot.long()
        self.last_unit = is_unit
        self.finished |= (kind == EOS_SLOT) | (kind == PAD_SLOT)
        self.text_done |= text_end
        self.speech_done |= end_audio
        # next chunk of the ratio once both parts of this one are used
        advance = (self.rem_text <= 0) & (self.rem_speech <= 0)
        nxt = torch.clamp(self.chunk + 1, max=len(self.chunks) - 1)
        self.chunk = torch.where(advance, nxt, self.chunk)
        self.rem_text = torch.where(advance, self.chunks[self.chunk, 0], self.rem_text)
        self.rem_speech = torch.where(advance, self.chunks[self.chunk, 1], self.rem_speech)

    # ---------------------------------------------------------------- SlotRules (decoding.py), one stream
    def allowed_tokens(self) -> tuple[Tensor, Tensor]:
        self.kind = self.slots()
        return self.table[self.kind].unsqueeze(1), self.speech_kind[self.kind].unsqueeze(1)   # (R, 1, V), (R, 1)

    def resolve(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        return tokens, self.single[self.kind].unsqueeze(1)

    def advance(self, tokens: Tensor) -> None:
        self.update(self.kind, tokens[:, 0])

    def select(self, rows: Tensor) -> None:
        for name in ("chunk", "rem_text", "rem_speech", "text_done", "speech_done", "finished", "last_unit", "kind"):
            setattr(self, name, getattr(self, name)[rows])


class InterleavedModel(SpokenDialogueModel):
    """A causal LM over one token stream in which text and speech-unit tokens alternate by the layout's ratio."""

    arch = "interleaved"

    def __init__(self, model: torch.nn.Module, tokenizer, layout: ChannelLayout) -> None:
        if layout.kind != "interleaved":
            raise ValueError(f"layout: InterleavedModel needs an interleaved ChannelLayout, got kind={layout.kind!r}")
        if layout.text_end_id is None or layout.end_audio_id is None:
            raise ValueError("layout: interleaved generation needs text_end and end_audio tokens to close each channel; "
                             "pass the model's own tokens to ChannelLayout.from_tokenizer(text_end=..., end_audio=...)")
        super().__init__(model, tokenizer, layout)

    def encode_prompt(self, example) -> np.ndarray:
        return np.asarray(self.chat_ids(self.user_content(example)), dtype=np.int64)

    def collate(self, prompts: list[np.ndarray], responses: list[np.ndarray]) -> TokenBatch:
        lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
        L = max(lengths)
        ids = torch.full((len(prompts), L), self.layout.pad_id, dtype=torch.long)
        attn = torch.zeros(len(prompts), L, dtype=torch.long)
        resp = torch.zeros(len(prompts), L - 1, dtype=torch.bool)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            ids[i, : len(p)] = torch.as_tensor(p)
            ids[i, len(p): len(p) + len(r)] = torch.as_tensor(r)
            attn[i, : len(p) + len(r)] = 1
            resp[i, len(p) - 1: len(p) + len(r) - 1] = True  # predictions of response tokens
        text, speech = self.layout.masks(ids[:, 1:], valid=resp)
        return TokenBatch(ids, attn, torch.tensor([len(p) for p in prompts]), resp, text & resp, speech & resp)

    def slot_rules(self, rows: int, vocab_size: int, device: torch.device) -> InterleavedSlots:
        return InterleavedSlots(self.layout, self.tokenizer, vocab_size, rows, device)
