"""`build_reward`: a `CompositeReward` from a config spec (names, weights, judge entries) over a world.

Names of the embedded world's rewards (`rewards.embedded`): ``text_correct``, ``speech_correct``, ``semantic``,
``style``, ``consistency``, ``naturalness``, ``holistic``, ``semantic_judge``, ``acoustic_judge``. Judge entries take
options instead of a weight: ``api_holistic`` / ``api_semantic`` / ``api_acoustic`` (an OpenAI-compatible endpoint,
`rewards.api`) and ``hf_judge`` (a local Hugging Face model, `rewards.hf`).

Your own reward, by import path (a name with a colon): ``reward: {"mypkg.rewards:MyReward": 1.0}`` (a weight) or
``{"mypkg.rewards:MyReward": {weight: 0.5, threshold: 3}}`` (constructor options; ``weight`` defaults to 1). The
object is a class or a factory, called with the options (plus ``world=`` when it takes a ``world`` argument), or
a ready reward function; it needs ``name``, ``channel`` ("semantic" | "acoustic"), ``needs_audio`` and
``__call__(prompts, completions) -> list[float]`` (optionally ``score_range`` and ``sample_rate``).
"""

from __future__ import annotations

from typing import Any

from wavalign_kit.rewards.base import CompositeReward, RewardFunction
from wavalign_kit.rewards.embedded import (
    AcousticJudge,
    CachedRecognizer,
    Consistency,
    Holistic,
    Naturalness,
    SemanticCorrect,
    SemanticJudge,
    SpeechCorrect,
    StyleMatch,
    TextCorrect,
    naturalness_calibration,
    require_evaluator,
)

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
            self._recognizer = CachedRecognizer(require_evaluator(self.evaluators, "recognizer", reward))
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
            return StyleMatch(require_evaluator(self.evaluators, "style", name))
        if name == "consistency":
            return Consistency(self.recognizer(name), cal.get("wer"))
        if name == "naturalness":
            if "naturalness_ref" not in cal or "naturalness_floor" not in cal:
                raise ValueError("reward 'naturalness' needs naturalness_ref= and naturalness_floor= "
                                 "(build_reward(..., **naturalness_calibration(evaluators.unit_lm, real_units)))")
            return Naturalness(require_evaluator(self.evaluators, "unit_lm", name), cal["naturalness_ref"],
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


# Config names of the judges and the rubric (`rewards.judges.JUDGE_KINDS`) each asks for.
JUDGE_ENTRIES = {"api_holistic": "holistic", "api_semantic": "semantic", "api_acoustic": "acoustic",
                 "hf_judge": "holistic"}
NEEDS_CALIBRATION = ("naturalness", "holistic", "acoustic_judge")


def judge_from_options(name: str, options: dict[str, Any]) -> tuple[Any, float]:
    """A judge reward from a config entry, e.g. ``api_holistic: {base_url: ..., model: ..., weight: 1}`` (an
    OpenAI-compatible endpoint; key from the environment only) or ``hf_judge: {path: /models/judge}``."""
    if name not in JUDGE_ENTRIES:
        raise ValueError(f"reward {name!r}: options (a mapping) are only taken by the judges {sorted(JUDGE_ENTRIES)}")
    opts = dict(options)
    weight = float(opts.pop("weight", 1.0))
    if name == "hf_judge":
        from wavalign_kit.rewards.hf import HFJudge

        if "path" not in opts:
            raise ValueError("reward 'hf_judge': needs path= (a local Hugging Face causal-LM directory)")
        return HFJudge(opts.pop("path"), **opts), weight
    from wavalign_kit.rewards.api import ApiJudge, JudgeClient

    judge_keys = {"name", "max_workers", "default_score"}
    judge_opts = {k: opts.pop(k) for k in list(opts) if k in judge_keys}
    for key in ("base_url", "model"):
        if key not in opts:
            raise ValueError(f"reward {name!r}: needs {key}= (an OpenAI-compatible endpoint and its model name)")
    try:
        client = JudgeClient(**opts)
    except TypeError as e:
        raise ValueError(f"reward {name!r}: {e}") from None
    return ApiJudge(client, JUDGE_ENTRIES[name], **judge_opts), weight


def import_reward(path: str, options: dict[str, Any] | None = None, world: Any = None) -> tuple[Any, float]:
    """A user's reward function by import path ``"package.module:Name"`` and its weight: ``Name`` called with the
    options (``weight`` taken out; ``world=`` given when it accepts one), or ``Name`` itself when it already is a
    reward function and no option is given."""
    import importlib
    import inspect

    opts = dict(options or {})
    weight = float(opts.pop("weight", 1.0))
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise ValueError(f"reward {path!r}: give an import path 'package.module:Name'")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except ImportError as err:
        raise ValueError(f"reward {path!r}: cannot import {module!r} ({err}); is it installed / on PYTHONPATH?") from None
    except AttributeError:
        raise ValueError(f"reward {path!r}: module {module!r} has no {attr!r}") from None
    if isinstance(obj, RewardFunction) and not inspect.isclass(obj) and not opts:
        return obj, weight
    if not callable(obj):
        raise ValueError(f"reward {path!r}: {attr!r} is neither a class, a factory nor a reward function")
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        params = {}
    if "world" in params:
        opts["world"] = world
    try:
        fn = obj(**opts)
    except TypeError as err:
        raise ValueError(f"reward {path!r}: {err} (options given: {sorted(opts)})") from None
    missing = [a for a in ("name", "channel", "needs_audio") if not hasattr(fn, a)] + ([] if callable(fn) else ["__call__"])
    if missing:
        raise ValueError(f"reward {path!r}: the object it made lacks {missing}; a reward function has name, channel "
                         "('semantic' | 'acoustic'), needs_audio and __call__(prompts, completions) -> list[float]")
    return fn, weight


def check_reward_spec(spec: Any, where: str = "train.reward") -> None:
    """ConfigError (with a suggestion) for a reward name that is neither an embedded reward, a judge entry nor an
    importable ``package.module:Name``; checked when a config is parsed, before any world or model loads."""
    import importlib

    from wavalign_kit.config import suggest
    from wavalign_kit.errors import ConfigError

    try:
        entries = _entries(spec)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    known = [*KNOWN_REWARDS, *JUDGE_ENTRIES]
    for name, _ in entries:
        if isinstance(name, str) and ":" in name:
            module, _, attr = name.partition(":")
            try:
                found = bool(module and attr) and hasattr(importlib.import_module(module), attr)
            except ImportError as err:
                raise ConfigError(f"{where}: reward {name!r}: cannot import {module!r} ({err}); is it installed / on "
                                  "PYTHONPATH?") from None
            if not found:
                raise ConfigError(f"{where}: reward {name!r}: give 'package.module:Name' naming an existing object")
        elif isinstance(name, str) and name not in known:
            raise ConfigError(f"{where}: unknown reward {name!r}{suggest(name, known)}; known: {', '.join(known)}")


def _entries(spec: str | dict | list) -> list[tuple[Any, Any]]:
    if isinstance(spec, str):
        return [(spec, 1.0)]
    if isinstance(spec, dict):
        return list(spec.items())
    if isinstance(spec, (list, tuple)):
        return [e if isinstance(e, tuple) else (e, 1.0) for e in spec]
    raise ValueError(f"build_reward: spec must be a name, a dict {{name: weight}} or a list, got {type(spec)}")


def world_calibration(world: Any, seed: int = 0) -> dict[str, float]:
    """The naturalness calibration of a world: from its summary, else measured on its valid split's targets."""
    summary = getattr(world, "summary", None) or {}
    if "naturalness_ref" in summary and "naturalness_floor" in summary:
        return {k: summary[k] for k in ("naturalness_ref", "naturalness_floor")}
    real = [e.target_units for e in world.split("valid")[:64]]
    return naturalness_calibration(world.evaluators.unit_lm, real, seed=seed)


def build_reward(spec: str | dict | list, world: Any = None, *, evaluators: Any = None,
                 **options: Any) -> CompositeReward:
    """Build a `CompositeReward` from ``"holistic"`` (one name, weight 1), ``{name: weight}`` or a list whose
    items are names, reward-function objects (e.g. an `ApiJudge`) or ``(name_or_function, weight)`` pairs.
    In a dict, a judge takes its options instead of a weight (`judge_from_options`), so a YAML config can say
    ``reward: {holistic: 1.0, api_acoustic: {base_url: http://localhost:8000/v1, model: judge, weight: 0.5}}``.

    ``world``: the world whose evaluators score the embedded rewards (and whose summary or valid split gives the
    naturalness calibration); a world with its own ``build_reward(spec)`` (e.g. the synthetic stand-in) builds
    its rewards itself. ``evaluators`` instead of a world: an evaluator bundle alone. ``options``:
    ``naturalness_ref`` / ``naturalness_floor`` (see `naturalness_calibration`), ``naturalness_penalty``; judge
    options ``integer``, ``noise_semantic``, ``noise_acoustic``, ``seed``; ``verifier`` / ``wer`` to replace the
    world's task verifier / WER function."""
    entries = _entries(spec)
    if world is not None and hasattr(world, "build_reward") and not any(":" in str(n) for n, _ in entries):
        return world.build_reward(spec)
    if world is not None:
        evaluators = world.evaluators
        names = {name for name, _ in entries if isinstance(name, str)}
        if names & set(NEEDS_CALIBRATION) and "naturalness_ref" not in options:
            options = {**world_calibration(world, options.get("seed", 0)), **options}
    factory = _Factory(evaluators, options)
    items = []
    for entry in entries:
        if len(entry) != 2:
            raise ValueError(f"build_reward: spec item {entry!r} must be a name, a function or (name, weight)")
        what, weight = entry
        if isinstance(what, str) and ":" in what:
            what, weight = import_reward(what, weight if isinstance(weight, dict) else {"weight": weight}, world)
        elif isinstance(what, str) and isinstance(weight, dict):
            what, weight = judge_from_options(what, weight)
        elif isinstance(what, str):
            what = factory.get(what)
        elif not isinstance(what, RewardFunction):
            raise ValueError(f"build_reward: spec item {what!r} is neither a reward name "
                             f"({', '.join(KNOWN_REWARDS)}) nor a reward function (name, channel, needs_audio)")
        items.append((what, float(weight)))
    return CompositeReward(items)


def training_reward(cfg: Any, world: Any) -> CompositeReward:
    """The reward of a training config over a world: ``cfg.reward`` with ``cfg.reward_options`` (judge options
    seeded by ``cfg.seed`` unless the options give a seed)."""
    return build_reward(cfg.reward, world, **{"seed": cfg.seed, **cfg.reward_options})
