"""Writing the kit's text files: atomically (a reader never sees half a file) and JSON with NaN as null."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file, flushed to disk and renamed into place."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def json_ready(x: Any) -> Any:
    """``x`` with NaN/inf floats as None, numpy scalars as Python numbers and tuples as lists."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_ready(v) for v in x]
    if isinstance(x, np.generic):
        return json_ready(x.item())
    return x


def write_json(path: str | Path, data: Any) -> Path:
    """JSON (indented, NaN written as null), atomically."""
    return write_text_atomic(path, json.dumps(json_ready(data), indent=2, default=str) + "\n")
