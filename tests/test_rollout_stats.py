"""Rollout statistics: hand-computed group moments, per-channel counts, entropy, KL and the per-sample frame."""

import math

import numpy as np
import pytest
import torch

from wavalign_kit.rollout_stats import channel_token_stats, group_moments, group_reward_stats, rollout_frame

TEXT = torch.tensor([[True, True, False, False], [True, False, False, False]])
SPEECH = torch.tensor([[False, False, True, True], [False, True, True, False]])  # row 1, token 3 is padding


def test_group_reward_stats_by_hand():
    groups = [[1, 3, 5, 3], [2, 2, 2, 2], [4, 5]]
    mean, var, mx = group_moments(groups)
    assert mean.tolist() == [3.0, 2.0, 4.5] and var.tolist() == [2.0, 0.0, 0.25] and mx.tolist() == [5, 2, 5]
    s = group_reward_stats(groups)
    assert s["groups"] == 3 and s["zero_var_share"] == pytest.approx(1 / 3)
    assert s["group_var"] == pytest.approx(2.25 / 3) and s["group_max"] == 4.0
    assert s["reward_mean"] == pytest.approx(29 / 10) and s["group_mean"] == pytest.approx(9.5 / 3)
    assert group_moments([[0.1] * 7])[1][0] == 0.0  # identical rewards: exactly zero variance
    with pytest.raises(ValueError, match=r"group_rewards\[1\]"):
        group_reward_stats([[1, 2], [float("nan"), 1]])
    with pytest.raises(ValueError, match="group_rewards"):
        group_reward_stats([])


def test_channel_token_stats_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.25, 0.25], [0.5, 0.25, 0.25, 1.0]]))
    ref = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 1.0]]))
    entropy = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 6.0, 99.0]])
    s = channel_token_stats(logp, entropy, TEXT, SPEECH, ref_logp=ref)
    assert (s["tokens_text"], s["tokens_speech"]) == (3, 4) and s["text_speech_ratio"] == 0.75
    assert s["tokens_speech_per_seq"] == 2.0
    assert s["entropy_text"] == pytest.approx(2.0) and s["entropy_speech"] == pytest.approx(4.5)
    assert s["nll_text"] == pytest.approx(math.log(2)) and s["nll_speech"] == pytest.approx(math.log(4))
    assert s["kl_text"] == pytest.approx(0.0)
    assert s["kl_speech"] == pytest.approx(2 - math.log(2) - 1)  # k3 with ref / pi = 2
    s = channel_token_stats(logp, None, TEXT, torch.zeros_like(SPEECH))
    assert math.isnan(s["text_speech_ratio"]) and math.isnan(s["nll_speech"]) and "kl_text" not in s


def test_rollout_frame_per_sample():
    logp = torch.zeros(2, 4)
    frame = rollout_frame([[1.0, 3.0]], logp, torch.ones(2, 4), TEXT, SPEECH, ref_logp=logp)
    assert list(frame["reward"]) == [1.0, 3.0] and list(frame["group_var"]) == [1.0, 1.0]
    assert list(frame["tokens_text"]) == [2, 1] and list(frame["tokens_speech"]) == [2, 2]
    assert list(frame["entropy_speech"]) == [1.0, 1.0] and list(frame["kl_text"]) == [0.0, 0.0]
    only = rollout_frame([[2, 2], [1, 4, 5]])
    assert len(only) == 5 and only["zero_var"].tolist() == [True, True, False, False, False]
    assert np.isnan(rollout_frame([[1.0, 3.0]], logp, None, TEXT & False, SPEECH)["nll_text"]).all()


def test_bad_token_inputs_name_the_argument():
    logp = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="text_mask, speech_mask"):
        channel_token_stats(logp, None, TEXT, TEXT)
    with pytest.raises(ValueError, match="entropy"):
        channel_token_stats(logp, torch.zeros(2, 3), TEXT, SPEECH)
    with pytest.raises(ValueError, match="logp"):
        channel_token_stats(logp.masked_fill(TEXT, float("nan")), None, TEXT, SPEECH)
    with pytest.raises(ValueError, match="logp"):
        rollout_frame([[1.0, 2.0, 3.0]], logp, None, TEXT, SPEECH)
    with pytest.raises(ValueError, match="speech_mask"):
        rollout_frame([[1.0, 2.0]], logp, None, TEXT, SPEECH.int())
