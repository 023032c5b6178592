"""Rollout generation benchmark: tokens/s and peak memory of both architectures at each size (CPU / CUDA).

    python benchmarks/generate.py --size smoke --device cpu
"""

from __future__ import annotations

import argparse
import resource
import time
from types import SimpleNamespace

import numpy as np
import torch

from wavalign_kit.models import Sampling, build_model, count_parameters
from wavalign_kit.world.tokenizer import build_tokenizer


def synthetic_prompts(n: int, num_units: int, rng: np.random.Generator, words: list[str]) -> list:
    """Half text questions, half spoken questions (40 units), as the rollout engine sees them."""
    out = []
    for i in range(n):
        if i % 2:
            out.append(SimpleNamespace(task_type="s2s", question_text="", prompt_units=rng.integers(0, num_units, 40)))
        else:
            out.append(SimpleNamespace(task_type="t2s", question_text=" ".join(rng.choice(words, 8)), prompt_units=None))
    return out


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def bench(arch: str, size: str, device: torch.device, prompts: int, group: int, new_tokens: int, tokenizer,
          num_units: int, repeats: int) -> dict:
    model = build_model(arch, size, tokenizer, num_units=num_units)
    model.model.to(device).eval()
    rng = np.random.default_rng(0)
    words = [w for w in tokenizer.get_vocab() if not w.startswith("<")]
    examples = synthetic_prompts(prompts, num_units, rng, words)
    s = Sampling(1.0, 1.0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.generate(examples[:2], num_samples=2, text_sampling=s, speech_sampling=s, max_new_tokens=8, seed=0)  # warm-up
    times, tokens = [], 0
    for r in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = model.generate(examples, num_samples=group, text_sampling=s, speech_sampling=s,
                             max_new_tokens=new_tokens, seed=r)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        steps = out.batch.input_ids.shape[1] - int(out.batch.prompt_lengths.min())
        tokens += len(examples) * group * steps   # decoded positions (finished rows included: the batch's work)
    sec = float(np.sum(times))
    return {"arch": arch, "size": size, "device": device.type, "params_M": count_parameters(model) / 1e6,
            "rows": prompts * group, "tokens/s": tokens / sec, "s/generate": sec / repeats,
            "peak_MB": peak_memory_mb(device)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", nargs="+", default=["smoke"], choices=["smoke", "cpu", "gpu"])
    p.add_argument("--device", nargs="+", default=["cpu"], help="cpu and/or cuda")
    p.add_argument("--arch", nargs="+", default=["interleaved", "parallel"])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=4, help="samples per prompt (G)")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    words = [f"w{i}" for i in range(300)]
    tokenizer = build_tokenizer(words, a.units)
    rows = []
    for dev in a.device:
        if dev.startswith("cuda") and not torch.cuda.is_available():
            print(f"skipping {dev}: CUDA is not available")
            continue
        for size in a.size:
            for arch in a.arch:
                rows.append(bench(arch, size, torch.device(dev), a.prompts, a.group, a.new_tokens, tokenizer,
                                  a.units, a.repeats))
    head = f"{'arch':<12}{'size':<7}{'device':<7}{'params_M':>9}{'rows':>6}{'tokens/s':>11}{'s/generate':>12}{'peak_MB':>10}"
    print(f"generation: {a.prompts} prompts x G={a.group}, {a.new_tokens} new tokens, temperature 1, {a.threads} thread(s)")
    print(head)
    for r in rows:
        print(f"{r['arch']:<12}{r['size']:<7}{r['device']:<7}{r['params_M']:>9.2f}{r['rows']:>6}{r['tokens/s']:>11.0f}"
              f"{r['s/generate']:>12.3f}{r['peak_MB']:>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
