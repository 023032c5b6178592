"""Train one recogniser variant on a built world's evaluator utterances and print its held-out WER and time.

The train / dev / held-out utterances are those the world's set was trained on (its ``utterances.jsonl``), so a
variant is compared with the shipped recogniser on the same data. One JSON line per run; ``--csv`` appends it.

    python benchmarks/recognizer_variants.py --name base
    python benchmarks/recognizer_variants.py --name hr_h96 -p recognizer_encoder=half_rate_gru -p hidden=96

``-p`` takes fields of ``EvaluatorConfig`` (on top of the world's own config of that set); with
``recognizer_unit_init`` (the default) the unit embeddings start from the world's codec's unit features.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wavalign_kit.codec import load_codec  # noqa: E402
from wavalign_kit.config import from_dict, parse_overrides  # noqa: E402
from wavalign_kit.evaluators.config import EvaluatorConfig  # noqa: E402
from wavalign_kit.evaluators.jobs import EvaluatorJob, model_spec, run_job  # noqa: E402
from wavalign_kit.evaluators.training import read_manifest  # noqa: E402
from wavalign_kit.world.units import load_units  # noqa: E402


def load_split(world: Path, which: str) -> dict[str, list[dict]]:
    """The set's utterances by use (train, dev, heldout; its manifest), each dict(units, text, style)."""
    split: dict[str, list[dict]] = {"train": [], "dev": [], "heldout": []}
    for row in read_manifest(world / which):
        split[row["use"]].append({"units": load_units(world, row["audio"]), "text": row["text"],
                                  "style": row["style"]})
    return split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="data/cpu/world", help="a built world directory")
    parser.add_argument("--set", default="evaluators", choices=["evaluators", "examiners"])
    parser.add_argument("--name", required=True, help="the run's name in the output")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="EvaluatorConfig overrides")
    parser.add_argument("--csv", default=None, help="append the run's figures to this CSV")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    a = parser.parse_args(argv)
    torch.set_num_threads(a.threads)
    with threadpool_limits(limits=a.threads):    # numpy too (the init's SVD), as in the world build's workers
        return run(a)


def run(a: argparse.Namespace) -> int:
    world = Path(a.world)
    shipped = json.loads((world / a.set / "metrics.json").read_text())["config"]
    overrides = parse_overrides(a.param)
    cfg = from_dict(EvaluatorConfig, {**shipped, **overrides}, f"{a.set} config").validate()
    split = load_split(world, a.set)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        job = EvaluatorJob("recognizer", a.set, cfg, model_spec("recognizer", cfg, cfg.num_units, split["train"]),
                           split["train"], split["dev"], split["heldout"], out, progress=False,
                           unit_features=load_codec(world / "codec").unit_features() if cfg.recognizer_unit_init
                           else None)
        result = run_job(job)
    training = result["training"]
    row = {"run": a.name, "set": a.set, "overrides": " ".join(a.param) or "(none)",
           "heldout_wer": round(result["recognizer_wer"], 4), "seconds": round(time.perf_counter() - start, 1),
           "cpu_seconds": round(training["cpu_seconds"], 1), "updates": training["updates"],
           "best_update": training["best_update"], "threads": a.threads,
           "dev_wer": " ".join(f"{f:.3f}" for _, f in training["dev_checks"])}
    print(json.dumps({**row, "wer_by_style": result["recognizer_wer_by_style"]}))
    if a.csv:
        new = not Path(a.csv).exists()
        with open(a.csv, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
