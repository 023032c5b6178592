"""Build a world (default: the cpu profile) and print per-stage seconds and both evaluator sets' held-out figures.

    python benchmarks/world_build.py                          # cpu world into a temporary directory, 2 workers
    python benchmarks/world_build.py --workers 1 --threads 2  # one process, torch on 2 threads
    python benchmarks/world_build.py --profile smoke --out data/worlds/bench --evaluator-cache data/cache/evaluators

The evaluator cache is off unless --evaluator-cache is given, so the evaluator stage is timed, not copied.
The machine's load average is printed before and after: timings on a shared machine are only as good as it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def _print_set(name: str, figures: dict) -> None:
    print(f"  {name}: recognizer WER {figures['recognizer_wer']:.4f} ({figures['recognizer_encoder']} encoder, "
          f"{figures['recognizer_tokens']} CTC), style accuracy {figures['style_accuracy']:.4f}, unit-LM NLL "
          f"{figures['unit_lm_nll']:.3f}; {figures['train_utterances']} training / {figures['dev_utterances']} dev / "
          f"{figures['heldout_utterances']} held-out utterances, seed {figures['seed']}, cache {figures['cache']['status']}")
    print("    WER by style: " + ", ".join(f"{s} {w:.3f}" for s, w in figures["recognizer_wer_by_style"].items()))
    for kind, t in figures.get("training", {}).items():
        print(f"    {kind}: {figures[f'seconds_{kind}']:.1f} s ({t['cpu_seconds']:.1f} s CPU), "
              f"{t['updates']} of {t['planned_updates']} updates"
              f"{' (stopped early)' if t['stopped_early'] else ''}, best at {t['best_update']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="smoke, cpu, gpu or a profile YAML")
    parser.add_argument("--out", default=None, help="world directory (default: a temporary one, removed after)")
    parser.add_argument("--workers", type=int, default=2, help="processes for evaluator speech, units and training")
    parser.add_argument("--threads", type=int, default=1, help="torch / BLAS threads of this process")
    parser.add_argument("--evaluator-cache", default=None, help="evaluator cache root (default: off)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="world overrides")
    parser.add_argument("--json", default=None, help="also write the summary's timings and figures here")
    args = parser.parse_args()

    import torch
    from threadpoolctl import threadpool_limits

    from wavalign_kit.config import parse_overrides
    from wavalign_kit.world import build_world, world_config

    torch.set_num_threads(args.threads)
    cfg = world_config(args.profile, parse_overrides([p.removeprefix("world.") for p in args.param]))
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="wavalign-world-bench-") as tmp, threadpool_limits(limits=args.threads):
        out = Path(args.out or Path(tmp) / "world")
        start = time.perf_counter()
        summary = build_world(cfg, out, workers=args.workers, evaluator_cache=args.evaluator_cache or False)
        total = time.perf_counter() - start
    load_after = os.getloadavg()
    print(f"\nworld build, profile {args.profile}: {total:.1f} s with {args.workers} worker process(es), "
          f"{args.threads} torch thread(s) here; {os.cpu_count()} CPUs; load average before "
          f"{load_before[0]:.2f} / {load_before[1]:.2f} (1 / 5 min), after {load_after[0]:.2f} / {load_after[1]:.2f}")
    for stage, seconds in summary["timings"].items():
        print(f"  {stage:<18} {seconds:8.1f} s")
    for name in ("evaluators", "examiners"):
        _print_set(name, summary[name])
    if args.json:
        Path(args.json).write_text(json.dumps({
            "profile": args.profile, "workers": args.workers, "threads": args.threads, "total_seconds": total,
            "load_before": load_before, "load_after": load_after, "timings": summary["timings"],
            "evaluators": summary["evaluators"], "examiners": summary["examiners"]}, indent=1, default=float))


if __name__ == "__main__":
    main()
