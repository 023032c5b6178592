"""The interleaved decoder's slot machine accepts exactly the responses layout_response can produce, for every
response format (closing tokens or none, boundary tokens at the end, around each speech run, or none)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import PreTrainedTokenizerFast

from wavalign_kit.channels import ChannelLayout
from wavalign_kit.models.interleaved import InterleavedSlots

# ids: 0 <pad>, 1 <eos>, 2 <te>, 3 <b>, 4 </b>, 5 <unk>, 6..9 words, 10..15 units
TOKENS = ["<pad>", "<eos>", "<te>", "<b>", "</b>", "<unk>", "w0", "w1", "w2", "w3"] + [f"<u{i}>" for i in range(6)]
WORDS, UNITS = [6, 7, 8, 9], 6


@pytest.fixture(scope="module")
def tokenizer():
    tok = Tokenizer(WordLevel({t: i for i, t in enumerate(TOKENS)}, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                   additional_special_tokens=["<te>", "<b>", "</b>"])


FORMATS = [(text_end, mode, end) for text_end, mode, end in itertools.product([True, False], ["end", "chunks", "none"],
                                                                               [True, False])
           if not (mode == "chunks" and not end)]
RATIOS = ["1 3 2 3", "2 2", "0 2 2 3", "3 1 1 4", "1 0 2 2"]


def layout(text_end: bool, mode: str, end: bool, ratio: str) -> ChannelLayout:
    return ChannelLayout.interleaved(speech_start=10, num_units=UNITS, begin_audio_id=3, end_audio_id=4 if end else None,
                                     text_end_id=2 if text_end else None, eos_id=1, pad_id=0, ratio=ratio,
                                     response_audio=mode)


def forced_walk(lay: ChannelLayout, tokenizer, seqs: list[list[int]]) -> list[bool]:
    """Teacher-force every sequence through one machine (a row each); per row, whether every token was allowed
    and the row finished exactly at its last token."""
    T = max(map(len, seqs))
    ids = torch.tensor([s + [0] * (T - len(s)) for s in seqs])
    slots = InterleavedSlots(lay, tokenizer, len(tokenizer), len(seqs), torch.device("cpu"))
    ok = torch.ones(len(seqs), dtype=torch.bool)
    lengths = torch.tensor([len(s) for s in seqs])
    for t in range(T):
        kind = slots.slots()
        ok &= slots.allowed(kind)[torch.arange(len(seqs)), ids[:, t]] | (t >= lengths)
        slots.update(kind, ids[:, t])
        ok &= slots.finished == (t + 1 >= lengths)
    return ok.tolist()


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"text_end={f[0]}-{f[1]}-end_audio={f[2]}")
def test_every_laid_out_response_is_accepted(tokenizer, fmt):
    rng = np.random.default_rng(0)
    for ratio in RATIOS:
        lay = layout(*fmt, ratio)
        seqs = [lay.layout_response(list(rng.choice(WORDS, n_text)), rng.integers(0, UNITS, n_units)).tolist()
                for n_text, n_units in itertools.product(range(0, 7), range(1, 12))]
        accepted = forced_walk(lay, tokenizer, seqs)
        assert all(accepted), (ratio, [s for s, a in zip(seqs, accepted) if not a][:3])


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"text_end={f[0]}-{f[1]}-end_audio={f[2]}")
def test_every_sampled_response_is_a_laid_out_one(tokenizer, fmt):
    """Random walks through the machine (uniform over the allowed tokens, 64 rows at once) produce only
    sequences that layout_response reproduces from their own split: no response outside the format."""
    g = torch.Generator().manual_seed(1)
    for ratio in RATIOS:
        lay = layout(*fmt, ratio)
        slots = InterleavedSlots(lay, tokenizer, len(tokenizer), 64, torch.device("cpu"))
        out = []
        for _ in range(60):
            kind = slots.slots()
            allowed = slots.allowed(kind).float()
            tok = torch.multinomial(allowed / allowed.sum(-1, keepdim=True), 1, generator=g)[:, 0]
            out.append(tok)
            slots.update(kind, tok)
        rows, done = torch.stack(out, 1).numpy(), 0
        for row in rows:
            if 1 not in row:
                continue
            seq = row[: list(row).index(1) + 1]
            text, units = lay.split_response(seq)
            assert lay.layout_response(text, units).tolist() == seq.tolist(), (ratio, seq)
            done += 1
        assert done > 20


def test_chunks_wrap_every_speech_run_and_none_adds_no_boundary():
    chunks = layout(False, "chunks", True, "1 3 2 3")
    # text w0 w1 w2 (3), units 0..7 (8): schedule (1, 3), (2, 3), (0, 2): the last two speech chunks form one run
    assert chunks.layout_response([6, 7, 8], np.arange(8) % UNITS).tolist() == \
        [6, 3, 10, 11, 12, 4, 7, 8, 3, 13, 14, 15, 10, 11, 4, 1]
    none = layout(False, "none", True, "13 26")
    ids = none.layout_response([6] * 20, np.zeros(30, dtype=int)).tolist()
    assert 3 not in ids and 4 not in ids and ids[:13] == [6] * 13 and ids[-1] == 1
