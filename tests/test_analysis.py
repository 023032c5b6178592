"""The paper's analyses: per-prompt judge agreement, reward dilution counts, text/speech gradient interference."""

import numpy as np
import pandas as pd
import pytest
import torch

from wavalign_kit.analysis import (
    channel_token_counts,
    flat_cosine,
    gradient_interference,
    judge_test_retest,
    pairwise_agreement,
    shared_parameters,
)


def test_pairwise_agreement_by_hand():
    a = np.array([[1, 2, 3], [1, 1, 2], [5, 5, 5]])
    b = np.array([[1, 2, 3], [2, 1, 3], [5, 5, 4]])
    # row 0: all 3 pairs agree; row 1: pairs (0,1) tie vs >, (0,2) <,<, (1,2) <,< -> 2/3; row 2: (0,1) tie,tie ok,
    # (0,2) tie vs > no, (1,2) tie vs > no -> 1/3
    np.testing.assert_allclose(pairwise_agreement(a, b), [1.0, 2 / 3, 1 / 3])
    np.testing.assert_allclose(pairwise_agreement(a, -a)[:2], [0.0, 1 / 3])  # the tie in row 1 agrees
    with pytest.raises(ValueError, match="G >= 2"):
        pairwise_agreement(np.ones((2, 1)), np.ones((2, 1)))


def test_test_retest_noiseless_judge_agrees_fully_and_noise_lowers_it():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(50, 4))
    clean = judge_test_retest(lambda s: truth)
    assert (clean["agreement"] == 1.0).all() and clean["pearson_all"].iloc[0] == pytest.approx(1.0)
    noisy = judge_test_retest(lambda s: truth + np.random.default_rng(s).normal(scale=2.0, size=truth.shape))
    assert 0.3 < noisy["agreement"].mean() < 0.9


def test_channel_token_counts():
    text = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    speech = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0]], dtype=torch.bool)
    df = channel_token_counts(text, speech)
    pd.testing.assert_series_equal(df["text_tokens"], pd.Series([2, 1]), check_names=False)
    np.testing.assert_allclose(df["text_share"], [2 / 6, 1 / 4])
    np.testing.assert_allclose(df["speech_per_text"], [2.0, 3.0])


def test_flat_cosine():
    g = [torch.tensor([1.0, 0.0]), None]
    assert flat_cosine(g, [torch.tensor([2.0, 0.0]), torch.tensor([5.0])]) == pytest.approx(2 / 29 ** 0.5)
    assert flat_cosine([torch.tensor([1.0, 0.0])], [torch.tensor([0.0, 3.0])]) == pytest.approx(0.0)


def test_gradient_interference_matches_hand_gradient():
    torch.manual_seed(0)
    B, N, D = 4, 5, 3  # one prompt, group of 4
    feats = torch.randn(B, N, D)
    w = torch.nn.Parameter(torch.randn(D))
    logp = -torch.nn.functional.softplus(feats @ w)  # (B, N) valid log-probs, differentiable in w
    text = torch.zeros(B, N, dtype=torch.bool)
    text[:, :2] = True
    speech = ~text
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    out = gradient_interference(logp, adv, text, speech, group_size=B, params=[("w", w)])

    def hand(mask):  # d/dw of (1/G) sum_i -A_i * mean_{t in mask} logp_it (ratio term has value 1)
        dlogp = -torch.sigmoid(feats @ w).unsqueeze(-1) * feats  # (B, N, D)
        per_row = (dlogp * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        return -(adv.unsqueeze(-1) * per_row).mean(0).detach()

    gt, gs = hand(text), hand(speech)
    assert out["grad_norm_text"] == pytest.approx(float(gt.norm()), rel=1e-5)
    assert out["grad_norm_speech"] == pytest.approx(float(gs.norm()), rel=1e-5)
    assert out["cosine"] == pytest.approx(float(gt @ gs / (gt.norm() * gs.norm())), rel=1e-5)
    assert out["per_parameter"]["name"].tolist() == ["w"]
    # the full-token normalisation: the two parts share the full count and add up to the full-token gradient
    full = gradient_interference(logp, adv, text, speech, group_size=B, params=[("w", w)], normalisation="full")
    frac_text, frac_speech = 2 / 5, 3 / 5              # each row: 2 text and 3 speech tokens of 5
    assert full["grad_norm_text"] == pytest.approx(frac_text * float(gt.norm()), rel=1e-5)
    assert full["grad_norm_speech"] == pytest.approx(frac_speech * float(gs.norm()), rel=1e-5)
    all_tokens = hand(text | speech)
    assert torch.allclose(frac_text * gt + frac_speech * gs, all_tokens, atol=1e-6)
    with pytest.raises(ValueError, match="normalisation"):
        gradient_interference(logp, adv, text, speech, group_size=B, params=[("w", w)], normalisation="sum")


def test_shared_parameters_skip_embeddings_and_heads():
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = torch.nn.Embedding(5, 2)
            self.body = torch.nn.Linear(2, 2)
            self.lm_head = torch.nn.Linear(2, 5)

    assert [n for n, _ in shared_parameters(Tiny())] == ["body.weight", "body.bias"]


def test_group_gates_by_hand():
    from wavalign_kit.analysis import group_gates

    gates = group_gates(np.array([[1, 1, 5, 5], [3, 3, 3, 3], [2, 2, 2, 4]]))
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(gates["info_gate"], [1.0, 0.0, 0.75 / 4])
    np.testing.assert_allclose(gates["reward_gate"], [sig(10), sig(0), sig(5)])
    np.testing.assert_allclose(gates["lambda_raw"], [0.8 * sig(10), 0.0, 0.8 * sig(5) * 0.75 / 4])


def test_reward_frame_lists_components_per_response():
    from types import SimpleNamespace

    from wavalign_kit.analysis import reward_frame
    from wavalign_kit.rewards import CompositeReward

    class Length:
        name, channel, needs_audio = "length", "acoustic", False

        def __call__(self, prompts, completions):
            return [float(len(c.units)) for c in completions]

    examples = [SimpleNamespace(task="t", style="calm"), SimpleNamespace(task="u", style="sad")]
    rollout = SimpleNamespace(texts=["a", "b", "c", "d"], units=[np.zeros(n) for n in (1, 2, 3, 4)],
                              prompt_index=[0, 0, 1, 1], group_size=2)
    df = reward_frame(CompositeReward([(Length(), 2.0)]), examples, rollout)
    assert df["sample"].tolist() == [0, 1, 0, 1] and df["target_style"].tolist() == ["calm", "calm", "sad", "sad"]
    assert df["length"].tolist() == [1, 2, 3, 4] and df["total"].tolist() == [2, 4, 6, 8]
