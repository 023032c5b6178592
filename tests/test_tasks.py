"""Task generators and the verifier: hand-checked cases, held-out templates, determinism, closed vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from wavalign_kit.world import tasks as T
from wavalign_kit.world.tasks import generate_facts, generate_split, normalize, verify


@pytest.mark.parametrize(("check", "text", "ok"), [
    ({"type": "number", "answer": "seven"}, "three plus four is seven", True),
    ({"type": "number", "answer": "seven"}, "Three plus four is 7.", True),
    ({"type": "number", "answer": "seven"}, "seven plus one is eight", False),
    ({"type": "number", "answer": "seven"}, "i do not know", False),
    ({"type": "contains", "answer": "paris"}, "anna lives in paris", True),
    ({"type": "contains", "answer": "paris"}, "anna lives in rome", False),
    ({"type": "contains", "answer": "in paris"}, "paris in", False),
    ({"type": "n_words", "n": 3}, "it is seven", True),
    ({"type": "n_words", "n": 3}, "it is seven indeed", False),
    ({"type": "n_words", "n": 3, "answer": "seven"}, "it is eight", False),
    ({"type": "n_words", "n": 1, "answer": "seven"}, "Seven!", True),
    ({"type": "yes_no", "answer": "yes"}, "Yes, it is.", True),
    ({"type": "yes_no", "answer": "yes"}, "no", False),
    ({"type": "yes_no", "answer": "yes"}, "maybe yes", False),
    ({"type": "yes_no", "answer": "no"}, "", False),
])
def test_verify_hand_cases(check, text, ok):
    assert verify(check, text) is ok


def test_verify_accepts_examples_and_records_and_rejects_bad_checks():
    item = T.generate_item(np.random.default_rng(0), "arithmetic", "train", generate_facts(np.random.default_rng(0), 4))
    assert verify(item, item.target_text) and not verify(item, item.rejected_text)
    assert verify({"check": item.check}, item.target_text)
    with pytest.raises(ValueError, match="unknown check type"):
        verify({"type": "regex"}, "x")
    with pytest.raises(ValueError, match="check dict"):
        verify("seven", "seven")


def test_normalize():
    assert normalize("  It's 7,  OK? ") == "it s seven ok"
    assert normalize("20 21") == "twenty 21"


def test_fact_table_is_seeded():
    a = generate_facts(np.random.default_rng(3), 8)
    assert a == generate_facts(np.random.default_rng(3), 8)
    assert list(a) == T.PEOPLE[:8] and all(set(v) == set(T.ATTRIBUTES) for v in a.values())
    with pytest.raises(ValueError, match="num_people"):
        generate_facts(np.random.default_rng(0), 99)


@pytest.fixture(scope="module")
def facts():
    return generate_facts(np.random.default_rng(0), 12)


def test_targets_pass_and_rejections_fail(facts):
    items = generate_split(np.random.default_rng(1), 400, "train", facts)
    assert {it.task for it in items} == set(T.TASKS)
    for it in items:
        assert verify(it.check, it.target_text), it
        if it.task == "style":   # same words, wrong (neutral) voice
            assert it.rejected_text == it.target_text and it.rejected_style == "neutral" != it.style
        else:
            assert not verify(it.check, it.rejected_text), it
        assert 1 <= len(it.target_text.split()) <= 8


def test_facts_answers_follow_the_table(facts):
    for it in generate_split(np.random.default_rng(2), 200, "test", facts, tasks=["facts"]):
        person = next(w for w in it.question.split() if w in facts)
        relation = it.template.split("/")[1]
        assert it.answer == facts[person][relation] and it.answer in it.target_text.split()


def test_arithmetic_is_correct(facts):
    for it in generate_split(np.random.default_rng(3), 200, "train", facts, tasks=["arithmetic"]):
        a, op, b, _, c = it.target_text.split()
        n = {w: i for i, w in enumerate(T.NUMBERS)}
        assert n[c] == (n[a] + n[b] if op == "plus" else n[a] - n[b]) and 0 <= n[c] <= 20


def test_train_and_test_templates_are_disjoint(facts):
    train = generate_split(np.random.default_rng(4), 600, "train", facts)
    test = generate_split(np.random.default_rng(5), 300, "test", facts)
    parts = lambda items: {p for it in items for p in it.template.split("+")}  # noqa: E731
    assert not parts(train) & parts(test)
    assert not {it.question for it in train} & {it.question for it in test}
    assert all("/train" in p for p in parts(train)) and all("/test" in p for p in parts(test))


def test_generation_is_deterministic(facts):
    a = generate_split(np.random.default_rng(7), 50, "train", facts)
    assert a == generate_split(np.random.default_rng(7), 50, "train", facts)
    assert a != generate_split(np.random.default_rng(8), 50, "train", facts)


def test_valid_avoids_train_questions(facts):
    train = generate_split(np.random.default_rng(0), 300, "train", facts)
    seen = {it.question for it in train}
    valid = generate_split(np.random.default_rng(1), 100, "train", facts, avoid=seen)
    assert sum(it.question in seen for it in valid) <= 5


def test_vocabulary_is_closed_and_small(facts):
    vocab = set(T.vocabulary())
    assert 100 <= len(vocab) <= 400
    for it in generate_split(np.random.default_rng(9), 500, "test", facts):
        assert set(f"{it.question} {it.target_text} {it.rejected_text}".split()) <= vocab


def test_style_requests_use_the_requested_style(facts):
    items = generate_split(np.random.default_rng(6), 100, "train", facts, tasks=["style"], styles=["neutral", "sad"])
    assert {it.style for it in items} == {"sad"}
    assert all(("sad" in it.question.split()) or ("sadly" in it.question.split()) for it in items)
    with pytest.raises(ValueError, match="no request phrase"):
        generate_split(np.random.default_rng(0), 1, "train", facts, styles=["neutral", "angry"])
