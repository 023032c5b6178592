"""Verifiable spoken tasks of the embedded world: a seeded fact table, item generators per pool, split quotas.

Task families (``TaskItem.task``):
- ``arithmetic``: "what is three plus four" -> "three plus four is seven" (numbers as words, 0..ARITHMETIC_MAX);
- ``counting``: "count the words red blue red" -> "the count is three";
- ``facts``: questions over a generated fact table ("where does anna live" -> "anna lives in paris");
- ``context``: questions that carry the fact they ask about ("zoe lives in rome where does zoe live" ->
  "zoe lives in rome"), about people outside the fact table (``CONTEXT_PEOPLE``): only the context answers them;
- ``instruction``: "answer in three words what is ..." (checked by word count) and "answer yes or no is seven
  more than four" (checked by format and value);
- ``style``: "answer cheerfully what is ..." (the target speech is rendered in the requested style).

Pools (templates.py): ``"train"`` (warm start), ``"rl"`` (RL prompts and the valid split: training wording, but
only questions the warm start never sees) and ``"test"`` (held-out wording throughout, and held-out content: new
counting lists and yes/no comparisons, new operand pairs and (person, value) facts in context for a share
``HELD_OUT_CONTENT_SHARE`` of the arithmetic and context items, and two constraints the other pools never use:
yes/no questions about colours and jobs, word counts on context questions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wavalign_kit.world.checks import CHECK_TYPES, normalize, verify  # noqa: F401  (re-exported: consumers import them here)
from wavalign_kit.world.templates import (  # noqa: F401  (NUMBERS, TASKS, vocabulary: re-exported)
    ARITHMETIC,
    ARITHMETIC_FORMS,
    ATTRIBUTES,
    CONTEXT,
    CONTEXT_PEOPLE,
    COUNTING,
    COUNTING_COLOURS,
    COUNTING_MAX_LEN,
    DEFAULT_STYLE,
    FACTS,
    MAX_NUMBER,
    N_WORDS,
    NUMBERS,
    PEOPLE,
    POOLS,
    STYLE_REQUESTS,
    STYLE_WORDS,
    TASKS,
    YES_NO,
    YES_NO_QUESTIONS,
    Pool,
    arithmetic_pairs,
    held_out,
    reserved_for_rl,
    vocabulary,
    wording,
)

# Relative share of each task in a split; style requests are over 30 % of every split (EQ needs them).
DEFAULT_TASK_WEIGHTS = {"arithmetic": 2.0, "counting": 1.0, "facts": 1.0, "context": 2.5, "instruction": 1.0,
                        "style": 4.0}
POOL_DRAWS = 2000                # draws to find an item of the requested pool before giving up
# Share of the test split's arithmetic and context items (also inside instructions and style requests) with new
# operand pairs / new facts in context; the rest keep trained content in held-out wording. Counting lists and
# yes/no comparisons in the test split are all new. Each record's answer_seen tells the two kinds apart.
HELD_OUT_CONTENT_SHARE = 0.5


@dataclass(frozen=True)
class TaskItem:
    """One generated task instance: the question, its canonical answer and target response, and a check."""

    task: str
    template: str                # template id, e.g. "arithmetic/plus/train1"
    question: str
    answer: str                  # canonical answer text (what the check looks for)
    target_text: str             # the full target response
    check: dict[str, Any]        # what `verify` understands
    style: str                   # target speaking style
    rejected_text: str           # a plausible wrong response (wrong value, length, format...)
    rejected_style: str          # its style (the neutral voice for a style request)


@dataclass(frozen=True)
class _Base:
    """A plain question (arithmetic, facts or context) that wrappers (length, style) reuse."""

    template: str
    question: str
    answer: str
    target: str
    wrong_target: str
    forms: dict[int, str]        # answers of exactly n words
    check: dict[str, Any]


def generate_facts(rng: np.random.Generator, num_people: int) -> dict[str, dict[str, str]]:
    """The world's fact table: for each of the first ``num_people`` people, one value per attribute."""
    if not 2 <= num_people <= len(PEOPLE):
        raise ValueError(f"num_people={num_people}: choose between 2 and {len(PEOPLE)}")
    return {p: {attr: str(rng.choice(values)) for attr, values in ATTRIBUTES.items()} for p in PEOPLE[:num_people]}


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> tuple[int, Any]:
    i = int(rng.integers(len(options)))
    return i, options[i]


def _wrong_number(rng: np.random.Generator, c: int) -> int:
    choices = [x for x in range(max(0, c - 3), min(MAX_NUMBER, c + 3) + 1) if x != c]
    return int(rng.choice(choices))


def _arithmetic_base(rng: np.random.Generator, pool: Pool, new: bool) -> _Base:
    op = "plus" if rng.random() < 0.5 else "minus"
    _, (a, b) = _pick(rng, arithmetic_pairs(op, new))
    c = a + b if op == "plus" else a - b
    k, template = _pick(rng, ARITHMETIC[op][wording(pool)])
    words = {"a": NUMBERS[a], "b": NUMBERS[b], "c": NUMBERS[c], "op": op}
    wrong = dict(words, c=NUMBERS[_wrong_number(rng, c)])
    full = ARITHMETIC_FORMS[5]
    return _Base(template=f"arithmetic/{op}/{wording(pool)}{k}", question=template.format(**words),
                 answer=NUMBERS[c], target=full.format(**words), wrong_target=full.format(**wrong),
                 forms={n: f.format(**words) for n, f in ARITHMETIC_FORMS.items()},
                 check={"type": "number", "answer": NUMBERS[c]})


def _fact_base(rng: np.random.Generator, pool: Pool, relation: str, person: str, value: str, wrong: str,
               task: str, context: bool) -> _Base:
    spec = FACTS[relation]
    k, template = _pick(rng, spec[wording(pool)])
    question = template.format(p=person)
    if context:
        question = CONTEXT.format(fact=spec["answer"].format(p=person, v=value), question=question)
    return _Base(template=f"{task}/{relation}/{wording(pool)}{k}", question=question, answer=value,
                 target=spec["answer"].format(p=person, v=value), wrong_target=spec["answer"].format(p=person, v=wrong),
                 forms={n: f.format(p=person, v=value) for n, f in spec["forms"].items()},
                 check={"type": "contains", "answer": value})


def _facts_base(rng: np.random.Generator, pool: Pool, facts: dict[str, dict[str, str]]) -> _Base:
    _, relation = _pick(rng, list(FACTS))
    _, person = _pick(rng, list(facts))
    value = facts[person][relation]
    wrong = str(rng.choice([v for v in ATTRIBUTES[relation] if v != value]))
    return _fact_base(rng, pool, relation, person, value, wrong, "facts", context=False)


def _context_base(rng: np.random.Generator, pool: Pool, new: bool) -> _Base:
    """A facts question about someone outside the fact table, preceded by the fact it asks about."""
    _, relation = _pick(rng, list(FACTS))
    for _ in range(POOL_DRAWS):
        person, value = str(rng.choice(CONTEXT_PEOPLE)), str(rng.choice(ATTRIBUTES[relation]))
        if held_out(f"context {person} {relation} {value}") == new:
            break
    wrong = str(rng.choice([v for v in ATTRIBUTES[relation] if v != value]))
    return _fact_base(rng, pool, relation, person, value, wrong, "context", context=True)


def _plain(base: _Base, task: str) -> TaskItem:
    return TaskItem(task=task, template=base.template, question=base.question, answer=base.answer,
                    target_text=base.target, check=base.check, style=DEFAULT_STYLE, rejected_text=base.wrong_target,
                    rejected_style=DEFAULT_STYLE)


def _counting(rng: np.random.Generator, pool: Pool) -> TaskItem:
    kind = "words" if rng.random() < 0.5 else "word"
    colours = ATTRIBUTES["colour"][:COUNTING_COLOURS]
    for _ in range(POOL_DRAWS):
        items = [str(w) for w in rng.choice(colours, size=int(rng.integers(1, COUNTING_MAX_LEN + 1)))]
        if held_out("list " + " ".join(items)) == (pool == "test"):
            break
    k, template = _pick(rng, COUNTING[kind][wording(pool)])
    if kind == "words":
        n, question = len(items), template.format(items=" ".join(items))
    else:
        w = str(rng.choice(colours))
        n, question = items.count(w), template.format(w=w, items=" ".join(items))
    target = "the count is {}"
    return TaskItem(task="counting", template=f"counting/{kind}/{wording(pool)}{k}", question=question,
                    answer=NUMBERS[n], target_text=target.format(NUMBERS[n]),
                    check={"type": "number", "answer": NUMBERS[n]}, style=DEFAULT_STYLE,
                    rejected_text=target.format(NUMBERS[_wrong_number(rng, n)]), rejected_style=DEFAULT_STYLE)


def _any_base(rng: np.random.Generator, pool: Pool, facts: dict[str, dict[str, str]], kinds: Sequence[str],
              new: bool) -> _Base:
    _, kind = _pick(rng, kinds)
    if kind == "arithmetic":
        return _arithmetic_base(rng, pool, new)
    return _facts_base(rng, pool, facts) if kind == "facts" else _context_base(rng, pool, new)


def _n_words(rng: np.random.Generator, pool: Pool, facts: dict[str, dict[str, str]], new: bool) -> TaskItem:
    # word counts on context questions are a held-out constraint: only the test pool asks for them
    base = _any_base(rng, pool, facts, ["arithmetic", "facts"] + (["context"] if pool == "test" else []), new)
    lengths = sorted(base.forms)
    _, n = _pick(rng, lengths)
    wrong_n = lengths[-1] if n != lengths[-1] else lengths[0]
    k, template = _pick(rng, N_WORDS[wording(pool)])
    n_text = f"{NUMBERS[n]} word" + ("s" if n != 1 else "")
    return TaskItem(task="instruction", template=f"instruction/n_words/{wording(pool)}{k}+{base.template}",
                    question=template.format(n=n_text, q=base.question), answer=base.answer,
                    target_text=base.forms[n], check={"type": "n_words", "n": n, "answer": base.answer},
                    style=DEFAULT_STYLE, rejected_text=base.forms[wrong_n], rejected_style=DEFAULT_STYLE)


def _yes_no(rng: np.random.Generator, pool: Pool, facts: dict[str, dict[str, str]]) -> TaskItem:
    w = wording(pool)
    _, kind = _pick(rng, [k for k, spec in YES_NO_QUESTIONS.items() if w in spec])
    inner = YES_NO_QUESTIONS[kind][w]
    if kind in ("more", "less"):
        for _ in range(POOL_DRAWS):
            a, b = (int(x) for x in rng.choice(MAX_NUMBER + 1, size=2, replace=False))
            if held_out(f"compare {a} {b}") == (pool == "test"):
                break
        truth = a > b if kind == "more" else a < b
        question = inner.format(a=NUMBERS[a], b=NUMBERS[b])
    else:   # about the fact table; true and false statements equally often
        _, person = _pick(rng, list(facts))
        fact = facts[person][kind]
        truth = bool(rng.random() < 0.5)
        value = fact if truth else str(rng.choice([v for v in ATTRIBUTES[kind] if v != fact]))
        question = inner.format(p=person, v=value)
    k, template = _pick(rng, YES_NO[w])
    answer, wrong = ("yes", "no") if truth else ("no", "yes")
    return TaskItem(task="instruction", template=f"instruction/yes_no/{w}{k}+yes_no/{kind}/{w}0",
                    question=template.format(q=question), answer=answer, target_text=answer,
                    check={"type": "yes_no", "answer": answer}, style=DEFAULT_STYLE, rejected_text=wrong,
                    rejected_style=DEFAULT_STYLE)


def _style_request(rng: np.random.Generator, pool: Pool, facts: dict[str, dict[str, str]],
                   styles: Sequence[str], new: bool) -> TaskItem:
    base = _any_base(rng, pool, facts, ["arithmetic", "facts", "context"], new)
    _, style = _pick(rng, [s for s in styles if s != DEFAULT_STYLE])
    adv, adj = STYLE_WORDS[style]
    k, template = _pick(rng, STYLE_REQUESTS[wording(pool)])
    return TaskItem(task="style", template=f"style/{wording(pool)}{k}+{base.template}",
                    question=template.format(adv=adv, adj=adj, q=base.question), answer=base.answer,
                    target_text=base.target, check=base.check, style=style, rejected_text=base.target,
                    rejected_style=DEFAULT_STYLE)


def check_styles(styles: Sequence[str]) -> None:
    """Style requests need a phrase per requested style and at least one style beside the default."""
    unknown = [s for s in styles if s != DEFAULT_STYLE and s not in STYLE_WORDS]
    if unknown:
        raise ValueError(f"styles {unknown} have no request phrase; use styles among {[DEFAULT_STYLE, *STYLE_WORDS]}")
    if DEFAULT_STYLE not in styles:
        raise ValueError(f"styles={list(styles)} must include {DEFAULT_STYLE!r} (the default response style)")


def _draw(rng: np.random.Generator, task: str, pool: Pool, facts: dict[str, dict[str, str]],
          styles: Sequence[str], new: bool) -> TaskItem:
    """One item; ``new``: with held-out operand pairs / facts in context (test pool only)."""
    if task == "arithmetic":
        return _plain(_arithmetic_base(rng, pool, new), task)
    if task == "counting":
        return _counting(rng, pool)
    if task == "facts":
        return _plain(_facts_base(rng, pool, facts), task)
    if task == "context":
        return _plain(_context_base(rng, pool, new), task)
    if task == "instruction":
        return _n_words(rng, pool, facts, new) if rng.random() < 0.5 else _yes_no(rng, pool, facts)
    if task == "style":
        return _style_request(rng, pool, facts, styles, new)
    raise ValueError(f"task={task!r} is not one of {list(TASKS)}")


def in_pool(question: str, pool: Pool) -> bool:
    """Whether a question drawn with ``pool``'s wording belongs to it (warm-start questions are never RL ones)."""
    return pool == "test" or reserved_for_rl(question) == (pool == "rl")


def generate_item(rng: np.random.Generator, task: str, pool: Pool, facts: dict[str, dict[str, str]],
                  styles: Sequence[str] = (DEFAULT_STYLE, *STYLE_WORDS), avoid: set[str] | frozenset[str] = frozenset(),
                  attempts: int = 20) -> TaskItem:
    """One instance of ``task`` from ``pool`` ("train", "rl" or the held-out "test").

    The pool is a hard constraint (``in_pool``). Up to ``attempts`` in-pool draws look for a question outside
    ``avoid``; when the task's instance space is exhausted the last draw is kept. In the test pool, whether the
    item's arithmetic or context content is held out is drawn once (``HELD_OUT_CONTENT_SHARE``), before them.
    """
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}: choose one of {list(POOLS)}")
    new = pool == "test" and bool(rng.random() < HELD_OUT_CONTENT_SHARE)
    kept, tries = None, 0
    for _ in range(POOL_DRAWS):
        item = _draw(rng, task, pool, facts, styles, new)
        if not in_pool(item.question, pool):
            continue
        kept, tries = item, tries + 1
        if item.question not in avoid or tries >= attempts:
            return item
    if kept is None:
        raise ValueError(f"no {task} question of pool {pool!r} in {POOL_DRAWS} draws")
    return kept


def task_counts(n: int, tasks: Sequence[str], weights: Mapping[str, float] | None = None) -> dict[str, int]:
    """Items per task in a split of ``n``: proportional to ``weights`` (default DEFAULT_TASK_WEIGHTS), largest
    remainders rounded up, so every split holds the same shares."""
    w = np.array([float({**DEFAULT_TASK_WEIGHTS, **(weights or {})}.get(t, 1.0)) for t in tasks])
    if (w <= 0).any():
        raise ValueError(f"task weights {dict(zip(tasks, w.tolist()))}: every weight must be > 0")
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - int(counts.sum())]:
        counts[i] += 1
    return dict(zip(tasks, counts.tolist()))


def generate_split(rng: np.random.Generator, n: int, pool: Pool, facts: dict[str, dict[str, str]],
                   tasks: Sequence[str] = TASKS, styles: Sequence[str] = (DEFAULT_STYLE, *STYLE_WORDS),
                   avoid: set[str] | frozenset[str] = frozenset(),
                   weights: Mapping[str, float] | None = None) -> list[TaskItem]:
    """``n`` items of ``pool`` in random order, ``task_counts`` per task, the requested styles in turn (so every
    style appears once there are as many style requests), questions outside ``avoid`` and not repeated where
    possible."""
    if n < 0:
        raise ValueError(f"n={n}: a split size must be >= 0")
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"tasks={list(tasks)}: choose a non-empty subset of {list(TASKS)}")
    check_styles(styles)
    order = [t for t, c in task_counts(n, tasks, weights).items() for _ in range(c)]
    order = [order[i] for i in rng.permutation(n)]
    requestable = [s for s in styles if s != DEFAULT_STYLE]
    turn = int(rng.integers(len(requestable)))
    seen, items = set(avoid), []
    for task in order:
        if task == "style":
            item_styles, turn = [DEFAULT_STYLE, requestable[turn % len(requestable)]], turn + 1
        else:
            item_styles = list(styles)
        item = generate_item(rng, task, pool, facts, item_styles, seen)
        seen.add(item.question)
        items.append(item)
    return items
