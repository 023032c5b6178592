"""Secrets never land in a run's outputs: the environment's secret values, found and redacted in what a run wrote.

A secret is the value of an environment variable whose name contains KEY, TOKEN, SECRET or PASSWORD (values of
at least four characters). `redact_outputs` scans every text file a pipeline run writes (executed notebooks,
CSV, JSON, Markdown, YAML, logs) and every figure and audio file for each value and for its base64 encodings
(at any byte alignment, as a notebook's embedded image or a JSON blob would carry it); text files are redacted
in place, a binary file holding a secret is deleted. The caller reports what was found.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from wavalign_kit.files import write_text_atomic

SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
MIN_SECRET_LENGTH = 4
TEXT_SUFFIXES = {".ipynb", ".csv", ".json", ".jsonl", ".md", ".yaml", ".yml", ".txt", ".log", ".html", ".svg"}
BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".pdf", ".wav"}


def secret_values(env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables whose name contains KEY/TOKEN/SECRET/PASSWORD, name -> value (short values skipped)."""
    env = os.environ if env is None else env
    return {name: value for name, value in env.items()
            if any(m in name.upper() for m in SECRET_MARKERS) and len(value) >= MIN_SECRET_LENGTH}


def secret_forms(value: str) -> list[str]:
    """``value`` and the parts of its base64 encoding that appear whatever bytes surround it (three alignments)."""
    raw = value.encode()
    forms = [value]
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode()
        part = enc[(4 * k + 2) // 3: (8 * (k + len(raw))) // 6]
        if len(part) >= 8:
            forms.append(part)
    return forms


def redact_file(path: Path, secrets: dict[str, str]) -> list[str]:
    """Redact (text) or delete (binary) ``path`` when it holds a secret; returns the names of the secrets found."""
    data = path.read_bytes()
    forms = {name: secret_forms(value) for name, value in secrets.items()}
    found = {name: f for name, f in forms.items() if any(form.encode() in data for form in f)}
    if not found:
        return []
    if path.suffix.lower() in TEXT_SUFFIXES:
        text = data.decode("utf-8", errors="replace")
        for name, forms in found.items():
            for form in forms:
                text = text.replace(form, f"[REDACTED:{name}]")
        write_text_atomic(path, text)
    else:
        path.unlink()
    return sorted(found)


def redact_outputs(paths: list[Path], secrets: dict[str, str]) -> dict[str, list[str]]:
    """Scan the text, figure and audio files under ``paths`` (files or directories); returns {file: secret names}."""
    if not secrets:
        return {}
    leaks = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for f in files:
            if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES | BINARY_SUFFIXES:
                names = redact_file(f, secrets)
                if names:
                    leaks[str(f)] = names
    return leaks
