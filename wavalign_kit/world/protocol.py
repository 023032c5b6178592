"""The ``World`` protocol: what the trainer, the warm start, the evaluation and the notebooks read from a world.

Three things satisfy it: a world the kit built (``load_world``), a user's own JSONL data (``load_own_data``, or
``load_world`` on a directory with a ``world.yaml``), and the training engine's ``SyntheticWorld`` stand-in.

Splits (``split(name)``), each a list of ``Example``:
- ``"train"``: warm-start (SFT) data; the only split the base model is trained on;
- ``"rl"``: RL / preference prompts; no rl question is a train question (the base has not been trained on them);
- ``"valid"``: a small validation set for the warm start's loss, disjoint from train;
- ``"test"``: held-out wording and held-out content; ``Example.record["answer_seen"]`` says whether the target
  text was also a train or rl target (report IQ on seen and unseen items separately).

What each consumer reads:
- warm start (models/warmstart.py): ``split("train")``, ``split("valid")``, ``split("test")`` (held-out figures),
  ``tokenizer``, ``codec.num_units``, ``evaluators`` (recognizer, style) for its held-out figures, ``root``;
- trainer (train/): ``split(cfg.split)`` (the ``"rl"`` split for RL and preference training), ``split("valid")``
  target units (naturalness calibration), ``codec`` (decoding speech for acoustic rewards), ``evaluators``
  (reward models), ``summary``;
- evaluation and notebook 04: ``split("test")``, ``evaluators``, ``codec``, ``summary``;
- notebooks 00-03: ``split("train")`` / ``split("rl")`` prompts, ``tokenizer``, ``codec``, ``summary``.
``tokenizer`` and ``evaluators`` may be None for a user's own data (bring a model with its own tokenizer; rewards
and evaluation then need evaluators or an API/HF judge); verifiable text checks apply only to examples whose check
has a kit type (``checks.has_kit_check``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from wavalign_kit.world.schema import Example

SPLITS = ("train", "rl", "valid", "test")
SplitName = Literal["train", "rl", "valid", "test"]


@runtime_checkable
class World(Protocol):
    """A spoken-dialogue world: JSONL splits with speech units, the codec that made the units, and its summary."""

    root: Path | str                 # where its files live ("synthetic" for the in-memory stand-in)
    codec: Any                       # a SpeechCodec (encode/decode, sample_rate, num_units), or None
    tokenizer: Any                   # the tokenizer of the world's models, or None (user data)
    evaluators: Any                  # wavalign_kit.evaluators.Evaluators (recognizer, style, unit_lm), or None
    summary: dict[str, Any]          # sizes per split, tasks, seen-answer shares, evaluator figures, ...

    def split(self, name: SplitName) -> list[Example]:
        """The Examples of split ``name`` (one of SPLITS)."""
        ...
