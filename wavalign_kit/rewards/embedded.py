"""The embedded world's reward functions: verifiers and its evaluators (recogniser, style classifier, unit LM),
and simulated 1..5 judges built from them. They read speech units, so they need no audio.

Scores of the embedded rewards (all per completion):

- ``text_correct``:   verifier(example, text channel) in {0, 1}
- ``speech_correct``: verifier(example, recogniser transcript of the units) in {0, 1}
- ``semantic``:       (text_correct + speech_correct) / 2
- ``style``:          style-classifier probability of the example's target style, in [0, 1]
- ``consistency``:    clip(1 - WER(text channel, transcript), 0, 1)
- ``naturalness``:    clip((ll - floor) / (ref - floor), 0, 1), ll = unit-LM mean log-likelihood per unit;
  ``ref`` is the unit LM's mean on real (synthesised) speech -> 1, ``floor`` its mean on the same speech with
  its frames shuffled -> 0 (see `naturalness_calibration`).
- ``holistic`` (an audio judge's 1..5 score):
  1 + 4 * (0.5 * semantic + 0.25 * style + 0.25 * consistency) - naturalness_penalty * (1 - naturalness)
- ``semantic_judge``: 1 + 4 * semantic
- ``acoustic_judge``: 1 + 4 * (style + consistency + naturalness) / 3

The three judge scores are clipped to [1, 5] and can model an unreliable judge: ``noise_semantic`` /
``noise_acoustic`` add seeded Gaussian noise (std in score points) to the semantic / acoustic part before
clipping, and ``integer=True`` rounds to whole points like a real judge.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from wavalign_kit.rewards.base import Channel

Verifier = Callable[[Any, str], bool]


def _default_verifier() -> Verifier:
    from wavalign_kit.world.tasks import verify

    return verify


def require_evaluator(evaluators: Any, attr: str, reward: str) -> Any:
    value = getattr(evaluators, attr, None) if evaluators is not None else None
    if value is None:
        raise ValueError(
            f"reward {reward!r} needs evaluators.{attr}; pass the world's evaluators "
            f"(e.g. load_world(root).evaluators) to build_reward"
        )
    return value


class CachedRecognizer:
    """Wraps a recogniser so that rewards sharing it transcribe each distinct unit sequence once."""

    def __init__(self, recognizer: Any, max_entries: int = 4096):
        self.recognizer = recognizer
        self.max_entries = max_entries
        self._cache: dict[bytes, str] = {}

    @staticmethod
    def _key(units: np.ndarray) -> bytes:
        arr = np.ascontiguousarray(np.asarray(units, dtype=np.int64))
        return hashlib.blake2b(arr.tobytes() + str(arr.shape).encode(), digest_size=16).digest()

    def transcribe(self, units_list: Sequence[np.ndarray]) -> list[str]:
        keys = [self._key(u) for u in units_list]
        missing = {k: u for k, u in zip(keys, units_list) if k not in self._cache}
        if missing:
            if len(self._cache) + len(missing) > self.max_entries:
                self._cache.clear()
            texts = self.recognizer.transcribe(list(missing.values()))
            self._cache.update(zip(missing.keys(), texts))
        return [self._cache[k] for k in keys]


class TextCorrect:
    """Task verifier on the text channel: 1.0 when the example's check passes, else 0.0."""

    name, channel, needs_audio = "text_correct", "semantic", False
    score_range = (0.0, 1.0)

    def __init__(self, verifier: Verifier | None = None):
        self.verifier = verifier or _default_verifier()

    def __call__(self, prompts, completions):
        return [float(bool(self.verifier(ex, c.text))) for ex, c in zip(prompts, completions)]


class SpeechCorrect:
    """Task verifier on the recogniser's transcript of the speech units (the paper's "ASR mode")."""

    name, channel, needs_audio = "speech_correct", "semantic", False
    score_range = (0.0, 1.0)

    def __init__(self, recognizer: Any, verifier: Verifier | None = None):
        self.recognizer = recognizer
        self.verifier = verifier or _default_verifier()

    def __call__(self, prompts, completions):
        transcripts = self.recognizer.transcribe([c.units for c in completions])
        return [float(bool(self.verifier(ex, t))) for ex, t in zip(prompts, transcripts)]


class SemanticCorrect:
    """Mean of text-channel and speech-channel correctness, in {0, 0.5, 1}."""

    name, channel, needs_audio = "semantic", "semantic", False
    score_range = (0.0, 1.0)

    def __init__(self, recognizer: Any, verifier: Verifier | None = None):
        self.text = TextCorrect(verifier)
        self.speech = SpeechCorrect(recognizer, self.text.verifier)

    def __call__(self, prompts, completions):
        return list(0.5 * (np.array(self.text(prompts, completions)) + self.speech(prompts, completions)))


class StyleMatch:
    """Style-classifier probability of each example's target style."""

    name, channel, needs_audio = "style", "acoustic", False
    score_range = (0.0, 1.0)

    def __init__(self, classifier: Any):
        self.classifier = classifier

    def __call__(self, prompts, completions):
        styles = list(self.classifier.styles)
        unknown = sorted({ex.style for ex in prompts} - set(styles))
        if unknown:
            raise ValueError(f"style reward: target style(s) {unknown} unknown to the style classifier ({styles})")
        proba = np.asarray(self.classifier.predict_proba([c.units for c in completions]), dtype=np.float64)
        if proba.shape != (len(completions), len(styles)):
            raise ValueError(f"style reward: predict_proba returned shape {proba.shape}, "
                             f"expected {(len(completions), len(styles))}")
        return [float(proba[i, styles.index(ex.style)]) for i, ex in enumerate(prompts)]


class Consistency:
    """Text-speech consistency: clip(1 - WER(text channel, transcript of the speech), 0, 1)."""

    name, channel, needs_audio = "consistency", "acoustic", False
    score_range = (0.0, 1.0)

    def __init__(self, recognizer: Any, wer: Callable[[str, str], float] | None = None):
        if wer is None:
            from wavalign_kit.evaluators.wer import word_error_rate as wer
        self.recognizer = recognizer
        self.wer = wer

    def __call__(self, prompts, completions):
        transcripts = self.recognizer.transcribe([c.units for c in completions])
        return [float(np.clip(1.0 - self.wer(c.text, t), 0.0, 1.0)) for c, t in zip(completions, transcripts)]


class Naturalness:
    """Unit-LM naturalness: clip((ll - floor) / (ref - floor), 0, 1) with ll the mean log-likelihood per unit.

    ``ref``: the unit LM's mean on real speech (scores 1); ``floor``: its mean on frame-shuffled real speech
    (scores 0).  `naturalness_calibration` measures both."""

    name, channel, needs_audio = "naturalness", "acoustic", False
    score_range = (0.0, 1.0)

    def __init__(self, unit_lm: Any, ref: float, floor: float):
        if not (math.isfinite(ref) and math.isfinite(floor) and ref > floor):
            raise ValueError(f"naturalness calibration needs finite naturalness_ref > naturalness_floor, "
                             f"got ref={ref}, floor={floor}; measure them with naturalness_calibration()")
        self.unit_lm, self.ref, self.floor = unit_lm, float(ref), float(floor)

    def __call__(self, prompts, completions):
        ll = np.asarray(self.unit_lm.score([c.units for c in completions]), dtype=np.float64)
        return list(np.clip((ll - self.floor) / (self.ref - self.floor), 0.0, 1.0))


def naturalness_calibration(unit_lm: Any, real_units: Sequence[np.ndarray], seed: int = 0) -> dict[str, float]:
    """Reference figures for `Naturalness`: the unit LM's mean score on real speech units
    (``naturalness_ref``) and on the same units with their frames shuffled (``naturalness_floor``)."""
    if len(real_units) == 0:
        raise ValueError("naturalness_calibration: real_units is empty; pass held-out real speech units")
    rng = np.random.default_rng(seed)
    shuffled = [rng.permutation(np.asarray(u)) for u in real_units]
    return {"naturalness_ref": float(np.mean(unit_lm.score(list(real_units)))),
            "naturalness_floor": float(np.mean(unit_lm.score(shuffled)))}


class _JudgeScore:
    """A simulated 1..5 judge built from the embedded rewards (see the module docstring for the formulas)."""

    channel: Channel = "semantic"
    needs_audio = False
    score_range = (1.0, 5.0)
    noisy_parts: tuple[str, ...] = ("semantic", "acoustic")  # which noise stds this judge applies

    def __init__(self, *, integer: bool = False, noise_semantic: float = 0.0, noise_acoustic: float = 0.0,
                 seed: int = 0):
        if noise_semantic < 0 or noise_acoustic < 0:
            raise ValueError(f"{self.name}: noise_semantic / noise_acoustic must be >= 0, "
                             f"got {noise_semantic} / {noise_acoustic}")
        self.integer = integer
        self.noise_semantic, self.noise_acoustic = float(noise_semantic), float(noise_acoustic)
        self.rng = np.random.default_rng([seed, zlib.crc32(self.name.encode())])  # own stream per judge

    def _finish(self, semantic_part: np.ndarray, acoustic_part: np.ndarray) -> list[float]:
        score = 1.0 + semantic_part + acoustic_part
        if "semantic" in self.noisy_parts and self.noise_semantic > 0:
            score = score + self.rng.normal(0.0, self.noise_semantic, len(score))
        if "acoustic" in self.noisy_parts and self.noise_acoustic > 0:
            score = score + self.rng.normal(0.0, self.noise_acoustic, len(score))
        if self.integer:
            score = np.rint(score)
        return list(np.clip(score, 1.0, 5.0))


class Holistic(_JudgeScore):
    """1 + 4 * (0.5 * semantic + 0.25 * style + 0.25 * consistency) - naturalness_penalty * (1 - naturalness)."""

    name = "holistic"

    def __init__(self, semantic: SemanticCorrect, style: StyleMatch, consistency: Consistency,
                 naturalness: Naturalness, *, naturalness_penalty: float = 1.0, **judge):
        super().__init__(**judge)
        self.parts = (semantic, style, consistency, naturalness)
        self.naturalness_penalty = float(naturalness_penalty)

    def __call__(self, prompts, completions):
        sem, sty, con, nat = (np.array(f(prompts, completions), dtype=np.float64) for f in self.parts)
        acoustic = 4.0 * (0.25 * sty + 0.25 * con) - self.naturalness_penalty * (1.0 - nat)
        return self._finish(4.0 * 0.5 * sem, acoustic)


class SemanticJudge(_JudgeScore):
    """1 + 4 * semantic correctness."""

    name, noisy_parts = "semantic_judge", ("semantic",)

    def __init__(self, semantic: SemanticCorrect, **judge):
        super().__init__(**judge)
        self.semantic = semantic

    def __call__(self, prompts, completions):
        return self._finish(4.0 * np.array(self.semantic(prompts, completions)), np.zeros(len(completions)))


class AcousticJudge(_JudgeScore):
    """1 + 4 * (style + consistency + naturalness) / 3."""

    name, channel, noisy_parts = "acoustic_judge", "acoustic", ("acoustic",)

    def __init__(self, style: StyleMatch, consistency: Consistency, naturalness: Naturalness, **judge):
        super().__init__(**judge)
        self.parts = (style, consistency, naturalness)

    def __call__(self, prompts, completions):
        mean = np.mean([np.array(f(prompts, completions), dtype=np.float64) for f in self.parts], axis=0)
        return self._finish(np.zeros(len(completions)), 4.0 * mean)
