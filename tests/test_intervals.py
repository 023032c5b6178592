"""Bootstrap intervals on hand-made numbers: exact where the answer is known, honest where it is not."""

import numpy as np
import pytest

from wavalign_kit.intervals import bootstrap_mean, paired_difference


def test_a_constant_difference_has_a_zero_width_interval():
    base = np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    d = paired_difference(base + 0.25, base)
    assert (d.mean, d.ci_low, d.ci_high, d.n) == pytest.approx((0.25, 0.25, 0.25, 8)) and d.excludes_zero


def test_pairing_cancels_the_variation_both_models_share():
    rng = np.random.default_rng(1)
    item_difficulty = rng.normal(0, 1, size=(3, 200))              # shared by both models
    base = item_difficulty + rng.normal(0, 0.1, size=(3, 200))
    model = item_difficulty + 0.1 + rng.normal(0, 0.1, size=(3, 200))
    paired = paired_difference(model, base)
    unpaired_width = 2 * 1.96 * np.sqrt(2 * item_difficulty.var() / 600)
    assert paired.excludes_zero and paired.ci_high - paired.ci_low < unpaired_width / 3
    assert paired.mean == pytest.approx(0.1, abs=0.03)


def test_no_effect_is_no_effect_and_seeds_widen_the_interval():
    rng = np.random.default_rng(0)
    noise = paired_difference(rng.normal(0, 1, (3, 300)), rng.normal(0, 1, (3, 300)))
    assert not noise.excludes_zero
    # the same items under three seeds that disagree: the seed level of the bootstrap widens the interval
    offsets = np.array([[-0.3], [0.0], [0.3]])
    per_item = rng.normal(0, 0.2, (1, 300))
    with_seeds = bootstrap_mean(per_item + offsets)
    one_seed = bootstrap_mean(per_item)
    assert (with_seeds.ci_high - with_seeds.ci_low) > 3 * (one_seed.ci_high - one_seed.ci_low)


def test_mean_interval_by_hand_and_nan_cells():
    x = np.array([[1.0, 0.0, np.nan, 1.0]])
    m = bootstrap_mean(x, resamples=4000)
    assert m.mean == pytest.approx(2 / 3) and m.n == 3 and 0.0 <= m.ci_low < 2 / 3 < m.ci_high <= 1.0
    assert bootstrap_mean(np.full((2, 3), np.nan)).n == 0
    assert bootstrap_mean(x, seed=5) == bootstrap_mean(x, seed=5)              # reproducible
    with pytest.raises(ValueError, match="same seeds and items"):
        paired_difference(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="seeds, items"):
        bootstrap_mean(np.zeros(3))
