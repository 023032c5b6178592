"""ChannelLayout: interleave schedule, masks, response layout round trips, tokenizer construction and errors."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import PreTrainedTokenizerFast

from wavalign_kit.channels import ChannelLayout, InterleaveRatio

# ids: 0 pad, 1 eos, 2 text_end, 3 begin_audio, 4 end_audio, 5..9 text, 10..19 units 0..9
LAYOUT = ChannelLayout.interleaved(speech_start=10, num_units=10, begin_audio_id=3, end_audio_id=4,
                                   text_end_id=2, eos_id=1, pad_id=0, ratio="1 10 4 10")


def make_tokenizer(num_units=4, drop=()):
    tokens = ["<pad>", "<|end|>", "<|text_end|>", "<|begin_of_audio|>", "<|end_of_audio|>", "<unk>", "hi", "there"]
    tokens += [f"<|audio_{i}|>" for i in range(num_units)]
    vocab = {t: i for i, t in enumerate(t for t in tokens if t not in drop)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|end|>", unk_token="<unk>")


def test_ratio_parse_and_schedule_by_hand():
    r = InterleaveRatio.parse("1 10 4 10")
    assert r.chunks == ((1, 10), (4, 10))
    assert r.schedule(6, 25) == [(1, 10), (4, 10), (1, 5)]
    assert r.schedule(12, 15) == [(1, 10), (4, 5), (7, 0)]  # speech runs out: text continues alone
    assert r.schedule(1, 35) == [(1, 10), (0, 25)]  # text runs out: speech continues alone
    assert InterleaveRatio.parse([13, 26]).schedule(30, 60) == [(13, 26), (13, 26), (4, 8)]
    assert r.schedule(0, 0) == []
    for bad in ("1 10 4", "a b", "0 0", ""):
        with pytest.raises(ValueError, match="ratio"):
            InterleaveRatio.parse(bad)


def test_interleaved_layout_by_hand():
    # text 5 6 7 + text_end -> 4 text tokens; units 0..11 -> 12 speech tokens; schedule (1,10), (3,2)
    ids = LAYOUT.layout_response([5, 6, 7], np.arange(12) % 10)
    units = [10 + u for u in np.arange(12) % 10]
    expected = [5] + units[:10] + [6, 7, 2] + units[10:] + [4, 1]
    assert ids.tolist() == expected
    # speech runs out first: end_audio right after the last unit, then the rest of the text, then eos
    ids = LAYOUT.layout_response([5, 6, 7, 8, 9, 5], [1, 2])
    assert ids.tolist() == [5, 11, 12, 4, 6, 7, 8, 9, 5, 2, 1]


def test_interleaved_masks_by_hand():
    ids = torch.tensor([[5, 3, 10, 19, 4, 2, 1, 0], [6, 12, 20, 1, 0, 0, 0, 0]])
    text, speech = LAYOUT.masks(ids)
    assert speech.int().tolist() == [[0, 1, 1, 1, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0]]
    assert text.int().tolist() == [[1, 0, 0, 0, 0, 1, 1, 0], [1, 0, 1, 1, 0, 0, 0, 0]]  # 20 is beyond units: text
    assert torch.equal(LAYOUT.text_mask(ids), text) and torch.equal(LAYOUT.speech_mask(ids), speech)
    valid = torch.ones_like(ids, dtype=torch.bool)
    valid[0, 6:] = False
    t2, s2 = LAYOUT.masks(ids, valid)
    assert not t2[0, 6] and s2.sum() == speech.sum()
    assert torch.equal(LAYOUT.select(text, speech, "all"), text | speech)
    assert torch.equal(LAYOUT.select(text, speech, "speech"), speech)
    with pytest.raises(ValueError, match="which"):
        LAYOUT.select(text, speech, "audio")


def test_parallel_layout_and_masks_by_hand():
    lay = ChannelLayout.parallel(num_codebooks=2, num_units=8, text_pad_id=3, speech_pad_id=8, text_end_id=2,
                                 eos_id=1, pad_id=0, speech_delay=2)
    units = np.array([[0, 1], [2, 3], [4, 5]])
    ids = lay.layout_response([5, 6], units)
    assert ids.tolist() == [[5, 8, 8], [6, 8, 8], [2, 0, 1], [3, 2, 3], [3, 4, 5], [1, 8, 8]]
    text, back = lay.split_response(ids)
    assert text == [5, 6] and np.array_equal(back, units)
    batch = torch.tensor(np.stack([ids, np.concatenate([ids[:4], np.zeros((2, 3), dtype=np.int64)])]))
    t, s = lay.masks(batch)
    assert t.shape == batch.shape
    assert t[..., 0].int().tolist() == [[1] * 6, [1] * 4 + [0, 0]] and not t[..., 1:].any()
    assert s[..., 1:].int().sum().item() == 2 * 6 + 2 * 4 and not s[..., 0].any()
    with pytest.raises(ValueError, match="ids"):
        lay.masks(torch.zeros(2, 5, 2, dtype=torch.long))


@settings(max_examples=60, deadline=None)
@given(text=st.lists(st.integers(5, 9), max_size=30), units=st.lists(st.integers(0, 9), max_size=60),
       ratio=st.lists(st.integers(1, 12), min_size=2, max_size=6).filter(lambda r: len(r) % 2 == 0),
       text_end=st.booleans(), end_audio=st.booleans())
def test_interleaved_round_trip(text, units, ratio, text_end, end_audio):
    lay = ChannelLayout.interleaved(speech_start=10, num_units=10, begin_audio_id=3, end_audio_id=4 if end_audio else None,
                                    text_end_id=2 if text_end else None, eos_id=1, pad_id=0, ratio=ratio)
    ids = lay.layout_response(text, np.array(units, dtype=np.int64))
    t, u = lay.split_response(ids)
    assert t == text and u.tolist() == units
    assert ids[-1] == 1 and (ids == 2).sum() == int(text_end)
    text_m, speech_m = lay.masks(torch.as_tensor(ids)[None])
    assert int(speech_m.sum()) == len(units) + int(end_audio and len(units) > 0)
    assert int(text_m.sum()) == len(text) + int(text_end) + 1  # + eos
    # padding the generated sequence does not change the split
    t2, u2 = lay.split_response(np.concatenate([ids, [0, 0, 15]]))
    assert t2 == text and u2.tolist() == units


@settings(max_examples=60, deadline=None)
@given(text=st.lists(st.integers(5, 9), max_size=20), n=st.integers(0, 30), k=st.integers(1, 3),
       delay=st.integers(0, 5), seed=st.integers(0, 100))
def test_parallel_round_trip(text, n, k, delay, seed):
    lay = ChannelLayout.parallel(num_codebooks=k, num_units=16, text_pad_id=3, speech_pad_id=116, text_end_id=2,
                                 eos_id=1, pad_id=0, speech_delay=delay, speech_start=100)
    units = np.random.default_rng(seed).integers(0, 16, size=(n, k) if k > 1 else (n,))
    ids = lay.layout_response(text, units)
    assert ids.shape[1] == 1 + k and ids[-1, 0] == 1
    t, u = lay.split_response(ids)
    assert t == text and np.array_equal(u, units) and u.shape == units.shape


def test_from_tokenizer_and_missing_tokens():
    tok = make_tokenizer(num_units=4)
    lay = ChannelLayout.from_tokenizer(tok, ratio="2 3")
    v = tok.get_vocab()
    assert (lay.speech_start, lay.num_units) == (v["<|audio_0|>"], 4)
    assert (lay.eos_id, lay.pad_id, lay.text_end_id) == (v["<|end|>"], v["<pad>"], v["<|text_end|>"])
    assert lay.begin_audio_id == v["<|begin_of_audio|>"] and lay.end_audio_id == v["<|end_of_audio|>"]
    assert ChannelLayout.from_tokenizer(tok, num_units=4).num_units == 4
    with pytest.raises(ValueError, match="declared 2 speech units but the tokenizer holds 4"):   # issue 11, trap 3
        ChannelLayout.from_tokenizer(tok, num_units=2)      # the 2 undeclared speech tokens would become "text"
    with pytest.raises(ValueError, match=r"<\|audio_4\|>"):
        ChannelLayout.from_tokenizer(tok, num_units=5)
    with pytest.raises(ValueError, match=r"<\|text_end\|>"):
        ChannelLayout.from_tokenizer(make_tokenizer(drop=("<|text_end|>",)))
    with pytest.raises(ValueError, match=r"<\|audio_0\|>"):
        ChannelLayout.from_tokenizer(make_tokenizer(num_units=0))
    assert ChannelLayout.from_tokenizer(make_tokenizer(drop=("<|text_end|>",)), text_end=None).text_end_id is None


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="units"):
        LAYOUT.layout_response([5], [10])
    with pytest.raises(ValueError, match="text_ids"):
        LAYOUT.layout_response([12], [1])
    with pytest.raises(ValueError, match="eos_id"):
        ChannelLayout.interleaved(speech_start=0, num_units=4, begin_audio_id=None, end_audio_id=None,
                                  text_end_id=None, eos_id=2, pad_id=9)
    with pytest.raises(ValueError, match="must be distinct"):
        ChannelLayout.interleaved(speech_start=10, num_units=4, begin_audio_id=3, end_audio_id=3,
                                  text_end_id=2, eos_id=1, pad_id=0)
    with pytest.raises(ValueError, match="valid"):
        LAYOUT.text_mask(torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.bool))
    assert LAYOUT.ids_to_units(LAYOUT.units_to_ids([3, 0, 9])).tolist() == [3, 0, 9]
