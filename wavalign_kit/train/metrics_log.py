"""Per-step training metrics: one flushed row per optimiser step in DIR/metrics.csv (+ TensorBoard when installed).

Column names are stable (plots are made from the log, not from prints); a value a step does not produce is an
empty cell, a value that is not finite is written as ``nan`` / ``inf`` (never hidden). On resume the rows after
the checkpoint's step are dropped so that the step column has no duplicates and no gaps; a log that lacks rows the
checkpoint has already passed is refused (those steps would be lost without a word).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from pathlib import Path

from wavalign_kit.errors import KitError

BASE_COLUMNS = (
    "step", "loss", "loss_rl", "loss_anchor", "loss_dpo",
    "lambda", "lambda_raw", "reward_gate", "info_gate", "reward_var",
    "reward_mean", "reward_std", "reward_max", "zero_var_share", "reward_out_of_range",
    "kl_text", "kl_speech", "chosen_logp_drop_text", "chosen_logp_drop_speech", "entropy_text", "entropy_speech",
    "len_text", "len_speech",
    "rows_skipped", "pairs", "pairs_skipped", "judge_failures", "dpo_accuracy", "clip_frac",
    "grad_norm", "nonfinite_steps", "lr", "tokens_per_s", "step_time", "time_generate", "time_reward", "time_train",
    "peak_mem_mb",
)


def metric_columns(reward_names: Iterable[str], grad_norm_per_channel: bool = False,
                   valid_loss: bool = False) -> list[str]:
    """The metrics.csv header of a run: the base columns, reward/<name> per component, per-channel grad norms and
    the held-out anchor loss when the run measures them."""
    cols = list(BASE_COLUMNS) + [f"reward/{n}" for n in reward_names]
    if grad_norm_per_channel:
        cols += ["grad_norm_text", "grad_norm_speech"]
    if valid_loss:
        cols.append("valid_loss")
    return cols


def _cell(value: float | int | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)   # nan, inf, -inf written as such
    return str(value)


class MetricsLog:
    """Append-only metrics.csv (flushed after every row) and an optional TensorBoard writer."""

    def __init__(self, out_dir: str | Path, columns: list[str], resume_step: int | None = None,
                 tensorboard: bool = True):
        self.path = Path(out_dir) / "metrics.csv"
        self.columns = list(columns)
        if not resume_step:
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        else:
            self._check_resume(resume_step)
        self._file = self.path.open("a", newline="")
        self._writer = csv.writer(self._file)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(out_dir) / "tb"))
            except ImportError:  # tensorboard not installed: the CSV is the log
                self._tb = None

    def _check_resume(self, step: int) -> None:
        """Keep exactly the rows of steps 1..step (drop later ones); refuse a log that is missing or short."""
        fix = "restore it from a copy, or start a new --out directory"
        if not self.path.is_file():
            raise KitError(f"{self.path}: missing, but the run resumes from its checkpoint at step {step}: the log "
                           f"of steps 1..{step} would be lost; {fix}")
        with self.path.open(newline="") as f:
            header = next(csv.reader(f), None)
        if header != self.columns:
            raise KitError(f"{self.path}: its columns differ from this run's "
                           f"({sorted(set(header or []) ^ set(self.columns))}); resume with the same config or "
                           "start a new --out directory")
        steps = truncate_after(self.path, step)
        if steps != list(range(1, step + 1)):
            raise KitError(f"{self.path}: holds steps {_ranges(steps)} but the checkpoint is at step {step}; {fix}")

    def write(self, row: dict[str, float | int | None]) -> None:
        """Write one step's row; keys outside the header are a bug in the caller and raise."""
        unknown = sorted(set(row) - set(self.columns))
        if unknown:
            raise KeyError(f"metrics row has keys {unknown} that are not metrics.csv columns")
        self._writer.writerow([_cell(row.get(c)) for c in self.columns])
        self._file.flush()
        os.fsync(self._file.fileno())
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, int(row["step"]))

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def truncate_after(path: Path, step: int) -> list[int]:
    """Drop the rows of ``path`` whose step is > ``step`` (written after the checkpoint); returns the steps kept."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    i = header.index("step")
    kept = [r for r in body if r and r[i] and int(r[i]) <= step]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        csv.writer(f).writerows([header, *kept])
    os.replace(tmp, path)
    return [int(r[i]) for r in kept]


def _ranges(steps: list[int]) -> str:
    return f"{steps[0]}..{steps[-1]} ({len(steps)} rows)" if steps else "none"


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """The rows of a metrics.csv as dicts (strings; empty cells are '')."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))
