"""The speech the world's evaluator sets learn from: disjoint sentences, per-utterance seeds, parallel rendering.

Two sets are trained on synthesised speech, never on model outputs (DESIGN.md section 4):
- ``evaluators``: the reward models that training may use (``world.evaluators``);
- ``examiners``: the models that evaluation uses (``world.examiners``), trained on other sentences rendered
  with other synthesis seeds, so that a policy that learns the reward models' quirks does not fool them too.
The sentences of the two sets are drawn from one stream without repeats, so the sets share no sentence with
each other or with any corpus response. Every utterance is rendered from its own seed (world seed, set,
index), so an utterance's audio does not depend on the corpus or on the number of workers. The sentences are drawn
in set order from one stream: the examiners' sentences change when the evaluator set's size changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wavalign_kit.speech import SAMPLE_RATE, read_wav
from wavalign_kit.worker_pool import map_in_processes
from wavalign_kit.world.corpus import evaluator_sentences, synthesize_file
from wavalign_kit.world.units import UNITS_DIR, save_units

# set name -> (audio file prefix, seed stream of its synthesis)
EVALUATOR_SETS: dict[str, tuple[str, int]] = {"evaluators": ("eval", 1), "examiners": ("exam", 2)}


@dataclass(frozen=True)
class Utterance:
    """One utterance of an evaluator set: its wav path (relative to the world), text, style and synthesis seed."""

    audio: str
    text: str
    style: str
    seed: tuple[int, int, int]      # (world seed, set stream, index): the jitter and noise of its rendering


def evaluator_utterances(rng: np.random.Generator, sizes: dict[str, int], styles: Sequence[str], seed: int,
                         exclude: set[str]) -> dict[str, list[Utterance]]:
    """``sizes[name]`` utterances for each set of EVALUATOR_SETS, sentences disjoint across sets and from ``exclude``.

    Styles rotate through ``styles`` so that every set hears every style equally often.
    """
    taken = set(exclude)
    sets = {}
    for name, n in sizes.items():
        if name not in EVALUATOR_SETS:
            raise ValueError(f"evaluator set {name!r}: choose one of {list(EVALUATOR_SETS)}")
        prefix, stream = EVALUATOR_SETS[name]
        texts = evaluator_sentences(rng, n, exclude=taken)
        taken.update(texts)
        sets[name] = [Utterance(f"audio/{prefix}-{i:05d}.wav", t, styles[i % len(styles)], (seed, stream, i))
                      for i, t in enumerate(texts)]
    return sets


def _chunks(items: Sequence, workers: int) -> list[list]:
    """About eight chunks per worker, in order (small enough for an even finish, large enough to amortise)."""
    size = max(1, -(-len(items) // (8 * max(1, workers))))
    return [list(items[i: i + size]) for i in range(0, len(items), size)]


def _render_chunk(job: tuple[str, list[Utterance], float]) -> int:
    from wavalign_kit.speech import Synthesizer

    root, utterances, edge_silence = job
    synth = Synthesizer()
    return sum(synthesize_file(Path(root) / u.audio, synth, u.text, u.style, np.random.default_rng(u.seed),
                               edge_silence) for u in utterances)


def synthesize_utterances(root: Path, utterances: Sequence[Utterance], *, edge_silence: float, workers: int,
                          progress: bool = True) -> float:
    """Render every utterance to ``root/<audio>`` on ``workers`` processes; returns the seconds of speech."""
    jobs = [(str(root), chunk, edge_silence) for chunk in _chunks(utterances, workers)]
    samples = map_in_processes(_render_chunk, jobs, workers=workers, desc="synthesise evaluator speech",
                               progress=progress)
    return sum(samples) / SAMPLE_RATE


_CODECS: dict[str, object] = {}


def _encode_chunk(job: tuple[str, list[str]]) -> list[np.ndarray]:
    from wavalign_kit.codec import load_codec

    root, audio_paths = job
    if root not in _CODECS:
        _CODECS[root] = load_codec(Path(root) / "codec")
    codec = _CODECS[root]
    out = []
    for rel in audio_paths:
        units = codec.encode(read_wav(Path(root) / rel), SAMPLE_RATE).astype(np.int64)
        save_units(Path(root), rel, units)
        out.append(units)
    return out


def encode_utterances(root: Path, audio_paths: Sequence[str], *, workers: int, progress: bool = True
                      ) -> dict[str, np.ndarray]:
    """Encode ``root/<path>`` with the world's saved codec (``root/codec``) into the units cache; path -> units."""
    (Path(root) / UNITS_DIR).mkdir(parents=True, exist_ok=True)
    jobs = [(str(root), chunk) for chunk in _chunks(audio_paths, workers)]
    encoded = map_in_processes(_encode_chunk, jobs, workers=workers, desc="encode units", progress=progress)
    _CODECS.pop(str(root), None)      # the in-process path caches the codec; a later fit may replace it
    return {rel: units for (_, chunk), chunk_units in zip(jobs, encoded) for rel, units in zip(chunk, chunk_units)}
