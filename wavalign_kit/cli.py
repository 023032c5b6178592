"""The ``wavalign`` command: one sub-command per stage, each owned by its module's ``main(argv)``.

Every sub-command runs inside one error boundary: a kit error, a bad value or an OS error prints one line naming
the file or field at fault and exits 2 (with ``--debug``, or WAVALIGN_DEBUG=1, the traceback too); Ctrl-C exits 130.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable

COMMANDS = {
    "world": ("wavalign_kit.world.build", "build (or reuse) the embedded spoken-dialogue world"),
    "warmstart": ("wavalign_kit.models.warmstart", "supervised warm start of a tiny base model on a world"),
    "train": ("wavalign_kit.train.run", "post-train a model with a preset (WavAlign, GRPO, DPO, SFT...)"),
    "evaluate": ("wavalign_kit.evaluation", "evaluate checkpoints on the held-out test split"),
    "pipeline": ("wavalign_kit.pipeline", "run the numbered notebooks as one papermill job"),
}


def run_command(name: str, main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run a sub-command's ``main`` inside the error boundary; returns the exit code."""
    from wavalign_kit.errors import KitError

    debug = "--debug" in argv or os.environ.get("WAVALIGN_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print(f"wavalign {name}: interrupted", file=sys.stderr)
        return 130
    except (KitError, ValueError, OSError) as err:
        if debug:
            traceback.print_exc()
        where = f" ({err.filename})" if isinstance(err, OSError) and err.filename and str(err.filename) not in str(err) else ""
        print(f"wavalign {name}: error: {err}{where}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    from wavalign_kit import __version__
    from wavalign_kit.config import suggest

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--version":
        print(f"wavalign-kit {__version__}")
        return 0
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        lines = [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
        usage = "usage: wavalign [--version] COMMAND [options] [--debug]\n\ncommands:\n" + "\n".join(lines)
        if argv and argv[0] not in {"-h", "--help"}:
            print(f"wavalign: unknown command '{argv[0]}'{suggest(argv[0], list(COMMANDS))}\n\n{usage}", file=sys.stderr)
            return 2
        print(usage)
        return 0 if argv else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return run_command(argv[0], module.main, argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
