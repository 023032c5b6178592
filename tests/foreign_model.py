"""A spoken dialogue model built outside the kit, the way a user brings one, and a user's own data.

The model: a tiny Llama with a byte-level BPE tokenizer trained here (no download), a ChatML-style chat template,
speech tokens named ``<sp_0>`` .. ``<sp_{N-1}>`` added after the text vocabulary, boundary tokens ``<speech>`` /
``</speech>`` around every speech run of an answer, no text-end token, ``<|im_end|>`` as end of turn and a 3:6
interleave ratio (the kit's own models use 2:8, a word-level tokenizer, ``<|audio_i|>`` and a text-end token).
The data: JSONL splits in the authors' schema with 24 kHz audio, encoded by a user codec (``usercodecs:ToneCodec``,
24 kHz) and scored by user rewards (``userrewards:KeywordReward``, ``userrewards:LoudnessReward``) given by import
path. Used by tests/test_byo.py and tests/test_prompts.py.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

SPEECH = "<sp_{i}>"
BEGIN, END, EOS, PAD, START = "<speech>", "</speech>", "<|im_end|>", "<|endoftext|>", "<|im_start|>"
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LAYOUT = f"""# the layout of the foreign model, as its user writes it
speech_token_pattern: "{SPEECH}"
begin_audio: "{BEGIN}"
end_audio: "{END}"
text_end: null
eos: "{EOS}"
ratio: "3 6"
response_audio: chunks
"""
CORPUS = ["what is two plus three", "the answer is five", "say hello to anna", "hello anna how are you",
          "count the apples please", "there are four apples", "is the sky blue", "yes the sky is blue today"]

USER_CODEC = '''
import numpy as np


class ToneCodec:
    """A user's speech codec at 24 kHz: 50 frames per second, each frame's loudness in UNITS buckets; decodes
    to a tone whose loudness follows the units."""

    sample_rate, frame_rate, num_units, num_codebooks = 24_000, 50.0, 64, 1

    def encode(self, wav, sr):
        assert sr == self.sample_rate, sr
        hop = self.sample_rate // 50
        frames = np.asarray(wav, dtype=np.float32)[: len(wav) // hop * hop].reshape(-1, hop)
        return np.minimum((np.sqrt((frames ** 2).mean(axis=1)) * 300).astype(np.int64), self.num_units - 1)

    def decode(self, units):
        hop = self.sample_rate // 50
        amp = np.repeat(np.asarray(units, dtype=np.float32) / 300.0, hop)
        t = np.arange(amp.size) / self.sample_rate
        return (amp * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
'''

USER_REWARDS = '''
import numpy as np


class KeywordReward:
    """Semantic: 1 when the text channel holds the record's keyword, else 0."""

    name, channel, needs_audio, score_range = "keyword", "semantic", False, (0.0, 1.0)

    def __call__(self, prompts, completions):
        return [float(p.record["keyword"] in c.text.split()) for p, c in zip(prompts, completions)]


class LoudnessReward:
    """Acoustic, on decoded audio at 24 kHz: 1 - |rms - target| / target, clipped to [0, 1]."""

    name, channel, needs_audio, score_range, sample_rate = "loudness", "acoustic", True, (0.0, 1.0), 24_000

    def __init__(self, target=0.05):
        self.target = float(target)
        self.rates = set()

    def __call__(self, prompts, completions):
        self.rates |= {c.sample_rate for c in completions}
        assert self.rates == {24_000}, self.rates
        rms = [float(np.sqrt(np.mean(np.square(c.audio)))) if len(c.audio) else 0.0 for c in completions]
        return [max(0.0, 1.0 - abs(r - self.target) / self.target) for r in rms]
'''


def byte_bpe_tokenizer(num_units: int, corpus: list[str] = CORPUS):
    """A byte-level BPE tokenizer trained on ``corpus``, with the foreign model's special and speech tokens."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1, special_tokens=[PAD, EOS, START],
                            show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, pad_token=PAD,
                                  additional_special_tokens=[START, BEGIN, END])
    tok.add_tokens([SPEECH.format(i=i) for i in range(num_units)])
    tok.chat_template = CHATML
    return tok


def sentencepiece_tokenizer(num_units: int, corpus: list[str] = CORPUS):
    """A sentencepiece-style tokenizer (metaspace '▁' words, a leading space marker on the first segment only,
    as Llama's), with the same special and speech tokens."""
    from tokenizers import SentencePieceBPETokenizer, decoders, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    spm = SentencePieceBPETokenizer(unk_token="<unk>")
    spm.train_from_iterator(corpus, vocab_size=300, min_frequency=1, special_tokens=[PAD, EOS, START, "<unk>"],
                            show_progress=False)
    core = spm._tokenizer
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    core.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=PAD, unk_token="<unk>",
                                  additional_special_tokens=[START, BEGIN, END])
    tok.add_tokens([SPEECH.format(i=i) for i in range(num_units)])
    tok.chat_template = CHATML
    return tok


def build_foreign_model(out: Path, num_units: int = 64, seed: int = 0) -> Path:
    """Save the tiny foreign model (weights, tokenizer with chat template) and its layout.yaml into ``out``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = byte_bpe_tokenizer(num_units)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=1024, tie_word_embeddings=False,
                                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "layout.yaml").write_text(LAYOUT)
    return out


def write_user_modules(root: Path) -> Path:
    """usercodecs.py and userrewards.py in ``root`` (put it on sys.path / PYTHONPATH)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "usercodecs.py").write_text(textwrap.dedent(USER_CODEC))
    (root / "userrewards.py").write_text(textwrap.dedent(USER_REWARDS))
    return root


def _tone(path: Path, seconds: float, loud: float, sr: int = 24_000) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, loud * np.sin(2 * np.pi * 200 * t) * np.linspace(0.3, 1.0, t.size), sr, subtype="PCM_16")


def write_own_data(root: Path, n: int = 6) -> Path:
    """``n`` records per split (train, rl, valid, test) of 24 kHz audio in the authors' schema, with a keyword
    the user's reward looks for, half of them spoken prompts; no world.yaml (the codec comes from the config)."""
    pairs = [("what is two plus three", "five"), ("say hello to anna", "hello"), ("count the apples please", "four"),
             ("is the sky blue", "yes")]
    for split in ("train", "rl", "valid", "test"):
        lines = []
        for i in range(n):
            q, key = pairs[i % len(pairs)]
            answer = f"the answer is {key}"
            _tone(root / f"audio/{split}_a{i}.wav", 0.4 + 0.05 * (i % 3), 0.05 + 0.02 * (i % 4))
            spoken = i % 2 == 0
            if spoken:
                _tone(root / f"audio/{split}_q{i}.wav", 0.3, 0.08)
            lines.append(json.dumps({
                "messages": [{"role": "user", "content": "<|audio|>" if spoken else q},
                             {"role": "assistant", "content": answer}],
                "audios": [f"audio/{split}_q{i}.wav"] if spoken else [], "sft_target_text": answer,
                "sft_target_audio": f"audio/{split}_a{i}.wav", "task_type": "s2s" if spoken else "t2s",
                "question_text": q, "keyword": key, "check": {"type": "user_keyword", "word": key}}))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root
