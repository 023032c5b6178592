"""Pair builder: best vs worst per group, minimum margin, ties dropped and counted, score modes."""

import numpy as np
import pytest

from wavalign_kit.train.pairs import build_pairs, pair_scores


def test_best_vs_worst_per_group():
    scores = [3.0, 5.0, 1.0, 4.0,   2.0, 2.0, 2.0, 2.0,   4.0, 3.8, 4.5, 4.0]
    ps = build_pairs(scores, group_size=4, min_margin=1.0)
    assert ps.chosen == [1] and ps.rejected == [2] and ps.prompt == [0] and ps.margin == [4.0]
    assert ps.ties == 1 and ps.below_margin == 1 and ps.dropped == 2


def test_margin_boundary_and_first_index_wins():
    ps = build_pairs([1.0, 2.0, 2.0, 1.0], group_size=4, min_margin=1.0)  # gap exactly 1.0 is kept
    assert (ps.chosen, ps.rejected, ps.margin) == ([1], [0], [1.0])
    ps = build_pairs([1.0, 1.5], group_size=2, min_margin=0.0)          # margin 0 keeps any strict gap
    assert (ps.chosen, ps.rejected) == ([1], [0])
    assert build_pairs([3.0, 3.0], group_size=2, min_margin=0.0).ties == 1  # but never a tie


def test_score_modes_pick_the_channel():
    total = np.array([3.0, 3.0])
    semantic = np.array([1.0, 5.0])
    acoustic = np.array([5.0, 1.0])
    assert pair_scores(total, semantic, acoustic, "sum").tolist() == [3.0, 3.0]
    ps = build_pairs(pair_scores(total, semantic, acoustic, "semantic"), 2)
    assert (ps.chosen, ps.rejected) == ([1], [0])
    ps = build_pairs(pair_scores(total, semantic, acoustic, "acoustic"), 2)
    assert (ps.chosen, ps.rejected) == ([0], [1])
    with pytest.raises(ValueError, match="pair_score_mode='acoustic' needs"):
        pair_scores(total, semantic, None, "acoustic")


def test_bad_input():
    with pytest.raises(ValueError, match="groups of group_size=4"):
        build_pairs([1.0, 2.0, 3.0], 4)
    with pytest.raises(ValueError, match="NaN"):
        build_pairs([1.0, float("nan")], 2)
    with pytest.raises(ValueError, match="min_margin"):
        build_pairs([1.0, 2.0], 2, min_margin=-1)
