"""Rollout generation benchmark: the kit's decoder against a baseline on the same model, prompts, G, lengths and
sampling, measured in one run; tokens/s, their ratio and peak memory (CUDA: also memory-bandwidth utilisation).

Baselines: interleaved = HF ``generate`` (dynamic cache, ``num_return_sequences=G``) with a LogitsProcessor that
applies the kit's slot masks, so both do the same work; parallel (HF generate does not apply to the dual-stream
model) = the kit's previous decode loop, kept below: dynamic cache, ``torch.multinomial`` per stream, no
compaction. Tokens/s counts every decoded position of every row (the batch's work).

    python benchmarks/generate.py --size cpu --threads 1 --prompts 4 --group 4 --new-tokens 64
    python benchmarks/generate.py --device cuda --size gpu --compile
    python benchmarks/generate.py --size cpu --threads 1 --breakdown   # + where each decoder's time goes

``--breakdown`` profiles one call of each decoder (torch.profiler, CPU ops) and splits its time into the network's
matmuls, its attention kernels, every other op, and what runs outside any op (Python, dispatch). The network's
matmuls and attention are work any decoder of this model does, so the baseline's time over the kit's matmul +
attention time bounds the ratio a decoder that keeps these torch ops can reach.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wavalign_kit.models import Sampling, build_model, count_parameters  # noqa: E402
from wavalign_kit.models.decoding import DecodeOptions, generation_inputs, left_pad  # noqa: E402
from wavalign_kit.models.interleaved import InterleavedSlots  # noqa: E402
from wavalign_kit.models.sampling import gather_logprobs  # noqa: E402
from wavalign_kit.world.tokenizer import build_tokenizer  # noqa: E402

PEAK_BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12, "L40S": 0.864e12, "A10G": 0.6e12}  # bytes/s


def synthetic_prompts(n: int, num_units: int, rng: np.random.Generator, words: list[str]) -> list:
    """Half text questions, half spoken questions (40 units), as the rollout engine sees them."""
    out = []
    for i in range(n):
        if i % 2:
            out.append(SimpleNamespace(task_type="s2s", question_text="", prompt_units=rng.integers(0, num_units, 40)))
        else:
            out.append(SimpleNamespace(task_type="t2s", question_text=" ".join(rng.choice(words, 8)), prompt_units=None))
    return out


class SlotProcessor(LogitsProcessor):
    """Makes HF generate follow the interleaved layout: the kit's slot machine masks every step."""

    def __init__(self, model, prompt_length: int, rows: int, vocab: int) -> None:
        self.slots = InterleavedSlots(model.layout, model.tokenizer, vocab, rows, model.device)
        self.prompt_length, self.kind = prompt_length, None

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] > self.prompt_length:
            self.slots.update(self.kind, input_ids[:, -1])
        self.kind = self.slots.slots()
        return scores.masked_fill(~self.slots.allowed(self.kind), float("-inf"))


def hf_generate(model, examples, G: int, N: int, s: Sampling, seed: int) -> int:
    """HF generate on the same prompts; returns the decoded positions (rows x steps)."""
    torch.manual_seed(seed)
    ids, attn = left_pad([model.encode_prompt(e) for e in examples], model.layout.pad_id)
    ids, attn = ids.to(model.device), attn.to(model.device)
    vocab = model.model.config.vocab_size
    sampling = dict(do_sample=True, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k) \
        if s.temperature > 0 else dict(do_sample=False)
    out = model.model.generate(input_ids=ids, attention_mask=attn, num_return_sequences=G, max_new_tokens=N,
                               eos_token_id=model.layout.eos_id, pad_token_id=model.layout.pad_id,
                               logits_processor=LogitsProcessorList([SlotProcessor(model, ids.shape[1], len(examples) * G, vocab)]),
                               **sampling)
    return out.shape[0] * (out.shape[1] - ids.shape[1])


def multinomial_sample(logits, allowed, s: Sampling, gen) -> torch.Tensor:
    """The previous sampler: mask, temperature, sort for top-k / top-p, torch.multinomial."""
    logits = logits.float().masked_fill(~allowed, float("-inf"))
    if s.temperature == 0:
        return logits.argmax(-1)
    srt, order = (logits / s.temperature).sort(-1, descending=True)
    probs = srt.softmax(-1)
    drop = (probs.cumsum(-1) - probs) >= s.top_p
    if s.top_k:
        drop[:, s.top_k:] = True
    choice = torch.multinomial(srt.masked_fill(drop, float("-inf")).softmax(-1), 1, generator=gen)
    return order.gather(-1, choice).squeeze(-1)


@torch.no_grad()
def previous_parallel_loop(model, examples, G: int, N: int, s: Sampling, seed: int) -> int:
    """The kit's parallel decode loop before the static-cache decoder (dynamic cache, per-stream multinomial)."""
    gen, prompts, ids, attn, pos = generation_inputs(model, examples, G, N, seed)
    lay, dev = model.layout, model.device
    out = model.model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, cache=DynamicCache())
    cache = out.cache
    cache.batch_repeat_interleave(G)
    logits = out.logits[:, -1].repeat_interleave(G, 0)                             # (B, S, V)
    B, Lp, S, V = logits.shape[0], ids.shape[1], logits.shape[1], logits.shape[-1]
    attn_all = torch.ones(B, Lp + N, dtype=torch.long, device=dev)
    attn_all[:, :Lp] = attn.repeat_interleave(G, 0)
    next_pos = pos[:, -1].repeat_interleave(G, 0) + 1
    tokens = torch.full((B, N, S), lay.pad_id, dtype=torch.long, device=dev)
    logps = torch.zeros(B, N, S, device=dev)
    table = model.slot_rules(B, V, dev).table                                       # (S, V) allowed per stream
    text_done = torch.zeros(B, dtype=torch.bool, device=dev)
    speech_done, finished, steps = text_done.clone(), text_done.clone(), N
    for t in range(N):
        sp = multinomial_sample(logits[:, 1:].reshape(-1, V), table[1:].repeat(B, 1), s, gen).reshape(B, S - 1)
        forced_pad = (speech_done | finished | (t < lay.speech_delay)).unsqueeze(-1) | (sp[:, :1] == lay.speech_pad_id)
        sp = torch.where(forced_pad, lay.speech_pad_id, sp)
        speech_done |= (t >= lay.speech_delay) & (sp[:, 0] == lay.speech_pad_id)
        tx = multinomial_sample(logits[:, 0], table[0].expand(B, V), s, gen)
        tx = torch.where(text_done, torch.where(speech_done, lay.eos_id, lay.text_pad_id), tx)
        step = torch.where(finished.unsqueeze(-1), lay.pad_id, torch.cat([tx[:, None], sp], dim=1))
        tokens[:, t] = step
        logps[:, t] = gather_logprobs(logits, step)[0]
        finished |= step[:, 0] == lay.eos_id
        text_done |= step[:, 0] == lay.text_end_id
        if t + 1 == N or ((t % 4 == 3) and bool(finished.all())):
            steps = t + 1
            break
        out = model.model(input_ids=step[:, None], attention_mask=attn_all[:, : Lp + t + 1],
                          position_ids=next_pos[:, None], use_cache=True, cache=cache)
        cache, logits = out.cache, out.logits[:, -1]
        next_pos += 1
    tokens = tokens[:, :steps].cpu()
    responses = []
    for i in range(B):
        stop = (tokens[i, :, 0] == lay.eos_id).nonzero()
        responses.append(tokens[i, : int(stop[0]) + 1 if len(stop) else steps].numpy())
    model._rollout([prompts[i // G] for i in range(B)], responses, [logps[i, : len(r)] for i, r in enumerate(responses)],
                   G, [torch.zeros(len(r), S, dtype=torch.bool) for r in responses])
    return B * steps


def kit_generate(model, examples, G: int, N: int, s: Sampling, seed: int) -> int:
    r = model.generate(examples, num_samples=G, text_sampling=s, speech_sampling=s, max_new_tokens=N, seed=seed)
    return len(r.texts) * (r.batch.attention_mask.sum(1) - r.batch.prompt_lengths).max().item()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_memory_mb(run, device: torch.device) -> float:
    """Peak memory of one untimed call above what was held before it: CUDA allocations, or the process RSS
    polled every millisecond on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    before, peak, done = rss_mb(), [0.0], threading.Event()

    def poll() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.001)

    watcher = threading.Thread(target=poll)
    watcher.start()
    run()
    done.set()
    watcher.join()
    return max(peak[0], rss_mb()) - before


def decode_bytes_per_step(model, rows: int, context: float) -> float:
    """Bytes one decode step must read: the weights that take part in a matmul plus the KV cache of the rows."""
    module = model.model
    embed = module.get_input_embeddings().weight
    weights = sum(p.numel() * p.element_size() for p in module.parameters() if p is not embed)
    cfg = getattr(module.config, "backbone_config", None) or module.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * embed.element_size()
    return weights + kv * rows * context


MATMUL_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")
ATTENTION_OPS = ("aten::_scaled_dot_product", "aten::scaled_dot_product")


def time_breakdown(run) -> dict[str, float]:
    """Seconds of one profiled ``run()``: wall, self time of matmul / attention / other ops, and outside ops."""
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    wall = time.perf_counter() - t0
    parts = {"matmul": 0.0, "attention": 0.0, "other ops": 0.0}
    for ev in prof.key_averages():
        kind = ("matmul" if ev.key.startswith(MATMUL_OPS) else
                "attention" if ev.key.startswith(ATTENTION_OPS) else "other ops")
        parts[kind] += ev.self_cpu_time_total / 1e6
    return {"wall": wall, **parts, "outside ops": wall - sum(parts.values())}


def bench(arch: str, size: str, device: torch.device, a, tokenizer) -> dict:
    model = build_model(arch, size, tokenizer, num_units=a.units)
    model.model.to(device).eval()
    model.decode_options = DecodeOptions(compile_step=a.compile)
    words = [w for w in tokenizer.get_vocab() if not w.startswith("<")]
    examples = synthetic_prompts(a.prompts, a.units, np.random.default_rng(0), words)
    s = Sampling(a.temperature, a.top_p)
    base = hf_generate if arch == "interleaved" else previous_parallel_loop
    runs = {"kit": kit_generate, "base": base}
    for fn in runs.values():                                        # warm-up (and compilation) on the full shapes
        fn(model, examples, a.group, a.new_tokens, s, 0)
    times, tokens = {k: 0.0 for k in runs}, {k: 0 for k in runs}
    for r in range(a.repeats):
        for name, fn in runs.items():                               # alternate, so that load drifts hit both
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            tokens[name] += fn(model, examples, a.group, a.new_tokens, s, r + 1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name] += time.perf_counter() - t0
    row = {"arch": arch, "size": size, "device": device.type, "params_M": count_parameters(model) / 1e6,
           "rows": a.prompts * a.group, "baseline": "HF generate" if arch == "interleaved" else "previous loop"}
    for name, fn in runs.items():
        row[f"{name}_tok_s"] = tokens[name] / times[name]
        row[f"{name}_peak_MB"] = peak_memory_mb(lambda fn=fn: fn(model, examples, a.group, a.new_tokens, s, 99), device)
    row["ratio"] = row["kit_tok_s"] / row["base_tok_s"]
    if a.breakdown:
        row["breakdown"] = {name: time_breakdown(lambda fn=fn: fn(model, examples, a.group, a.new_tokens, s, 7))
                            for name, fn in runs.items()}
        row["call_s"] = {name: times[name] / a.repeats for name in runs}
    if device.type == "cuda":
        rows, steps = a.prompts * a.group, tokens["kit"] / (a.prompts * a.group) / a.repeats
        prompt_len = max(len(model.encode_prompt(e)) for e in examples)
        step_s = times["kit"] / a.repeats / steps
        row["kit_GB_s"] = decode_bytes_per_step(model, rows, prompt_len + steps / 2) / step_s / 1e9
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BANDWIDTH.items() if k in name), None)
        row["bw_util"] = row["kit_GB_s"] * 1e9 / peak if peak else float("nan")
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", nargs="+", default=["cpu"], choices=["smoke", "cpu", "gpu"])
    p.add_argument("--device", nargs="+", default=["cpu"], help="cpu and/or cuda")
    p.add_argument("--arch", nargs="+", default=["interleaved", "parallel"])
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group", type=int, default=4, help="samples per prompt (G)")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--compile", action="store_true", help="DecodeOptions.compile_step (CUDA: CUDA graphs)")
    p.add_argument("--breakdown", action="store_true", help="also split one profiled call's time per op kind")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    load = os.getloadavg()[0]
    tokenizer = build_tokenizer([f"w{i}" for i in range(300)], a.units)
    rows = []
    for dev in a.device:
        if dev.startswith("cuda") and not torch.cuda.is_available():
            print(f"skipping {dev}: CUDA is not available")
            continue
        for size in a.size:
            for arch in a.arch:
                rows.append(bench(arch, size, torch.device(dev), a, tokenizer))
    print(f"generation: {a.prompts} prompts x G={a.group}, {a.new_tokens} new tokens, temperature {a.temperature}, "
          f"top-p {a.top_p}, {a.threads} thread(s), compiled step {a.compile}, {a.repeats} timed repeats; "
          f"load average at the start {load:.2f}" if rows else "nothing measured")
    head = (f"{'arch':<12}{'size':<6}{'device':<7}{'params_M':>9}{'rows':>6}{'kit tok/s':>11}{'base tok/s':>11}"
            f"{'kit/base':>9}{'kit MB':>8}{'base MB':>8}  baseline")
    print(head + ("   kit GB/s  of peak" if any(r["device"] == "cuda" for r in rows) else ""))
    for r in rows:
        line = (f"{r['arch']:<12}{r['size']:<6}{r['device']:<7}{r['params_M']:>9.2f}{r['rows']:>6}{r['kit_tok_s']:>11.0f}"
                f"{r['base_tok_s']:>11.0f}{r['ratio']:>8.2f}x{r['kit_peak_MB']:>8.0f}{r['base_peak_MB']:>8.0f}  {r['baseline']}")
        if r["device"] == "cuda":
            line += f"   {r['kit_GB_s']:>8.0f}  {r['bw_util'] * 100:>6.1f}%"
        print(line)
    print("tok/s: decoded positions (rows x steps) per second; MB: peak memory of one call above what the process "
          "held before it (CPU: RSS, CUDA: allocations); GB/s (CUDA): weights + KV cache read per decode step / step time")
    for r in (r for r in rows if "breakdown" in r):
        print(f"\n{r['arch']} {r['size']} {r['device']}: seconds of one profiled call (the profiler adds to 'outside ops')")
        for name, parts in r["breakdown"].items():
            print(f"  {name:<5}" + "  ".join(f"{k} {v:.3f}" for k, v in parts.items()))
        kit, base = r["breakdown"]["kit"], r["breakdown"]["base"]
        bound = r["call_s"]["base"] / (kit["matmul"] + kit["attention"])
        print(f"  unprofiled seconds per call: kit {r['call_s']['kit']:.3f}, base {r['call_s']['base']:.3f}; ceiling "
              f"of kit/base with the network's matmuls and attention as they are: {bound:.2f}x (base / kit matmul + "
              f"attention; base matmul + attention {base['matmul'] + base['attention']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
