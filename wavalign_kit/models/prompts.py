"""Prompt encoding: one user turn in the model's chat template (or the kit's own), with the user's words or the
user's speech as token ids spliced in unchanged.

User speech never goes through the tokenizer as text: a byte-level BPE tokenizer would put a space token between
speech tokens joined by spaces, and a word-level one would not split speech tokens written back to back. The
chat template is rendered around a placeholder; the text before it is encoded as a string's start, the text
after it as what follows a special token (a sentencepiece-style tokenizer marks a leading space only at a
string's start), and the speech ids go between. For a tokenizer whose speech tokens are added tokens this equals
encoding the rendered prompt with the speech tokens written back to back (tests/test_prompts.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SPEECH_PLACEHOLDER = "\ue000user speech\ue000"   # rendered by the chat template where user speech tokens go


def render(tokenizer: Any, content: str) -> str:
    """One user turn and the assistant's turn opener as text: the tokenizer's chat template, else the kit's."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True)
    return f"<|user|> {content} <|assistant|>"


def encode(tokenizer: Any, text: str, *, after_special: bool = False) -> list[int]:
    """Token ids of ``text`` (no special tokens added); ``after_special``: tokenised as text that follows a special
    token, found by encoding it after the tokenizer's eos token and dropping that token."""
    if after_special and tokenizer.eos_token is not None:
        ids = tokenizer(tokenizer.eos_token + text, add_special_tokens=False)["input_ids"]
        if ids and ids[0] == tokenizer.eos_token_id:
            return list(ids[1:])
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def text_prompt(tokenizer: Any, words: str) -> list[int]:
    """The prompt ids of a user turn of words."""
    return encode(tokenizer, render(tokenizer, words))


def speech_prompt(tokenizer: Any, content_ids: Sequence[int]) -> tuple[list[int], int]:
    """The prompt ids of a user turn made of token ids (user speech: boundaries and units), and the position
    where those ids start; nothing is inserted between them."""
    text = render(tokenizer, SPEECH_PLACEHOLDER)
    if text.count(SPEECH_PLACEHOLDER) != 1:
        raise ValueError(f"the tokenizer's chat template renders the user content {text.count(SPEECH_PLACEHOLDER)} "
                         "times; it must render it exactly once to hold the user's speech tokens")
    before, after = text.split(SPEECH_PLACEHOLDER)
    head = encode(tokenizer, before)
    return head + list(content_ids) + encode(tokenizer, after, after_special=True), len(head)
