"""The embedded world's word-level tokenizer: text words, dialogue special tokens and one token per speech unit."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, UNK = "<pad>", "<unk>"
USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
TEXT_END, BEGIN_AUDIO, END_AUDIO = "<|text_end|>", "<|begin_of_audio|>", "<|end_of_audio|>"
TEXT_PAD, SPEECH_PAD = "<|text_pad|>", "<|speech_pad|>"
SPECIAL_TOKENS = [PAD, USER, ASSISTANT, END, TEXT_END, BEGIN_AUDIO, END_AUDIO, TEXT_PAD, SPEECH_PAD, UNK]
SPEECH_TOKEN_PATTERN = "<|audio_{i}|>"

# The kit's chat template: user turn (question words, or user speech tokens), then the assistant's turn opener.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|> {{ m['content'] }} "
    "{% elif m['role'] == 'assistant' %}<|assistant|> {{ m['content'] }} <|end|> {% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def speech_token(i: int) -> str:
    """The token string of speech unit ``i``."""
    return SPEECH_TOKEN_PATTERN.format(i=i)


def build_tokenizer(words: Iterable[str], num_units: int) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer: special tokens, then the sorted text words, then ``num_units`` speech tokens.

    Speech tokens occupy one contiguous id range (``<|audio_0|>`` first), as ChannelLayout.from_tokenizer expects.
    """
    if num_units <= 0:
        raise ValueError(f"num_units must be positive, got {num_units}")
    vocab_words = sorted({w for w in words if w and w not in SPECIAL_TOKENS} - {""})
    bad = [w for w in vocab_words if any(ch.isspace() for ch in w)]
    if bad:
        raise ValueError(f"words must not contain whitespace: {bad[:5]}")
    tokens = SPECIAL_TOKENS + vocab_words + [speech_token(i) for i in range(num_units)]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=END,
        bos_token=None,
        padding_side="left",
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (PAD, UNK, END)]},
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
