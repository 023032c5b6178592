"""Interleaved spoken dialogue model: any causal LM whose vocabulary holds the speech tokens (GLM-4-Voice, VITA-Audio)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from wavalign_kit.channels import ChannelLayout
from wavalign_kit.models.base import SpokenDialogueModel, TokenBatch, text_vocab_mask

# Token classes of an interleaved response; a slot allows a union of them (one bit each).
TEXT, TEXT_END, UNIT, BEGIN, END, EOS, PAD = range(7)
CLASSES = 7


class InterleavedSlots:
    """Per-row state machine that says which tokens each row may emit next: exactly the responses that
    ``ChannelLayout.layout_response`` can produce (tested both ways).

    While both channels are open, positions follow the ratio's chunks (text turn, then speech turn). A channel
    closes with its closing token (``text_end``; ``end_audio`` when ``response_audio="end"``) or, without one,
    implicitly: the other channel's first token (or ``eos``) where the schedule gives the closed channel's turn.
    ``response_audio="chunks"``: a speech run opens with ``begin_audio`` and closes with ``end_audio`` (early:
    speech has ended). When both channels are closed the row emits ``eos``, then padding. Every response holds at
    least one unit. A slot is a union of token classes (text words, text_end, units, begin/end_audio, eos, pad),
    looked up in a table of all unions; a slot that allows one token is forced. All state lives on the device.
    """

    def __init__(self, layout: ChannelLayout, tokenizer, vocab_size: int, rows: int, device: torch.device) -> None:
        self.layout = lay = layout
        masks = torch.zeros(CLASSES, vocab_size, dtype=torch.bool)
        masks[TEXT] = text_vocab_mask(tokenizer, layout, vocab_size)
        masks[UNIT, lay.speech_start: lay.speech_start + lay.num_units] = True
        for cls, tok in ((TEXT_END, lay.text_end_id), (BEGIN, lay.begin_audio_id), (END, lay.end_audio_id),
                         (EOS, lay.eos_id), (PAD, lay.pad_id)):
            if tok is not None:
                masks[cls, tok] = True
        self.token_class = torch.full((vocab_size,), -1, dtype=torch.long)       # (V,) class of each token
        for cls in (TEXT, UNIT, TEXT_END, BEGIN, END, PAD, EOS):                  # eos wins when pad == eos
            self.token_class[masks[cls]] = cls
        codes = torch.arange(1 << CLASSES)
        bits = ((codes[:, None] >> torch.arange(CLASSES)) & 1).float()           # (2^C, C)
        self.table = (bits @ masks.float() > 0).to(device)                       # (2^C, V) union of classes
        self.single = (bits @ masks.sum(-1).float() == 1).to(device)            # (2^C,) one token allowed: forced
        self.token_class, self.bit = self.token_class.to(device), (1 << torch.arange(CLASSES)).to(device)
        self.chunks = torch.tensor(lay.ratio.chunks, device=device)              # (C, 2)
        self.text_closes = lay.text_end_id is not None                           # else implicitly
        self.mode = lay.response_audio if lay.end_audio_id is not None else "none"
        z = torch.zeros(rows, dtype=torch.long, device=device)
        self.chunk, self.rem_text, self.rem_speech = z.clone(), z + self.chunks[0, 0], z + self.chunks[0, 1]
        self.last = z - 1                                                        # class of the previous token
        f = torch.zeros(rows, dtype=torch.bool, device=device)
        self.text_done, self.speech_done, self.finished, self.in_run, self.started = (f.clone() for _ in range(5))
        self.kind, self.turn = z.clone(), z.clone()

    def _flags(self) -> tuple[Tensor, Tensor]:
        """(R, C) bool: the token classes each row may emit next; (R,) turn: 0 text, 1 speech, 2 inside a run."""
        mode, open_t, open_s = self.mode, ~self.text_done, ~self.speech_done
        live = ~self.finished
        run = live & self.in_run
        text_turn = live & ~run & open_t & (self.speech_done | (self.rem_text > 0))
        speech_turn = live & ~run & ~text_turn & open_s
        implicit_t = open_t & (not self.text_closes)                             # text may end without a token
        implicit_s = open_s & self.started & (mode == "none" or (mode == "chunks")) & ~self.in_run
        last_unit = self.last == UNIT
        end_now = run & open_t & (self.rem_text > 0)                             # a full run: text's turn is due
        eos_ok = (implicit_t | self.text_done) & (implicit_s | self.speech_done)
        flags = torch.zeros(len(live), CLASSES, dtype=torch.bool, device=live.device)
        flags[:, TEXT] = text_turn | (speech_turn & implicit_s & open_t)
        flags[:, TEXT_END] = (text_turn | (speech_turn & implicit_s & open_t)) & self.text_closes
        starts_speech = (text_turn & implicit_t & open_s) | speech_turn
        flags[:, UNIT] = (starts_speech & (mode != "chunks")) | (run & (self.last != BEGIN) & (~end_now | implicit_t)) \
            | (run & (self.last == BEGIN))
        flags[:, BEGIN] = starts_speech & (mode == "chunks") & (self.last != END)
        flags[:, END] = (run & last_unit) | (mode == "end") & open_s & last_unit & (text_turn | speech_turn)
        flags[:, EOS] = live & ~run & ((self.text_done & self.speech_done) | (eos_ok & (text_turn | speech_turn)))
        flags[:, PAD] = self.finished
        turn = torch.where(run, 2, torch.where(text_turn, 0, 1))
        return flags, turn

    def slots(self) -> Tensor:
        """(B,) code of the next slot of every row (the union of token classes it allows; see `allowed`)."""
        flags, self.turn = self._flags()
        self.kind = (flags.long() * self.bit).sum(-1)
        return self.kind

    def allowed(self, kind: Tensor) -> Tensor:
        """(B, V) bool of the tokens each row may emit at slots ``kind``."""
        return self.table[kind]

    def update(self, kind: Tensor, tok: Tensor) -> None:
        """Advance every row's state after it emitted ``tok`` at the slots ``kind`` that `slots` last returned."""
        cls, turn = self.token_class[tok], self.turn
        run_full = (turn == 2) & ~self.text_done & (self.rem_text > 0)
        self.text_done |= (cls == TEXT_END) | ((turn == 0) & ((cls == UNIT) | (cls == BEGIN))) \
            | (run_full & (cls == UNIT))
        self.speech_done |= ((turn == 1) & ((cls == TEXT) | (cls == TEXT_END) | (cls == EOS))) \
            | ((cls == END) & ((self.mode == "end") | ~run_full))
        self.in_run = (self.in_run | (cls == BEGIN)) & (cls != END)
        self.rem_text = self.rem_text - ((turn == 0) & (cls == TEXT)).long()
        self.rem_speech = self.rem_speech - (cls == UNIT).long()
        self.started |= cls == UNIT
        self.finished |= (cls == EOS) | (cls == PAD)
        self.last = cls
        # next chunk of the ratio once both parts of this one are used
        advance = (self.rem_text <= 0) & (self.rem_speech <= 0)
        nxt = torch.clamp(self.chunk + 1, max=len(self.chunks) - 1)
        self.chunk = torch.where(advance, nxt, self.chunk)
        self.rem_text = torch.where(advance, self.chunks[self.chunk, 0], self.rem_text)
        self.rem_speech = torch.where(advance, self.chunks[self.chunk, 1], self.rem_speech)

    # ---------------------------------------------------------------- SlotRules (decoding.py), one stream
    def allowed_tokens(self) -> tuple[Tensor, Tensor]:
        kind = self.slots()
        return self.table[kind].unsqueeze(1), (self.turn > 0).unsqueeze(1)        # (R, 1, V), (R, 1)

    def resolve(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        return tokens, self.single[self.kind].unsqueeze(1)

    def advance(self, tokens: Tensor) -> None:
        self.update(self.kind, tokens[:, 0])

    def select(self, rows: Tensor) -> None:
        for name in ("chunk", "rem_text", "rem_speech", "last", "text_done", "speech_done", "finished", "in_run",
                     "started", "kind", "turn"):
            setattr(self, name, getattr(self, name)[rows])


class InterleavedModel(SpokenDialogueModel):
    """A causal LM over one token stream in which text and speech-unit tokens alternate by the layout's ratio."""

    arch = "interleaved"

    def __init__(self, model: torch.nn.Module, tokenizer, layout: ChannelLayout) -> None:
        if layout.kind != "interleaved":
            raise ValueError(f"layout: InterleavedModel needs an interleaved ChannelLayout, got kind={layout.kind!r}")
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
