"""The ``wavalign`` command: one sub-command per stage, each owned by its module's ``main(argv)``."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "world": ("wavalign_kit.world.build", "build (or reuse) the embedded spoken-dialogue world"),
    "warmstart": ("wavalign_kit.models.warmstart", "supervised warm start of a tiny base model on a world"),
    "train": ("wavalign_kit.train.run", "post-train a model with a preset (WavAlign, GRPO, DPO, SFT...)"),
    "evaluate": ("wavalign_kit.evaluation", "evaluate checkpoints on the held-out test split"),
    "pipeline": ("wavalign_kit.pipeline", "run the numbered notebooks as one papermill job"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        lines = [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: wavalign COMMAND [options]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in {"-h", "--help"} else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
