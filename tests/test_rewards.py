"""Tests for wavalign_kit.rewards: each reward's formula on hand-computed cases, composition, build_reward."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from wavalign_kit.rewards import (
    KNOWN_REWARDS,
    Completion,
    CompositeReward,
    JudgeScores,
    build_reward,
    naturalness_calibration,
)
from wavalign_kit.rewards.embedded import Naturalness

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class FakeRecognizer:
    """Unit u is the spoken word WORDS[u % 10]; counts the sequences it transcribes."""

    def __init__(self):
        self.seen = 0

    def transcribe(self, units_list):
        self.seen += len(units_list)
        return [" ".join(WORDS[int(u) % 10] for u in units) for units in units_list]


class FakeStyle:
    """Probability 0.7 for style (first unit % 3), 0.15 for the two others."""

    styles = ["neutral", "happy", "sad"]

    def predict_proba(self, units_list):
        out = np.full((len(units_list), 3), 0.15)
        for i, units in enumerate(units_list):
            out[i, int(units[0]) % 3] = 0.7
        return out


class FakeUnitLM:
    """Mean log-likelihood = -mean(units) (so low unit ids sound 'natural')."""

    def score(self, units_list):
        return np.array([-float(np.mean(u)) for u in units_list])


def example(answer: str, style: str = "neutral") -> SimpleNamespace:
    return SimpleNamespace(question_text=f"say {answer}", style=style, answer=answer,
                           check={"type": "contains", "answer": answer})


def units(*words: str) -> np.ndarray:
    return np.array([WORDS.index(w) for w in words], dtype=np.int64)


EVALUATORS = SimpleNamespace(recognizer=FakeRecognizer(), style=FakeStyle(), unit_lm=FakeUnitLM())
CAL = {"naturalness_ref": -1.0, "naturalness_floor": -5.0}

# three completions for the example answering "two" in a "happy" style:
#   0: text right, speech right (units "one two"), style happy (first unit 1 -> happy)
#   1: text right, speech wrong ("three four"), style neutral (3 % 3 = 0)
#   2: text wrong, speech right ("two"), style sad (2 % 3 = 2)
PROMPTS = [example("two", "happy")] * 3
COMPLETIONS = [Completion("one two", units("one", "two")),
               Completion("one two", units("three", "four")),
               Completion("nine", units("two"))]


def component(name: str, **kw) -> np.ndarray:
    return build_reward(name, evaluators=EVALUATORS, **CAL, **kw).score(PROMPTS, COMPLETIONS).components[name]


def test_correctness_on_text_and_recognised_speech():
    np.testing.assert_array_equal(component("text_correct"), [1, 1, 0])
    np.testing.assert_array_equal(component("speech_correct"), [1, 0, 1])
    np.testing.assert_array_equal(component("semantic"), [1, 0.5, 0.5])


def test_style_is_probability_of_target_style_and_rejects_unknown_styles():
    np.testing.assert_allclose(component("style"), [0.7, 0.15, 0.15])
    reward = build_reward("style", evaluators=EVALUATORS)
    with pytest.raises(ValueError, match="whisper"):
        reward.score([example("two", "whisper")], COMPLETIONS[:1])


def test_consistency_is_one_minus_wer_clipped():
    # texts vs transcripts: "one two"/"one two" -> 1; "one two"/"three four" -> WER 1 -> 0;
    # "nine"/"two" -> WER 1 -> 0
    np.testing.assert_allclose(component("consistency"), [1.0, 0.0, 0.0])
    prompts = [example("two")] * 2
    done = build_reward("consistency", evaluators=EVALUATORS).score(prompts, [
        Completion("one two three", units("one", "two", "four")),  # 1 substitution / 3 words
        Completion("one", units("two", "three", "four", "five")),  # WER 4 -> clipped to 0
    ]).components["consistency"]
    np.testing.assert_allclose(done, [1 - 1 / 3, 0.0])


def test_naturalness_affine_map_and_calibration():
    # ll = -mean(units): 1.5, 3.5, 2  -> (ll - (-5)) / 4 = 0.875, 0.375, 0.75
    np.testing.assert_allclose(component("naturalness"), [0.875, 0.375, 0.75])
    clipped = Naturalness(FakeUnitLM(), ref=-3.0, floor=-4.0)(PROMPTS, COMPLETIONS)
    np.testing.assert_allclose(clipped, [1.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="naturalness_ref > naturalness_floor"):
        Naturalness(FakeUnitLM(), ref=-5.0, floor=-1.0)

    class OrderLM:  # likes increasing sequences: real speech ramps, shuffled speech does not
        def score(self, units_list):
            return np.array([float(np.mean(np.diff(u) == 1)) for u in units_list])

    cal = naturalness_calibration(OrderLM(), [np.arange(20)] * 4, seed=0)
    assert cal["naturalness_ref"] == 1.0 and cal["naturalness_floor"] < 0.3
    with pytest.raises(ValueError, match="real_units is empty"):
        naturalness_calibration(OrderLM(), [])


def test_judge_scores_follow_documented_formulas():
    sem = np.array([1, 0.5, 0.5])
    sty = np.array([0.7, 0.15, 0.15])
    con = np.array([1.0, 0.0, 0.0])
    nat = np.array([0.875, 0.375, 0.75])
    holistic = 1 + 4 * (0.5 * sem + 0.25 * sty + 0.25 * con) - 1.0 * (1 - nat)
    np.testing.assert_allclose(component("holistic"), np.clip(holistic, 1, 5))
    np.testing.assert_allclose(component("holistic", naturalness_penalty=0.0),
                               1 + 4 * (0.5 * sem + 0.25 * sty + 0.25 * con))
    np.testing.assert_allclose(component("semantic_judge"), 1 + 4 * sem)
    np.testing.assert_allclose(component("acoustic_judge"), 1 + 4 * (sty + con + nat) / 3)
    integer = component("acoustic_judge", integer=True)
    np.testing.assert_array_equal(integer, np.rint(1 + 4 * (sty + con + nat) / 3))


def test_judge_noise_is_seeded_calibrated_and_channel_specific():
    prompts, completions = [example("two", "happy")] * 4000, [COMPLETIONS[0]] * 4000
    clean = build_reward("semantic_judge", evaluators=EVALUATORS).score(prompts[:1], completions[:1]).total[0]
    assert clean == 5.0

    def judged(name, **kw):
        return build_reward(name, evaluators=EVALUATORS, **CAL, **kw).score(prompts, completions).total

    first = judged("acoustic_judge", noise_acoustic=0.3, seed=1)
    np.testing.assert_array_equal(first, judged("acoustic_judge", noise_acoustic=0.3, seed=1))
    assert not np.array_equal(first, judged("acoustic_judge", noise_acoustic=0.3, seed=2))
    # acoustic judge of completion 0: 1 + 4 * (0.7 + 1 + 0.875) / 3 = 4.433 (clipping at 5 touches ~3 %)
    assert abs(np.std(first) - 0.3) < 0.03 and abs(np.mean(first) - 4.433) < 0.03
    # semantic noise does not touch the acoustic judge, and vice versa
    np.testing.assert_allclose(judged("acoustic_judge", noise_semantic=1.0), 1 + 4 * (0.7 + 1 + 0.875) / 3)
    np.testing.assert_allclose(judged("semantic_judge", noise_acoustic=1.0), 5.0)
    # a repeated call on the same reward object draws fresh noise (test-retest disagreement)
    reward = build_reward("holistic", evaluators=EVALUATORS, **CAL, noise_semantic=0.5, integer=True)
    a, b = (reward.score(prompts[:50], completions[:50]).total for _ in range(2))
    assert not np.array_equal(a, b) and set(np.unique(a)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    with pytest.raises(ValueError, match="noise"):
        build_reward("holistic", evaluators=EVALUATORS, **CAL, noise_semantic=-1.0)


class ConstantReward:
    def __init__(self, name, channel, values, needs_audio=False, failures=0):
        self.name, self.channel, self.values, self.needs_audio = name, channel, values, needs_audio
        self.failures = failures

    def __call__(self, prompts, completions):  # a judge reports its failed calls with its scores
        return JudgeScores(list(self.values), self.failures) if self.failures else list(self.values)


def test_composite_weights_channels_and_failures():
    sem = ConstantReward("sem", "semantic", [1.0, 2.0, 3.0], failures=2)
    aco = ConstantReward("aco", "acoustic", [0.5, 0.0, 1.0])
    result = CompositeReward([(sem, 2.0), (aco, 4.0)]).score(PROMPTS, COMPLETIONS)
    np.testing.assert_allclose(result.total, [4.0, 4.0, 10.0])
    np.testing.assert_allclose(result.semantic, [2.0, 4.0, 6.0])
    np.testing.assert_allclose(result.acoustic, [2.0, 0.0, 4.0])
    np.testing.assert_allclose(result.components["aco"], [0.5, 0.0, 1.0])
    assert result.failures == 2 and result.failures_by_name == {"sem": 2, "aco": 0}


def test_composite_rejects_nan_bad_lengths_and_missing_audio():
    bad = ConstantReward("flaky", "acoustic", [1.0, math.nan, 0.0])
    with pytest.raises(ValueError, match="'flaky' returned NaN for completions \\[1\\]"):
        CompositeReward([(bad, 1.0)]).score(PROMPTS, COMPLETIONS)
    with pytest.raises(ValueError, match="'short' returned shape"):
        CompositeReward([(ConstantReward("short", "semantic", [1.0]), 1.0)]).score(PROMPTS, COMPLETIONS)
    with pytest.raises(ValueError, match="2 prompts but 3 completions"):
        CompositeReward([(bad, 1.0)]).score(PROMPTS[:2], COMPLETIONS)
    audio = CompositeReward([(ConstantReward("judge", "semantic", [1.0] * 3, needs_audio=True), 1.0),
                             (bad, 1.0)])
    assert audio.needs_audio and not CompositeReward([(bad, 1.0)]).needs_audio
    with pytest.raises(ValueError, match=r"\['judge'\] need decoded audio"):
        audio.score(PROMPTS, COMPLETIONS)
    with pytest.raises(ValueError, match="channel must be"):
        CompositeReward([(ConstantReward("x", "visual", [1.0]), 1.0)])


def test_build_reward_specs_and_errors():
    reward = build_reward({"semantic": 1.0, "style": 0.5}, evaluators=EVALUATORS)
    assert reward.names == ["semantic", "style"] and not reward.needs_audio
    result = reward.score(PROMPTS, COMPLETIONS)
    np.testing.assert_allclose(result.total, [1 + 0.35, 0.5 + 0.075, 0.5 + 0.075])
    np.testing.assert_allclose(result.semantic, [1, 0.5, 0.5])
    extra = ConstantReward("judge", "acoustic", [1.0, 1.0, 1.0])
    listed = build_reward(["text_correct", ("style", 2.0), extra], evaluators=EVALUATORS)
    assert listed.names == ["text_correct", "style", "judge"]
    np.testing.assert_allclose(listed.score(PROMPTS, COMPLETIONS).total, [1 + 1.4 + 1, 1 + 0.3 + 1, 0.3 + 1])
    with pytest.raises(ValueError, match="unknown reward 'wer'.*" + ", ".join(KNOWN_REWARDS)):
        build_reward({"wer": 1.0}, evaluators=EVALUATORS)
    with pytest.raises(ValueError, match="naturalness_ref= and naturalness_floor="):
        build_reward("holistic", evaluators=EVALUATORS)
    with pytest.raises(ValueError, match="evaluators.recognizer"):
        build_reward("speech_correct", None)
    with pytest.raises(ValueError, match="unknown keyword"):
        build_reward("text_correct", None, naturalness_scale=1.0)
    assert build_reward("text_correct", None).score(PROMPTS, COMPLETIONS).total.tolist() == [1, 1, 0]


def test_rewards_share_one_transcription_per_distinct_units():
    recognizer = FakeRecognizer()
    evaluators = SimpleNamespace(recognizer=recognizer, style=FakeStyle(), unit_lm=FakeUnitLM())
    reward = build_reward(["holistic", "semantic_judge", "acoustic_judge", "consistency"], evaluators=evaluators, **CAL)
    reward.score(PROMPTS, COMPLETIONS)
    assert recognizer.seen == 3  # 3 distinct unit sequences, though 4 rewards read transcripts
    reward.score(PROMPTS, COMPLETIONS)
    assert recognizer.seen == 3


@pytest.mark.slow
def test_rewards_on_the_smoke_world(smoke_world):
    """The real evaluators and verifier: each reward is its formula on them, and target responses outscore
    a wrong text with frame-shuffled speech (whatever the smoke evaluators' accuracy)."""
    from wavalign_kit.evaluators.wer import word_error_rate
    from wavalign_kit.world import verify

    evaluators = smoke_world.evaluators
    test = smoke_world.split("test")[:16]
    cal = naturalness_calibration(evaluators.unit_lm, [ex.target_units for ex in test], seed=0)
    assert cal["naturalness_ref"] > cal["naturalness_floor"]
    reward = build_reward(["text_correct", "speech_correct", "style", "consistency", "naturalness", "holistic"],
                          evaluators=evaluators, **cal)
    rng = np.random.default_rng(0)
    good = [Completion(ex.target_text, ex.target_units) for ex in test]
    bad = [Completion("no", rng.permutation(ex.target_units)) for ex in test]
    good_r, bad_r = reward.score(test, good), reward.score(test, bad)

    transcripts = evaluators.recognizer.transcribe([c.units for c in good])
    proba = evaluators.style.predict_proba([c.units for c in good])
    styles = list(evaluators.style.styles)
    c = good_r.components
    np.testing.assert_array_equal(c["speech_correct"], [float(verify(ex, t)) for ex, t in zip(test, transcripts)])
    np.testing.assert_allclose(c["consistency"], [np.clip(1 - word_error_rate(g.text, t), 0, 1)
                                                  for g, t in zip(good, transcripts)])
    np.testing.assert_allclose(c["style"], [proba[i, styles.index(ex.style)] for i, ex in enumerate(test)])
    for result in (good_r, bad_r):
        for name, values in result.components.items():
            low, high = (1.0, 5.0) if name == "holistic" else (0.0, 1.0)
            assert np.all((values >= low) & (values <= high)), name
    assert c["text_correct"].mean() == 1.0  # target texts pass their own task checks
    assert bad_r.components["text_correct"].mean() < 1.0
    assert c["naturalness"].mean() > bad_r.components["naturalness"].mean()
    assert c["holistic"].mean() > bad_r.components["holistic"].mean()
    assert good_r.failures == 0 and not reward.needs_audio
