"""The JSONL record schema (the authors' public-code fields plus the kit's), its validator and loader.

One record per line:
- authors' fields: ``messages`` ([user, assistant]; the user content is ``<|audio|>`` for s2s or the question
  text for t2s), ``audios`` (user wav paths, relative to the JSONL's directory), ``sft_target_text``,
  ``sft_target_audio``, ``task_type`` ("s2s" / "t2s"), ``question_text``, and for preference pairs
  ``rejected_text`` / ``rejected_audio``;
- the kit's fields: ``id``, ``task``, ``template``, ``style``, ``answer``, ``check`` (and ``answer_seen``,
  ``rejected_style`` in kit worlds).
Two modes: a kit world (``kit=True``: every kit field, the kit's tasks and check types, 16 kHz audio) and a user's
own data (``kit=False``: the kit fields are optional, any task name and check type, audio at any sample rate).
Speech units are cached as ``units/<audio path>.npz`` next to the file (see units.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from wavalign_kit.speech import SAMPLE_RATE
from wavalign_kit.world.checks import check_problems
from wavalign_kit.world.templates import TASKS
from wavalign_kit.world.units import UNITS_DIR, load_units, units_path  # noqa: F401  (units_path re-exported)

AUDIO_PLACEHOLDER = "<|audio|>"
TASK_TYPES = ("s2s", "t2s")
KIT_FIELDS = ("id", "task", "template", "style", "answer")
AUTHOR_FIELDS = ("question_text", "sft_target_text")
OWN_TASK = "own"                 # the task name of a user's record that names none


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
    style: str                               # "" when a user's record names none
    answer: str
    check: dict[str, Any]                    # {} when a user's record carries none (see checks.has_kit_check)
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


def _check_audio(root: Path, value: Any, where: str, report, sample_rate: int | None) -> None:
    if not isinstance(value, str) or not value:
        report(where, f"expected a wav path relative to {root}, got {value!r}")
        return
    if Path(value).is_absolute() or ".." in Path(value).parts:
        report(where, f"audio path {value!r} must be relative to {root} and inside it (no '..')")
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
    if sample_rate is not None and info.samplerate != sample_rate:
        report(where, f"audio file {path} has sample rate {info.samplerate} Hz, expected {sample_rate} Hz")
    if info.frames <= 0:
        report(where, f"audio file {path} holds no samples")


def _check_strings(record: dict, names: tuple[str, ...], required: bool, report) -> None:
    for name in names:
        value = record.get(name)
        if name not in record:
            if required:
                report(name, "missing")
        elif not isinstance(value, str) or (name != "answer" and not value.strip()):
            report(name, f"expected a non-empty string, got {value!r}")


def validate_record(record: Any, root: Path, report, *, kit: bool = True,
                    sample_rate: int | None = SAMPLE_RATE) -> None:
    """Report (via ``report(field, message)``) every problem of one parsed record (``kit``: see the module doc)."""
    if not isinstance(record, dict):
        report("<record>", f"expected a JSON object, got {type(record).__name__}")
        return
    _check_strings(record, AUTHOR_FIELDS, True, report)
    _check_strings(record, KIT_FIELDS, kit, report)
    if kit and isinstance(record.get("task"), str) and record["task"] not in TASKS:
        report("task", f"unknown task {record['task']!r}; known: {list(TASKS)}")
    task_type = record.get("task_type")
    if task_type not in TASK_TYPES:
        report("task_type", f"unknown task type {task_type!r}; expected one of {list(TASK_TYPES)}")
    if kit or record.get("check") is not None:
        for fld, msg in check_problems(record.get("check"), kit_types_only=kit):
            report(fld, msg)

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
            _check_audio(root, a, f"audios[{i}]", report, sample_rate)
    _check_audio(root, record.get("sft_target_audio"), "sft_target_audio", report, sample_rate)

    has_text, has_audio = "rejected_text" in record, "rejected_audio" in record
    if has_text != has_audio:
        report("rejected_audio" if has_text else "rejected_text", "rejected_text and rejected_audio come together")
    if has_text and (not isinstance(record["rejected_text"], str) or not record["rejected_text"].strip()):
        report("rejected_text", f"expected a non-empty string, got {record['rejected_text']!r}")
    if has_audio:
        _check_audio(root, record["rejected_audio"], "rejected_audio", report, sample_rate)


def read_records(path: str | Path, *, kit: bool = True, sample_rate: int | None = SAMPLE_RATE) -> list[dict[str, Any]]:
    """Parse and validate a JSONL file; raises one SchemaError listing every problem in it (an empty file, a line
    that is not UTF-8 or not JSON, and every field problem of every record)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such JSONL file (build the world with `wavalign world`)")
    root = path.parent
    problems: list[Problem] = []
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for lineno, raw_bytes in enumerate(path.read_bytes().splitlines(), start=1):

        def report(fld: str, msg: str, lineno: int = lineno) -> None:
            problems.append(Problem(str(path), lineno, fld, msg))

        try:
            raw = raw_bytes.decode("utf-8")
        except UnicodeDecodeError as err:
            report("<encoding>", f"not valid UTF-8 (byte {err.start + 1} of the line: {raw_bytes[err.start:err.start + 1]!r}); "
                                 f"save the file as UTF-8")
            continue
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as err:
            report("<json>", f"malformed JSON ({err.msg} at column {err.colno})")
            continue
        validate_record(record, root, report, kit=kit, sample_rate=sample_rate)
        if isinstance(record, dict):
            rid = record.get("id")
            if isinstance(rid, str) and rid in seen:
                report("id", f"duplicate id {rid!r} (first on line {seen[rid]})")
            elif isinstance(rid, str):
                seen[rid] = lineno
            records.append(record)
    if not records and not problems:
        problems.append(Problem(str(path), 0, "<file>", "holds no records (an empty split); write at least one "
                                                       "JSON record per line, or rebuild the world"))
    if problems:
        raise SchemaError(problems)
    return records


def load_examples(path_jsonl: str | Path, *, codec=None, kit: bool = True,
                  sample_rate: int | None = SAMPLE_RATE) -> list[Example]:
    """Validate every record of a JSONL split (one SchemaError lists all problems), then load its Examples.

    Units come from ``units/`` next to the file; missing, corrupt or stale ones are (re-)encoded with ``codec``
    and cached (units.py). ``kit=False`` loads a user's own data: missing kit fields get defaults (id
    ``<file stem>-<record number>``, task ``"own"``, style ``""``, answer ``""``, check ``{}``); pass
    ``sample_rate=None`` to accept audio at any rate (resampled to the codec's rate when encoding).
    """
    path = Path(path_jsonl)
    root = path.parent
    examples = []
    for i, r in enumerate(read_records(path, kit=kit, sample_rate=sample_rate), start=1):
        audios = r["audios"]
        examples.append(Example(
            id=r.get("id", f"{path.stem}-{i:05d}"), task=r.get("task", OWN_TASK), task_type=r["task_type"],
            question_text=r["question_text"],
            prompt_units=load_units(root, audios[0], codec) if audios else None,
            target_text=r["sft_target_text"], target_units=load_units(root, r["sft_target_audio"], codec),
            style=r.get("style", ""), answer=r.get("answer", ""), check=r.get("check") or {},
            rejected_text=r.get("rejected_text"),
            rejected_units=load_units(root, r["rejected_audio"], codec) if "rejected_audio" in r else None,
            record=r))
    return examples
