"""Tests of espeak-ng synthesis in named styles and of WAV file I/O."""

import numpy as np
import pytest

from wavalign_kit.speech import (
    SAMPLE_RATE,
    STYLES,
    Synthesizer,
    SynthesizerMissing,
    read_wav,
    synthesize,
    write_wav,
)

TEXT = "what is the capital of france the answer is paris"


@pytest.fixture(scope="module")
def synth():
    return Synthesizer(backend="library")


def _rms(w):
    return float(np.sqrt(np.mean(w**2)))


def test_every_style_renders_16k_float32(synth):
    for style in STYLES:
        wav = synth.synthesize(TEXT, style)
        assert wav.dtype == np.float32 and wav.ndim == 1
        assert 0.5 * SAMPLE_RATE < len(wav) < 10 * SAMPLE_RATE
        assert np.abs(wav).max() <= 1.0 and _rms(wav) > 0.01


def test_styles_differ_in_duration_and_energy(synth):
    dur = {s: len(synth.synthesize(TEXT, s)) / SAMPLE_RATE for s in STYLES}
    rms = {s: _rms(synth.synthesize(TEXT, s)) for s in STYLES}
    assert dur["slow"] > 1.3 * dur["neutral"] > 1.3 * dur["excited"] / 1.4
    assert dur["excited"] < dur["happy"] < dur["neutral"] < dur["calm"] < dur["sad"] < dur["slow"]
    assert rms["excited"] > rms["happy"] > rms["neutral"] > rms["sad"]


def test_jitter_varies_output_and_is_seeded(synth):
    a = synth.synthesize(TEXT, "neutral", np.random.default_rng(1))
    b = synth.synthesize(TEXT, "neutral", np.random.default_rng(2))
    c = synth.synthesize(TEXT, "neutral", np.random.default_rng(1))
    assert len(a) != len(b) or not np.allclose(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(synthesize(TEXT, "happy", seed=3), synthesize(TEXT, "happy", seed=3))


def test_bad_arguments_are_named(synth):
    with pytest.raises(ValueError, match="style="):
        synth.synthesize(TEXT, "angry")
    with pytest.raises(ValueError, match="text="):
        synth.synthesize("  ")
    with pytest.raises(ValueError, match="backend="):
        Synthesizer(backend="festival")


def test_missing_synthesizer_names_install_command(tmp_path):
    with pytest.raises(SynthesizerMissing, match="pip install espeakng-loader"):
        Synthesizer(backend="library", library_path=str(tmp_path / "libespeak-ng.so"), data_path=str(tmp_path))
    with pytest.raises(SynthesizerMissing, match="apt-get install espeak-ng"):
        Synthesizer(backend="command", command=str(tmp_path / "no-espeak-ng"))


def test_wav_round_trip_and_errors(tmp_path, synth):
    wav = synth.synthesize("yes", "calm")
    write_wav(tmp_path / "a.wav", wav)
    back = read_wav(tmp_path / "a.wav")
    assert back.dtype == np.float32 and np.abs(back - wav).max() < 1e-3
    with pytest.raises(ValueError, match="sample rate 16000 Hz, expected 22050"):
        read_wav(tmp_path / "a.wav", expected_sr=22050)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....garbage")
    with pytest.raises(ValueError, match="bad.wav"):
        read_wav(tmp_path / "bad.wav")
