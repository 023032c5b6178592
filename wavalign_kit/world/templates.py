"""The embedded world's words and question/answer templates, and which content each split may use.

Templates come in two wordings: ``"train"`` (used by the warm-start, RL and valid splits) and ``"test"`` (held-out
paraphrases, only in the test split). Content is partitioned too, by a stable hash of the content itself (not of
the seed), so that every world holds out the same content:
- ``held_out(key)``: content only the test split uses (counting lists, facts given in context; operand pairs:
  ``arithmetic_pairs``);
- ``reserved_for_rl(question)``: questions (train wording, seen content) that only the RL and valid splits ask, so
  the warm start never trains on an RL question.
Questions and answers use only the closed vocabulary's words (no punctuation), so a word-level tokenizer covers them.
"""

from __future__ import annotations

import re
import zlib
from functools import cache
from typing import Literal

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
MAX_NUMBER = len(NUMBERS) - 1
ARITHMETIC_MAX = 6               # operands and results of the arithmetic tasks (0..6: learnable by a tiny model)
COUNTING_COLOURS = 4             # counting lists use the first 4 colours ...
COUNTING_MAX_LEN = 4             # ... in lists of 1..4 words
PEOPLE = ["anna", "bob", "carla", "david", "emma", "frank", "grace", "henry", "iris", "jack", "kate", "liam",
          "mia", "noah", "olga", "paul"]
# The people of context questions: never in the fact table, so the context is the only source of the answer.
CONTEXT_PEOPLE = ["hugo", "lucy", "nina", "omar", "quinn", "rosa", "sam", "zoe"]
ATTRIBUTES: dict[str, list[str]] = {
    "city": ["paris", "rome", "london", "berlin", "madrid", "vienna", "oslo", "lisbon", "prague", "dublin"],
    "colour": ["red", "blue", "green", "yellow", "black", "white", "pink", "brown"],
    "pet": ["cat", "dog", "bird", "fish", "rabbit", "horse", "mouse", "turtle"],
    "job": ["teacher", "doctor", "farmer", "baker", "pilot", "singer", "driver", "painter"],
}
TASKS = ("arithmetic", "counting", "facts", "context", "instruction", "style")
Pool = Literal["train", "rl", "test"]
POOLS = ("train", "rl", "test")
Wording = Literal["train", "test"]

# Question templates per wording; {a}/{b} numbers, {p} person, {v} attribute value, {items} a word list. A test
# (held-out) wording is a new template, but made of words that training templates use elsewhere: a word the warm
# start never read would be an untrained embedding, and the test would measure that instead of generalisation.
ARITHMETIC = {
    "plus": {"train": ["what is {a} plus {b}", "add {a} and {b}", "what do you get when you add {a} and {b}",
                       "tell me the sum of {a} and {b}"],
             "test": ["how much is {a} plus {b}", "what is the sum of {a} and {b}"]},
    "minus": {"train": ["what is {a} minus {b}", "take {b} away from {a}", "how much is left when you take {b} away from {a}"],
              "test": ["how much is {a} minus {b}", "what do you get when you take {b} away from {a}"]},
}
COUNTING = {
    "words": {"train": ["count the words {items}", "how many words do you hear in {items}",
                        "say how many words are in this list {items}"],
              "test": ["how many words are in {items}", "count the words you hear in this list {items}"]},
    "word": {"train": ["how many times is {w} in {items}", "count how often you hear {w} in {items}"],
             "test": ["how many times do you hear {w} in {items}", "say how often {w} is in this list {items}"]},
}
# "answer" is the full response; it is also the statement that a context question carries ("anna lives in rome").
FACTS = {
    "city": {"train": ["where does {p} live", "which city does {p} live in", "tell me where {p} is living"],
             "test": ["in which city is {p} living", "say where {p} lives"],
             "answer": "{p} lives in {v}", "forms": {1: "{v}", 2: "in {v}", 4: "{p} lives in {v}"}},
    "colour": {"train": ["what colour does {p} like", "which colour is the favourite of {p}",
                         "tell me the colour that {p} likes"],
               "test": ["what is the favourite colour of {p}", "say which colour {p} likes"],
               "answer": "{p} likes {v}", "forms": {1: "{v}", 3: "{p} likes {v}"}},
    "pet": {"train": ["what pet does {p} have", "which animal does {p} keep", "tell me what pet {p} has"],
            "test": ["which pet does {p} keep", "say what animal {p} has"],
            "answer": "{p} has a {v}", "forms": {1: "{v}", 2: "a {v}", 4: "{p} has a {v}"}},
    "job": {"train": ["what does {p} do for work", "what is the job of {p}", "tell me what {p} works as"],
            "test": ["what work does {p} do", "say what the job of {p} is"],
            "answer": "{p} is a {v}", "forms": {1: "{v}", 2: "a {v}", 4: "{p} is a {v}"}},
}
CONTEXT = "{fact} {question}"    # a context question: the statement, then a facts question about it
ARITHMETIC_FORMS = {1: "{c}", 3: "it is {c}", 4: "the answer is {c}", 5: "{a} {op} {b} is {c}"}
N_WORDS = {"train": ["answer in {n} {q}", "use exactly {n} to answer {q}", "please reply with {n} {q}"],
           "test": ["reply in exactly {n} {q}", "answer with {n} {q}"]}
YES_NO = {"train": ["answer yes or no {q}", "yes or no {q}", "please say yes or no {q}"],
          "test": ["reply with yes or no {q}", "answer with yes or no {q}"]}
# Yes/no questions per kind and wording; "colour" and "job" are held-out constraints (test wording only).
YES_NO_QUESTIONS = {
    "more": {"train": "is {a} more than {b}", "test": "is {a} more than {b}"},
    "less": {"train": "is {a} less than {b}", "test": "is {a} less than {b}"},
    "city": {"train": "does {p} live in {v}", "test": "is {p} living in {v}"},
    "pet": {"train": "does {p} have a {v}", "test": "does {p} keep a {v}"},
    "colour": {"test": "does {p} like {v}"},
    "job": {"test": "is {p} a {v}"},
}
# Style requests: the requested style's adverb and adjective.
STYLE_WORDS = {"happy": ("cheerfully", "happy"), "sad": ("sadly", "sad"), "excited": ("excitedly", "excited"),
               "calm": ("calmly", "calm"), "whisper": ("in a whisper", "quiet"), "slow": ("slowly", "slow")}
STYLE_REQUESTS = {"train": ["answer {adv} {q}", "sound {adj} {q}", "please be {adj} and answer {q}"],
                  "test": ["say {adv} {q}", "be {adj} when you answer {q}"]}
DEFAULT_STYLE = "neutral"


def wording(pool: Pool) -> Wording:
    """The template wording a pool draws from: held-out paraphrases for test, the training ones otherwise."""
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}: choose one of {list(POOLS)}")
    return "test" if pool == "test" else "train"


def _bucket(key: str, salt: str, buckets: int) -> int:
    return zlib.crc32(f"{salt}:{key}".encode()) % buckets


def held_out(key: str) -> bool:
    """Whether content ``key`` (e.g. "plus 3 4", "list red blue", "context anna city rome") is test-only (1 in 4)."""
    return _bucket(key, "test", 4) == 0


def reserved_for_rl(question: str) -> bool:
    """Whether a train-wording ``question`` belongs to the RL/valid splits rather than the warm start (1 in 3)."""
    return _bucket(question, "rl", 3) == 0


@cache
def arithmetic_pairs(op: str, test: bool) -> tuple[tuple[int, int], ...]:
    """Operand pairs (a, b) of ``op`` with operands and result in 0..ARITHMETIC_MAX, test-only ones or the others.

    The test pairs are new pairs that training still lets a model work out: "a plus b" with a < b, whose mirror
    "b plus a" is trained, and "a minus zero" / "a minus a", whose rules are trained on other numbers.
    """
    def is_test(a: int, b: int) -> bool:
        if op == "plus":
            return a < b and _bucket(f"plus {a} {b}", "test", 2) == 0
        return a > 0 and b in (0, a) and _bucket(f"minus {a}", "test", 2) == 0

    pairs = [(a, b) for a in range(ARITHMETIC_MAX + 1) for b in range(ARITHMETIC_MAX + 1)
             if 0 <= (a + b if op == "plus" else a - b) <= ARITHMETIC_MAX]
    return tuple(p for p in pairs if is_test(*p) == test)


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
    words = set(NUMBERS) | set(PEOPLE) | set(CONTEXT_PEOPLE) | {v for values in ATTRIBUTES.values() for v in values}
    words |= {"plus", "minus", "word", "words"}
    for text in template_texts():
        words |= set(re.sub(r"\{\w+\}", " ", text).lower().split())
    return sorted(words)
