"""Integrity of a built world: the inventory that summary.json records, checked before a world is reused or loaded.

The inventory lists every file of the world with its size, except the bulk directories (``audio/``, ``units/``),
which are listed by their number of files. A world whose summary.json does not parse, or whose files are missing,
have another size or another count, is corrupted: it is reported as such, never reused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wavalign_kit.config import ConfigError

BULK_DIRS = ("audio", "units")
SUMMARY = "summary.json"


class CorruptWorldError(ConfigError):
    """A built world whose summary.json or files are damaged; the message lists what and how to rebuild."""


def inventory(root: Path, skip: tuple[str, ...] = (SUMMARY,)) -> dict[str, Any]:
    """{"files": {relative path: size}, "counts": {bulk dir: number of files}} of the world at ``root``."""
    root = Path(root)
    files: dict[str, int] = {}
    counts = {d: 0 for d in BULK_DIRS}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root)
        if rel.parts[0] in BULK_DIRS:
            counts[rel.parts[0]] += 1
        elif rel.as_posix() not in skip:
            files[rel.as_posix()] = p.stat().st_size
    return {"files": files, "counts": counts}


def read_summary(root: Path) -> dict[str, Any]:
    """The parsed summary.json of a world; CorruptWorldError naming the file when it does not parse."""
    path = Path(root) / SUMMARY
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptWorldError(f"{path} is corrupted ({err}): {root} holds a damaged world; rebuild it with "
                                f"`wavalign world --overwrite --out {root}` (removes the old files)") from None
    if not isinstance(summary, dict):
        raise CorruptWorldError(f"{path} is corrupted (a {type(summary).__name__}, not an object); rebuild it with "
                                f"`wavalign world --overwrite --out {root}`")
    return summary


def world_problems(root: Path, summary: dict[str, Any]) -> list[str]:
    """What differs between the world at ``root`` and the inventory in its summary (empty: intact)."""
    root = Path(root)
    recorded = summary.get("inventory")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("files"), dict):
        return [f"{root / SUMMARY} records no file inventory (a world built by an older kit)"]
    problems = []
    for rel, size in recorded["files"].items():
        path = root / rel
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif path.stat().st_size != size:
            problems.append(f"{path} has {path.stat().st_size} bytes, expected {size}")
    for name, count in (recorded.get("counts") or {}).items():
        found = sum(1 for p in (root / name).rglob("*") if p.is_file()) if (root / name).is_dir() else 0
        if found != count:
            problems.append(f"{root / name} holds {found} files, expected {count}")
    return problems


def check_world(root: Path, summary: dict[str, Any]) -> None:
    """Raise CorruptWorldError listing every problem of the world at ``root`` (see ``world_problems``)."""
    problems = world_problems(root, summary)
    if problems:
        shown = "\n".join(f"  {p}" for p in problems[:20]) + (f"\n  ... and {len(problems) - 20} more"
                                                                 if len(problems) > 20 else "")
        raise CorruptWorldError(f"{root} holds a corrupted world ({len(problems)} problem(s)):\n{shown}\n"
                                f"rebuild it with `wavalign world --overwrite --out {root}` (removes the old files)")
