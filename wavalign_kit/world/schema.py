"""The world's JSONL record schema (the authors' public-code fields plus the kit's), its validator and loader.

One record per line:
- authors' fields: ``messages`` ([user, assistant]; the user content is ``<|audio|>`` for s2s or the question
  text for t2s), ``audios`` (user wav paths, relative to the JSONL's directory), ``sft_target_text``,
  ``sft_target_audio``, ``task_type`` ("s2s" / "t2s"), ``question_text``, and for preference pairs
  ``rejected_text`` / ``rejected_audio``;
- the kit's fields: ``id``, ``task``, ``template``, ``style``, ``answer``, ``check``.
Speech units are cached next to the audio as ``units/<audio file stem>.npy`` (the world codec's units).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from wavalign_kit.speech import SAMPLE_RATE, read_wav
from wavalign_kit.world.tasks import CHECK_TYPES, TASKS

AUDIO_PLACEHOLDER = "<|audio|>"
TASK_TYPES = ("s2s", "t2s")
STRING_FIELDS = ("id", "task", "template", "style", "answer", "question_text", "sft_target_text")
UNITS_DIR = "units"


@dataclass
class Example:
    """One record of a split with its speech units loaded."""

    id: str
    task: str
    task_type: Literal["s2s", "t2s"]
    question_text: str
    prompt_units: np.ndarray | None          # user speech as units (s2s); None for t2s
    target_text: str
    target_units: np.ndarray
    style: str
    answer: str
    check: dict[str, Any]
    rejected_text: str | None = None
    rejected_units: np.ndarray | None = None
    record: dict[str, Any] = field(default_factory=dict)   # the raw JSONL record


@dataclass(frozen=True)
class Problem:
    """One schema violation: where it is and what is wrong."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class SchemaError(ValueError):
    """Every problem found in a JSONL file, each as ``file:line: field: message``."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        head = f"{len(problems)} schema problem(s); fix them or rebuild the world:"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))


def units_path(root: Path, audio: str) -> Path:
    """The cache file of the units of ``audio`` (a path relative to ``root``)."""
    return root / UNITS_DIR / (Path(audio).stem + ".npy")


def _check_audio(root: Path, value: Any, where: str, report) -> None:
    if not isinstance(value, str) or not value:
        report(where, f"expected a wav path relative to {root}, got {value!r}")
        return
    path = root / value
    if not path.is_file():
        report(where, f"audio file {path} does not exist")
        return
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        report(where, f"audio file {path} is unreadable or corrupt ({err})")
        return
    if info.samplerate != SAMPLE_RATE:
        report(where, f"audio file {path} has sample rate {info.samplerate} Hz, expected {SAMPLE_RATE} Hz")
    if info.frames <= 0:
        report(where, f"audio file {path} holds no samples")


def validate_record(record: Any, root: Path, report) -> None:
    """Report (via ``report(field, message)``) every problem of one parsed record."""
    if not isinstance(record, dict):
        report("<record>", f"expected a JSON object, got {type(record).__name__}")
        return
    for name in STRING_FIELDS:
        value = record.get(name)
        if name not in record:
            report(name, "missing")
        elif not isinstance(value, str) or (name != "answer" and not value.strip()):
            report(name, f"expected a non-empty string, got {value!r}")
    if record.get("task") not in (None, *TASKS) and isinstance(record.get("task"), str):
        report("task", f"unknown task {record['task']!r}; known: {list(TASKS)}")
    task_type = record.get("task_type")
    if task_type not in TASK_TYPES:
        report("task_type", f"unknown task type {task_type!r}; expected one of {list(TASK_TYPES)}")
    check = record.get("check")
    if not isinstance(check, dict) or check.get("type") not in CHECK_TYPES:
        report("check", f"expected an object with 'type' in {list(CHECK_TYPES)}, got {check!r}")

    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        report("messages", f"expected a non-empty list of {{role, content}} objects, got {messages!r}")
    else:
        for i, m in enumerate(messages):
            if not (isinstance(m, dict) and m.get("role") in ("user", "assistant", "system")
                    and isinstance(m.get("content"), str)):
                report(f"messages[{i}]", f"expected {{'role': user|assistant|system, 'content': str}}, got {m!r}")
        user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if not user:
            report("messages", "no user message")
        elif task_type == "s2s" and user[-1].get("content") != AUDIO_PLACEHOLDER:
            report("messages", f"an s2s user turn's content must be {AUDIO_PLACEHOLDER!r}")
        elif task_type == "t2s" and user[-1].get("content") != record.get("question_text"):
            report("messages", "a t2s user turn's content must be the question_text")

    audios = record.get("audios")
    if not isinstance(audios, list):
        report("audios", f"expected a list of wav paths, got {audios!r}")
    else:
        expected = 1 if task_type == "s2s" else 0
        if task_type in TASK_TYPES and len(audios) != expected:
            report("audios", f"a {task_type} record needs {expected} user audio file(s), got {len(audios)}")
        for i, a in enumerate(audios):
            _check_audio(root, a, f"audios[{i}]", report)
    _check_audio(root, record.get("sft_target_audio"), "sft_target_audio", report)

    has_text, has_audio = "rejected_text" in record, "rejected_audio" in record
    if has_text != has_audio:
        report("rejected_audio" if has_text else "rejected_text", "rejected_text and rejected_audio come together")
    if has_text and (not isinstance(record["rejected_text"], str) or not record["rejected_text"].strip()):
        report("rejected_text", f"expected a non-empty string, got {record['rejected_text']!r}")
    if has_audio:
        _check_audio(root, record["rejected_audio"], "rejected_audio", report)


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Parse and validate a JSONL file; raises one SchemaError listing every problem in it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such JSONL file (build the world with `wavalign world`)")
    root = path.parent
    problems: list[Problem] = []
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue

            def report(fld: str, msg: str, lineno: int = lineno) -> None:
                problems.append(Problem(str(path), lineno, fld, msg))

            try:
                record = json.loads(raw)
            except json.JSONDecodeError as err:
                report("<json>", f"malformed JSON ({err.msg} at column {err.colno})")
                continue
            validate_record(record, root, report)
            if isinstance(record, dict):
                rid = record.get("id")
                if isinstance(rid, str) and rid in seen:
                    report("id", f"duplicate id {rid!r} (first on line {seen[rid]})")
                elif isinstance(rid, str):
                    seen[rid] = lineno
                records.append(record)
    if problems:
        raise SchemaError(problems)
    return records


def load_units(root: Path, audio: str, codec=None) -> np.ndarray:
    """Units of ``audio`` from the cache; with a codec, encode and cache them when missing."""
    cache = units_path(root, audio)
    if cache.is_file():
        return np.load(cache)
    if codec is None:
        raise FileNotFoundError(f"no cached units {cache} for {root / audio}; pass codec= to encode them")
    units = np.asarray(codec.encode(read_wav(root / audio), SAMPLE_RATE), dtype=np.int64)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, units)
    tmp.replace(cache)
    return units


def load_examples(path_jsonl: str | Path, *, codec=None) -> list[Example]:
    """Validate every record of a JSONL split (one SchemaError lists all problems), then load its Examples.

    Units come from ``units/`` next to the file; missing ones are encoded with ``codec`` and cached.
    """
    path = Path(path_jsonl)
    root = path.parent
    examples = []
    for r in read_records(path):
        audios = r["audios"]
        examples.append(Example(
            id=r["id"], task=r["task"], task_type=r["task_type"], question_text=r["question_text"],
            prompt_units=load_units(root, audios[0], codec) if audios else None,
            target_text=r["sft_target_text"], target_units=load_units(root, r["sft_target_audio"], codec),
            style=r["style"], answer=r["answer"], check=r["check"], rejected_text=r.get("rejected_text"),
            rejected_units=load_units(root, r["rejected_audio"], codec) if "rejected_audio" in r else None,
            record=r))
    return examples
