"""Spoken prompts: nothing is inserted between speech units, whatever the tokenizer (issue 11, trap 5).

A user's speech enters the prompt as begin_audio, one token per unit, end_audio, spliced into the chat template
as ids: for byte-level BPE, sentencepiece-style and word-level tokenizers the prompt equals what the model's own
tokenizer gives for the speech tokens written back to back (as GLM-4-Voice and VITA-Audio format them)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from foreign_model import BEGIN, END, SPEECH, byte_bpe_tokenizer, sentencepiece_tokenizer

from wavalign_kit.layouts import LayoutConfig
from wavalign_kit.models.interleaved import InterleavedModel
from wavalign_kit.models.parallel import ParallelModel
from wavalign_kit.world.tokenizer import build_tokenizer

UNITS = 16
SPOKEN = SimpleNamespace(task_type="s2s", question_text="", prompt_units=np.array([3, 3, 7, 0, 15, 2, 2, 9]))
TYPED = SimpleNamespace(task_type="t2s", question_text="what is two plus three", prompt_units=None)


def foreign(tokenizer) -> InterleavedModel:
    layout = LayoutConfig(speech_token_pattern=SPEECH, begin_audio=BEGIN, end_audio=END, text_end=None,
                          ratio="3 6").resolve(tokenizer)
    return InterleavedModel(torch.nn.Identity(), tokenizer, layout)


# a template whose text follows the user content directly: a sentencepiece tokenizer marks a word that starts a
# string with a leading space, but not one that follows a special token; the splice must tokenise it as the latter
GLUED = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}answer briefly<|im_end|>\n"
         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("glued", [False, True], ids=["chatml", "glued"])
@pytest.mark.parametrize("make", [byte_bpe_tokenizer, sentencepiece_tokenizer], ids=["byte_bpe", "sentencepiece"])
def test_speech_units_are_spliced_with_nothing_between_them(make, glued):
    tok = make(UNITS)
    if glued:
        tok.chat_template = GLUED
    model = foreign(tok)
    ids = model.encode_prompt(SPOKEN).tolist()
    speech = tok.convert_tokens_to_ids([BEGIN, *(SPEECH.format(i=u) for u in SPOKEN.prompt_units), END])
    start = ids.index(speech[0])
    assert ids[start: start + len(speech)] == speech                           # one run: begin, 8 units, end
    content = BEGIN + "".join(SPEECH.format(i=u) for u in SPOKEN.prompt_units) + END
    rendered = tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                       add_generation_prompt=True)
    assert ids == tok(rendered, add_special_tokens=False)["input_ids"]         # what the model's tokenizer gives
    assert len(ids) == len(model.encode_prompt(SimpleNamespace(**{**vars(SPOKEN), "prompt_units": SPOKEN.prompt_units[:1]}))) + 7
    typed = model.encode_prompt(TYPED).tolist()
    assert typed == tok(tok.apply_chat_template([{"role": "user", "content": TYPED.question_text}], tokenize=False,
                                                add_generation_prompt=True), add_special_tokens=False)["input_ids"]


def test_word_level_prompts_are_the_kits_own():
    """The kit's word-level tokenizer (speech tokens are plain vocabulary words): the same ids as the kit's
    models were trained on, the user turn framed by <|user|> ... <|assistant|>."""
    tok = build_tokenizer("what is two plus three".split(), UNITS)
    layout = LayoutConfig(ratio="2 8").resolve(tok)
    model = InterleavedModel(torch.nn.Identity(), tok, layout)
    words = ["<|user|>", "<|begin_of_audio|>", *(f"<|audio_{u}|>" for u in SPOKEN.prompt_units), "<|end_of_audio|>",
             "<|assistant|>"]
    assert model.encode_prompt(SPOKEN).tolist() == tok.convert_tokens_to_ids(words)
    assert model.encode_prompt(TYPED).tolist() == tok.convert_tokens_to_ids(["<|user|>", *TYPED.question_text.split(),
                                                                             "<|assistant|>"])


def test_parallel_prompts_put_speech_under_text_pads_of_any_tokenizer():
    tok = byte_bpe_tokenizer(UNITS)
    tok.add_special_tokens({"additional_special_tokens": ["<tpad>", "<spad>"]})
    layout = LayoutConfig(kind="parallel", speech_token_pattern=SPEECH, begin_audio=BEGIN, end_audio=END,
                          text_end=None, text_pad="<tpad>", speech_pad="<spad>", speech_delay=1).resolve(tok)
    model = ParallelModel(torch.nn.Identity(), tok, layout)
    ids = model.encode_prompt(SPOKEN)
    units = np.flatnonzero(ids[:, 1] != layout.speech_pad_id)
    assert ids[units, 1].tolist() == [layout.speech_start + u for u in SPOKEN.prompt_units]
    assert (ids[units, 0] == layout.text_pad_id).all() and units.tolist() == list(range(units[0], units[0] + 8))
    assert ids[units[0] - 1, 0] == layout.begin_audio_id and ids[units[-1] + 1, 0] == layout.end_audio_id
