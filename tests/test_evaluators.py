"""Tests of the evaluators: WER by hand, and a smoke-sized train -> save -> load round trip."""

import numpy as np
import pytest
import torch

from wavalign_kit.codec import MelKMeansCodec
from wavalign_kit.evaluators import (
    EvaluatorConfig,
    Evaluators,
    corpus_word_error_rate,
    normalize_words,
    train_evaluators,
    word_error_rate,
)
from wavalign_kit.speech import SAMPLE_RATE, Synthesizer


@pytest.mark.parametrize("ref, hyp, expected", [
    ("the cat sat", "the cat sat", 0.0),
    ("the cat sat", "the bat sat", 1 / 3),          # one substitution
    ("the cat sat", "cat sat", 1 / 3),              # one deletion
    ("the cat", "the cat sat down", 1.0),           # two insertions over two reference words
    ("Hello, World!", "hello world", 0.0),          # case and punctuation are normalised away
    ("it's fine", "its fine", 0.5),                 # apostrophes are kept inside words
    ("", "", 0.0),
    ("", "a b", 2.0),                               # empty reference: every word is an insertion
])
def test_word_error_rate_hand_computed(ref, hyp, expected):
    assert word_error_rate(ref, hyp) == pytest.approx(expected)


def test_corpus_wer_and_normalisation():
    assert corpus_word_error_rate(["a b c d", "e"], ["a x c d", ""]) == pytest.approx(2 / 5)
    assert normalize_words("What's 2+2? Four.") == ["what's", "2", "2", "four"]
    with pytest.raises(ValueError, match="differ in length"):
        corpus_word_error_rate(["a"], [])


TEXTS = ["yes", "no", "the capital of spain is madrid", "what is two plus two", "four", "alice likes the red car",
         "bob lives in paris", "seven minus three equals four"]
STYLES = ["neutral", "happy", "sad", "excited", "whisper", "slow"]


@pytest.fixture(scope="module")
def items():
    synth = Synthesizer(backend="library")
    rng = np.random.default_rng(0)
    pairs = [(t, s) for t in TEXTS for s in STYLES]
    wavs = [synth.synthesize(t, s, rng) for t, s in pairs]
    codec = MelKMeansCodec.fit(wavs, SAMPLE_RATE, num_units=48, seed=0)
    return [dict(units=codec.encode(w, SAMPLE_RATE), text=t, style=s) for w, (t, s) in zip(wavs, pairs)]


def test_train_save_load_smoke(tmp_path, items):
    torch.set_num_threads(1)
    cfg = EvaluatorConfig.preset("smoke", recognizer_epochs=6, style_epochs=4, unit_lm_epochs=10, num_units=48)
    result = train_evaluators(items[::2] + items[1::4], items[1::2], tmp_path / "ev", cfg)
    for key in ("recognizer_wer", "style_accuracy", "unit_lm_nll", "train_utterances", "seconds"):
        assert key in result
    assert result["train_utterances"] == len(items[::2]) + len(items[1::4])
    assert 0.0 <= result["style_accuracy"] <= 1.0 and result["recognizer_wer"] >= 0.0
    held_styles = {it["style"] for it in items[1::2]}
    assert set(result["recognizer_wer_by_style"]) == held_styles
    assert min(result["recognizer_wer_by_style"].values()) <= result["recognizer_wer"] <= max(
        result["recognizer_wer_by_style"].values())
    losses = result["losses"]
    assert losses["recognizer"][-1] < losses["recognizer"][0] and losses["unit_lm"][-1] < losses["unit_lm"][0]
    assert (tmp_path / "ev" / "metrics.json").is_file()
    assert result["device"] == ("cuda" if torch.cuda.is_available() else "cpu")   # device "auto"

    ev = Evaluators.load(tmp_path / "ev")
    again = Evaluators.load(tmp_path / "ev")
    assert {e.device.type for e in (ev.recognizer, ev.style, ev.unit_lm)} == {"cpu"}   # saved weights load on CPU
    units = [it["units"] for it in items[:10]]
    assert ev.recognizer.transcribe(units) == again.recognizer.transcribe(units)
    probs = ev.style.predict_proba(units)
    assert probs.shape == (10, len(STYLES)) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, again.style.predict_proba(units))
    assert ev.style.styles == sorted(STYLES) and all(p in STYLES for p in ev.style.predict(units))
    scores = ev.unit_lm.score(units)
    assert scores.shape == (10,) and np.all(scores < 0)
    # real speech units should look more natural to the unit LM than uniformly random units
    noise = [np.random.default_rng(i).integers(0, 48, len(u)) for i, u in enumerate(units)]
    assert scores.mean() > ev.unit_lm.score(noise).mean() + 0.2


def test_evaluator_bad_input(tmp_path, items):
    with pytest.raises(ValueError, match=r"train_items\[0\]: missing field"):
        train_evaluators([{"units": np.zeros(3, np.int64)}], items, tmp_path, EvaluatorConfig.preset("smoke"))
    with pytest.raises(ValueError, match="scale="):
        EvaluatorConfig.preset("huge")
    with pytest.raises(FileNotFoundError, match="spec.json"):
        Evaluators.load(tmp_path / "nothing")


def test_units_outside_the_codec_are_named():
    from wavalign_kit.evaluators import Recognizer

    rec = Recognizer({"num_units": 8, "embed_dim": 4, "hidden": 4, "layers": 1, "dropout": 0.0,
                      **Recognizer.spec_for(["yes no"])})
    assert isinstance(rec.transcribe([np.array([1, 2, 3])])[0], str)
    with pytest.raises(ValueError, match=r"units_list\[1\].*\[0, 8\)"):
        rec.transcribe([np.array([1, 2]), np.array([3, 9])])
    with pytest.raises(ValueError, match=r"units_list\[0\]"):
        rec.transcribe([np.zeros(0, np.int64)])
