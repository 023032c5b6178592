"""A built world on disk as one object: codec, tokenizer, evaluators, summary and its splits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wavalign_kit.world.schema import Example, load_examples

SPLITS = ("train", "valid", "test")


@dataclass
class World:
    """A built world: ``split(name)`` loads (and memoises) a split's Examples.

    ``evaluators`` are the reward models (rewards use them); ``examiners`` are an independent set trained on
    other utterances with other seeds, for evaluation (never for rewards). Both are ``Evaluators``.
    """

    root: Path
    codec: Any
    tokenizer: Any
    evaluators: Any
    summary: dict[str, Any]
    examiners: Any = None
    _splits: dict[str, list[Example]] = field(default_factory=dict, repr=False)

    def split(self, name: Literal["train", "valid", "test"]) -> list[Example]:
        """The Examples of split ``name`` (validated; units from the world's cache)."""
        if name not in SPLITS:
            raise ValueError(f"split={name!r}: choose one of {list(SPLITS)}")
        if name not in self._splits:
            self._splits[name] = load_examples(self.root / f"{name}.jsonl", codec=self.codec)
        return self._splits[name]


def load_world(root: str | Path) -> World:
    """Load a world written by ``build_world``; a missing or unfinished world is one clear error."""
    from transformers import PreTrainedTokenizerFast

    from wavalign_kit.codec import load_codec
    from wavalign_kit.evaluators import Evaluators

    root = Path(root)
    summary_path = root / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{root} holds no finished world (no summary.json); build it with "
                                f"`wavalign world --profile smoke --out {root}`")
    summary = json.loads(summary_path.read_text())
    if not (root / "examiners").is_dir():
        raise FileNotFoundError(f"{root} has no examiners/ (a world of format {summary.get('format_version')}, "
                                f"built by an older kit); rebuild it with `wavalign world --overwrite --out {root}`")
    return World(root=root, codec=load_codec(root / "codec"),
                 tokenizer=PreTrainedTokenizerFast.from_pretrained(str(root / "tokenizer")),
                 evaluators=Evaluators.load(root / "evaluators"), summary=summary,
                 examiners=Evaluators.load(root / "examiners"))
