"""A synthetic stand-in for a built world (spoken arithmetic, no synthesis, codec or trained evaluators): the
training engine's tests, the warm start's tests and the step benchmark run on it in seconds.

Every word is "spoken" as a fixed code of ``units_per_word`` speech units, so the stand-in's evaluators are exact:
the recogniser reads the code back into words, the style classifier hears every answer as neutral. Its rewards
are two 1..5 judge-like functions (`synthetic_reward`), whatever ``train.reward`` names.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wavalign_kit.rewards import CompositeReward
from wavalign_kit.world.schema import Example
from wavalign_kit.world.tasks import verify
from wavalign_kit.world.tokenizer import build_tokenizer

NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"]
WORDS = NUMBERS + ["what", "is", "plus", "the", "answer"]


def word_code(word: str, num_units: int, units_per_word: int) -> list[int]:
    """The fixed unit code of ``word``."""
    h = zlib.crc32(word.encode())
    return [(h >> (5 * k)) % num_units for k in range(units_per_word)]


@dataclass
class CodeRecognizer:
    """Reads unit sequences back into words by the word code (unknown codes read as "?")."""

    num_units: int
    units_per_word: int

    def transcribe(self, units_list) -> list[str]:
        code = {tuple(word_code(w, self.num_units, self.units_per_word)): w for w in WORDS}
        n = self.units_per_word
        return [" ".join(code.get(tuple(int(x) for x in u[i:i + n]), "?") for i in range(0, len(u) - n + 1, n))
                for u in units_list]


class NeutralStyle:
    """A style classifier that hears every utterance as neutral."""

    styles = ["neutral", "happy"]

    def predict_proba(self, units_list) -> np.ndarray:
        return np.tile([1.0, 0.0], (len(units_list), 1))

    def predict(self, units_list) -> list[str]:
        return ["neutral"] * len(units_list)


@dataclass
class SyntheticWorld:
    """Has what the trainer, the warm start and the evaluation read from a World: ``split(name)``,
    ``tokenizer``, ``codec`` (None: no audio), ``evaluators`` (recogniser, style), ``summary``."""

    tokenizer: Any
    num_units: int
    splits: dict[str, list[Example]]
    evaluators: Any = None
    codec: Any = None
    summary: dict[str, Any] = field(default_factory=dict)
    root: str = "synthetic"

    def split(self, name: str) -> list[Example]:
        if name not in self.splits:
            raise ValueError(f"split={name!r}: the synthetic world has {sorted(self.splits)}")
        return self.splits[name]

    def build_reward(self, spec: Any) -> CompositeReward:
        """The synthetic world scores with its own two judges whatever ``train.reward`` names."""
        return synthetic_reward()


def _example(rng: np.random.Generator, i: int, num_units: int, units_per_word: int) -> Example:
    a, b = (int(x) for x in rng.integers(0, 10, 2))
    wrong = (a + b + 1 + int(rng.integers(0, 3))) % len(NUMBERS)
    question = f"what is {NUMBERS[a]} plus {NUMBERS[b]}"
    target = f"{NUMBERS[a]} plus {NUMBERS[b]} is {NUMBERS[a + b]}"
    rejected = f"the answer is {NUMBERS[wrong]}"

    def units(text: str) -> np.ndarray:
        return np.array([u for w in text.split() for u in word_code(w, num_units, units_per_word)], dtype=np.int64)

    return Example(id=f"syn-{i:05d}", task="arithmetic", task_type="t2s", question_text=question, prompt_units=None,
                   target_text=target, target_units=units(target), style="neutral", answer=NUMBERS[a + b],
                   check={"type": "number", "answer": NUMBERS[a + b]}, rejected_text=rejected,
                   rejected_units=units(rejected))


def synthetic_world(size: int = 64, num_units: int = 64, units_per_word: int = 4, seed: int = 0) -> SyntheticWorld:
    """``size`` train examples (and size // 4 rl / valid / test) of spoken arithmetic with word-coded units."""
    rng = np.random.default_rng(seed)
    n_eval = max(1, size // 4)
    splits = {name: [_example(rng, i, num_units, units_per_word) for i in range(n)]
              for name, n in (("train", size), ("rl", n_eval), ("valid", n_eval), ("test", n_eval))}
    evaluators = type("SyntheticEvaluators", (), {})()
    evaluators.recognizer, evaluators.style = CodeRecognizer(num_units, units_per_word), NeutralStyle()
    return SyntheticWorld(build_tokenizer(WORDS, num_units), num_units, splits, evaluators)


class AnswerJudge:
    """Semantic 1..5 score: 5 when the text channel states the right sum, else 1 + 2 * (share of question words
    echoed), so rewards vary inside a group even for an untrained model."""

    name, channel, needs_audio, score_range = "answer_judge", "semantic", False, (1.0, 5.0)

    def __call__(self, prompts, completions) -> list[float]:
        out = []
        for ex, c in zip(prompts, completions):
            words = set(ex.question_text.split())
            echo = len(words & set(c.text.split())) / len(words)
            out.append(5.0 if verify(ex, c.text) else 1.0 + 2.0 * echo)
        return out


class LengthJudge:
    """Acoustic 1..5 score: 5 when the speech has as many units as the target, falling linearly with the gap."""

    name, channel, needs_audio, score_range = "length_judge", "acoustic", False, (1.0, 5.0)

    def __call__(self, prompts, completions) -> list[float]:
        out = []
        for ex, c in zip(prompts, completions):
            gap = abs(len(c.units) - len(ex.target_units)) / max(1, len(ex.target_units))
            out.append(float(1.0 + 4.0 * max(0.0, 1.0 - gap)))
        return out


def synthetic_reward() -> CompositeReward:
    """AnswerJudge + LengthJudge, weights 0.5 each (a 1..5 total)."""
    return CompositeReward([(AnswerJudge(), 0.5), (LengthJudge(), 0.5)])
