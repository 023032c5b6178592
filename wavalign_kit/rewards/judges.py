"""What a 1..5 judge is asked (holistic / semantic / acoustic prompts) and how its answer is read.

Shared by the OpenAI-compatible API judge (`rewards.api.ApiJudge`) and the local Hugging Face judge
(`rewards.hf.HFJudge`).  Scores follow the paper's judge scale: 1 (worst) .. 5 (best).
"""

from __future__ import annotations

import json
import re
from typing import Literal

JudgeKind = Literal["holistic", "semantic", "acoustic"]
JUDGE_KINDS: tuple[str, ...] = ("holistic", "semantic", "acoustic")   # the rubrics a judge can be asked
SCORE_MIN, SCORE_MAX = 1.0, 5.0

_ANSWER_FORMAT = 'Reply with the score only, as "Score: N" with N an integer from 1 to 5.'

SYSTEM_PROMPTS: dict[str, str] = {
    "holistic": (
        "You are an expert judge of spoken dialogue systems. You hear the assistant's spoken answer to a user "
        "request and read its text. Rate the answer as a whole from 1 (very poor) to 5 (excellent): is the "
        "content correct and helpful, does the speech say the same as the text, is it natural and intelligible, "
        "and does its speaking style fit what the user asked for? " + _ANSWER_FORMAT
    ),
    "semantic": (
        "You are an expert judge of dialogue content. Rate only WHAT the assistant says, ignoring how it sounds, "
        "from 1 (wrong or unhelpful) to 5 (correct, complete and helpful). " + _ANSWER_FORMAT
    ),
    "acoustic": (
        "You are an expert judge of speech. Rate only HOW the assistant's answer sounds, ignoring whether its "
        "content is correct, from 1 (unintelligible, unnatural or the wrong style) to 5 (clear, natural, and in "
        "the speaking style the user asked for). " + _ANSWER_FORMAT
    ),
}


def check_kind(kind: str) -> str:
    """Return ``kind`` when it is a judge kind, else raise a ValueError listing them."""
    if kind not in JUDGE_KINDS:
        raise ValueError(f"judge kind {kind!r} unknown; use one of {', '.join(JUDGE_KINDS)}")
    return kind


def judge_prompt(kind: str, question: str, answer_text: str, style: str | None = None) -> str:
    """The user-turn text of a judge request: the question, the answer's text channel (or transcript) and,
    for holistic / acoustic judging, the requested speaking style."""
    check_kind(kind)
    lines = [f"User request: {question}", f"Assistant answer (text): {answer_text}"]
    if kind != "semantic" and style:
        lines.append(f"Requested speaking style: {style}")
    if kind != "semantic":
        lines.append("The assistant's spoken answer is attached as audio.")
    return "\n".join(lines)


class ScoreParseError(ValueError):
    """A judge reply holds no score in 1..5."""


_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
_PATTERNS = (
    re.compile(r"score[*\s]*(?:is|of|=|:)?[*\s]*" + _NUMBER, re.IGNORECASE),  # Score: 4, **Score**: 4
    re.compile(_NUMBER + r"\s*(?:/|out of)\s*5(?!\d|\.\d)"),  # 4/5, 4 out of 5
    re.compile(r"^\s*" + _NUMBER + r"\s*\.?\s*$"),  # a bare number
)


def parse_score(reply: str) -> float:
    """Read a 1..5 score from a judge reply: JSON ``{"score": 4}``, ``Score: 4``, ``4/5`` or a bare ``4``.

    Raises ScoreParseError when no score is found or it lies outside [1, 5]."""
    text = reply.strip()
    value: float | None = None
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match:
        try:
            obj = json.loads(match.group(0))
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("score"), (int, float, str)):
            try:
                value = float(obj["score"])
            except ValueError as err:
                raise ScoreParseError(f"judge reply's JSON score is not a number: {obj['score']!r}") from err
    if value is None:
        for pattern in _PATTERNS:
            found = pattern.search(text)
            if found:
                value = float(found.group(1))
                break
    if value is None:
        raise ScoreParseError(f"no 1..5 score in judge reply {text[:80]!r}")
    if not SCORE_MIN <= value <= SCORE_MAX:
        raise ScoreParseError(f"judge score {value} outside [{SCORE_MIN:g}, {SCORE_MAX:g}] in reply {text[:80]!r}")
    return value
