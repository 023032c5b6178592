"""A world on disk as one object (the ``World`` protocol): JSONL splits, codec, tokenizer, evaluators, summary.

``load_world(root)`` opens a world the kit built (``summary.json``: its integrity is checked first) or a user's own
data (a ``world.yaml`` manifest, see own_data.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wavalign_kit.speech import SAMPLE_RATE
from wavalign_kit.world.integrity import SUMMARY, CorruptWorldError, check_world, read_summary
from wavalign_kit.world.protocol import SPLITS, SplitName
from wavalign_kit.world.schema import Example, load_examples


@dataclass
class JsonlWorld:
    """A directory of JSONL splits with its codec: ``split(name)`` loads (and memoises) a split's Examples.

    ``kit``: the kit's schema (every kit field, 16 kHz audio); False for a user's own data (see schema.py).
    ``evaluators`` are the reward models (rewards use them); ``examiners`` an independent set trained on other
    utterances with other seeds, for evaluation only (None for own data). Both are ``Evaluators``.
    """

    root: Path
    codec: Any
    tokenizer: Any
    evaluators: Any
    summary: dict[str, Any]
    kit: bool = True
    seen_targets: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)  # own data, see own_data.py
    examiners: Any = None
    _splits: dict[str, list[Example]] = field(default_factory=dict, repr=False)

    def split(self, name: SplitName) -> list[Example]:
        """The Examples of split ``name`` (validated; units from the cache, encoded with the codec when missing)."""
        if name not in SPLITS:
            raise ValueError(f"split={name!r}: choose one of {list(SPLITS)}")
        if name not in self._splits:
            path = self.root / f"{name}.jsonl"
            if not self.kit and not path.is_file():
                raise FileNotFoundError(f"{path}: this dataset has no {name!r} split (it has "
                                        f"{sorted(self.summary.get('sizes', {}))}); add {name}.jsonl")
            examples = load_examples(path, codec=self.codec, kit=self.kit,
                                     sample_rate=SAMPLE_RATE if self.kit else None)
            if name in self.seen_targets:   # own data: mark answers seen in the splits trained on before this one
                for ex in examples:
                    ex.record.setdefault("answer_seen", ex.record["sft_target_text"] in self.seen_targets[name])
            self._splits[name] = examples
        return self._splits[name]


def load_world(root: str | Path) -> JsonlWorld:
    """Load a world written by ``build_world`` (checked for integrity), or a user's own data (``world.yaml``);
    a missing, unfinished or corrupted world is one clear error."""
    from wavalign_kit.world.build import FORMAT_VERSION
    from wavalign_kit.world.own_data import MANIFEST, load_own_data

    root = Path(root)
    if not (root / SUMMARY).is_file():
        if (root / MANIFEST).is_file():
            return load_own_data(root)
        raise FileNotFoundError(f"{root} holds no finished world (no {SUMMARY}) and no own data (no {MANIFEST}); "
                                f"build one with `wavalign world --profile smoke --out {root}`, or describe your "
                                f"JSONL data in {root / MANIFEST} (see wavalign_kit/world/own_data.py)")
    summary = read_summary(root)
    if summary.get("format_version") != FORMAT_VERSION:
        raise CorruptWorldError(f"{root} was built by another kit version (world format "
                                f"{summary.get('format_version')}, this kit reads {FORMAT_VERSION}); rebuild it with "
                                f"`wavalign world --overwrite --out {root}`")
    check_world(root, summary)
    from transformers import PreTrainedTokenizerFast

    from wavalign_kit.codec import load_codec
    from wavalign_kit.evaluators import Evaluators

    return JsonlWorld(root=root, codec=load_codec(root / "codec"),
                      tokenizer=PreTrainedTokenizerFast.from_pretrained(str(root / "tokenizer")),
                      evaluators=Evaluators.load(root / "evaluators"), summary=summary,
                      examiners=Evaluators.load(root / "examiners"))
