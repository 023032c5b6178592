"""Where a run keeps its world, base models and training runs: one layout for the CLI, the pipeline and notebooks.

    ROOT/world/                          the embedded world (unless a world directory is given)
    ROOT/models/base-<arch>/             warm-started base model per architecture
    ROOT/runs/<arch>/<preset>/seed-<s>/  one post-training run (metrics.csv, checkpoint-*/, run.json)
    ROOT/metrics/ figures/ audio/ notebooks/   what the notebooks and the report leave

The pipeline's ROOT is its ``--out`` directory; the command line's cache for a profile is ``data/<profile>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path("data")


class _Folder:
    """A workspace sub-folder named like the attribute that holds it (``ws.metrics`` is ``ws.root / "metrics"``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, ws: Workspace, owner: type) -> Path:
        return ws.root / self.name


@dataclass(frozen=True)
class Workspace:
    """The directories of one run (see the module docstring); nothing is created until `make_dirs`."""

    root: Path
    metrics = _Folder()
    figures = _Folder()
    audio = _Folder()
    notebooks = _Folder()

    @classmethod
    def cache(cls, profile: str) -> Workspace:
        """The command line's workspace for a profile: ``data/<profile>``."""
        return cls(DATA_DIR / profile)

    @property
    def world(self) -> Path:
        return self.root / "world"

    def base_model(self, arch: str) -> Path:
        return self.root / "models" / f"base-{arch}"

    def run(self, arch: str, preset: str, seed: int) -> Path:
        return self.root / "runs" / arch / preset / f"seed-{seed}"

    def make_dirs(self) -> Workspace:
        """Create the output directories (metrics, figures, audio, notebooks); returns self."""
        for d in (self.metrics, self.figures, self.audio, self.notebooks):
            d.mkdir(parents=True, exist_ok=True)
        return self
