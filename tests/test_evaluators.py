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
    with pytest.raises(ValueError, match=r"units_list\[2\].*\[0, 8\)"):     # named by its index among empty rows too
        rec.transcribe([np.zeros(0, np.int64), np.array([1]), np.array([9])])
    with pytest.raises(ValueError, match=r"units_list\[0\]: expected an int array"):
        rec.transcribe([np.zeros((2, 2), np.int64)])


def test_a_response_without_speech_is_scored_as_silence(tmp_path, items):
    """A model that emits no speech token (parallel streams, early end) gets scores, not an error: an empty
    transcript, uniform style probabilities, the unit LM's guess likelihood; the other rows are unchanged."""
    torch.set_num_threads(1)
    cfg = EvaluatorConfig.preset("smoke", recognizer_epochs=1, style_epochs=1, unit_lm_epochs=1, num_units=48)
    train_evaluators(items[::2], items[1::2], tmp_path / "ev", cfg)
    ev = Evaluators.load(tmp_path / "ev")
    speech = [it["units"] for it in items[:2]]
    mixed = [speech[0], np.zeros(0, np.int64), speech[1], []]
    assert ev.recognizer.transcribe(mixed) == [*ev.recognizer.transcribe(speech[:1]), "",
                                               *ev.recognizer.transcribe(speech[1:]), ""]
    probs = ev.style.predict_proba(mixed)
    np.testing.assert_allclose(probs[[0, 2]], ev.style.predict_proba(speech), atol=1e-6)
    np.testing.assert_allclose(probs[[1, 3]], 1.0 / len(ev.style.styles))
    scores = ev.unit_lm.score(mixed)
    np.testing.assert_allclose(scores[[0, 2]], ev.unit_lm.score(speech), atol=1e-6)
    np.testing.assert_allclose(scores[[1, 3]], -np.log(48), rtol=1e-6)
    assert ev.recognizer.transcribe([]) == [] and ev.style.predict_proba([]).shape == (0, len(ev.style.styles))


def _tiny_unit_lm():
    from wavalign_kit.evaluators import UnitLM

    return UnitLM({"num_units": 8, "embed_dim": 4, "hidden": 8, "layers": 1, "dropout": 0.0})


def test_early_stopping_keeps_the_best_development_weights():
    from wavalign_kit.evaluators.fit import fit

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    units = [rng.integers(0, 8, int(rng.integers(3, 9))) for _ in range(64)]
    figures = iter([0.9, 0.8, 0.5, 0.6, 0.7, 0.65, 0.9, 0.9, 0.9, 0.9])    # best at the third check
    seen = []

    def scripted_figure(model, dev_units, dev_targets):
        seen.append({k: v.clone() for k, v in model.net.state_dict().items()})
        return next(figures)

    model = _tiny_unit_lm()
    cfg = EvaluatorConfig.preset("smoke", batch_size=4, dev_checks=10, patience=3)
    result = fit(model, units, [None] * 64, epochs=10, cfg=cfg, desc="t", dev=(units[:4], [None] * 4),
                 dev_figure=scripted_figure, progress=False)
    assert result.planned_updates == 160 and [u for u, _ in result.dev_checks] == [16, 32, 48, 64, 80, 96]
    assert result.stopped_early and result.updates == 96 and result.best_update == 48
    final = model.net.state_dict()
    assert all(torch.equal(final[k], seen[2][k]) for k in final)             # the weights of the best check
    assert not all(torch.equal(final[k], seen[-1][k]) for k in final)


def test_no_early_stop_in_the_first_half_or_without_a_dev_slice():
    from wavalign_kit.evaluators.fit import fit

    rng = np.random.default_rng(1)
    units = [rng.integers(0, 8, 5) for _ in range(16)]
    flat = fit(_tiny_unit_lm(), units, [None] * 16, epochs=8, cfg=EvaluatorConfig.preset("smoke", batch_size=4,
               dev_checks=32, patience=1), desc="t", dev=(units[:2], [None] * 2),
               dev_figure=lambda *_: 1.0, progress=False)          # a plateau (CTC's all-blank start)
    assert flat.stopped_early and flat.updates == flat.planned_updates // 2 + 1
    plain = fit(_tiny_unit_lm(), units, [None] * 16, epochs=2, cfg=EvaluatorConfig.preset("smoke", batch_size=4),
                desc="t", progress=False)
    assert plain.updates == plain.planned_updates == 8 and plain.dev_checks == [] and len(plain.losses) == 2


def _state_dicts(root):
    from wavalign_kit.evaluators.jobs import KINDS

    return {kind: torch.load(root / kind / "model.pt", weights_only=True) for kind in KINDS}


def test_evaluator_cache_reuses_a_matching_set_and_retrains_another(tmp_path, items):
    from wavalign_kit.evaluators import read_manifest

    torch.set_num_threads(1)
    cfg = EvaluatorConfig.preset("smoke", recognizer_epochs=2, style_epochs=1, unit_lm_epochs=1, num_units=48)
    train, held = items[::2], items[1::2]
    first = train_evaluators(train, held, tmp_path / "a", cfg, cache_root=tmp_path / "cache")
    assert first["cache"]["status"] == "trained"
    assert (tmp_path / "cache" / first["cache"]["key"] / "metrics.json").is_file()

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")         # a file of the caller's beside the set: kept, not cached
    again = train_evaluators(train, held, tmp_path / "b", cfg, cache_root=tmp_path / "cache")
    assert again["cache"] == {"key": first["cache"]["key"], "status": "reused"}
    assert (tmp_path / "b" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "cache" / first["cache"]["key"] / "notes.txt").exists()
    assert again["recognizer_wer"] == first["recognizer_wer"] and again["style_accuracy"] == first["style_accuracy"]
    a, b = _state_dicts(tmp_path / "a"), _state_dicts(tmp_path / "b")
    assert all(torch.equal(a[kind][k], b[kind][k]) for kind in a for k in a[kind])
    assert read_manifest(tmp_path / "b") == read_manifest(tmp_path / "a")
    assert Evaluators.load(tmp_path / "b").style.styles == sorted({it["style"] for it in train})

    other = train_evaluators(train, held, tmp_path / "c", EvaluatorConfig.preset(
        "smoke", recognizer_epochs=2, style_epochs=1, unit_lm_epochs=1, num_units=48, seed=1),
        cache_root=tmp_path / "cache")
    assert other["cache"]["status"] == "trained" and other["cache"]["key"] != first["cache"]["key"]
    changed = [dict(it, units=it["units"][:-1]) if i == 0 else it for i, it in enumerate(train)]   # other units
    moved = train_evaluators(changed, held, tmp_path / "d", cfg, cache_root=tmp_path / "cache")
    assert moved["cache"]["status"] == "trained"
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_parallel_training_gives_the_same_models(tmp_path, items):
    torch.set_num_threads(1)
    cfg = EvaluatorConfig.preset("smoke", recognizer_epochs=1, style_epochs=1, unit_lm_epochs=1, num_units=48)
    one = train_evaluators(items[::2], items[1::2], tmp_path / "one", cfg, workers=1)
    two = train_evaluators(items[::2], items[1::2], tmp_path / "two", cfg, workers=2)
    assert one["recognizer_wer"] == two["recognizer_wer"] and one["unit_lm_nll"] == two["unit_lm_nll"]
    a, b = _state_dicts(tmp_path / "one"), _state_dicts(tmp_path / "two")
    assert all(torch.equal(a[kind][k], b[kind][k]) for kind in a for k in a[kind])


def test_half_rate_recognizer_and_config_errors():
    from wavalign_kit.evaluators import Recognizer
    from wavalign_kit.evaluators.encoder import pad_units

    spec = {"num_units": 8, "embed_dim": 4, "hidden": 6, "layers": 2, "dropout": 0.0, "encoder": "half_rate_gru",
            **Recognizer.spec_for(["yes no"])}
    rec = Recognizer(spec)
    units, lengths = pad_units([np.array([1, 2, 3, 4, 5]), np.array([1, 2])], 8)
    assert rec.net.encoder(units, lengths).shape == (2, 3, 12)                    # ceil(5 / 2) half-rate frames
    assert rec.net.encoder.output_lengths(lengths).tolist() == [3, 1]
    assert rec.net(units, lengths).shape == (2, 5 * rec.net.upsample, len(rec.vocab))   # the slots of full rate
    alone = rec.net(units[1:, :2], lengths[1:])                                    # padding changes nothing
    torch.testing.assert_close(rec.net(units, lengths)[1:, : 2 * rec.net.upsample], alone)
    assert isinstance(rec.transcribe([np.array([1, 2, 3, 4])])[0], str)
    with pytest.raises(ValueError, match="encoder='lstm'"):
        Recognizer({**spec, "encoder": "lstm"})
    with pytest.raises(ValueError, match="recognizer_encoder='lstm'"):
        EvaluatorConfig(recognizer_encoder="lstm").validate()
    with pytest.raises(ValueError, match="patience=0"):
        EvaluatorConfig(patience=0).validate()


def test_bidirectional_gru_over_padded_batches_matches_a_packed_one():
    from torch import nn

    from wavalign_kit.evaluators.encoder import UnitEncoder, pad_units

    torch.manual_seed(0)
    enc = UnitEncoder(16, 8, 12, 1, 0.0).eval()
    packed_gru = nn.GRU(12, 12, batch_first=True, bidirectional=True)
    packed_gru.load_state_dict({**enc.gru[0].state_dict(),
                                **{k + "_reverse": v for k, v in enc.gru[1].state_dict().items()}})
    units, lengths = pad_units([np.random.default_rng(i).integers(0, 16, n) for i, n in enumerate([7, 3, 5])], 16)
    with torch.no_grad():
        convs_only = UnitEncoder(16, 8, 12, 1, 0.0, rnn=False).eval()
        convs_only.load_state_dict({k: v for k, v in enc.state_dict().items() if not k.startswith(("gru", "norm_out"))})
        packed = nn.utils.rnn.pack_padded_sequence(convs_only(units, lengths), lengths, batch_first=True,
                                                   enforce_sorted=False)
        expected, _ = nn.utils.rnn.pad_packed_sequence(packed_gru(packed)[0], batch_first=True, total_length=7)
        valid = torch.arange(7)[None, :] < lengths[:, None]
        torch.testing.assert_close(enc(units, lengths)[valid], enc.norm_out(expected)[valid])


def test_unit_embeddings_start_from_unit_features():
    from wavalign_kit.evaluators.encoder import init_unit_embeddings

    emb = torch.nn.Embedding(49, 16, padding_idx=48)
    pad_row, features = emb.weight[48].clone(), np.random.default_rng(0).normal(size=(48, 81))
    features[:, 0] *= 50.0                                     # standardised first: no feature dominates
    init_unit_embeddings(emb, features)
    w = emb.weight.detach().numpy()
    assert np.isclose(w[:48].std(), 1.0, atol=1e-5) and torch.equal(emb.weight[48], pad_row)
    z = (features - features.mean(0)) / features.std(0)
    gram = z @ z.T                                             # the leading components carry the distances
    assert np.corrcoef((w[:48] @ w[:48].T).ravel(), gram.ravel())[0, 1] > 0.2
    with pytest.raises(ValueError, match="unit features"):
        init_unit_embeddings(emb, np.zeros((60, 4)))
    with pytest.raises(ValueError, match="unit features"):
        init_unit_embeddings(emb, np.full((48, 4), np.nan))


def test_recognizer_init_is_recorded_and_part_of_the_cache_key(tmp_path, items):
    torch.set_num_threads(1)
    cfg = EvaluatorConfig.preset("smoke", recognizer_epochs=1, style_epochs=1, unit_lm_epochs=1, num_units=48)
    features = np.random.default_rng(1).normal(size=(48, 81))
    cache = tmp_path / "cache"
    plain = train_evaluators(items[::2], items[1::2], tmp_path / "plain", cfg, cache_root=cache)
    init = train_evaluators(items[::2], items[1::2], tmp_path / "init", cfg, cache_root=cache, unit_features=features)
    off = train_evaluators(items[::2], items[1::2], tmp_path / "off", EvaluatorConfig.preset(
        "smoke", recognizer_epochs=1, style_epochs=1, unit_lm_epochs=1, num_units=48, recognizer_unit_init=False),
        cache_root=cache, unit_features=features)
    assert (plain["recognizer_unit_init"], init["recognizer_unit_init"], off["recognizer_unit_init"]) == (False, True, False)
    assert init["cache"]["status"] == "trained" and init["cache"]["key"] != plain["cache"]["key"]
    a, b = _state_dicts(tmp_path / "plain"), _state_dicts(tmp_path / "init")
    assert not torch.equal(a["recognizer"]["encoder.embed.weight"], b["recognizer"]["encoder.embed.weight"])
    assert torch.equal(a["style"]["encoder.embed.weight"], b["style"]["encoder.embed.weight"])   # recogniser only
