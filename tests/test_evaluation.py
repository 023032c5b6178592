"""Evaluation metrics on hand-made responses, seed aggregation, and evaluate() plumbing with a stub policy."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from wavalign_kit.evaluation import (
    EvalConfig,
    eval_config,
    evaluate,
    prosody_match,
    score_responses,
    style_reference_rates,
    summarize_seeds,
)


def example(i, style, answer, target_text, n_target_units):
    return SimpleNamespace(id=f"ex{i}", task="arithmetic", style=style, check={"type": "number", "answer": answer},
                           target_text=target_text, target_units=np.zeros(n_target_units, dtype=np.int64))


class StubEvaluators:
    """Recogniser returns fixed transcripts; style = 'happy' iff the first unit is 1; unit LM = -mean unit."""

    def __init__(self, transcripts):
        self.recognizer = SimpleNamespace(transcribe=lambda units: list(transcripts[: len(units)]))
        self.style = SimpleNamespace(styles=["neutral", "happy"], predict_proba=lambda units: np.array(
            [[0.2, 0.8] if len(u) and u[0] == 1 else [0.9, 0.1] for u in units]))
        self.unit_lm = SimpleNamespace(score=lambda units: np.array([-float(np.mean(u)) for u in units]))


EXAMPLES = [example(0, "neutral", "seven", "three plus four is seven", 20),   # 4 units per word
            example(1, "happy", "two", "one plus one is two", 40)]             # 8 units per word


def test_score_responses_by_hand():
    texts = ["three plus four is seven", "one plus one is three"]
    units = [np.zeros(20, dtype=np.int64), np.ones(20, dtype=np.int64)]
    ev = StubEvaluators(["three plus four is seven", "one plus one is two"])
    df = score_responses(EXAMPLES, texts, units, ev)
    assert df["iq_text"].tolist() == [1.0, 0.0]          # second text says three, answer two
    assert df["iq_speech"].tolist() == [1.0, 1.0]        # its speech says two
    assert df["wer"].tolist() == [0.0, pytest.approx(1 / 5)]
    assert df["eq_style"].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(df["eq_style_prob"], [0.9 * 1.0, 0.8 * (1 - 0.2)])
    # rates: 20 units / 5 words = 4 (neutral ref 4 -> 1.0); 20/5 = 4 vs happy ref 8 -> 1 - 4/8 = 0.5
    np.testing.assert_allclose(df["prosody_match"], [1.0, 0.5])
    np.testing.assert_allclose(df["naturalness"], [0.0, -1.0])


def test_prosody_reference_and_edge_cases():
    assert style_reference_rates(EXAMPLES) == {"neutral": 4.0, "happy": 8.0}
    assert prosody_match(12.0, 4.0) == 0.0 and np.isnan(prosody_match(float("nan"), 4.0))
    df = score_responses(EXAMPLES[:1], [""], [np.zeros(3, dtype=np.int64)], StubEvaluators(["seven"]))
    assert np.isnan(df["prosody_match"].iloc[0]) and df["iq_text"].iloc[0] == 0.0
    with pytest.raises(ValueError, match="one entry per response"):
        score_responses(EXAMPLES, ["a"], [np.zeros(1)], StubEvaluators(["a"]))


def test_summarize_seeds_mean_and_sample_std():
    rows = [{"model": m, "seed": s, "iq_text": v, "iq_speech": v / 2, "eq_style": 1.0, "wer": 0.1 * s,
             "naturalness": -v} for m, vals in (("base", [0.2, 0.4, 0.9]), ("wavalign", [0.5, 0.5, 0.5]))
            for s, v in enumerate(vals)]
    summary = summarize_seeds(pd.DataFrame(rows))
    assert summary["seeds"] == [0, 1, 2] and list(summary["models"]) == ["base", "wavalign"]
    base = summary["models"]["base"]
    assert base["iq_text"]["mean"] == pytest.approx(0.5)
    assert base["iq_text"]["std"] == pytest.approx(np.std([0.2, 0.4, 0.9], ddof=1))
    assert summary["models"]["wavalign"]["iq_text"]["std"] == 0.0 and base["wer"]["n"] == 3
    two_arch = pd.DataFrame(rows).assign(architecture=["interleaved"] * 3 + ["parallel"] * 3)
    assert set(summarize_seeds(two_arch)["models"]) == {"interleaved/base", "parallel/wavalign"}
    with pytest.raises(ValueError, match="lacks columns.*naturalness"):
        summarize_seeds(pd.DataFrame(rows).drop(columns="naturalness"))


class StubPolicy:
    """Answers every prompt with its target text and 20 units (style flag on for odd samples)."""

    def __init__(self):
        self.model = torch.nn.Linear(1, 1)
        self.calls = []

    def encode_response(self, text, units):
        return np.zeros(len(text.split()) + len(units))

    def generate(self, examples, *, num_samples, text_sampling, speech_sampling, max_new_tokens, seed=None):
        self.calls.append((len(examples), num_samples, max_new_tokens, seed))
        idx = [i for i in range(len(examples)) for _ in range(num_samples)]
        return SimpleNamespace(texts=[examples[i].target_text for i in idx],
                               units=[np.full(20, j % 2, dtype=np.int64) for j in range(len(idx))], prompt_index=idx)


def test_evaluate_samples_every_example_and_restores_train_mode():
    policy = StubPolicy()
    ev = StubEvaluators(["three plus four is seven", "three plus four is seven",
                         "one plus one is two", "one plus one is two"])
    frame, agg = evaluate(policy, EXAMPLES, ev, num_samples=2, seed=5)
    assert policy.calls == [(2, 2, int(1.5 * 45) + 8, 5)] and policy.model.training
    assert frame["example_id"].tolist() == ["ex0", "ex0", "ex1", "ex1"] and frame["sample"].tolist() == [0, 1, 0, 1]
    assert agg["iq_text"] == 1.0 and agg["num_responses"] == 4 and agg["num_examples"] == 2
    assert agg["eq_style"] == pytest.approx(0.5)  # neutral: sample 0 right, 1 wrong; happy: 0 wrong, 1 right
    with pytest.raises(ValueError, match="examples is empty"):
        evaluate(policy, [], ev)


def test_eval_section_of_every_profile_is_valid():
    for name in ("smoke", "cpu", "gpu"):
        assert isinstance(eval_config(name), EvalConfig)


def test_model_dir_of_a_run_is_its_latest_checkpoint(tmp_path):
    """`wavalign evaluate` takes model directories or training runs (one home: train.checkpoint.model_dir)."""
    from wavalign_kit.errors import KitError
    from wavalign_kit.train.checkpoint import model_dir

    for step in ("000002", "000010", "000009"):
        (tmp_path / f"checkpoint-{step}" / "model").mkdir(parents=True)
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "latest").write_text("checkpoint-000009")     # the pointer is authoritative, not the largest name
    assert model_dir(tmp_path) == tmp_path / "checkpoint-000009" / "model"
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "wavalign_model.json").write_text("{}")
    assert model_dir(saved) == saved
    with pytest.raises(KitError, match="neither a saved model"):
        model_dir(tmp_path / "missing")
