"""The sections of report.md, in notebook order, each read from the files the notebooks left under OUT.

A figure is shown with the caption and reading the notebook published beside it (``figures/<name>.json``, see
`figures.publish`) under the notebook its name starts with (``03_...``); the world's graders, the base model, the
per-preset KL / drift table and the audio clips (with the caption `notebook.play` saved: the text channel and
what the recogniser heard) get their own blocks. Every link is relative to OUT, so the report reads the same
wherever OUT is (``results/reference`` on GitHub included).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

FIGURE_COLUMNS_DIGITS = 4


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file's content, {} when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def frame_markdown(frame: pd.DataFrame, digits: int = 3) -> list[str]:
    """A DataFrame (its index as the first column) as Markdown table lines, floats rounded, NaN as "-"."""
    frame = frame.reset_index()
    counts = {c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])
              and bool((frame[c].dropna() % 1 == 0).all()) and frame[c].abs().max() >= 2}

    def cell(column: str, v: Any) -> str:
        if isinstance(v, float):
            return "-" if v != v else f"{v:.0f}" if column in counts else f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|---" * len(frame.columns) + "|"]
    return lines + ["| " + " | ".join(cell(c, v) for c, v in zip(frame.columns, row)) + " |"
                    for row in frame.itertuples(index=False)]


def notebook_title(out_dir: Path, name: str) -> str:
    """The first Markdown heading of the executed notebook ``notebooks/<name>``, else the file's stem."""
    path = out_dir / "notebooks" / name
    try:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for line in "".join(cell["source"]).splitlines():
                    if line.startswith("# "):
                        return line[2:].strip()
    except (OSError, json.JSONDecodeError, KeyError):
        pass
    return Path(name).stem


def notebook_table(out_dir: Path, notebooks: list[dict[str, Any]]) -> list[str]:
    """One row per notebook of the manifest: its title, a link to the executed notebook (when it is there)."""
    lines = ["| notebook | executed notebook | status | seconds |", "|---|---|---|---|"]
    for n in notebooks:
        path = out_dir / "notebooks" / n["name"]
        link = f"[{n['name']}](notebooks/{n['name']})" if path.is_file() else f"{n['name']} (not written)"
        lines.append(f"| {notebook_title(out_dir, n['name'])} | {link} | {n['status']} | {n['duration_s']:.0f} |")
    return lines


def figure_blocks(out_dir: Path, prefix: str | None) -> list[str]:
    """The figures whose name starts with ``prefix`` (None: those that start with no notebook number), each with
    its caption and reading; in the order the notebook saved them."""
    folder = out_dir / "figures"
    paths = sorted(folder.glob("*.png"), key=lambda p: (p.stat().st_mtime, p.name)) if folder.is_dir() else []
    lines = []
    for path in paths:
        number = path.stem[:2]
        if (prefix is None and number.isdigit() and path.stem[2:3] == "_") or (prefix and number != prefix):
            continue
        meta = read_json(path.with_suffix(".json"))
        caption = meta.get("caption") or path.stem
        lines += ["", f"![{path.stem}](figures/{path.name})", "", f"*Figure: {caption}*"]
        if meta.get("reading"):
            lines += ["", meta["reading"]]
    return lines


def world_block(out_dir: Path) -> list[str]:
    """The graders' held-out quality (``metrics/world_summary.json``) and the base models' held-out figures
    (``metrics/base_heldout.csv``), each table with its reading."""
    from wavalign_kit.takeaways import base_model_reading, quality_table, world_reading

    summary = read_json(out_dir / "metrics" / "world_summary.json")
    if not summary:
        return []
    lines = ["", "### How well the world's graders hear (held-out speech)", "",
             "Every speech-side metric is read through these models, so their error bounds what the later "
             "figures can show.", "", *frame_markdown(quality_table(summary).rename_axis("figure")), "",
             world_reading(summary)]
    heldout = out_dir / "metrics" / "base_heldout.csv"
    if heldout.is_file():
        frame = pd.read_csv(heldout, index_col=0)
        lines += ["", "### The base models on held-out questions", "", *frame_markdown(frame.rename_axis("architecture")),
                  "", base_model_reading(frame, summary)]
    return lines


def drift_block(out_dir: Path) -> list[str]:
    """Per preset: mean lambda and the median / mean over steps of the per-channel KL (GRPO) and of the chosen
    log-prob drop (DPO), from ``metrics/training_curves.csv``."""
    from wavalign_kit.curves import drift_table

    path = out_dir / "metrics" / "training_curves.csv"
    if not path.is_file():
        return []
    table = drift_table(pd.read_csv(path))
    return ["", "### How far each preset moved from the reference (per step, over all steps and seeds)", "",
            "`kl_*`: k3 KL to the reference on the sampled tokens (GRPO); `chosen_logp_drop_*`: how far DPO lowered "
            "the log-probability of its chosen responses (a different quantity). Medians resist single spiky steps.",
            "", *frame_markdown(table, FIGURE_COLUMNS_DIGITS)]


def claims_block(out_dir: Path) -> list[str]:
    """The paper's claims as paired contrasts between presets (``metrics/claims.csv`` of notebook 04): the verdict
    per claim and architecture, every contrast with its interval, and the reading."""
    from wavalign_kit.claims import claim_verdicts, read_claims
    from wavalign_kit.takeaways import claims_reading

    path = out_dir / "metrics" / "claims.csv"
    if not path.is_file():
        return []
    table = read_claims(path)
    return ["", "### The paper's claims (paired contrasts between presets, by item and seed)", "",
            "reproduced: the 95 % interval excludes 0 on the side the paper predicts; contradicted: on the other "
            "side; inconclusive: it includes 0. \"not worse\" (claim 3) is no detected deficit, not proof of "
            "equality.", "", *frame_markdown(claim_verdicts(table).set_index("architecture")), "",
            *frame_markdown(table.set_index("architecture")), "",
            claims_reading(table)]


def audio_block(out_dir: Path) -> list[str]:
    """Every clip once (identical files listed under the first), in the order they were written, with the caption
    saved beside it."""
    folder = out_dir / "audio"
    paths = sorted(folder.glob("*.wav"), key=lambda p: (p.stat().st_mtime, p.name)) if folder.is_dir() else []
    seen: dict[str, int] = {}
    lines: list[str] = []
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        caption = read_json(Path(f"{path}.json")).get("caption", "")
        if digest in seen:
            lines[seen[digest]] += f" (the same audio: [{path.stem}](audio/{path.name}))"
            continue
        seen[digest] = len(lines)
        lines.append(f"- [{path.stem}](audio/{path.name})" + (f": {caption}" if caption else ""))
    return ["", "## Listen", "", "Each clip with its caption (a model's answer: its text channel and what the "
            "recogniser heard in its speech channel). GitHub does not play audio inline: open a link to download "
            "it.", "", *lines] \
        if lines else []
