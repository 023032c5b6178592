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


def _run_config(manifest: dict[str, Any]) -> dict[str, Any]:
    """The nested profile a run used, rebuilt from the manifest's flat notebook parameters."""
    params = manifest.get("parameters") or {}
    pipeline = {k: v for k, v in params.items() if k not in ("out_dir", "profile", "seed", "config")}
    return {"profile": params.get("profile"), "seed": params.get("seed"), **(params.get("config") or {}),
            "pipeline": pipeline}


def _results_block(out_dir: Path, summary: dict, seeds: list) -> list[str]:
    from wavalign_kit.report_sections import claims_block, read_json
    from wavalign_kit.takeaways import evaluation_reading

    lines = ["", f"### Results (held-out test split, seeds {seeds}: mean [95 % bootstrap interval])", ""]
    if not summary.get("models"):
        return lines + [summary.get("note", "no evaluation results")]
    lines += results_table(summary)
    lines += ["", "### Difference from the base model (paired by item and seed; * = the interval excludes 0)",
              "", *results_table(summary, delta=True)]
    lines += ["", "iq_text / iq_speech: task accuracy from the text channel / the recognised speech; iq_unseen: "
              "iq_text on items whose answer no training target contains; eq_style: style accuracy on "
              "style-request items; neutral_adherence: the neutral style kept on neutral items; wer: text "
              "channel vs recognised speech (lower is better); naturalness: unit-LM mean log-likelihood per unit "
              "(higher is better). Graded by the world's examiners when it has them, else by its reward models "
              "(`graded_by` in metrics/evaluation_summary.json).", "",
              evaluation_reading(summary, read_json(out_dir / "metrics" / "world_summary.json"))]
    return lines + claims_block(out_dir)


def write_report(out_dir: Path, summary: dict) -> Path:
    """report.md, in notebook order: the run, a table of the executed notebooks (linked), then per notebook its
    figures with caption and reading, the graders' quality and the base model (00), the per-preset drift table
    (03), the results with their intervals and reading (04), the audio clips, and the metrics files."""
    from wavalign_kit.config import load_profile
    from wavalign_kit.notebook import REFERENCE_PROFILE, pipeline_runtime
    from wavalign_kit.report_sections import (
        audio_block,
        drift_block,
        figure_blocks,
        notebook_table,
        notebook_title,
        read_json,
        world_block,
    )
    from wavalign_kit.takeaways import profile_notice

    out_dir = Path(out_dir)
    manifest = read_json(out_dir / "manifest.json")
    seeds = summary.get("seeds", manifest.get("seeds", []))
    lines = [f"# wavalign-kit run: profile `{manifest.get('profile', '?')}`", ""]
    hw = manifest.get("hardware", {})
    if manifest:
        gpus = ", ".join(hw.get("gpus") or []) or "none"
        lines += [f"- finished {manifest['finished']}; notebooks took {manifest['total_notebook_s']:.0f} s",
                  f"- hardware: {hw.get('cpu')} ({hw.get('cpu_count')} cores), GPU: {gpus}",
                  f"- git commit: {manifest['git']['commit']}; seeds: {seeds}", ""]
        notice = profile_notice(_run_config(manifest), load_profile(REFERENCE_PROFILE),
                                reference_runtime=pipeline_runtime(REFERENCE_PROFILE))
        lines += [notice, ""] if notice else []
    notebooks = manifest.get("notebooks") or [{"name": p.name, "status": "?", "duration_s": 0.0}
                                              for p in sorted((out_dir / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    if notebooks:
        lines += ["## The notebooks", "", *notebook_table(out_dir, notebooks)]
    extra = {"00": world_block(out_dir), "03": drift_block(out_dir), "04": _results_block(out_dir, summary, seeds)}
    for n in notebooks:
        number = n["name"][:2]
        lines += ["", f"## {notebook_title(out_dir, n['name'])}"]
        lines += extra.pop(number, []) + figure_blocks(out_dir, number)
    for block in extra.values():     # results without a notebook of that number (e.g. a custom notebook set)
        lines += block
    others = figure_blocks(out_dir, None)
    if others:
        lines += ["", "## Other figures", *others]
    lines += audio_block(out_dir)

    def listing(title: str, pattern: str) -> None:
        files = sorted((out_dir / "metrics").glob(pattern)) if (out_dir / "metrics").is_dir() else []
        if files:
            lines.extend(["", f"## {title}", "", " · ".join(f"[{p.name}](metrics/{p.name})" for p in files)])

    listing("Metrics (CSV)", "*.csv")
    listing("Metrics (JSON)", "*.json")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
