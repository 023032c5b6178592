"""The papermill pipeline: run the numbered notebooks in order with one parameter set, resumably."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from wavalign_kit.config import (
    ConfigError,
)
from wavalign_kit.errors import KitError
from wavalign_kit.files import write_text_atomic
from wavalign_kit.profiles import check_run_config, merged_config, notebook_parameters, resolve_profile_name
from wavalign_kit.redaction import redact_outputs, secret_values
from wavalign_kit.report import write_manifest, write_report, write_summary

KIT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = KIT_ROOT / "notebooks"
STATE_FILE = "pipeline_state.json"
# Run first in each pipeline kernel (IPKernelApp.exec_lines): see `quiet_progress_bars`.
KERNEL_STARTUP = "import wavalign_kit.pipeline; wavalign_kit.pipeline.quiet_progress_bars()"


class NotebookFailed(KitError, RuntimeError):
    """A notebook raised; the message names the executed notebook and the failing cell."""


class SecretLeak(KitError, RuntimeError):
    """A run's output contained the value of a secret environment variable (it has been redacted)."""


def parameters_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- secrets


def check_parameters_hold_no_secret(params: dict, secrets: dict[str, str]) -> None:
    text = json.dumps(params, default=str)
    leaked = [name for name, value in secrets.items() if value in text]
    if leaked:
        raise ConfigError(
            f"pipeline parameters contain the value of the secret environment variable(s) {leaked}; "
            "secrets are read from the environment inside the library, never passed as notebook parameters"
        )


def output_paths(out_dir: Path) -> list[Path]:
    """What a pipeline run writes (scanned for secrets): its top-level files and every output folder; the world
    and the models are inputs, built from the profile alone."""
    return [p for p in sorted(Path(out_dir).iterdir()) if p.name not in ("world", "models")]


def check_outputs_hold_no_secret(out_dir: Path, secrets: dict[str, str]) -> None:
    """Redact every secret value (and its base64 forms) from the run's outputs; SecretLeak names the files."""
    leaks = redact_outputs(output_paths(out_dir), secrets)
    if leaks:
        names = sorted({n for found in leaks.values() for n in found})
        raise SecretLeak(f"the run wrote the value of secret environment variable(s) {names} into {sorted(leaks)}; "
                         "the values were redacted (binary files deleted). Find the cell or code that prints or "
                         "saves them and remove it.")


# ---------------------------------------------------------------- state


def load_state(out_dir: Path) -> dict:
    path = out_dir / STATE_FILE
    if not path.is_file():
        return {"notebooks": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: corrupt pipeline state ({e}); delete it to re-run every notebook") from None


def save_state(out_dir: Path, state: dict) -> None:
    write_text_atomic(out_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ---------------------------------------------------------------- running


@dataclass
class NotebookRun:
    name: str
    status: str          # "completed" (ran now) or "skipped" (completed earlier with the same parameters)
    duration_s: float


def discover_notebooks(notebook_dir: Path) -> list[Path]:
    """The numbered notebooks ``NN_*.ipynb`` of ``notebook_dir``, in order."""
    notebook_dir = Path(notebook_dir)
    paths = sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise ConfigError(f"{notebook_dir}: no numbered notebooks (NN_name.ipynb); pass --notebooks DIR")
    return paths


def declared_parameters(path: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            import papermill

            return set(papermill.inspect_notebook(str(path)).keys())
    raise ConfigError(f"{path}: no code cell tagged 'parameters'; tag the first code cell 'parameters'")


def quiet_progress_bars() -> None:
    """Inside a pipeline kernel, every tqdm bar is created disabled, whatever its caller passes: there a bar is a
    widget (or carriage-return text) that nobody watches and that bloats the executed notebook. The long stages
    print one line each instead, which `StageLines` streams to the terminal."""
    import tqdm
    import tqdm.auto
    import tqdm.std

    class Quiet(tqdm.std.tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    for module in (tqdm, tqdm.auto, tqdm.std):
        module.tqdm = Quiet


class StageLines:
    """papermill's ``stdout_file`` for one notebook: each line the notebook prints (the world's stages, the warm
    start, each training run, each evaluated model) reaches the terminal as it runs, prefixed with the notebook's
    number, above papermill's cell counter."""

    def __init__(self, prefix: str, stream: Any = None) -> None:
        self.prefix, self.stream, self.pending = prefix, stream, ""

    def write(self, text: str) -> int:
        from tqdm import tqdm

        lines = (self.pending + text.replace("\r", "\n")).split("\n")
        self.pending = lines.pop()
        for line in lines:
            if line.strip():
                tqdm.write(f"[{self.prefix}] {line.rstrip()}", file=self.stream or sys.stderr)
        return len(text)

    def flush(self) -> None:
        pass


def kernel_transport_config():
    """Kernels talk over local IPC sockets where the platform has them (POSIX): no TCP port is opened, and
    ipykernel does not print its warning about unencrypted TCP; elsewhere the default TCP transport."""
    from traitlets.config import Config

    return Config({"KernelManager": {"transport": "ipc"}}) if os.name == "posix" else Config()


def run_pipeline(
    params: dict[str, Any],
    out_dir: Path,
    *,
    notebook_dir: Path = NOTEBOOK_DIR,
    kernel_name: str = "python3",
    force: bool = False,
    start_timeout: int = 120,
) -> list[NotebookRun]:
    """Execute the numbered notebooks in order; skip those completed earlier with the same parameters.

    Raises NotebookFailed (with the executed notebook's path and the failing cell) or SecretLeak.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_dir = Path(out_dir)
    for sub in ("notebooks", "metrics", "figures", "audio"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    secrets = secret_values()
    check_parameters_hold_no_secret(params, secrets)
    state = load_state(out_dir)
    state["parameters"] = params
    phash = parameters_hash(params)
    runs: list[NotebookRun] = []
    upstream_ran = force
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(KIT_ROOT), *([env_before] if env_before else [])])
    try:
        for path in discover_notebooks(notebook_dir):
            key, nhash = path.name, _file_hash(path)
            done = state["notebooks"].get(key, {})
            if not upstream_ran and done.get("status") == "completed" and done.get("parameters_hash") == phash \
                    and done.get("notebook_hash") == nhash:
                runs.append(NotebookRun(key, "skipped", float(done.get("duration_s", 0.0))))
                print(f"[pipeline] {key}: completed earlier with the same parameters, skipped", file=sys.stderr)
                continue
            upstream_ran = True  # everything after a re-run notebook depends on it
            declared = declared_parameters(path)
            executed = out_dir / "notebooks" / key
            state["notebooks"][key] = {"status": "running", "parameters_hash": phash, "notebook_hash": nhash}
            save_state(out_dir, state)
            print(f"[pipeline] {key}: running -> {executed}", file=sys.stderr)
            t0 = time.perf_counter()
            try:
                papermill.execute_notebook(
                    str(path), str(executed), parameters={k: v for k, v in params.items() if k in declared},
                    kernel_name=kernel_name, cwd=str(path.parent), start_timeout=start_timeout,
                    progress_bar={"disable": False, "desc": f"{key[:2]} cells"},
                    stdout_file=StageLines(key[:2]), config=kernel_transport_config(),
                    extra_arguments=[f"--IPKernelApp.exec_lines={KERNEL_STARTUP}"],
                )
            except PapermillExecutionError as e:
                leaks = redact_outputs(output_paths(out_dir), secrets)
                state["notebooks"][key].update(status="failed", duration_s=time.perf_counter() - t0)
                save_state(out_dir, state)
                source = (e.source or "").strip().splitlines()
                raise NotebookFailed(
                    f"notebook {key} failed in cell {e.cell_index} (In [{e.exec_count}]"
                    f"{': ' + source[0] if source else ''}): {e.ename}: {e.evalue}\n"
                    f"  executed notebook with the full traceback: {executed}"
                    + (f"\n  secret values were redacted from {sorted(leaks)}" if leaks else "")
                ) from None
            except BaseException:  # interrupted (Ctrl-C) or the kernel died: what it wrote is scanned all the same
                redact_outputs(output_paths(out_dir), secrets)
                state["notebooks"][key].update(status="interrupted", duration_s=time.perf_counter() - t0)
                save_state(out_dir, state)
                raise
            duration = time.perf_counter() - t0
            try:
                check_outputs_hold_no_secret(out_dir, secrets)
            except SecretLeak:
                state["notebooks"][key].update(status="secret_leak", duration_s=duration)
                save_state(out_dir, state)
                raise
            state["notebooks"][key].update(
                status="completed", duration_s=round(duration, 3),
                finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            )
            save_state(out_dir, state)
            runs.append(NotebookRun(key, "completed", duration))
            print(f"[pipeline] {key}: completed in {duration:.0f} s", file=sys.stderr)
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_before
    return runs


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="wavalign pipeline", description=__doc__)
    ap.add_argument("--profile", default="auto", help="smoke | cpu | gpu | auto (gpu if CUDA else cpu) | a YAML path")
    ap.add_argument("-f", "--file", action="append", default=[], help="YAML merged over the profile (repeatable)")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                    help="one parameter, YAML-parsed: -p seeds [0,1,2] or -p train.lr 1e-4 (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default results/<profile>)")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOK_DIR, help="directory of NN_*.ipynb notebooks")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3 = this interpreter)")
    ap.add_argument("--force", action="store_true", help="re-run every notebook even if completed")
    args = ap.parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    profile = resolve_profile_name(args.profile)
    cfg = merged_config(profile, args.file, [tuple(p) for p in args.param])
    given = [k for k, _ in args.param if "." not in k and k not in ("profile", "seed")]
    check_run_config(cfg, discover_notebooks(args.notebooks), given)   # every key and value, before any notebook
    out_dir = (args.out or Path("results") / Path(profile).stem).resolve()
    params = notebook_parameters(cfg, out_dir)
    runs = run_pipeline(params, out_dir, notebook_dir=args.notebooks, kernel_name=args.kernel, force=args.force)
    summary = write_summary(out_dir)
    write_manifest(out_dir, params, runs, started=started)
    report = write_report(out_dir, summary)
    check_outputs_hold_no_secret(out_dir, secret_values())
    print(f"[pipeline] done: {report}", file=sys.stderr)
    return 0
