"""Evaluation metrics on hand-made responses, seed aggregation, and evaluate() plumbing with a stub policy."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from wavalign_kit.evaluation import (
    METRICS,
    EvalConfig,
    eval_config,
    evaluate,
    prosody_match,
    score_responses,
    style_reference_rates,
)
from wavalign_kit.results import per_style_table, summarize, summary_table


def example(i, style, answer, target_text, n_target_units, seen=None):
    return SimpleNamespace(id=f"ex{i}", task="arithmetic", style=style, check={"type": "number", "answer": answer},
                           target_text=target_text, target_units=np.zeros(n_target_units, dtype=np.int64),
                           record={} if seen is None else {"answer_seen": seen})


class StubEvaluators:
    """Recogniser returns fixed transcripts; style = 'happy' iff the first unit is 1; unit LM = -mean unit."""

    def __init__(self, transcripts):
        self.recognizer = SimpleNamespace(transcribe=lambda units: list(transcripts[: len(units)]))
        self.style = SimpleNamespace(styles=["neutral", "happy"], predict_proba=lambda units: np.array(
            [[0.2, 0.8] if len(u) and u[0] == 1 else [0.9, 0.1] for u in units]))
        self.unit_lm = SimpleNamespace(score=lambda units: np.array([-float(np.mean(u)) for u in units]))


EXAMPLES = [example(0, "neutral", "seven", "three plus four is seven", 20, seen=True),   # 4 units per word
            example(1, "happy", "two", "one plus one is two", 40, seen=False)]             # 8 units per word


def test_score_responses_by_hand():
    texts = ["three plus four is seven", "one plus one is three"]
    units = [np.zeros(20, dtype=np.int64), np.ones(20, dtype=np.int64)]
    ev = StubEvaluators(["three plus four is seven", "one plus one is two"])
    df = score_responses(EXAMPLES, texts, units, ev)
    assert df["iq_text"].tolist() == [1.0, 0.0]          # second text says three, answer two
    assert df["iq_speech"].tolist() == [1.0, 1.0]        # its speech says two
    assert df["wer"].tolist() == [0.0, pytest.approx(1 / 5)]
    # EQ on the style request only; neutral adherence on the neutral item only; IQ on the unseen answer only
    np.testing.assert_array_equal(df["eq_style"], [np.nan, 1.0])
    np.testing.assert_array_equal(df["neutral_adherence"], [1.0, np.nan])
    np.testing.assert_allclose(df["eq_style_prob"], [np.nan, 0.8 * (1 - 0.2)])
    np.testing.assert_array_equal(df["iq_unseen"], [np.nan, 0.0])
    # rates: 20 units / 5 words = 4 (neutral ref 4 -> 1.0); 20/5 = 4 vs happy ref 8 -> 1 - 4/8 = 0.5
    np.testing.assert_allclose(df["prosody_match"], [1.0, 0.5])
    np.testing.assert_allclose(df["naturalness"], [0.0, -1.0])


def test_a_response_without_speech_earns_no_style_credit():
    """No speech units: no style is heard (not the classifier's guess on silence), so a neutral item is not
    'kept neutral' and a style request is missed; naturalness is not scored."""
    empty = [np.zeros(0, dtype=np.int64)] * 2
    df = score_responses(EXAMPLES, ["three plus four is seven", "one plus one is two"], empty, StubEvaluators(["", ""]))
    assert df["heard_style"].tolist() == ["", ""] and df["neutral_adherence"].iloc[0] == 0.0
    assert df["eq_style"].iloc[1] == 0.0 and df["eq_style_prob"].iloc[1] == 0.0 and df["wer"].tolist() == [1.0, 1.0]
    assert df["naturalness"].isna().all()


def test_prosody_reference_and_edge_cases():
    assert style_reference_rates(EXAMPLES) == {"neutral": 4.0, "happy": 8.0}
    assert prosody_match(12.0, 4.0) == 0.0 and np.isnan(prosody_match(float("nan"), 4.0))
    df = score_responses(EXAMPLES[:1], [""], [np.zeros(3, dtype=np.int64)], StubEvaluators(["seven"]))
    assert np.isnan(df["prosody_match"].iloc[0]) and df["iq_text"].iloc[0] == 0.0
    with pytest.raises(ValueError, match="one entry per response"):
        score_responses(EXAMPLES, ["a"], [np.zeros(1)], StubEvaluators(["a"]))


def responses_frame():
    """Three seeds x four items x two samples: base vs a model that is right 0.25 more often on every cell."""
    rows = []
    for seed in range(3):
        for item in range(4):
            for sample in range(2):
                base = float((item + sample + seed) % 2)
                for model, value in (("base", base), ("wavalign", min(1.0, base + 0.25))):
                    rows.append({"model": model, "seed": seed, "example_id": f"ex{item}", "sample": sample,
                                 "style": "happy" if item < 2 else "neutral", "iq_text": value,
                                 "eq_style": value if item < 2 else np.nan,
                                 "neutral_adherence": np.nan if item < 2 else 1.0, "rm_eq_style": 1.0})
    return pd.DataFrame(rows)


def test_summary_means_intervals_and_paired_differences_by_hand():
    responses = responses_frame()
    summary = summarize(responses, list(METRICS))
    assert summary["seeds"] == [0, 1, 2] and summary["items"] == 4 and summary["samples_per_item"] == 2
    base, model = summary["models"]["base"], summary["models"]["wavalign"]
    assert base["iq_text"]["mean"] == pytest.approx(0.5) and base["iq_text"]["n"] == 12
    assert base["iq_text"]["ci_low"] <= 0.5 <= base["iq_text"]["ci_high"]
    delta = model["iq_text"]["delta_vs_base"]   # +0.25 on the cells where base is 0, 0 where it is already 1
    assert delta["mean"] == pytest.approx(0.125) and delta["excludes_zero"]
    assert "delta_vs_base" not in base["iq_text"]
    assert base["eq_style"]["n"] == 6 and base["neutral_adherence"]["mean"] == 1.0   # each on its own items
    assert summary["reward_models"]["wavalign"]["eq_style"]["mean"] == 1.0
    table = summary_table(summary, ["iq_text", "eq_style"], delta=True)
    assert table.loc["wavalign", "iq_text"].endswith("*") and table.loc["base", "iq_text"] == "-"
    styles = per_style_table(responses)
    assert set(styles["style"]) == {"happy", "neutral"} and styles["count"].tolist() == [12, 12, 12, 12]
    flipped = responses.assign(iq_text=1.0 - responses["iq_text"])          # another architecture, another base
    two_arch = pd.concat([responses.assign(architecture="interleaved"), flipped.assign(architecture="parallel")])
    both = summarize(two_arch, ["iq_text"])["models"]
    assert set(both) == {"interleaved/base", "interleaved/wavalign", "parallel/base", "parallel/wavalign"}
    assert both["interleaved/wavalign"]["iq_text"]["delta_vs_base"]["mean"] == pytest.approx(0.125)
    assert both["parallel/wavalign"]["iq_text"]["delta_vs_base"]["mean"] == pytest.approx(-0.125)
    with pytest.raises(ValueError, match="lack columns"):
        summarize(responses.drop(columns="example_id"), ["iq_text"])


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
    assert agg["eq_style"] == pytest.approx(0.5)  # the happy item: sample 0 heard neutral, sample 1 happy
    assert agg["neutral_adherence"] == pytest.approx(0.5)  # the neutral item: sample 0 neutral, sample 1 not
    frame, _ = evaluate(policy, EXAMPLES, ev, num_samples=2, seed=5, reward_models=StubEvaluators(["x"] * 4))
    assert frame["rm_iq_speech"].tolist() == [0.0] * 4 and frame["iq_speech"].tolist() == [1.0] * 4
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
