"""The embedded world's tokenizer: contiguous speech ids, special tokens, save/load round trip."""

import pytest
from transformers import AutoTokenizer

from wavalign_kit.world.tokenizer import SPECIAL_TOKENS, build_tokenizer, speech_token


def test_speech_tokens_are_contiguous_and_round_trip(tmp_path):
    tok = build_tokenizer(["seven", "what", "is"], num_units=5)
    ids = tok.convert_tokens_to_ids([speech_token(i) for i in range(5)])
    assert ids == list(range(ids[0], ids[0] + 5))
    assert ids[-1] == len(tok) - 1
    text = "<|assistant|> what is seven <|text_end|> <|audio_4|> <|end_of_audio|> <|end|>"
    enc = tok(text, add_special_tokens=False).input_ids
    assert tok.unk_token_id not in enc
    assert tok.decode(enc) == text
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text, add_special_tokens=False).input_ids == enc
    assert all(t in again.get_vocab() for t in SPECIAL_TOKENS)


def test_chat_template_and_errors():
    tok = build_tokenizer(["hello"], num_units=2)
    prompt = tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True)
    assert prompt.split() == ["<|user|>", "hello", "<|assistant|>"]
    with pytest.raises(ValueError, match="num_units"):
        build_tokenizer(["a"], num_units=0)
    with pytest.raises(ValueError, match="whitespace"):
        build_tokenizer(["two words"], num_units=2)
