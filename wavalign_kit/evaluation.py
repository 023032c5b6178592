"""Held-out evaluation of spoken dialogue models: IQ, EQ and acoustic integrity (DESIGN.md section 7).

Every figure comes from the world's *examiners* (a recogniser, style classifier and unit LM trained on other
synthesised speech with other seeds, never used for a reward); the reward models' own reading of the same
responses is kept beside them (``rm_*``), and a gap between the two is a reward-hacking signal.
Per generated response (``num_samples`` per test example; NaN where a metric does not apply):

- ``iq_text``: the world's task verifier on the text channel, in {0, 1};
- ``iq_unseen``: ``iq_text`` on items whose target answer never appeared as a training target (``answer_seen``
  false): held-out content, not only held-out wording;
- ``iq_speech``: the verifier on the recogniser's transcript of the speech units ("ASR mode"), in {0, 1};
- ``eq_style``: on style-request items only, the style classifier's top style equals the requested style;
- ``neutral_adherence``: on neutral items only, the classifier hears the neutral style;
- ``eq_style_prob``: on style-request items, classifier probability of the target style times (1 - WER), WER
  clipped to [0, 1] (how public EQ benchmarks combine an emotion classifier with ASR);
- ``prosody_match``: speaking-rate match. The rate of a response is its speech units per word of its text
  channel (units are fixed-rate frames, so this is seconds per word up to the codec's frame rate). The
  reference rate of a style is the median rate of the *target* responses of that style in the evaluated set
  (synthesised by the world in that style). ``prosody_match = max(0, 1 - |rate - ref| / ref)``; NaN when the
  text channel is empty. It measures tempo only, not pitch or energy;
- ``wer``: word error rate between the text channel and the recognised speech (lower is better);
- ``naturalness``: the unit LM's mean log-likelihood per unit (higher is better).

A user's data without evaluators has no examiners: its speech metrics are NaN, ``iq_*`` come from the kit's
checks where items carry them, and ``judge`` / ``judge/<name>`` hold the training reward's (``train.reward``)
scores of every response, said as such in the reports (`graders`).
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wavalign_kit.config import ConfigError, from_dict, load_profile

METRICS = ("iq_text", "iq_unseen", "iq_speech", "eq_style", "eq_style_prob", "neutral_adherence", "prosody_match",
           "wer", "naturalness")
SUMMARY_METRICS = ("iq_text", "iq_unseen", "iq_speech", "eq_style", "neutral_adherence", "wer", "naturalness")
REWARD_MODEL_METRICS = ("iq_speech", "eq_style", "neutral_adherence", "wer", "naturalness")
NEUTRAL = "neutral"


@dataclass
class EvalConfig:
    """The profile's ``eval`` section."""

    num_examples: int = 0            # test examples evaluated (0 = the whole test split)
    num_samples: int = 1             # responses sampled per example
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 0          # 0 = 1.5x the longest target response + 8
    audio_samples: int = 2           # before/after audio files written per model by the notebooks


def speaking_rate(text: str, units: np.ndarray) -> float:
    """Speech units per word of the text channel (NaN without words)."""
    words = len(text.split())
    return float(len(units)) / words if words else float("nan")


def style_reference_rates(examples: Sequence[Any]) -> dict[str, float]:
    """Median speaking rate of the target responses, per target style."""
    rates: dict[str, list[float]] = {}
    for ex in examples:
        r = speaking_rate(ex.target_text, ex.target_units)
        if np.isfinite(r):
            rates.setdefault(ex.style, []).append(r)
    return {style: float(np.median(v)) for style, v in rates.items()}


def prosody_match(rate: float, reference: float) -> float:
    """1 - relative speaking-rate error, floored at 0; NaN when either rate is undefined."""
    if not (np.isfinite(rate) and np.isfinite(reference)) or reference <= 0:
        return float("nan")
    return max(0.0, 1.0 - abs(rate - reference) / reference)


def score_responses(examples: Sequence[Any], texts: Sequence[str], units: Sequence[np.ndarray],
                    evaluators: Any, *, reference_rates: dict[str, float] | None = None) -> pd.DataFrame:
    """Score one response per row (``examples[i]`` is the prompt of ``texts[i]`` / ``units[i]``)."""
    from wavalign_kit.evaluators import word_error_rate
    from wavalign_kit.world.checks import has_kit_check, verify

    if not (len(examples) == len(texts) == len(units)):
        raise ValueError(f"score_responses: examples ({len(examples)}), texts ({len(texts)}) and units "
                         f"({len(units)}) must have one entry per response")
    units = [np.asarray(u, dtype=np.int64) for u in units]
    reference_rates = style_reference_rates(examples) if reference_rates is None else reference_rates
    nan = float("nan")
    if evaluators is None:                       # a user's data without evaluators: no speech metrics
        return pd.DataFrame([{**_text_scores(ex, text, u, reference_rates), "transcript": "", "heard_style": "",
                              "iq_speech": nan, "eq_style": nan, "eq_style_prob": nan, "neutral_adherence": nan,
                              "wer": nan, "naturalness": nan} for ex, text, u in zip(examples, texts, units)])
    transcripts = evaluators.recognizer.transcribe(units)
    styles = list(evaluators.style.styles)
    proba = np.asarray(evaluators.style.predict_proba(units), dtype=np.float64)
    naturalness = np.asarray(evaluators.unit_lm.score(units), dtype=np.float64)
    rows = []
    for i, (ex, text, u, heard) in enumerate(zip(examples, texts, units, transcripts)):
        if ex.style and ex.style not in styles:
            raise ValueError(f"example {ex.id}: target style {ex.style!r} unknown to the style classifier {styles}")
        wer = float(word_error_rate(text, heard))
        heard_style = styles[int(np.argmax(proba[i]))] if len(u) else ""      # no speech: no style heard
        request = bool(ex.style) and ex.style != NEUTRAL
        rows.append({
            **_text_scores(ex, text, u, reference_rates), "transcript": heard, "heard_style": heard_style,
            "iq_speech": float(verify(ex, heard)) if has_kit_check(ex) else nan,
            "eq_style": float(heard_style == ex.style) if request else nan,
            "eq_style_prob": float(proba[i, styles.index(ex.style)]) * (1.0 - min(1.0, wer)) if request else nan,
            "neutral_adherence": float(heard_style == NEUTRAL) if ex.style == NEUTRAL else nan,
            "wer": wer, "naturalness": float(naturalness[i]) if len(u) else nan,
        })
    return pd.DataFrame(rows)


def _text_scores(ex: Any, text: str, units: np.ndarray, reference_rates: dict[str, float]) -> dict[str, Any]:
    """The columns of a response that need no evaluator: its item, the verifier on its text, its tempo."""
    from wavalign_kit.world.checks import has_kit_check, verify

    nan = float("nan")
    iq_text = float(verify(ex, text)) if has_kit_check(ex) else nan
    seen = (getattr(ex, "record", None) or {}).get("answer_seen")
    return {"example_id": ex.id, "task": ex.task, "style": ex.style, "answer_seen": seen, "text": text,
            "iq_text": iq_text, "iq_unseen": iq_text if seen is False else nan,
            "prosody_match": prosody_match(speaking_rate(text, units), reference_rates.get(ex.style, nan)),
            "speaking_rate": speaking_rate(text, units), "num_units": len(units), "num_words": len(text.split())}


def judge_columns(frame: pd.DataFrame) -> list[str]:
    """The ``judge`` / ``judge/<name>`` columns of a response frame graded by a judge (`graders`)."""
    return [c for c in frame.columns if c == "judge" or c.startswith("judge/")]


def aggregate(frame: pd.DataFrame) -> dict[str, float]:
    """Mean of every metric over responses (NaNs ignored), plus the counts."""
    out = {m: float(frame[m].mean()) if len(frame) else float("nan") for m in (*METRICS, *judge_columns(frame))}
    out["num_responses"] = len(frame)
    out["num_examples"] = int(frame["example_id"].nunique()) if len(frame) else 0
    return out


def evaluate(model: Any, examples: Sequence[Any], examiners: Any, codec: Any = None, *, num_samples: int = 1,
             sampling: Any = None, seed: int = 0, max_new_tokens: int | None = None, batch_size: int = 32,
             reward_models: Any = None, judge: Any = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Sample ``num_samples`` responses per example and score them with the ``examiners``.

    Returns the per-response frame (columns: example_id, sample, task, style, answer_seen, the metrics of the module
    docstring, text, transcript; with ``reward_models``, their reading as ``rm_<metric>``; with a ``judge`` (a
    `CompositeReward`), its total as ``judge`` and each function as ``judge/<name>``) and the aggregate (metric
    means). ``codec`` decodes speech for a judge that needs audio; the embedded evaluators read units directly."""
    import torch
    from tqdm.auto import tqdm

    from wavalign_kit.models.sampling import Sampling
    from wavalign_kit.rewards.base import score_responses as score_with

    if not examples:
        raise ValueError("evaluate: examples is empty; pass the world's test split")
    if num_samples < 1:
        raise ValueError(f"evaluate: num_samples must be >= 1, got {num_samples}")
    sampling = sampling or Sampling()
    if max_new_tokens is None or max_new_tokens <= 0:
        longest = max(len(model.encode_response(ex.target_text, ex.target_units)) for ex in examples)
        max_new_tokens = int(1.5 * longest) + 8
    refs = style_reference_rates(examples)
    frames = []
    was_training = model.model.training
    model.model.eval()
    try:
        for start in tqdm(range(0, len(examples), batch_size), desc="evaluate", leave=False):
            chunk = list(examples[start:start + batch_size])
            with torch.no_grad():
                rollout = model.generate(chunk, num_samples=num_samples, text_sampling=sampling,
                                         speech_sampling=sampling, max_new_tokens=max_new_tokens,
                                         seed=seed + start)
            prompts = [chunk[i] for i in rollout.prompt_index]
            frame = score_responses(prompts, rollout.texts, rollout.units, examiners, reference_rates=refs)
            frame.insert(1, "sample", [j % num_samples for j in range(len(frame))])
            if reward_models is not None:
                read = score_responses(prompts, rollout.texts, rollout.units, reward_models, reference_rates=refs)
                frame = frame.assign(**{f"rm_{m}": read[m].to_numpy() for m in REWARD_MODEL_METRICS})
            if judge is not None:
                scored = score_with(judge, prompts, rollout.texts, rollout.units, codec)
                frame = frame.assign(judge=scored.total, **{f"judge/{k}": v for k, v in scored.components.items()})
            frames.append(frame)
    finally:
        model.model.train(was_training)
    frame = pd.concat(frames, ignore_index=True)
    return frame, aggregate(frame)


def examiners_of(world: Any) -> tuple[Any, str]:
    """The evaluators that grade a world's test split: its examiners, or (a world without them, e.g. a user's
    data) its reward models, said in the label so reports can tell; None when it has neither."""
    examiners = getattr(world, "examiners", None)
    if examiners is not None:
        return examiners, "examiners"
    evaluators = getattr(world, "evaluators", None)
    return evaluators, "reward models (no examiners)" if evaluators is not None else "the judge (no evaluators)"


def graders(world: Any, profile: dict[str, Any]) -> tuple[Any, Any, str]:
    """(examiners, judge, label) of `evaluate_seed`: a world without evaluators (a user's data) is graded by the
    profile's training reward ``train.reward`` (its ``judge`` columns); a world with them needs no judge."""
    examiners, label = examiners_of(world)
    if examiners is not None:
        return examiners, None, label
    from wavalign_kit.rewards import training_reward
    from wavalign_kit.train.config import TrainConfig

    return None, training_reward(from_dict(TrainConfig, profile.get("train") or {}, "train"), world), label


def eval_config(profile: str | dict) -> EvalConfig:
    """The ``eval`` section of a profile (name, path or already-loaded dict)."""
    cfg = load_profile(profile) if isinstance(profile, (str, Path)) else profile
    return from_dict(EvalConfig, cfg.get("eval"), "eval")


def test_items(world: Any, cfg: EvalConfig) -> list[Any]:
    """The test split, or its first ``cfg.num_examples`` items."""
    test = world.split("test")
    return test[: cfg.num_examples] if cfg.num_examples else test


def evaluate_seed(model: Any, name: str, world: Any, cfg: EvalConfig, seed: int, *, judge: Any = None,
                  **labels: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    """One model under one sampling seed on the world's test split, graded by its examiners (and read by its
    reward models when they differ; scored by ``judge`` too when given, see `graders`): (a row of metric means,
    the labelled per-response frame)."""
    import torch

    from wavalign_kit.models.sampling import Sampling

    examiners, _ = examiners_of(world)
    torch.manual_seed(seed)
    codec = getattr(model, "codec", None) or world.codec      # a real model's own codec (models.codec) first
    frame, agg = evaluate(model, test_items(world, cfg), examiners, codec, num_samples=cfg.num_samples,
                          sampling=Sampling(temperature=cfg.temperature, top_p=cfg.top_p), seed=seed,
                          max_new_tokens=cfg.max_new_tokens or None,
                          reward_models=None if examiners is world.evaluators else world.evaluators, judge=judge)
    return {**labels, "model": name, "seed": seed, **agg}, frame.assign(**labels, model=name, seed=seed)


def write_results(out: Path, rows: list[dict[str, Any]], responses: list[pd.DataFrame], cfg: EvalConfig,
                  graded_by: str) -> dict[str, Any]:
    """evaluation.csv (a row per model and seed), responses.csv (a row per response) and summary.json (means,
    intervals and paired differences vs the base model, `results.summarize`) under ``out``; returns the summary."""
    from wavalign_kit.files import write_json
    from wavalign_kit.results import summarize

    out.mkdir(parents=True, exist_ok=True)
    frame = pd.concat(responses, ignore_index=True)
    pd.DataFrame(rows).to_csv(out / "evaluation.csv", index=False)
    frame.to_csv(out / "responses.csv", index=False, quoting=csv.QUOTE_NONNUMERIC)  # transcripts hold commas, quotes
    summary = {**summarize(frame, [*METRICS, *judge_columns(frame)]), "eval": asdict(cfg), "graded_by": graded_by}
    write_json(out / "summary.json", summary)
    return summary


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="wavalign evaluate", description="Evaluate checkpoints on a world's test split.")
    ap.add_argument("checkpoints", nargs="+", type=Path, help="model dirs (the kit's or your own) or training runs (their latest checkpoint-*)")
    ap.add_argument("--world", required=True, type=Path, help="a built world (`wavalign world`) or your own data")
    ap.add_argument("--profile", default="smoke", help="profile whose `eval` section sets the sizes")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="profile keys, e.g. models.layout=glm4_voice models.codec=mypkg.codec:MyCodec eval.num_examples=50")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampling seeds (mean and std over them)")
    ap.add_argument("--names", nargs="+", help="one name per checkpoint for the tables (default: directory names; "
                                                "name one 'base' to get differences vs it)")
    ap.add_argument("--out", type=Path, required=True, help="writes evaluation.csv, responses.csv, summary.json")
    args = ap.parse_args(argv)
    from wavalign_kit.config import check_sections, deep_update, parse_overrides
    from wavalign_kit.results import summary_table
    from wavalign_kit.train.checkpoint import model_dir
    from wavalign_kit.workspace import load_model, open_world

    names = args.names or [c.name for c in args.checkpoints]
    if len(names) != len(args.checkpoints):
        raise ConfigError(f"--names gives {len(names)} names for {len(args.checkpoints)} checkpoints")
    profile = deep_update(load_profile(args.profile), parse_overrides(args.set))
    check_sections(profile, "--set")
    cfg = eval_config(profile)
    world = open_world(args.world, profile)
    _, judge, graded_by = graders(world, profile)
    rows, responses = [], []
    for name, ckpt in zip(names, args.checkpoints):
        model = load_model(model_dir(ckpt), profile)
        for seed in args.seeds:
            row, frame = evaluate_seed(model, name, world, cfg, seed, judge=judge)
            rows.append(row)
            responses.append(frame)
    summary = write_results(args.out, rows, responses, cfg, graded_by)
    print(summary_table(summary, [*SUMMARY_METRICS, *judge_columns(pd.concat(responses))]).to_string())
    return 0
