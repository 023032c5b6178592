"""Building the embedded world: WorldConfig, build_world (stages, caching, atomic summary) and `wavalign world`.

Stages (each printed with its time and size): generate tasks -> synthesise speech -> fit codec -> encode units
-> write JSONL -> build tokenizer -> train evaluators on separate held-out speech -> summary.json.

Splits: ``train`` (warm-start data), ``rl`` (RL prompts the warm start never sees), ``valid`` (the warm start's
validation loss; RL-pool questions), ``test`` (held-out wording and content); see tasks.py.

Two evaluator sets are trained, on disjoint synthesised utterances with other seeds (``world/evaluator_speech.py``):
``evaluators/`` are the reward models (rewards use them: ``world.evaluators``) and ``examiners/`` are the
models evaluation scores with (``world.examiners``); summary.json holds both sets' held-out figures side by
side (``evaluators``, ``examiners``). Synthesis and unit encoding of their speech, and their training, run on
``workers`` processes (default: up to 2 cores); a set whose config and utterances match one trained before is
copied from the evaluator cache (``evaluators/cache.py``: ``data/cache/evaluators`` or
``$WAVALIGN_EVALUATOR_CACHE``; ``evaluator_cache=False`` / ``--no-evaluator-cache`` turns it off).

Caching: summary.json (written last, atomically) records the config hash and an inventory of the world's files.
Building again with the same config is a no-op once the inventory matches (a damaged world is an error, never
reused). A different config into the same directory is an error (nothing is deleted) unless
``overwrite=True`` (``--overwrite``), which removes the old world's files and rebuilds. A directory left by an
interrupted build (marker ``.building``, no summary.json) is cleaned and rebuilt.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wavalign_kit.config import ConfigError, deep_update, from_dict, load_profile, parse_overrides
from wavalign_kit.paths import Workspace
from wavalign_kit.speech import SAMPLE_RATE, STYLES, Synthesizer, read_wav
from wavalign_kit.world.corpus import (
    SPLIT_POOLS,
    mark_answer_seen,
    ratio_stats,
    seen_shares,
    synthesize_corpus,
    text_tokens,
)
from wavalign_kit.world.evaluator_speech import encode_utterances, evaluator_utterances, synthesize_utterances
from wavalign_kit.world.integrity import CorruptWorldError, check_world, inventory, read_summary
from wavalign_kit.world.protocol import SPLITS
from wavalign_kit.world.tasks import (
    TASKS,
    check_styles,
    generate_facts,
    generate_split,
    task_counts,
    vocabulary,
)
from wavalign_kit.world.units import UNITS_DIR

FORMAT_VERSION = 4          # bump when the world's files change meaning; part of the config hash
                            # (2: layer-normalised evaluator encoders, whose weights 1 cannot load;
                            #  3: rl split, held-out content, context task, hashed unit caches, file inventory;
                            #  4: examiners, per-utterance synthesis seeds, early-stopped evaluators)
WORLD_FILES = ("audio", UNITS_DIR, "codec", "tokenizer", "evaluators", "examiners", "facts.json", "summary.json",
               *(f"{s}.jsonl" for s in SPLITS))
BUILDING = ".building"
PARALLEL_FROM_UTTERANCES = 2000   # evaluator + examiner utterances from which build_world uses worker processes


@dataclass
class WorldConfig:
    """What the world holds; one value set per scale in the profiles' ``world:`` sections."""

    seed: int = 0
    train_size: int = 2000           # records per split: warm-start (SFT) data
    rl_size: int = 500               # RL / preference prompts, none of them a train question
    valid_size: int = 200            # the warm start's validation loss (RL-pool questions, disjoint from train)
    test_size: int = 300             # held-out wording and held-out content
    evaluator_utterances: int = 1500  # separate synthesised sentences for the evaluators (all styles)
    examiner_utterances: int = 1500  # and for the examiners (other sentences, other synthesis seeds)
    evaluator_heldout: float = 0.2   # share of each set held out to report recognizer_wer / style_accuracy
    codec_fit_utterances: int = 400  # utterances the codec's k-means is fitted on
    num_units: int = 256             # speech units (codec k-means clusters)
    frame_rate: float = 25.0         # units per second
    edge_silence: float = 0.05       # seconds of silence added before and after every utterance
    s2s_fraction: float = 0.5        # share of user turns given as speech (the rest as text)
    num_people: int = 12             # rows of the fact table
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    task_weights: dict[str, float] = field(default_factory=dict)   # share of each task (tasks.DEFAULT_TASK_WEIGHTS)
    styles: list[str] = field(default_factory=lambda: list(STYLES))
    ratio_bounds: list[float] = field(default_factory=lambda: [4.0, 10.0])   # speech units per text token
    max_redraws: int = 100           # task redraws per record to keep its responses within ratio_bounds
    evaluators: dict[str, Any] = field(default_factory=dict)   # {"scale": smoke|cpu|gpu, EvaluatorConfig overrides}
    examiners: dict[str, Any] = field(default_factory=dict)    # the same for the examiners (trained with seed + 1)

    def validate(self) -> WorldConfig:
        """Raise ConfigError naming the first unusable field."""
        for name in ("train_size", "rl_size", "valid_size", "test_size", "evaluator_utterances", "examiner_utterances",
                     "codec_fit_utterances"):
            if getattr(self, name) < 1:
                raise ConfigError(f"world.{name}={getattr(self, name)}: must be >= 1")
        if not 0.0 < self.evaluator_heldout < 1.0:
            raise ConfigError(f"world.evaluator_heldout={self.evaluator_heldout}: choose a share in (0, 1)")
        for name in ("evaluator_utterances", "examiner_utterances"):
            n = getattr(self, name)
            if n - self.heldout_count(n) < 1:
                raise ConfigError(f"world.{name}={n}: with evaluator_heldout={self.evaluator_heldout} every utterance "
                                  "is held out and none is left to train on; use more utterances")
        if not 0.0 <= self.s2s_fraction <= 1.0:
            raise ConfigError(f"world.s2s_fraction={self.s2s_fraction}: choose a share in [0, 1]")
        try:
            self.ratio_bounds = [float(x) for x in self.ratio_bounds]
        except (TypeError, ValueError):
            raise ConfigError(f"world.ratio_bounds={self.ratio_bounds}: give two numbers [low, high]") from None
        if len(self.ratio_bounds) != 2 or not 0 < self.ratio_bounds[0] < self.ratio_bounds[1]:
            raise ConfigError(f"world.ratio_bounds={self.ratio_bounds}: give [low, high] with 0 < low < high")
        if self.edge_silence < 0:
            raise ConfigError(f"world.edge_silence={self.edge_silence}: must be >= 0 seconds")
        unknown = [s for s in self.styles if s not in STYLES]
        if unknown:
            raise ConfigError(f"world.styles: unknown styles {unknown}; known: {sorted(STYLES)}")
        try:
            check_styles(self.styles)
            generate_facts(np.random.default_rng(0), self.num_people)
        except ValueError as err:
            raise ConfigError(f"world: {err}") from None
        self.evaluator_config(self.num_units)
        self.evaluator_config(self.num_units, "examiners")
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ConfigError(f"world.tasks={self.tasks}: choose a non-empty subset of {list(TASKS)}")
        unknown = sorted(set(self.task_weights) - set(TASKS))
        if unknown:
            raise ConfigError(f"world.task_weights: unknown tasks {unknown}; known: {list(TASKS)}")
        try:
            task_counts(1, self.tasks, self.task_weights)
        except ValueError as err:
            raise ConfigError(f"world.{err}") from None
        return self

    def heldout_count(self, utterances: int) -> int:
        """How many of an evaluator set's ``utterances`` are held out for its figures (at least one)."""
        return max(1, int(round(self.evaluator_heldout * utterances)))

    def evaluator_config(self, num_units: int, which: str = "evaluators"):
        """The EvaluatorConfig of set ``which`` (evaluators or examiners): the preset of its ``scale`` (default
        cpu) with its overrides; unless overridden, the evaluators train with the world's seed, the examiners
        with seed + 1."""
        from wavalign_kit.evaluators import EvaluatorConfig

        overrides = dict(getattr(self, which))
        scale = overrides.pop("scale", "cpu")
        checked = from_dict(EvaluatorConfig, overrides, f"world.{which}")
        try:
            params = {"seed": self.seed + (which == "examiners"), **{k: getattr(checked, k) for k in overrides},
                      "num_units": num_units}
            return EvaluatorConfig.preset(scale, **params).validate()
        except ValueError as err:      # its message starts with the field: scale=..., device=..., lr=...
            raise ConfigError(f"world.{which}.{err}") from None

    def hash(self) -> str:
        """Stable hash of the config (and the world format version)."""
        blob = json.dumps({"format": FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def world_config(profile: dict[str, Any] | str, overrides: dict[str, Any] | None = None) -> WorldConfig:
    """The WorldConfig of a profile (name, YAML path or dict): its ``world:`` section, seed from the top level."""
    data = load_profile(profile) if isinstance(profile, str) else dict(profile)
    section = dict(data.get("world") or {})
    section.setdefault("seed", data.get("seed", 0))
    section = deep_update(section, overrides or {})
    return from_dict(WorldConfig, section, "world").validate()


# ---- small file helpers -------------------------------------------------------------------------------------

def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


@contextmanager
def _stage(name: str, timings: dict[str, float], quiet: bool) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)
    if not quiet:
        print(f"[world] {name}: {timings[name]:.1f} s", flush=True)


def _clean(out: Path) -> None:
    for name in (*WORLD_FILES, BUILDING):
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _prepare_dir(cfg_hash: str, out: Path, overwrite: bool, quiet: bool) -> dict | None:
    """Return the existing summary when the world is already built with this config and intact; else ready
    ``out``. A damaged world (summary.json unreadable, files missing or changed) is a CorruptWorldError, and
    another config's world a ConfigError, unless ``overwrite`` (then the old world's files are removed)."""
    summary_path = out / "summary.json"
    if summary_path.is_file():
        try:
            summary = read_summary(out)
            if summary.get("config_hash") == cfg_hash:
                check_world(out, summary)
                if not quiet:
                    print(f"[world] {out}: already built with this config (hash {cfg_hash}); reusing it", flush=True)
                return summary
        except CorruptWorldError:
            if not overwrite:
                raise
            summary = {}
        if not overwrite:
            raise ConfigError(
                f"{out} holds a world built with a different config (hash {summary.get('config_hash')} vs "
                f"{cfg_hash}); choose another --out, or pass --overwrite (overwrite=True) to rebuild it there")
        _clean(out)
    elif (out / BUILDING).exists():
        if not quiet:
            print(f"[world] {out}: removing an interrupted build and starting again", flush=True)
        _clean(out)
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty and holds no world (no summary.json); choose an empty --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / BUILDING).write_text(cfg_hash)
    return None


# ---- the build ----------------------------------------------------------------------------------------------

def build_world(cfg: WorldConfig, out: str | Path, *, overwrite: bool = False, quiet: bool = False,
                workers: int | None = None, evaluator_cache: bool | str | Path = True) -> dict:
    """Build the world into ``out`` and return its summary; a second call with the same config is a no-op.

    ``workers``: processes for the evaluator sets' synthesis, the unit encoding and the evaluator training
    (None: up to 2 cores for worlds with PARALLEL_FROM_UTTERANCES evaluator utterances or more, else 1: all
    in this process). ``evaluator_cache``: True (the default cache root), a directory, or False (always
    train). Neither changes what is built.
    """
    from wavalign_kit.codec import MelKMeansCodec
    from wavalign_kit.evaluators import EvaluatorSet, train_evaluator_sets
    from wavalign_kit.evaluators.cache import default_cache_root
    from wavalign_kit.worker_pool import default_workers
    from wavalign_kit.world.tokenizer import build_tokenizer

    cfg.validate()
    out = Path(out)
    cfg_hash = cfg.hash()
    existing = _prepare_dir(cfg_hash, out, overwrite, quiet)
    if existing is not None:
        return existing
    if workers is None:   # spawning workers (~2 s each) costs more than a small world's evaluator jobs
        big = cfg.evaluator_utterances + cfg.examiner_utterances >= PARALLEL_FROM_UTTERANCES
        workers = default_workers() if big else 1
    cache_root = default_cache_root() if evaluator_cache is True else Path(evaluator_cache) if evaluator_cache else None
    timings: dict[str, float] = {}
    seeds = np.random.SeedSequence(cfg.seed).spawn(9)
    rng_facts, rng_train, rng_valid, rng_test, rng_mode, rng_synth, rng_eval, rng_fit, rng_rl = (
        np.random.default_rng(s) for s in seeds)

    with _stage("generate tasks", timings, quiet):
        facts = generate_facts(rng_facts, cfg.num_people)
        kw = dict(tasks=cfg.tasks, styles=cfg.styles, weights=cfg.task_weights)
        train = generate_split(rng_train, cfg.train_size, SPLIT_POOLS["train"], facts, **kw)
        rl = generate_split(rng_rl, cfg.rl_size, SPLIT_POOLS["rl"], facts, **kw)
        rl_questions = {it.question for it in rl}
        splits = {
            "train": train,
            "rl": rl,
            "valid": generate_split(rng_valid, cfg.valid_size, SPLIT_POOLS["valid"], facts, avoid=rl_questions, **kw),
            "test": generate_split(rng_test, cfg.test_size, SPLIT_POOLS["test"], facts, **kw),
        }

    with _stage("synthesise", timings, quiet):
        synth = Synthesizer()
        records, jobs, seconds, redraws = synthesize_corpus(
            splits, facts, out, synth, rng_synth, rng_mode, frame_rate=cfg.frame_rate,
            ratio_bounds=cfg.ratio_bounds, max_redraws=cfg.max_redraws, edge_silence=cfg.edge_silence,
            s2s_fraction=cfg.s2s_fraction, avoid={"rl": rl_questions, "valid": rl_questions}, progress=not quiet)

        # The evaluator sets' own sentences: disjoint from every corpus response and from each other, all styles.
        targets = {r["sft_target_text"] for recs in records.values() for r in recs}
        n_eval = cfg.evaluator_utterances
        eval_sets = evaluator_utterances(rng_eval, {"evaluators": n_eval, "examiners": cfg.examiner_utterances},
                                         cfg.styles, cfg.seed, exclude=targets)
        seconds += synthesize_utterances(out, [u for us in eval_sets.values() for u in us],
                                         edge_silence=cfg.edge_silence, workers=workers, progress=not quiet)
        eval_jobs, exam_jobs = ([(u.audio, u.text, u.style) for u in eval_sets[k]] for k in ("evaluators", "examiners"))
        vocab = vocabulary()
        words = {w for _, t, _ in jobs + eval_jobs + exam_jobs for w in t.split()}
        assert words <= set(vocab), f"words outside the closed vocabulary: {sorted(words - set(vocab))}"
        if not quiet:
            print(f"[world]   {len(jobs) + len(eval_jobs) + len(exam_jobs)} utterances, {seconds / 60:.1f} min of speech, "
                  f"{_dir_size(out / 'audio') / 1e6:.1f} MB; redrawn for the units/text band: {redraws}", flush=True)

    with _stage("fit codec", timings, quiet):
        n_heldout = cfg.heldout_count(n_eval)
        fit_pool = [rel for rel, _, _ in jobs] + [rel for rel, _, _ in eval_jobs[n_heldout:]]
        pick = rng_fit.choice(len(fit_pool), size=min(cfg.codec_fit_utterances, len(fit_pool)), replace=False)
        wavs = [read_wav(out / fit_pool[i]) for i in sorted(pick)]
        codec = MelKMeansCodec.fit(wavs, SAMPLE_RATE, num_units=cfg.num_units, frame_rate=cfg.frame_rate,
                                   seed=cfg.seed)
        codec.save(out / "codec")

    with _stage("encode units", timings, quiet):
        units = encode_utterances(out, [rel for rel, _, _ in jobs + eval_jobs + exam_jobs], workers=workers,
                                  progress=not quiet)
        if not quiet:
            print(f"[world]   {sum(map(len, units.values()))} units, {_dir_size(out / UNITS_DIR) / 1e6:.1f} MB",
                  flush=True)

    with _stage("write jsonl", timings, quiet):
        mark_answer_seen(records)
        for split, recs in records.items():
            write_atomic(out / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
        write_atomic(out / "facts.json", json.dumps(facts, indent=1))
        ratios = [len(units[r["sft_target_audio"]]) / text_tokens(r["sft_target_text"])
                  for recs in records.values() for r in recs]
        ratio_styles = [r["style"] for recs in records.values() for r in recs]

    with _stage("build tokenizer", timings, quiet):
        tokenizer = build_tokenizer(vocab, codec.num_units)
        tokenizer.save_pretrained(str(out / "tokenizer"))

    with _stage("train evaluators", timings, quiet):
        n_exam_heldout = cfg.heldout_count(cfg.examiner_utterances)
        sets = {}
        for name, set_jobs, n_held in (("evaluators", eval_jobs, n_heldout), ("examiners", exam_jobs, n_exam_heldout)):
            items = [{"text": t, "style": s, "units": units[rel], "audio": rel} for rel, t, s in set_jobs]
            sets[name] = EvaluatorSet(items[n_held:], items[:n_held], out / name,
                                      cfg.evaluator_config(codec.num_units, name), codec.unit_features())
        figures = train_evaluator_sets(sets, workers=workers, cache_root=cache_root, progress=not quiet)

    train_questions = {r["question_text"] for r in records["train"]}
    summary = {
        "config_hash": cfg_hash,
        "format_version": FORMAT_VERSION,
        "config": dataclasses.asdict(cfg),
        "sizes": {**{s: len(r) for s, r in records.items()}, "utterances": len(jobs) + len(eval_jobs) + len(exam_jobs),
                  "evaluator_train": n_eval - n_heldout, "evaluator_heldout": n_heldout,
                  "examiner_train": cfg.examiner_utterances - n_exam_heldout, "examiner_heldout": n_exam_heldout,
                  "vocabulary": len(vocab), "tokenizer": len(tokenizer), "num_units": codec.num_units,
                  "speech_seconds": round(seconds, 1), "bytes": _dir_size(out)},
        "task_types": {s: {t: sum(r["task_type"] == t for r in recs) for t in ("s2s", "t2s")}
                       for s, recs in records.items()},
        "tasks": {s: {t: sum(r["task"] == t for r in recs) for t in cfg.tasks} for s, recs in records.items()},
        "styles": {s: {st: sum(r["style"] == st for r in recs) for st in cfg.styles} for s, recs in records.items()},
        "answer_seen": {s: seen_shares(recs) for s, recs in records.items()},
        "redrawn_for_ratio_band": redraws,
        **{f"{s}_questions_in_train": sum(r["question_text"] in train_questions for r in records[s])
           for s in ("rl", "valid", "test")},
        "units_per_text_token": ratio_stats(ratios, ratio_styles),
        "timings": timings,
        "recognizer_wer": figures["evaluators"]["recognizer_wer"],     # the reward models' figures
        "style_accuracy": figures["evaluators"]["style_accuracy"],
        "unit_lm_nll": figures["evaluators"]["unit_lm_nll"],
        "evaluators": figures["evaluators"],                            # both sets' held-out figures side by side
        "examiners": figures["examiners"],
        "inventory": inventory(out, skip=("summary.json", BUILDING)),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=1, default=float))
    (out / BUILDING).unlink()
    if not quiet:
        total = sum(timings.values())
        print(f"[world] built {out} in {total:.1f} s: " + ", ".join(f"{s} {len(r)}" for s, r in records.items()),
              flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    """``wavalign world --profile {smoke,cpu,gpu} --out DIR [-p key=value ...] [--overwrite] [--threads N]``."""
    parser = argparse.ArgumentParser(prog="wavalign world", description="build (or reuse) the embedded world")
    parser.add_argument("--profile", default="smoke", help="smoke, cpu, gpu or a profile YAML path")
    parser.add_argument("--out", default=None, help="world directory (default data/<profile>/world)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a world: key, e.g. -p train_size=500 (a leading 'world.' is optional)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild a world built with another config")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch / k-means in this process (0: the libraries' defaults); "
                             "worker processes always run single-threaded")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes for evaluator speech, unit encoding and evaluator training "
                             "(0: up to 2 cores for cpu-scale worlds, 1 for small ones; 1: all in this process)")
    parser.add_argument("--evaluator-cache", default=None, metavar="DIR",
                        help="where trained evaluator sets are cached and reused (default: $WAVALIGN_EVALUATOR_CACHE "
                             "or data/cache/evaluators)")
    parser.add_argument("--no-evaluator-cache", action="store_true", help="always train the evaluator sets")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else Workspace.cache(Path(args.profile).stem).world
    cfg = world_config(args.profile, parse_overrides([p.removeprefix("world.") for p in args.param]))
    cache = False if args.no_evaluator_cache else args.evaluator_cache or True
    options = dict(overwrite=args.overwrite, workers=args.workers or None, evaluator_cache=cache)
    if args.threads > 0:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        with threadpool_limits(limits=args.threads):
            summary = build_world(cfg, out, **options)
    else:
        summary = build_world(cfg, out, **options)
    r = summary["units_per_text_token"]
    for name in ("evaluators", "examiners"):
        figures = summary.get(name, {})
        print(f"[world] {out}: {name} on held-out speech: "
              + ", ".join(f"{k} {figures[k]:.3f}" for k in ("recognizer_wer", "style_accuracy") if k in figures))
    print(f"[world] {out}: speech units per text token: median {r['median']:.2f} (min {r['min']:.2f}, "
          f"max {r['max']:.2f}, {r['outside']} of {r['count']} outside {r['bounds']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
