"""Verifiable checks of a response's text: the kit's check types, their field types, and the verifier.

A check is a dict with a ``type`` and the fields that type needs (``CHECK_FIELDS``). Kit worlds give every record
a kit check; a user's own data may carry any check type, or none: ``has_kit_check`` says whether ``verify`` applies.
"""

from __future__ import annotations

import string
from typing import Any

from wavalign_kit.world.templates import NUMBERS

_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_DIGITS = {str(i): w for i, w in enumerate(NUMBERS)}
_NUMBER_SET = frozenset(NUMBERS)
CHECK_TYPES = ("contains", "number", "n_words", "yes_no")
# Per check type: field -> (required, what it must be).
CHECK_FIELDS: dict[str, dict[str, tuple[bool, str]]] = {
    "contains": {"answer": (True, "a non-empty string")},
    "number": {"answer": (True, "a number word or digits (e.g. 'seven' or '7')")},
    "n_words": {"n": (True, "a positive integer"), "answer": (False, "a non-empty string")},
    "yes_no": {"answer": (True, "'yes' or 'no'")},
}


def normalize(text: str) -> str:
    """Lower case, punctuation to spaces, digits 0..20 to number words, single spaces."""
    words = text.lower().translate(_PUNCT).split()
    return " ".join(_DIGITS.get(w, w) for w in words)


def _field_ok(kind: str, name: str, value: Any) -> bool:
    if name == "n":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not isinstance(value, str) or not normalize(value):
        return False
    if kind == "number":
        return len(normalize(value).split()) == 1 and normalize(value) in _NUMBER_SET
    if kind == "yes_no":
        return normalize(value) in ("yes", "no")
    return True


def check_problems(check: Any, *, kit_types_only: bool = True) -> list[tuple[str, str]]:
    """Every problem of a ``check`` as (field, message): its type, and each field's presence and type.

    ``kit_types_only=False`` (a user's own data) accepts check types the kit does not know, unvalidated.
    """
    if not isinstance(check, dict) or not isinstance(check.get("type"), str):
        return [("check", f"expected an object with a string 'type' (kit types: {list(CHECK_TYPES)}), got {check!r}")]
    kind = check["type"]
    if kind not in CHECK_FIELDS:
        return [("check", f"unknown check type {kind!r}; known: {list(CHECK_TYPES)}")] if kit_types_only else []
    out = []
    for name, (required, what) in CHECK_FIELDS[kind].items():
        if name not in check:
            if required:
                out.append((f"check.{name}", f"missing (a {kind} check needs {what})"))
        elif not _field_ok(kind, name, check[name]):
            out.append((f"check.{name}", f"expected {what} for a {kind} check, got {check[name]!r}"))
    return out


def _check_of(check_or_example: Any) -> Any:
    check = getattr(check_or_example, "check", check_or_example)
    if isinstance(check, dict) and "check" in check and "type" not in check:
        check = check["check"]
    return check


def has_kit_check(check_or_example: Any) -> bool:
    """Whether ``verify`` applies: the check (a dict, or an Example / record holding one) has a kit check type."""
    check = _check_of(check_or_example)
    return isinstance(check, dict) and check.get("type") in CHECK_TYPES


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
    check = _check_of(check_or_example)
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
    raise ValueError(f"verify: unknown check type {kind!r}; known: contains, number, n_words, yes_no "
                     f"(a user's own check types are not verifiable by the kit: test has_kit_check first)")
