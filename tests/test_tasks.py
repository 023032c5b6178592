"""Task generators and the verifier: hand-checked cases, held-out templates, determinism, closed vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from wavalign_kit.world import tasks as T
from wavalign_kit.world.tasks import generate_facts, generate_split, normalize, verify
from wavalign_kit.world.templates import ARITHMETIC_MAX


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


# ---- pools: warm start, RL prompts, held-out test content ------------------------------------------------------

@pytest.fixture(scope="module")
def pools(facts):
    return {pool: generate_split(np.random.default_rng(i), n, pool, facts)
            for i, (pool, n) in enumerate((("train", 1200), ("rl", 400), ("test", 600)))}


def test_rl_questions_are_never_warm_start_questions(pools, facts):
    train_q = {it.question for it in pools["train"]}
    assert not train_q & {it.question for it in pools["rl"]}
    # also where the task's instance space is small (facts: 12 people x 4 relations x 2 wordings) and exhausted
    many = generate_split(np.random.default_rng(11), 2000, "train", facts, tasks=["facts"])
    rl = generate_split(np.random.default_rng(12), 200, "rl", facts, tasks=["facts"])
    assert not {it.question for it in many} & {it.question for it in rl} and len(rl) == 200
    assert {it.task for it in pools["rl"]} == set(T.TASKS)


def _numbers(text):
    n = {w: i for i, w in enumerate(T.NUMBERS)}
    return [n[w] for w in text.split() if w in n]


def test_test_split_holds_out_content(pools, facts):
    from wavalign_kit.world.templates import arithmetic_pairs, held_out

    def new_arithmetic(it):   # an item with a held-out operand pair
        a, op, b = it.target_text.split()[:3]
        return (_numbers(a)[0], _numbers(b)[0]) in arithmetic_pairs(op, True)

    def new_context(it):      # an item stating a held-out (person, relation, value) fact
        return held_out(f"context {it.target_text.split()[0]} {it.template.split('/')[1]} {it.answer}")

    def counting_lists(items):   # the list is the question's trailing run of colour words
        def trailing_list(question):
            words = question.split()
            k = len(words)
            while k and words[k - 1] in T.ATTRIBUTES["colour"]:
                k -= 1
            return " ".join(words[k:])
        return {trailing_list(it.question) for it in items if it.task == "counting"}

    seen = pools["train"] + pools["rl"]
    test = pools["test"]
    for task, is_new in (("arithmetic", new_arithmetic), ("context", new_context)):
        assert not any(is_new(it) for it in seen if it.task == task)              # never trained, never RL
        share = np.mean([is_new(it) for it in test if it.task == task])          # the rest: trained content
        assert abs(share - T.HELD_OUT_CONTENT_SHARE) < 0.15, (task, share)
        assert not {it.target_text for it in test if it.task == task and is_new(it)} & {it.target_text for it in seen}
    assert counting_lists(test) and not counting_lists(test) & counting_lists(seen)
    # constraints the warm start and RL never use: yes/no on colours and jobs, word counts on context questions
    new_constraints = {"yes/no on colours": lambda t: "+yes_no/colour/" in t,
                       "yes/no on jobs": lambda t: "+yes_no/job/" in t,
                       "word counts on context": lambda t: t.startswith("instruction/n_words/") and "+context/" in t}
    used = lambda items: {name for it in items for name, hit in new_constraints.items() if hit(it.template)}  # noqa: E731
    assert used(test) == set(new_constraints) and not used(seen)


def test_seen_answers_share_of_the_test_split(pools):
    targets = {it.target_text for it in pools["train"] + pools["rl"]}
    seen = [it.target_text in targets for it in pools["test"]]
    assert np.mean(seen) < 0.7                                   # the old test split: 84 %
    per_task = {t: np.mean([s for s, it in zip(seen, pools["test"]) if it.task == t]) for t in T.TASKS}
    assert 0.2 < per_task["arithmetic"] < 0.8 and 0.2 < per_task["context"] < 0.8 and per_task["facts"] == 1


def test_style_requests_are_a_third_of_every_split_with_every_style(pools):
    for pool, items in pools.items():
        styled = [it for it in items if it.task == "style"]
        assert len(styled) >= 0.3 * len(items), pool
        assert {it.style for it in styled} == set(T.STYLE_WORDS), pool
        assert all(it.style == "neutral" for it in items if it.task != "style")
    assert T.task_counts(8, T.TASKS)["style"] >= 3 and sum(T.task_counts(13, T.TASKS).values()) == 13
    assert T.task_counts(10, ["facts", "style"], {"facts": 4, "style": 1}) == {"facts": 8, "style": 2}
    with pytest.raises(ValueError, match="weight"):
        T.task_counts(10, ["facts"], {"facts": 0})


def test_context_questions_carry_their_answer(pools, facts):
    items = [it for it in pools["train"] + pools["test"] if it.task == "context"]
    assert len(items) > 50
    for it in items:
        statement = it.target_text
        assert it.question.startswith(statement + " ") and verify(it.check, it.target_text)
        assert not verify(it.check, it.rejected_text)
        assert statement.split()[0] in T.CONTEXT_PEOPLE and statement.split()[0] not in facts   # only the context knows


def test_arithmetic_stays_small(pools):
    for it in pools["train"] + pools["test"]:
        if it.task == "arithmetic":
            a, b, c = _numbers(it.target_text)
            assert max(a, b, c) <= ARITHMETIC_MAX


def test_check_field_types():
    from wavalign_kit.world.checks import check_problems, has_kit_check

    assert check_problems({"type": "n_words", "n": 3, "answer": "seven"}) == []
    fields = lambda c, **kw: [f for f, _ in check_problems(c, **kw)]  # noqa: E731
    assert fields({"type": "n_words", "n": "four"}) == ["check.n"]
    assert fields({"type": "n_words", "n": True}) == ["check.n"]
    assert fields({"type": "n_words"}) == ["check.n"]
    assert fields({"type": "number", "answer": 7}) == ["check.answer"]
    assert fields({"type": "number", "answer": "many"}) == ["check.answer"]
    assert check_problems({"type": "number", "answer": "7"}) == []
    assert fields({"type": "yes_no", "answer": "maybe"}) == ["check.answer"]
    assert fields({"type": "contains", "answer": ""}) == ["check.answer"]
    assert fields({"type": "regex"}) == ["check"] and fields("seven") == ["check"]
    assert check_problems({"type": "regex", "pattern": "x"}, kit_types_only=False) == []
    assert has_kit_check({"check": {"type": "number", "answer": "one"}}) and not has_kit_check({"type": "regex"})


def test_held_out_operand_pairs_can_be_worked_out_from_training():
    from wavalign_kit.world.templates import arithmetic_pairs

    train_plus, test_plus = set(arithmetic_pairs("plus", False)), arithmetic_pairs("plus", True)
    assert test_plus and all((b, a) in train_plus for a, b in test_plus)          # commutativity
    train_minus, test_minus = set(arithmetic_pairs("minus", False)), arithmetic_pairs("minus", True)
    assert test_minus and all(b in (0, a) for a, b in test_minus)                  # x - 0 = x, x - x = 0 ...
    assert {(a, 0) for a in range(1, 4)} | {(a, a) for a in range(1, 4)} <= train_minus   # ... trained on others
