"""Reward functions on (prompts, completions) and their weighted composition (`build_reward`).

Every reward function shares one interface: ``fn(prompts, completions) -> list[float]`` plus three attributes,
``name``, ``channel`` ("semantic" rewards route to text tokens, "acoustic" ones to speech tokens) and
``needs_audio`` (the trainer decodes speech to audio only when some reward needs it).  The embedded world's
rewards read speech units through the evaluators (recogniser, style classifier, unit LM), so they need no
audio; the API judge (`judge_api.ApiJudge`) does.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from wavalign_kit.world import Example

Channel = Literal["semantic", "acoustic"]
Verifier = Callable[[Any, str], bool]


@dataclass
class Completion:
    """One sampled response: text channel, speech units and, when decoded, its audio at its true rate."""

    text: str
    units: np.ndarray
    audio: np.ndarray | None = None
    sample_rate: int = 16000


@runtime_checkable
class RewardFunction(Protocol):
    """What every reward function provides (see the module docstring)."""

    name: str
    channel: Channel
    needs_audio: bool

    def __call__(self, prompts: list[Example], completions: list[Completion]) -> list[float]: ...


@dataclass
class RewardResult:
    """Weighted rewards of a batch: ``total`` = sum of weight * component; ``semantic`` / ``acoustic`` are the
    same sums restricted to each channel's functions (for channel-routed advantages); ``failures`` counts
    calls that fell back to a default score (API judges), per function in ``failures_by_name``."""

    total: np.ndarray
    components: dict[str, np.ndarray]
    failures: int
    semantic: np.ndarray = field(default_factory=lambda: np.zeros(0))
    acoustic: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failures_by_name: dict[str, int] = field(default_factory=dict)


def _default_verifier() -> Verifier:
    from wavalign_kit.world.tasks import verify

    return verify


def _require(evaluators: Any, attr: str, reward: str) -> Any:
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

    def __init__(self, verifier: Verifier | None = None):
        self.verifier = verifier or _default_verifier()

    def __call__(self, prompts, completions):
        return [float(bool(self.verifier(ex, c.text))) for ex, c in zip(prompts, completions)]


class SpeechCorrect:
    """Task verifier on the recogniser's transcript of the speech units (the paper's "ASR mode")."""

    name, channel, needs_audio = "speech_correct", "semantic", False

    def __init__(self, recognizer: Any, verifier: Verifier | None = None):
        self.recognizer = recognizer
        self.verifier = verifier or _default_verifier()

    def __call__(self, prompts, completions):
        transcripts = self.recognizer.transcribe([c.units for c in completions])
        return [float(bool(self.verifier(ex, t))) for ex, t in zip(prompts, transcripts)]


class SemanticCorrect:
    """Mean of text-channel and speech-channel correctness, in {0, 0.5, 1}."""

    name, channel, needs_audio = "semantic", "semantic", False

    def __init__(self, recognizer: Any, verifier: Verifier | None = None):
        self.text = TextCorrect(verifier)
        self.speech = SpeechCorrect(recognizer, self.text.verifier)

    def __call__(self, prompts, completions):
        return list(0.5 * (np.array(self.text(prompts, completions)) + self.speech(prompts, completions)))


class StyleMatch:
    """Style-classifier probability of each example's target style."""

    name, channel, needs_audio = "style", "acoustic", False

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


class CompositeReward:
    """Weighted sum of reward functions; checks every function's output (length, NaN) and counts failures."""

    def __init__(self, items: list[tuple[RewardFunction, float]]):
        if not items:
            raise ValueError("CompositeReward needs at least one (reward function, weight) pair")
        names = [fn.name for fn, _ in items]
        if len(set(names)) != len(names):
            raise ValueError(f"CompositeReward: duplicate reward names {names}; give each function a unique name")
        for fn, w in items:
            if fn.channel not in ("semantic", "acoustic"):
                raise ValueError(f"reward {fn.name!r}: channel must be 'semantic' or 'acoustic', got {fn.channel!r}")
            if not math.isfinite(w):
                raise ValueError(f"reward {fn.name!r}: weight must be finite, got {w}")
        self.items = [(fn, float(w)) for fn, w in items]

    @property
    def needs_audio(self) -> bool:
        return any(fn.needs_audio for fn, _ in self.items)

    @property
    def names(self) -> list[str]:
        return [fn.name for fn, _ in self.items]

    def score(self, prompts: list[Example], completions: list[Completion]) -> RewardResult:
        if len(prompts) != len(completions):
            raise ValueError(f"reward: got {len(prompts)} prompts but {len(completions)} completions; "
                             "repeat each prompt once per completion")
        n = len(completions)
        if self.needs_audio:
            missing = [i for i, c in enumerate(completions) if c.audio is None]
            if missing:
                need = [fn.name for fn, _ in self.items if fn.needs_audio]
                raise ValueError(f"rewards {need} need decoded audio but completions {missing[:10]} have "
                                 "audio=None; decode the speech units when reward.needs_audio is True")
        components: dict[str, np.ndarray] = {}
        total, semantic, acoustic = np.zeros(n), np.zeros(n), np.zeros(n)
        failures_by_name: dict[str, int] = {}
        for fn, w in self.items:
            values = np.asarray(fn(prompts, completions), dtype=np.float64)
            if values.shape != (n,):
                raise ValueError(f"reward {fn.name!r} returned shape {values.shape} for {n} completions")
            if np.isnan(values).any():
                bad = np.flatnonzero(np.isnan(values))[:10].tolist()
                raise ValueError(f"reward {fn.name!r} returned NaN for completions {bad}")
            components[fn.name] = values
            total += w * values
            if fn.channel == "semantic":
                semantic += w * values
            else:
                acoustic += w * values
            failures_by_name[fn.name] = int(getattr(fn, "last_failures", 0))
        return RewardResult(total=total, components=components, failures=sum(failures_by_name.values()),
                            semantic=semantic, acoustic=acoustic, failures_by_name=failures_by_name)


JUDGE_OPTIONS = ("integer", "noise_semantic", "noise_acoustic", "seed")
KNOWN_REWARDS = ("text_correct", "speech_correct", "semantic", "style", "consistency", "naturalness",
                 "holistic", "semantic_judge", "acoustic_judge")


class _Factory:
    """Builds each named reward once, sharing one cached recogniser between them."""

    def __init__(self, evaluators: Any, calibration: dict[str, Any]):
        unknown = sorted(set(calibration) - {"naturalness_ref", "naturalness_floor", "naturalness_penalty",
                                             "verifier", "wer", *JUDGE_OPTIONS})
        if unknown:
            raise ValueError(f"build_reward: unknown keyword(s) {unknown}")
        self.evaluators, self.cal = evaluators, calibration
        self.built: dict[str, Any] = {}
        self._recognizer: CachedRecognizer | None = None

    def recognizer(self, reward: str) -> CachedRecognizer:
        if self._recognizer is None:
            self._recognizer = CachedRecognizer(_require(self.evaluators, "recognizer", reward))
        return self._recognizer

    def get(self, name: str) -> Any:
        if name not in self.built:
            self.built[name] = self._make(name)
        return self.built[name]

    def _make(self, name: str) -> Any:
        cal, verifier = self.cal, self.cal.get("verifier")
        judge = {k: cal[k] for k in JUDGE_OPTIONS if k in cal}
        if name == "text_correct":
            return TextCorrect(verifier)
        if name == "speech_correct":
            return SpeechCorrect(self.recognizer(name), verifier)
        if name == "semantic":
            return SemanticCorrect(self.recognizer(name), verifier)
        if name == "style":
            return StyleMatch(_require(self.evaluators, "style", name))
        if name == "consistency":
            return Consistency(self.recognizer(name), cal.get("wer"))
        if name == "naturalness":
            if "naturalness_ref" not in cal or "naturalness_floor" not in cal:
                raise ValueError("reward 'naturalness' needs naturalness_ref= and naturalness_floor= "
                                 "(build_reward(..., **naturalness_calibration(evaluators.unit_lm, real_units)))")
            return Naturalness(_require(self.evaluators, "unit_lm", name), cal["naturalness_ref"],
                               cal["naturalness_floor"])
        if name == "holistic":
            return Holistic(self.get("semantic"), self.get("style"), self.get("consistency"),
                            self.get("naturalness"), naturalness_penalty=cal.get("naturalness_penalty", 1.0),
                            **judge)
        if name == "semantic_judge":
            return SemanticJudge(self.get("semantic"), **judge)
        if name == "acoustic_judge":
            return AcousticJudge(self.get("style"), self.get("consistency"), self.get("naturalness"), **judge)
        raise ValueError(f"unknown reward {name!r}; known rewards: {', '.join(KNOWN_REWARDS)}")


JUDGE_KINDS = {"api_holistic": "holistic", "api_semantic": "semantic", "api_acoustic": "acoustic",
               "hf_judge": "holistic"}


def judge_from_options(name: str, options: dict[str, Any]) -> tuple[Any, float]:
    """A judge reward from a config entry, e.g. ``api_holistic: {base_url: ..., model: ..., weight: 1}`` (an
    OpenAI-compatible endpoint; key from the environment only) or ``hf_judge: {path: /models/judge}``."""
    if name not in JUDGE_KINDS:
        raise ValueError(f"reward {name!r}: options (a mapping) are only taken by the judges {sorted(JUDGE_KINDS)}")
    opts = dict(options)
    weight = float(opts.pop("weight", 1.0))
    if name == "hf_judge":
        from wavalign_kit.judge_hf import HFJudge

        if "path" not in opts:
            raise ValueError("reward 'hf_judge': needs path= (a local Hugging Face causal-LM directory)")
        return HFJudge(opts.pop("path"), **opts), weight
    from wavalign_kit.judge_api import ApiJudge, JudgeClient

    judge_keys = {"name", "max_workers", "default_score", "max_failure_share"}
    judge_opts = {k: opts.pop(k) for k in list(opts) if k in judge_keys}
    for key in ("base_url", "model"):
        if key not in opts:
            raise ValueError(f"reward {name!r}: needs {key}= (an OpenAI-compatible endpoint and its model name)")
    try:
        client = JudgeClient(**opts)
    except TypeError as e:
        raise ValueError(f"reward {name!r}: {e}") from None
    return ApiJudge(client, JUDGE_KINDS[name], **judge_opts), weight


def build_reward(spec: str | dict | list, evaluators: Any = None, **calibration: Any) -> CompositeReward:
    """Build a `CompositeReward` from ``"holistic"`` (one name, weight 1), ``{name: weight}`` or a list whose
    items are names, reward-function objects (e.g. an `ApiJudge`) or ``(name_or_function, weight)`` pairs.
    In a dict, a judge takes its options instead of a weight (`judge_from_options`), so a YAML config can say
    ``reward: {holistic: 1.0, api_acoustic: {base_url: http://localhost:8000/v1, model: judge, weight: 0.5}}``.

    ``calibration``: ``naturalness_ref`` / ``naturalness_floor`` (see `naturalness_calibration`),
    ``naturalness_penalty``; judge options ``integer``, ``noise_semantic``, ``noise_acoustic``, ``seed``;
    ``verifier`` / ``wer`` to replace the world's task verifier / WER function."""
    if isinstance(spec, str):
        entries: list[Any] = [(spec, 1.0)]
    elif isinstance(spec, dict):
        entries = list(spec.items())
    elif isinstance(spec, (list, tuple)):
        entries = [e if isinstance(e, tuple) else (e, 1.0) for e in spec]
    else:
        raise ValueError(f"build_reward: spec must be a name, a dict {{name: weight}} or a list, got {type(spec)}")
    factory = _Factory(evaluators, calibration)
    items = []
    for entry in entries:
        if len(entry) != 2:
            raise ValueError(f"build_reward: spec item {entry!r} must be a name, a function or (name, weight)")
        what, weight = entry
        if isinstance(what, str) and isinstance(weight, dict):
            what, weight = judge_from_options(what, weight)
        elif isinstance(what, str):
            what = factory.get(what)
        elif not isinstance(what, RewardFunction):
            raise ValueError(f"build_reward: spec item {what!r} is neither a reward name "
                             f"({', '.join(KNOWN_REWARDS)}) nor a reward function (name, channel, needs_audio)")
        items.append((what, float(weight)))
    return CompositeReward(items)
