"""Word error rate between a reference and a hypothesis transcript (the recogniser's metric).

Normalisation before comparing: lower case, every character that is not a letter, digit, apostrophe or
whitespace becomes a space, then split on whitespace ("Paris!" == "paris"; "it's" stays one word).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NOT_WORD = re.compile(r"[^\w\s']|_")


def normalize_words(text: str) -> list[str]:
    """The word sequence WER compares: lower case, punctuation stripped, split on whitespace."""
    return _NOT_WORD.sub(" ", text.lower()).split()


def word_edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance over words: the fewest substitutions + deletions + insertions."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_error_rate(ref: str, hyp: str) -> float:
    """Edit distance / number of reference words (normalised as above).

    An empty reference gives 0.0 for an empty hypothesis and len(hypothesis words) otherwise (every word
    is an insertion), so the value can exceed 1.
    """
    r, h = normalize_words(ref), normalize_words(hyp)
    return word_edit_distance(r, h) / max(1, len(r))


def corpus_word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus-level WER: total edit distance / total reference words (long utterances weigh more)."""
    if len(refs) != len(hyps):
        raise ValueError(f"refs and hyps differ in length ({len(refs)} vs {len(hyps)}); pair each reference "
                         "with one hypothesis")
    pairs = [(normalize_words(r), normalize_words(h)) for r, h in zip(refs, hyps)]
    return sum(word_edit_distance(r, h) for r, h in pairs) / max(1, sum(len(r) for r, _ in pairs))
