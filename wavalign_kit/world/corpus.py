"""The world's corpus: JSONL records from task items, synthesised utterances, evaluator sentences, unit/text ratios.

A record pairs a user turn (speech for s2s, text for t2s) with the target response (text + speech in the target
style) and a rejected response (a plausible wrong answer, or the right answer in the wrong style), so that SFT,
offline DPO and RL all read the same file. Field names follow the authors' public training code (see schema.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from wavalign_kit.config import ConfigError
from wavalign_kit.speech import SAMPLE_RATE, Synthesizer, write_wav
from wavalign_kit.world.schema import AUDIO_PLACEHOLDER
from wavalign_kit.world.tasks import (
    DEFAULT_STYLE,
    PEOPLE,
    TASKS,
    TaskItem,
    generate_facts,
    generate_item,
    vocabulary,
)

# The task pool each split draws from: the valid split asks RL-pool questions, which the warm start never trains on.
SPLIT_POOLS = {"train": "train", "rl": "rl", "valid": "rl", "test": "test"}


def make_record(item: TaskItem, rid: str, task_type: str, audio: dict[str, str]) -> dict[str, Any]:
    """One JSONL record; ``audio`` maps "question" (s2s only), "target", "rejected" to paths relative to the world."""
    user = AUDIO_PLACEHOLDER if task_type == "s2s" else item.question
    return {
        "id": rid,
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": item.target_text}],
        "audios": [audio["question"]] if task_type == "s2s" else [],
        "sft_target_text": item.target_text,
        "sft_target_audio": audio["target"],
        "rejected_text": item.rejected_text,
        "rejected_audio": audio["rejected"],
        "task_type": task_type,
        "question_text": item.question,
        "task": item.task,
        "template": item.template,
        "style": item.style,
        "rejected_style": item.rejected_style,
        "answer": item.answer,
        "check": item.check,
    }


def seen_targets(records: dict[str, list[dict[str, Any]]]) -> dict[str, frozenset[str]]:
    """Per split, the target texts a model may have been trained on before that split is used: the train targets
    for train and rl (the warm start), the train and rl targets for valid and test."""
    train = frozenset(r["sft_target_text"] for r in records.get("train", []))
    trained = train | {r["sft_target_text"] for r in records.get("rl", [])}
    return {split: train if split in ("train", "rl") else trained for split in records}


def mark_answer_seen(records: dict[str, list[dict[str, Any]]]) -> None:
    """Set each record's kit field ``answer_seen``: its target text is verbatim one of ``seen_targets``."""
    seen = seen_targets(records)
    for split, recs in records.items():
        for r in recs:
            r["answer_seen"] = r["sft_target_text"] in seen[split]


def seen_shares(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Share of ``answer_seen`` records, overall and per task (the unseen ones measure generalisation)."""
    tasks = sorted({r["task"] for r in records})
    share = lambda rs: round(float(np.mean([r["answer_seen"] for r in rs])), 3) if rs else None  # noqa: E731
    return {"all": share(records), "per_task": {t: share([r for r in records if r["task"] == t]) for t in tasks}}


def render(synth: Synthesizer, text: str, style: str, rng: np.random.Generator, edge_silence: float) -> np.ndarray:
    """Synthesise ``text`` in ``style`` with jitter, with ``edge_silence`` seconds of silence on each side."""
    wav = synth.synthesize(text, style, rng)
    pad = np.zeros(int(round(edge_silence * SAMPLE_RATE)), dtype=np.float32)
    return np.concatenate([pad, wav, pad])


def synthesize_file(path: Path, synth: Synthesizer, text: str, style: str, rng: np.random.Generator,
                    edge_silence: float) -> int:
    """Render to a 16 kHz wav file at ``path``; returns its number of samples."""
    wav = render(synth, text, style, rng, edge_silence)
    write_wav(path, wav)
    return wav.size


def evaluator_sentences(rng: np.random.Generator, n: int, exclude: set[str]) -> list[str]:
    """``n`` distinct sentences over the world's vocabulary, none of them in ``exclude`` (the corpus targets).

    Half are task-like responses and questions about people with freshly drawn facts (so the recogniser hears
    the response grammar without learning the world's fact table), half are random word strings of 1..7 words
    (so that it learns every word, not a sentence prior).
    """
    words = vocabulary()
    out: list[str] = []
    seen = set(exclude)
    for _ in range(100 * n + 100):
        if len(out) == n:
            return out
        if rng.random() < 0.5:
            item = generate_item(rng, str(rng.choice(TASKS)), "train" if rng.random() < 0.5 else "test",
                                 generate_facts(rng, len(PEOPLE)))
            text = item.target_text if rng.random() < 0.6 else item.question
        else:
            text = " ".join(str(w) for w in rng.choice(words, size=int(rng.integers(1, 8))))
        if text not in seen:
            seen.add(text)
            out.append(text)
    raise ValueError(f"could not draw {n} distinct evaluator sentences outside the corpus; lower evaluator_utterances")


def text_tokens(text: str) -> int:
    """Text tokens of a response in the kit's layout: its words plus the text_end token."""
    return len(text.split()) + 1


def ratio_stats(ratios: Sequence[float], styles: Sequence[str], low: float = 4.0, high: float = 10.0) -> dict:
    """Distribution of speech units per text token over target responses, overall and per style."""
    r = np.asarray(ratios, dtype=np.float64)
    st = np.asarray(styles)
    if r.size == 0:
        return {"count": 0}
    q = np.percentile(r, [0, 5, 25, 50, 75, 95, 100])
    return {
        "count": int(r.size), "mean": float(r.mean()),
        "min": float(q[0]), "p05": float(q[1]), "p25": float(q[2]), "median": float(q[3]), "p75": float(q[4]),
        "p95": float(q[5]), "max": float(q[6]), "bounds": [low, high],
        "outside": int(((r < low) | (r > high)).sum()),
        "per_style": {s: {"count": int((st == s).sum()), "min": float(r[st == s].min()),
                          "mean": float(r[st == s].mean()), "max": float(r[st == s].max())}
                      for s in sorted(set(st.tolist()))},
        "histogram": {"edges": [float(e) for e in np.arange(0.0, 16.5, 1.0)],
                      "counts": np.histogram(np.clip(r, 0, 16), bins=np.arange(0.0, 16.5, 1.0))[0].tolist()},
    }


def synthesize_corpus(splits: dict[str, list[TaskItem]], facts: dict[str, dict[str, str]], out: Path,
                      synth: Synthesizer, rng: np.random.Generator, mode_rng: np.random.Generator, *,
                      frame_rate: float, ratio_bounds: Sequence[float], max_redraws: int, edge_silence: float,
                      s2s_fraction: float, avoid: dict[str, set[str]], progress: bool = True,
                      ) -> tuple[dict[str, list[dict]], list[tuple[str, str, str]], float, dict[str, int]]:
    """Synthesise every record's speech under ``out/audio`` and build its JSONL record.

    Each response (target and rejected) must have between ``ratio_bounds`` speech units per text token (units
    counted as the codec frames them at ``frame_rate``); while one falls outside, the task instance is redrawn
    (same task, same pool (``SPLIT_POOLS``), same requested style, questions outside ``avoid[split]`` where
    possible). ``splits`` is updated in place with the redrawn items. Returns (records per split, utterance jobs (wav path, text, style), seconds of speech, redraws
    per style).
    """
    hop = int(round(SAMPLE_RATE / frame_rate))          # samples per unit, as the codec frames them
    low, high = ratio_bounds
    seconds, redraws = 0.0, {}
    records: dict[str, list[dict]] = {}
    jobs: list[tuple[str, str, str]] = []
    bar = tqdm(total=sum(map(len, splits.values())), desc="synthesise corpus", disable=not progress, leave=False,
               mininterval=1.0)
    for split, items in splits.items():
        pool = SPLIT_POOLS[split]
        records[split] = []
        for i, item in enumerate(items):
            for attempt in range(max_redraws + 1):
                wavs = [render(synth, t, st, rng, edge_silence) for t, st in
                        ((item.target_text, item.style), (item.rejected_text, item.rejected_style))]
                ratios = [np.ceil(w.size / hop) / text_tokens(t)
                          for w, t in zip(wavs, (item.target_text, item.rejected_text))]
                if all(low <= r <= high for r in ratios):
                    break
                if attempt == max_redraws:
                    raise ConfigError(
                        f"world: {max_redraws} redraws of a {item.task} task in style {item.style!r} all gave speech "
                        f"outside {low}..{high} units per text token; change world.frame_rate, raise "
                        f"world.max_redraws or drop the style from world.styles")
                redraws[item.style] = redraws.get(item.style, 0) + 1
                item = generate_item(rng, item.task, pool, facts, [DEFAULT_STYLE, item.style],
                                     avoid=avoid.get(split, frozenset()))
            items[i] = item
            rid = f"{split}-{i:05d}"
            task_type = "s2s" if mode_rng.random() < s2s_fraction else "t2s"
            audio = {"target": f"audio/{rid}-target.wav", "rejected": f"audio/{rid}-rejected.wav"}
            for key, wav, text, style in (("target", wavs[0], item.target_text, item.style),
                                          ("rejected", wavs[1], item.rejected_text, item.rejected_style)):
                write_wav(out / audio[key], wav)
                jobs.append((audio[key], text, style))
                seconds += wav.size / SAMPLE_RATE
            if task_type == "s2s":
                audio["question"] = f"audio/{rid}-question.wav"
                n = synthesize_file(out / audio["question"], synth, item.question, DEFAULT_STYLE, rng, edge_silence)
                jobs.append((audio["question"], item.question, DEFAULT_STYLE))
                seconds += n / SAMPLE_RATE
            records[split].append(make_record(item, rid, task_type, audio))
            bar.update()
    bar.close()
    return records, jobs, seconds, redraws
