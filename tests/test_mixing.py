"""Mixers: hand-computed adaptive gate, EMA over several steps, clamp, no-EMA ablation, state round trip."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavalign_kit.mixing import AdaptiveMixer, FixedMixer, build_mixer

WIDE = [1, 5, 1, 5]  # var 4 -> info_gate 1; max 5 -> reward_gate sigmoid(10)
FLAT = [3, 3, 3, 3]  # var 0 -> info_gate 0
MILD = [2, 3, 4, 3]  # var 0.5 -> info_gate 0.125; max 4 -> reward_gate sigmoid(5)
RAW_WIDE = 0.7999636817050382  # 0.8 * sigmoid(10)
RAW_MILD = 0.09933071490757153  # 0.8 * sigmoid(5) * 0.125


def test_adaptive_gate_by_hand():
    m = AdaptiveMixer()
    assert m.update([WIDE, FLAT]) == pytest.approx((RAW_WIDE + 0) / 2, abs=1e-12)
    s = m.stats
    assert s["reward_max"] == 4.0 and s["reward_var"] == 2.0 and s["info_gate"] == 0.5
    assert s["reward_gate"] == pytest.approx((1 / (1 + math.exp(-10)) + 0.5) / 2)
    assert s["lambda_raw"] == pytest.approx(RAW_WIDE / 2) and s["lambda"] == m.value


def test_adaptive_ema_over_several_steps():
    m = AdaptiveMixer()
    step1 = m.update([WIDE, FLAT])
    step2 = m.update([MILD])
    assert step2 == pytest.approx(0.1 * RAW_MILD + 0.9 * step1, abs=1e-12) == pytest.approx(0.36991672825802435)
    step3 = m.update([FLAT, WIDE])  # per group EMA against the previous step's lambda, then the mean
    assert step3 == pytest.approx(((0.9 * step2) + (0.1 * RAW_WIDE + 0.9 * step2)) / 2, abs=1e-12)
    assert step3 == pytest.approx(0.37292323951747386, abs=1e-12)
    assert m.stats["lambda_raw"] == pytest.approx(RAW_WIDE / 2) and m.steps == 3


def test_no_ema_ablation_and_clamp():
    m = AdaptiveMixer(use_ema=False)
    assert m.update([WIDE, FLAT]) == pytest.approx(RAW_WIDE / 2)
    assert m.update([MILD]) == pytest.approx(RAW_MILD)
    # a previous lambda above lambda_max (state of a run with lambda_max 1.0) is clamped to lambda_max
    big = AdaptiveMixer(lambda_max=1.0)
    big.load_state_dict({**big.state_dict(), "lambda_prev": 1.0, "value": 1.0, "steps": 5})
    small = AdaptiveMixer(lambda_max=0.8)
    small.load_state_dict(big.state_dict())
    assert small.update([WIDE]) == 0.8  # 0.9 * 1.0 + 0.1 * 0.79996 = 0.97996 -> clamp 0.8
    assert small.update([FLAT]) == pytest.approx(0.72)  # then 0.9 * 0.8 + 0.1 * 0


@settings(max_examples=40, deadline=None)
@given(r=st.floats(1, 5), g=st.integers(1, 8), prev=st.floats(0, 0.8))
def test_identical_rewards_close_the_info_gate(r, g, prev):
    m = AdaptiveMixer()
    assert m.update([[r] * g]) == 0.0 and m.stats["info_gate"] == 0.0
    m.load_state_dict({**m.state_dict(), "lambda_prev": prev})
    assert m.update([[r] * g]) == pytest.approx(0.9 * prev)  # only the EMA memory remains


@settings(max_examples=40, deadline=None)
@given(groups=st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=8), min_size=1, max_size=6))
def test_lambda_stays_in_range(groups):
    m = AdaptiveMixer()
    for _ in range(3):
        assert 0.0 <= m.update(groups) <= 0.8


def test_state_round_trip_and_resume():
    a = AdaptiveMixer()
    a.update([WIDE, FLAT])
    b = AdaptiveMixer()
    b.load_state_dict(a.state_dict())
    assert b.value == a.value and b.update([MILD]) == a.update([MILD])
    with pytest.raises(ValueError, match="state"):
        b.load_state_dict(FixedMixer(0.5).state_dict())


def test_fixed_mixer_and_build():
    f = build_mixer("fixed", weight=0.7)
    assert isinstance(f, FixedMixer) and f.update([WIDE, FLAT]) == 0.7 and f.stats["reward_var"] == 2.0
    assert build_mixer("none").update([FLAT]) == 1.0
    assert isinstance(build_mixer("adaptive", use_ema=False), AdaptiveMixer)
    with pytest.raises(ValueError, match="kind"):
        build_mixer("sometimes")
    with pytest.raises(ValueError, match="lamda_max"):
        build_mixer("adaptive", lamda_max=0.5)
    with pytest.raises(ValueError, match="weight"):
        FixedMixer(1.5)


@pytest.mark.parametrize("bad,name", [([], r"group_rewards"), ([[1, 2], []], r"group_rewards\[1\]"),
                                      ([[1, float("nan")]], r"group_rewards\[0\]")])
def test_bad_rewards(bad, name):
    for mixer in (AdaptiveMixer(), FixedMixer(0.5)):
        with pytest.raises(ValueError, match=name):
            mixer.update(bad)


def test_the_gate_reads_every_reward_scale_as_the_1_to_5_scale_it_was_calibrated_for():
    """Summed judges (2..10, the routed preset) and 0/1 verifiers gate like the same groups on 1..5."""
    on_1_5 = AdaptiveMixer(use_ema=False)
    on_1_5.update([[3, 3, 1, 1]])
    summed = AdaptiveMixer(use_ema=False, reward_range=(2.0, 10.0))
    summed.update([[6, 6, 2, 2]])
    assert summed.stats == pytest.approx(on_1_5.stats)
    binary = AdaptiveMixer(use_ema=False, reward_range=(0.0, 1.0))
    binary.update([[1, 0, 0, 1]])
    assert binary.stats["reward_gate"] > 0.99 and binary.stats["lambda_raw"] == pytest.approx(0.8 * binary.stats["reward_gate"])
    unscaled = AdaptiveMixer(use_ema=False)               # the old behaviour: a 0/1 reward read as 1..5
    unscaled.update([[1, 0, 0, 1]])
    assert unscaled.stats["reward_gate"] < 1e-4 and unscaled.stats["lambda_raw"] < 1e-4
    with pytest.raises(ValueError, match="reward_range"):
        AdaptiveMixer(reward_range=(1.0, 1.0))


def test_a_config_declares_the_range_or_the_rewards_do():
    from types import SimpleNamespace

    from wavalign_kit.mixing import gate_settings, reward_range
    from wavalign_kit.rewards import build_reward

    cfg = SimpleNamespace(reward_range=None, lambda_max=0.8, gate_slope=5.0, reward_threshold=3.0, reward_scale=4.0)
    routed = build_reward({"semantic_judge": 1.0, "acoustic_judge": 1.0},
                          evaluators=SimpleNamespace(recognizer=object(), style=object(), unit_lm=object()),
                          naturalness_ref=0.0, naturalness_floor=-1.0)
    assert reward_range(cfg, routed) == (2.0, 10.0)
    assert gate_settings(SimpleNamespace(**{**vars(cfg), "reward_range": [0.0, 1.0]}), routed)["reward_range"] == (0.0, 1.0)
    said: list[str] = []
    undeclared = SimpleNamespace(score_range=None, names=["mine"])
    assert reward_range(cfg, undeclared, said.append) == (1.0, 5.0) and "declare no score_range" in said[0]
