"""Verifiable spoken tasks of the embedded world: templates, a seeded fact table, generators and the verifier.

Task families (``TaskItem.task``):
- ``arithmetic``: "what is three plus four" -> "three plus four is seven" (numbers as words, answers 0..20);
- ``counting``: "count the words red blue red" -> "the count is three";
- ``facts``: questions over a generated fact table ("where does anna live" -> "anna lives in paris");
- ``instruction``: "answer in three words what is ..." (checked by word count) and "answer yes or no is seven
  more than four" (checked by format and value);
- ``style``: "answer cheerfully what is ..." (the target speech is rendered in the requested style).
Questions and answers use only the closed vocabulary's words (no punctuation), so a word-level tokenizer covers them.

Every template has an id; the test split draws only from held-out paraphrase templates (``pool="test"``), the
train and valid splits from the training templates, so train and test never share a template.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
MAX_NUMBER = len(NUMBERS) - 1
PEOPLE = ["anna", "bob", "carla", "david", "emma", "frank", "grace", "henry", "iris", "jack", "kate", "liam",
          "mia", "noah", "olga", "paul"]
ATTRIBUTES: dict[str, list[str]] = {
    "city": ["paris", "rome", "london", "berlin", "madrid", "vienna", "oslo", "lisbon", "prague", "dublin"],
    "colour": ["red", "blue", "green", "yellow", "black", "white", "pink", "brown"],
    "pet": ["cat", "dog", "bird", "fish", "rabbit", "horse", "mouse", "turtle"],
    "job": ["teacher", "doctor", "farmer", "baker", "pilot", "singer", "driver", "painter"],
}
TASKS = ("arithmetic", "counting", "facts", "instruction", "style")
Pool = Literal["train", "test"]

# Question templates per pool; {a}/{b} numbers, {p} person, {v} attribute value, {items} a word list.
ARITHMETIC = {
    "plus": {"train": ["what is {a} plus {b}", "add {a} and {b}", "what do you get when you add {a} and {b}"],
             "test": ["how much is {a} plus {b}", "tell me the sum of {a} and {b}"]},
    "minus": {"train": ["what is {a} minus {b}", "take {b} away from {a}"],
              "test": ["how much is {a} minus {b}", "subtract {b} from {a}"]},
}
COUNTING = {
    "words": {"train": ["count the words {items}", "how many words do you hear in {items}"],
              "test": ["say how many words are in {items}", "how many words are in this list {items}"]},
    "word": {"train": ["how many times is {w} in {items}"], "test": ["count how often you hear {w} in {items}"]},
}
FACTS = {
    "city": {"train": ["where does {p} live", "which city does {p} live in"], "test": ["in which city is {p} living"],
             "answer": "{p} lives in {v}", "forms": {1: "{v}", 2: "in {v}", 4: "{p} lives in {v}"}},
    "colour": {"train": ["what colour does {p} like", "which colour is the favourite of {p}"],
               "test": ["tell me the colour that {p} likes"],
               "answer": "{p} likes {v}", "forms": {1: "{v}", 3: "{p} likes {v}"}},
    "pet": {"train": ["what pet does {p} have", "which animal does {p} keep"], "test": ["tell me what pet {p} has"],
            "answer": "{p} has a {v}", "forms": {1: "{v}", 2: "a {v}", 4: "{p} has a {v}"}},
    "job": {"train": ["what does {p} do for work", "what is the job of {p}"], "test": ["tell me what {p} works as"],
            "answer": "{p} is a {v}", "forms": {1: "{v}", 2: "a {v}", 4: "{p} is a {v}"}},
}
ARITHMETIC_FORMS = {1: "{c}", 3: "it is {c}", 4: "the answer is {c}", 5: "{a} {op} {b} is {c}"}
N_WORDS = {"train": ["answer in {n} {q}", "use exactly {n} to answer {q}"], "test": ["reply with just {n} {q}"]}
YES_NO = {"train": ["answer yes or no {q}", "yes or no {q}"], "test": ["reply with yes or no {q}"]}
YES_NO_QUESTIONS = {
    "more": {"train": "is {a} more than {b}", "test": "is {a} bigger than {b}"},
    "less": {"train": "is {a} less than {b}", "test": "is {a} smaller than {b}"},
    "city": {"train": "does {p} live in {v}", "test": "is {p} living in {v}"},
    "pet": {"train": "does {p} have a {v}", "test": "does {p} own a {v}"},
}
# Style requests: the requested style's adverb and adjective.
STYLE_WORDS = {"happy": ("cheerfully", "happy"), "sad": ("sadly", "sad"), "excited": ("excitedly", "excited"),
               "calm": ("calmly", "calm"), "whisper": ("in a whisper", "quiet"), "slow": ("slowly", "slow")}
STYLE_REQUESTS = {"train": ["answer {adv} {q}", "sound {adj} {q}"],
                  "test": ["say it {adv} {q}", "please be {adj} and answer {q}"]}
DEFAULT_STYLE = "neutral"


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
    """A plain question (arithmetic or facts) that wrappers (length, style) reuse."""

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


def _arithmetic_base(rng: np.random.Generator, pool: Pool) -> _Base:
    op = "plus" if rng.random() < 0.5 else "minus"
    if op == "plus":
        c = int(rng.integers(MAX_NUMBER + 1))
        a = int(rng.integers(c + 1))
        b = c - a
    else:
        a = int(rng.integers(MAX_NUMBER + 1))
        b = int(rng.integers(a + 1))
        c = a - b
    k, template = _pick(rng, ARITHMETIC[op][pool])
    words = {"a": NUMBERS[a], "b": NUMBERS[b], "c": NUMBERS[c], "op": op}
    wrong = dict(words, c=NUMBERS[_wrong_number(rng, c)])
    full = ARITHMETIC_FORMS[5]
    return _Base(template=f"arithmetic/{op}/{pool}{k}", question=template.format(**words), answer=NUMBERS[c],
                 target=full.format(**words), wrong_target=full.format(**wrong),
                 forms={n: f.format(**words) for n, f in ARITHMETIC_FORMS.items()},
                 check={"type": "number", "answer": NUMBERS[c]})


def _facts_base(rng: np.random.Generator, pool: Pool, facts: dict[str, dict[str, str]]) -> _Base:
    _, relation = _pick(rng, list(FACTS))
    spec = FACTS[relation]
    _, person = _pick(rng, list(facts))
    value = facts[person][relation]
    wrong = str(rng.choice([v for v in ATTRIBUTES[relation] if v != value]))
    k, template = _pick(rng, spec[pool])
    return _Base(template=f"facts/{relation}/{pool}{k}", question=template.format(p=person), answer=value,
                 target=spec["answer"].format(p=person, v=value), wrong_target=spec["answer"].format(p=person, v=wrong),
                 forms={n: f.format(p=person, v=value) for n, f in spec["forms"].items()},
                 check={"type": "contains", "answer": value})


def _plain(base: _Base, task: str) -> TaskItem:
    return TaskItem(task=task, template=base.template, question=base.question, answer=base.answer,
                    target_text=base.target, check=base.check, style=DEFAULT_STYLE, rejected_text=base.wrong_target,
                    rejected_style=DEFAULT_STYLE)


def _counting(rng: np.random.Generator, pool: Pool) -> TaskItem:
    kind = "words" if rng.random() < 0.5 else "word"
    colours = ATTRIBUTES["colour"][:4]
    items = [str(w) for w in rng.choice(colours, size=int(rng.integers(1, 7)))]
    k, template = _pick(rng, COUNTING[kind][pool])
    if kind == "words":
        n, question = len(items), template.format(items=" ".join(items))
    else:
        w = str(rng.choice(colours))
        n, question = items.count(w), template.format(w=w, items=" ".join(items))
    target = "the count is {}"
    return TaskItem(task="counting", template=f"counting/{kind}/{pool}{k}", question=question, answer=NUMBERS[n],
                    target_text=target.format(NUMBERS[n]), check={"type": "number", "answer": NUMBERS[n]},
                    style=DEFAULT_STYLE, rejected_text=target.format(NUMBERS[_wrong_number(rng, n)]),
                    rejected_style=DEFAULT_STYLE)


def _n_words(rng: np.random.Generator, pool: Pool, facts: dict[str, dict[str, str]]) -> TaskItem:
    base = _arithmetic_base(rng, pool) if rng.random() < 0.5 else _facts_base(rng, pool, facts)
    lengths = sorted(base.forms)
    _, n = _pick(rng, lengths)
    wrong_n = lengths[-1] if n != lengths[-1] else lengths[0]
    k, template = _pick(rng, N_WORDS[pool])
    n_text = f"{NUMBERS[n]} word" + ("s" if n != 1 else "")
    return TaskItem(task="instruction", template=f"instruction/n_words/{pool}{k}+{base.template}",
                    question=template.format(n=n_text, q=base.question), answer=base.answer,
                    target_text=base.forms[n], check={"type": "n_words", "n": n, "answer": base.answer},
                    style=DEFAULT_STYLE, rejected_text=base.forms[wrong_n], rejected_style=DEFAULT_STYLE)


def _yes_no(rng: np.random.Generator, pool: Pool, facts: dict[str, dict[str, str]]) -> TaskItem:
    _, kind = _pick(rng, list(YES_NO_QUESTIONS))
    inner = YES_NO_QUESTIONS[kind][pool]
    if kind in ("more", "less"):
        a, b = (int(x) for x in rng.choice(MAX_NUMBER + 1, size=2, replace=False))
        truth = a > b if kind == "more" else a < b
        question = inner.format(a=NUMBERS[a], b=NUMBERS[b])
    else:
        _, person = _pick(rng, list(facts))
        value = str(rng.choice(ATTRIBUTES[kind]))
        truth = facts[person][kind] == value
        question = inner.format(p=person, v=value)
    k, template = _pick(rng, YES_NO[pool])
    answer, wrong = ("yes", "no") if truth else ("no", "yes")
    return TaskItem(task="instruction", template=f"instruction/yes_no/{pool}{k}+yes_no/{kind}/{pool}0",
                    question=template.format(q=question), answer=answer, target_text=answer,
                    check={"type": "yes_no", "answer": answer}, style=DEFAULT_STYLE, rejected_text=wrong,
                    rejected_style=DEFAULT_STYLE)


def _style_request(rng: np.random.Generator, pool: Pool, facts: dict[str, dict[str, str]],
                   styles: Sequence[str]) -> TaskItem:
    base = _arithmetic_base(rng, pool) if rng.random() < 0.5 else _facts_base(rng, pool, facts)
    requestable = [s for s in styles if s != DEFAULT_STYLE]
    _, style = _pick(rng, requestable)
    adv, adj = STYLE_WORDS[style]
    k, template = _pick(rng, STYLE_REQUESTS[pool])
    return TaskItem(task="style", template=f"style/{pool}{k}+{base.template}",
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


def generate_item(rng: np.random.Generator, task: str, pool: Pool, facts: dict[str, dict[str, str]],
                  styles: Sequence[str] = (DEFAULT_STYLE, *STYLE_WORDS), avoid: set[str] | frozenset[str] = frozenset(),
                  attempts: int = 20) -> TaskItem:
    """One instance of ``task`` from the ``pool`` ("train" or held-out "test") templates.

    Up to ``attempts`` draws look for a question not in ``avoid`` (e.g. the train questions, for the valid
    split); when the task's instance space is exhausted the last draw is kept.
    """
    for _ in range(attempts):
        item = _draw(rng, task, pool, facts, styles)
        if item.question not in avoid:
            break
    return item


def _draw(rng: np.random.Generator, task: str, pool: Pool, facts: dict[str, dict[str, str]],
          styles: Sequence[str]) -> TaskItem:
    if task == "arithmetic":
        return _plain(_arithmetic_base(rng, pool), task)
    if task == "counting":
        return _counting(rng, pool)
    if task == "facts":
        return _plain(_facts_base(rng, pool, facts), task)
    if task == "instruction":
        return _n_words(rng, pool, facts) if rng.random() < 0.5 else _yes_no(rng, pool, facts)
    if task == "style":
        return _style_request(rng, pool, facts, styles)
    raise ValueError(f"task={task!r} is not one of {list(TASKS)}")


def generate_split(rng: np.random.Generator, n: int, pool: Pool, facts: dict[str, dict[str, str]],
                   tasks: Sequence[str] = TASKS, styles: Sequence[str] = (DEFAULT_STYLE, *STYLE_WORDS),
                   avoid: set[str] | frozenset[str] = frozenset()) -> list[TaskItem]:
    """``n`` items, tasks in turn (round robin from a random start), questions outside ``avoid`` where possible."""
    if n < 0:
        raise ValueError(f"n={n}: a split size must be >= 0")
    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"tasks={list(tasks)}: choose a non-empty subset of {list(TASKS)}")
    check_styles(styles)
    start = int(rng.integers(len(tasks)))
    return [generate_item(rng, tasks[(start + i) % len(tasks)], pool, facts, styles, avoid) for i in range(n)]


def template_texts() -> list[str]:
    """Every literal template and answer string (placeholders included); the source of the closed vocabulary."""
    out: list[str] = list(ARITHMETIC_FORMS.values()) + ["the count is", "yes no"]
    for table in (ARITHMETIC, COUNTING):
        for spec in table.values():
            out += spec["train"] + spec["test"]
    for spec in FACTS.values():
        out += spec["train"] + spec["test"] + [spec["answer"]] + list(spec["forms"].values())
    for table in (N_WORDS, YES_NO, STYLE_REQUESTS):
        out += table["train"] + table["test"]
    for spec in YES_NO_QUESTIONS.values():
        out += list(spec.values())
    out += [" ".join(words) for words in STYLE_WORDS.values()]
    return out


def vocabulary() -> list[str]:
    """The world's closed text vocabulary: every word a question, answer or evaluator sentence can use."""
    words = set(NUMBERS) | set(PEOPLE) | {v for values in ATTRIBUTES.values() for v in values}
    words |= {"plus", "minus", "word", "words"}
    for text in template_texts():
        words |= set(normalize(re.sub(r"\{\w+\}", " ", text)).split())
    return sorted(words)


# ---- verification -------------------------------------------------------------------------------------------

_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_DIGITS = {str(i): w for i, w in enumerate(NUMBERS)}
_NUMBER_SET = frozenset(NUMBERS)
CHECK_TYPES = ("contains", "number", "n_words", "yes_no")


def normalize(text: str) -> str:
    """Lower case, punctuation to spaces, digits 0..20 to number words, single spaces."""
    words = text.lower().translate(_PUNCT).split()
    return " ".join(_DIGITS.get(w, w) for w in words)


def _contains(words: list[str], answer: str) -> bool:
    target = normalize(answer).split()
    return bool(target) and any(words[i:i + len(target)] == target for i in range(len(words) - len(target) + 1))


def verify(check_or_example: Any, text: str) -> bool:
    """Whether response ``text`` passes a task check (a dict, or anything with a ``check`` attribute/key).

    Text is normalised first (``normalize``). Check types:
    - ``contains``: the answer's words appear contiguously;
    - ``number``: the last number word is the answer ("three plus four is seven" passes "seven");
    - ``n_words``: exactly ``n`` words, and the answer's words appear when ``answer`` is given;
    - ``yes_no``: the first word is "yes" or "no" and equals the answer.
    The speaking style is not part of the text check (the style classifier scores it).
    """
    check = getattr(check_or_example, "check", check_or_example)
    if isinstance(check, dict) and "check" in check and "type" not in check:
        check = check["check"]
    if not isinstance(check, dict) or "type" not in check:
        raise ValueError(f"verify: expected a check dict with a 'type' (or an Example), got {check!r}")
    words = normalize(text).split()
    kind = check["type"]
    if kind == "contains":
        return _contains(words, check["answer"])
    if kind == "number":
        numbers = [w for w in words if w in _NUMBER_SET]
        return bool(numbers) and numbers[-1] == normalize(check["answer"])
    if kind == "n_words":
        return len(words) == int(check["n"]) and ("answer" not in check or _contains(words, check["answer"]))
    if kind == "yes_no":
        return bool(words) and words[0] in ("yes", "no") and words[0] == normalize(check["answer"])
    raise ValueError(f"verify: unknown check type {kind!r}; known: contains, number, n_words, yes_no")

