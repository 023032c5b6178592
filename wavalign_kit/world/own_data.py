"""A user's own spoken-dialogue data as a world: JSONL splits in the authors' schema plus the user's codec.

Layout of the directory (any of the four splits; ``train`` for a warm start, ``rl`` for RL, ``test`` to evaluate)::

    mydata/
      train.jsonl  rl.jsonl  valid.jsonl  test.jsonl   # one record per line (schema.py), paths relative to mydata/
      audio/...                                        # wav/flac at any sample rate (resampled to the codec's)
      world.yaml                                       # optional manifest, so that load_world(mydata) works

Records need the authors' fields (``messages``, ``audios``, ``sft_target_text``, ``sft_target_audio``,
``task_type``, ``question_text``, optional ``rejected_text`` / ``rejected_audio``); the kit's fields (``id``,
``task``, ``style``, ``answer``, ``check``, ...) are optional, any task name and any check type are accepted, and
the kit's verifier scores only kit check types (checks.py). Every problem of every split is reported at once as
``file:line: field: message``.

The codec is a ``SpeechCodec`` instance or an import path ``"package.module:ClassName"``: with ``codec_dir`` the
class's ``load(codec_dir)`` is called, else its constructor without arguments. It needs ``encode(wav, sr)``,
``sample_rate`` and ``num_units``; units are encoded at its own sample rate and cached in ``units/``.
From the command line: ``world_path=mydata`` (``wavalign train``) or ``-p world_dir mydata`` (``wavalign pipeline``);
without a ``world.yaml`` the model's codec (``models.codec=package.module:ClassName``) encodes the data
(`workspace.open_world`). ``world.yaml`` holds the same arguments::

    codec: mypkg.codecs:MyCodec
    codec_dir: codec            # optional, relative to the directory
    tokenizer: words            # optional: "words" or a tokenizer directory
    evaluators: evaluators      # optional: a directory saved by the kit's evaluators
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from wavalign_kit.config import ConfigError, load_yaml
from wavalign_kit.world.corpus import seen_shares, seen_targets
from wavalign_kit.world.load import JsonlWorld
from wavalign_kit.world.protocol import SPLITS
from wavalign_kit.world.schema import OWN_TASK, SchemaError, read_records

MANIFEST = "world.yaml"
MANIFEST_KEYS = ("codec", "codec_dir", "tokenizer", "evaluators")


def import_codec_class(spec: str, where: str = "codec") -> Any:
    """The class of import path ``"package.module:ClassName"`` (imported, not built); ConfigError naming ``where``."""
    module, _, name = str(spec).partition(":")
    if not module or not name:
        raise ConfigError(f"{where}={spec!r}: give an import path 'package.module:ClassName'")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as err:
        raise ConfigError(f"{where}={spec!r}: cannot import {module!r} ({err}); is it installed / on PYTHONPATH?") from None
    except AttributeError:
        raise ConfigError(f"{where}={spec!r}: module {module!r} has no {name!r}") from None


def import_codec(spec: str, codec_dir: str | Path | None = None) -> Any:
    """The codec of import path ``"package.module:ClassName"``: ``ClassName.load(codec_dir)``, or ``ClassName()``."""
    cls = import_codec_class(spec)
    return cls.load(codec_dir) if codec_dir is not None else cls()


def check_codec(codec: Any, where: str = "codec", *, decode: bool = False) -> None:
    """ConfigError naming ``where`` when ``codec`` lacks what a SpeechCodec needs (``decode`` too, with decode)."""
    need = ("encode", "sample_rate", "num_units") + (("decode",) if decode else ())
    missing = [a for a in need if not hasattr(codec, a)]
    if missing:
        raise ConfigError(f"{where}: {type(codec).__name__} lacks {missing}: a SpeechCodec needs encode(wav, sr), "
                          f"decode(units), sample_rate and num_units (see wavalign_kit/codec.py)")


def _tokenizer(spec: Any, records: dict[str, list[dict]], num_units: int) -> Any:
    if spec is None or not isinstance(spec, (str, Path)):
        return spec
    if spec == "words":     # the kit's word-level tokenizer over every word of the data (for the tiny models)
        from wavalign_kit.world.tokenizer import build_tokenizer

        words = {w for recs in records.values() for r in recs
                 for w in f"{r['question_text']} {r['sft_target_text']} {r.get('rejected_text', '')}".split()}
        return build_tokenizer(words, num_units)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(spec))


def load_own_data(root: str | Path, codec: Any = None, *, codec_dir: str | Path | None = None,
                  tokenizer: Any = None, evaluators: Any = None) -> JsonlWorld:
    """A world (``World`` protocol) over the JSONL splits in ``root`` and ``codec``; arguments left as None come
    from ``root/world.yaml`` when it exists. Validates every split first (one SchemaError lists every problem)."""
    root = Path(root)
    manifest = load_yaml(root / MANIFEST) if (root / MANIFEST).is_file() else {}
    unknown = sorted(set(manifest) - set(MANIFEST_KEYS))
    if unknown:
        raise ConfigError(f"{root / MANIFEST}: unknown keys {unknown}; known keys: {list(MANIFEST_KEYS)}")
    codec = codec if codec is not None else manifest.get("codec")
    if codec is None:
        raise ConfigError(f"load_own_data({root}): pass codec= (a SpeechCodec or 'package.module:ClassName') "
                          f"or write {root / MANIFEST} with a 'codec:' entry")
    codec_dir = codec_dir if codec_dir is not None else manifest.get("codec_dir")
    tokenizer = tokenizer if tokenizer is not None else manifest.get("tokenizer")
    evaluators = evaluators if evaluators is not None else manifest.get("evaluators")
    if isinstance(codec, str):
        codec = import_codec(codec, None if codec_dir is None else root / codec_dir)
    check_codec(codec)
    present = [s for s in SPLITS if (root / f"{s}.jsonl").is_file()]
    if not present:
        raise FileNotFoundError(f"{root} holds none of {[f'{s}.jsonl' for s in SPLITS]}")
    records, problems = {}, []
    for split in present:
        try:
            records[split] = read_records(root / f"{split}.jsonl", kit=False, sample_rate=None)
        except SchemaError as err:
            problems += err.problems
    if problems:
        raise SchemaError(problems)
    if isinstance(evaluators, (str, Path)):
        from wavalign_kit.evaluators import Evaluators

        evaluators = Evaluators.load(root / evaluators)
    seen = seen_targets(records)    # answer_seen as in a kit world, unless the records carry their own
    for split, recs in records.items():
        for r in recs:
            r.setdefault("answer_seen", r["sft_target_text"] in seen[split])
            r.setdefault("task", OWN_TASK)
    summary = {
        "kind": "own_data", "root": str(root),
        "codec": {"class": f"{type(codec).__module__}:{type(codec).__qualname__}",
                  "sample_rate": int(codec.sample_rate), "num_units": int(codec.num_units),
                  "frame_rate": getattr(codec, "frame_rate", None)},
        "sizes": {s: len(recs) for s, recs in records.items()},
        "tasks": {s: {t: sum(r["task"] == t for r in recs) for t in sorted({r["task"] for r in recs})}
                  for s, recs in records.items()},
        "task_types": {s: {t: sum(r["task_type"] == t for r in recs) for t in ("s2s", "t2s")}
                       for s, recs in records.items()},
        "answer_seen": {s: seen_shares(recs) for s, recs in records.items()},
    }
    return JsonlWorld(root=root, codec=codec, tokenizer=_tokenizer(tokenizer, records, int(codec.num_units)),
                      evaluators=evaluators, summary=summary, kit=False,
                      seen_targets=seen)
