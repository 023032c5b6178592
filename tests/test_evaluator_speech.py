"""The evaluator sets' speech: disjoint sentences, per-utterance seeds, the same audio and units on any worker count."""

import numpy as np

from wavalign_kit.codec import MelKMeansCodec
from wavalign_kit.speech import SAMPLE_RATE, STYLES, read_wav
from wavalign_kit.world.evaluator_speech import encode_utterances, evaluator_utterances, synthesize_utterances
from wavalign_kit.world.units import load_units


def test_sets_are_disjoint_and_styles_rotate():
    exclude = {"yes", "no"}
    sets = evaluator_utterances(np.random.default_rng(0), {"evaluators": 40, "examiners": 30}, list(STYLES), 5, exclude)
    ev, ex = sets["evaluators"], sets["examiners"]
    assert len(ev) == 40 and len(ex) == 30
    assert not {u.text for u in ev} & {u.text for u in ex} and not ({u.text for u in ev + ex} & exclude)
    assert not {u.audio for u in ev} & {u.audio for u in ex}
    assert [u.style for u in ev[:len(STYLES)]] == list(STYLES)
    assert {u.seed[:2] for u in ev} == {(5, 1)} and {u.seed[:2] for u in ex} == {(5, 2)}


def test_rendering_and_encoding_do_not_depend_on_the_worker_count(tmp_path):
    utterances = evaluator_utterances(np.random.default_rng(1), {"examiners": 6}, ["neutral", "whisper"], 0,
                                      set())["examiners"]
    for workers, root in ((1, tmp_path / "one"), (2, tmp_path / "two")):
        seconds = synthesize_utterances(root, utterances, edge_silence=0.05, workers=workers, progress=False)
        assert seconds > 0
    wavs = [read_wav(tmp_path / "one" / u.audio) for u in utterances]
    for u, wav in zip(utterances, wavs):
        assert np.array_equal(wav, read_wav(tmp_path / "two" / u.audio))
    codec = MelKMeansCodec.fit(wavs, SAMPLE_RATE, num_units=16, frame_rate=25.0, seed=0)
    for root in (tmp_path / "one", tmp_path / "two"):
        codec.save(root / "codec")
    one = encode_utterances(tmp_path / "one", [u.audio for u in utterances], workers=1, progress=False)
    two = encode_utterances(tmp_path / "two", [u.audio for u in utterances], workers=2, progress=False)
    assert list(one) == [u.audio for u in utterances]
    assert all(np.array_equal(one[a], two[a]) and np.array_equal(one[a], codec.encode(w, SAMPLE_RATE))
               for a, w in zip(one, wavs))
    assert np.array_equal(load_units(tmp_path / "two", utterances[0].audio), two[utterances[0].audio])   # cached
