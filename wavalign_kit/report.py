"""A run's summary.json, report.md and manifest.json, written from the files the notebooks left under OUT."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from wavalign_kit.evaluation import METRICS, SUMMARY_METRICS
from wavalign_kit.results import summarize, summary_table

RESPONSES_CSV = "metrics/responses.csv"
PACKAGES = ("wavalign-kit", "torch", "transformers", "peft", "accelerate", "papermill", "numpy", "pandas",
            "scikit-learn", "librosa", "espeakng-loader", "nbformat")


def write_summary(out_dir: Path) -> dict:
    """summary.json from ``metrics/responses.csv`` (one row per response, model and seed): per model and metric
    the mean, its interval and the paired difference from the base model (`results.summarize`)."""
    from wavalign_kit.files import write_json

    out_dir = Path(out_dir)
    path = out_dir / RESPONSES_CSV
    if path.is_file():
        import pandas as pd

        summary = summarize(pd.read_csv(path), list(METRICS))
    else:
        summary = {"models": {}, "note": f"no {RESPONSES_CSV} was written by the notebooks"}
    write_json(out_dir / "summary.json", summary)
    return summary


def _git_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    # no clean filter: nbstripout on every notebook made `git status` time out on a busy machine
    git = ["git", "-C", str(root), "-c", "filter.nbstripout.clean=cat", "-c", "filter.nbstripout.required=false"]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=60).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit or "unknown", "dirty": bool(dirty) if commit else None}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    if out["wavalign-kit"] == "not installed":
        import wavalign_kit

        out["wavalign-kit"] = f"{wavalign_kit.__version__} (source tree)"
    return out


def hardware() -> dict[str, Any]:
    """CPU model and count, and the GPU name(s) when CUDA is available."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "gpus": []}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return info


def write_manifest(out_dir: Path, params: dict, runs: list, *, started: dt.datetime) -> dict:
    """manifest.json: versions, git commit, parameters, seeds, hardware, per-notebook durations."""
    out_dir = Path(out_dir)
    manifest = {
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "profile": params.get("profile"),
        "seeds": params.get("seeds", [params.get("seed", 0)]),
        "git": _git_commit(),
        "versions": _versions(),
        "hardware": hardware(),
        "notebooks": [{"name": r.name, "status": r.status, "duration_s": round(r.duration_s, 2)} for r in runs],
        "total_notebook_s": round(sum(r.duration_s for r in runs), 2),
        "parameters": params,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def markdown_table(frame) -> list[str]:
    """A DataFrame (index = row names) as Markdown table lines."""
    lines = ["| model | " + " | ".join(frame.columns) + " |", "|---" * (len(frame.columns) + 1) + "|"]
    return lines + [f"| {name} | " + " | ".join(str(v) for v in row) + " |" for name, row in frame.iterrows()]


def results_table(summary: dict, *, delta: bool = False) -> list[str]:
    """Markdown rows: one per evaluated model, ``mean [95 % interval]`` per summary metric, or with ``delta`` the
    paired difference from the base model (`` *``: its interval excludes 0)."""
    if not summary.get("models"):
        return []
    return markdown_table(summary_table(summary, list(SUMMARY_METRICS), delta=delta))


def write_report(out_dir: Path, summary: dict) -> Path:
    """report.md: results table, every metrics file, figures inline, links to audio samples and notebooks."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text()) if (out_dir / "manifest.json").is_file() else {}
    seeds = summary.get("seeds", manifest.get("seeds", []))
    lines = [f"# wavalign-kit run: profile `{manifest.get('profile', '?')}`", ""]
    hw = manifest.get("hardware", {})
    if manifest:
        gpus = ", ".join(hw.get("gpus") or []) or "none"
        lines += [f"- finished {manifest['finished']}; notebooks took {manifest['total_notebook_s']:.0f} s",
                  f"- hardware: {hw.get('cpu')} ({hw.get('cpu_count')} cores), GPU: {gpus}",
                  f"- git commit: {manifest['git']['commit']}; seeds: {seeds}", ""]
    lines += [f"## Results (held-out test split, seeds {seeds}: mean [95 % bootstrap interval])", ""]
    if summary.get("models"):
        lines += results_table(summary)
        lines += ["", "### Difference from the base model (paired by item and seed; * = the interval excludes 0)",
                  "", *results_table(summary, delta=True)]
        lines += ["", "iq_text / iq_speech: task accuracy from the text channel / the recognised speech; iq_unseen: "
                  "iq_text on items whose answer no training target contains; eq_style: style accuracy on "
                  "style-request items; neutral_adherence: the neutral style kept on neutral items; wer: text "
                  "channel vs recognised speech (lower is better); naturalness: unit-LM mean log-likelihood per unit "
                  "(higher is better). Graded by the world's examiners, never used as rewards."]
    else:
        lines.append(summary.get("note", "no evaluation results"))

    def listing(title: str, sub: str, pattern: str, fmt: str) -> None:
        files = sorted((out_dir / sub).glob(pattern)) if (out_dir / sub).is_dir() else []
        if files:
            lines.extend(["", f"## {title}", ""])
            lines.extend(fmt.format(name=p.stem, path=f"{sub}/{p.name}") for p in files)

    listing("Metrics", "metrics", "*.csv", "- [{path}]({path})")
    listing("Metrics (JSON)", "metrics", "*.json", "- [{path}]({path})")
    listing("Figures", "figures", "*.png", "![{name}]({path})\n")
    listing("Audio samples", "audio", "*.wav", "- [{name}]({path})")
    if manifest.get("notebooks"):
        lines += ["", "## Notebooks", "", "| notebook | status | seconds |", "|---|---|---|"]
        lines += [f"| [{n['name']}](notebooks/{n['name']}) | {n['status']} | {n['duration_s']:.1f} |"
                  for n in manifest["notebooks"]]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
