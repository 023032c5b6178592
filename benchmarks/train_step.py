"""Benchmark of one training step: generation / reward / training-pass time, tokens/s and peak memory per
architecture and size, optionally side by side with TRL's GRPOTrainer on the same model, prompts and settings.

    python benchmarks/train_step.py                                   # CPU, smoke size, both architectures
    python benchmarks/train_step.py --arch interleaved --vs-trl       # + TRL GRPOTrainer, ratio printed
    python benchmarks/train_step.py --device cuda --real-size --vs-trl --prompts 16 --max-new-tokens 256
        # a Qwen2-0.5B-shaped model (random weights, speech vocabulary) and the training pass's MFU

Prompts and rewards come from the synthetic stand-in world (`wavalign_kit.train.synthetic`), so nothing has to
be built first. Step 0 is a warm-up and is not averaged. The kit's step is the full hybrid step of the preset
(default `wavalign`: rollouts, reference pass, fused RL + anchor forward/backward, AdamW); TRL's is its plain
GRPO step (generation, reward, reference pass when beta > 0, forward/backward, AdamW) at the same prompts, G,
completion length, sampling, beta, learning rate and precision.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wavalign_kit.config import load_yaml  # noqa: E402
from wavalign_kit.models import build_model  # noqa: E402
from wavalign_kit.train.config import preset_path, resolve_config  # noqa: E402
from wavalign_kit.train.metrics_log import read_metrics  # noqa: E402
from wavalign_kit.train.synthetic import AnswerJudge, synthetic_world  # noqa: E402
from wavalign_kit.train.trainer import Trainer  # noqa: E402

QWEN2_05B = dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864, text_vocab=151_936, num_units=4096)
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def real_size_model(arch: str, world):
    """A Qwen2-0.5B-shaped model with random weights: Qwen's text vocabulary plus the speech units."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    from wavalign_kit.models import InterleavedModel, ParallelModel
    from wavalign_kit.models.factory import world_layout
    from wavalign_kit.models.parallel import DualStreamConfig, DualStreamModel

    q = QWEN2_05B
    vocab = q["text_vocab"] + q["num_units"]
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=q["hidden_size"], num_hidden_layers=q["num_hidden_layers"],
                      num_attention_heads=q["num_attention_heads"], num_key_value_heads=q["num_key_value_heads"],
                      intermediate_size=q["intermediate_size"], max_position_embeddings=4096, tie_word_embeddings=True)
    layout = world_layout(arch, world.tokenizer, world.num_units)
    if arch == "interleaved":
        return InterleavedModel(AutoModelForCausalLM.from_config(cfg), world.tokenizer, layout)
    return ParallelModel(DualStreamModel(DualStreamConfig(backbone_config=cfg, vocab_size=vocab, num_codebooks=1)),
                         world.tokenizer, layout)


def matmul_params(model) -> int:
    """Parameters that take part in a matmul per token (all but the input embedding; a tied head counts once)."""
    module = model.model
    emb = module.get_input_embeddings() if hasattr(module, "get_input_embeddings") else None
    total = sum(p.numel() for p in module.parameters())
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    tied = emb is not None and head is not None and head.weight is emb.weight
    return total - (0 if emb is None or tied else emb.weight.numel())


def peak_flops(device: torch.device, given: float | None) -> float | None:
    if given:
        return given * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def kit_step(args, arch: str, size: str, device: torch.device) -> dict:
    """Run the kit's trainer for warm-up + ``steps`` steps; mean figures over the timed steps."""
    world = synthetic_world(size=max(64, args.prompts * (args.steps + 1)), num_units=4096 if args.real_size else 64,
                            units_per_word=6)
    model = real_size_model(arch, world) if args.real_size else build_model(arch, size, world.tokenizer,
                                                                            num_units=world.num_units)
    initial = copy.deepcopy(model.model) if args.vs_trl and arch == "interleaved" else None
    model.model.to(device)
    over = {"steps": args.steps + 1, "prompts_per_step": args.prompts, "group_size": args.group_size,
            "max_new_tokens": args.max_new_tokens, "save_every": 10_000, "progress": False,
            "beta_text": args.beta, "beta_speech": args.beta, "temperature": args.temperature, "lr": 1e-5,
            "bf16": device.type == "cuda"}
    cfg, _ = resolve_config({"seed": 0}, load_yaml(preset_path(args.preset)), over)
    with tempfile.TemporaryDirectory() as out:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer = Trainer(cfg, model, world, out, log=lambda *_: None)
        trainer.train()
        rows = read_metrics(Path(out) / "metrics.csv")[1:]

    def mean(key: str) -> float:
        return statistics.fmean(float(r[key]) for r in rows if r[key] != "")

    tokens = mean("tokens_per_s") * mean("step_time")            # tokens through the training pass per step
    n = matmul_params(model)
    flops = 6 * n * tokens + (2 * n * tokens if args.beta > 0 else 0)  # fwd+bwd, + reference forward
    peak = peak_flops(device, args.peak_tflops)
    return {"arch": arch, "size": "0.5B" if args.real_size else size, "params_M": n / 1e6, "step_s": mean("step_time"),
            "generate_s": mean("time_generate"), "reward_s": mean("time_reward"), "train_s": mean("time_train"),
            "tokens_per_s": mean("tokens_per_s"), "gen_tokens": args.prompts * args.group_size * (mean("len_text") + mean("len_speech")),
            "peak_mem_mb": mean("peak_mem_mb"), "mfu": (flops / mean("time_train") / peak) if peak else float("nan"),
            "initial": initial, "world": world}


def trl_step(args, kit: dict, device: torch.device) -> dict:
    """TRL GRPOTrainer on the same initial weights, prompts, G, lengths, sampling, beta and precision."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    world, module = kit["world"], kit["initial"]
    tok = world.tokenizer
    examples = world.split("train")
    data = Dataset.from_list([{"prompt": f"<|user|> {e.question_text} <|assistant|>", "answer": e.answer,
                               "question": e.question_text} for e in examples])
    judge = AnswerJudge()

    def answer_reward(prompts, completions, answer, question, **_) -> list[float]:
        out = []
        for c, a, q in zip(completions, answer, question):
            echo = len(set(q.split()) & set(c.split())) / len(set(q.split()))
            out.append(5.0 if a in c.split() else 1.0 + 2.0 * echo)
        return out

    answer_reward.__name__ = judge.name

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, *a, **k):
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t)

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        model_dir = Path(out) / "initial"  # TRL builds its reference model from a path when beta > 0
        module.save_pretrained(model_dir)
        tok.save_pretrained(model_dir)
        cfg = GRPOConfig(output_dir=out, per_device_train_batch_size=args.prompts * args.group_size,
                         num_generations=args.group_size, max_completion_length=args.max_new_tokens,
                         temperature=args.temperature, top_p=0.9, beta=args.beta, learning_rate=1e-5,
                         max_steps=args.steps + 1, logging_steps=1, report_to=[], save_strategy="no",
                         bf16=device.type == "cuda", use_cpu=device.type != "cuda", seed=0,
                         disable_tqdm=True, gradient_accumulation_steps=1)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        trainer = GRPOTrainer(model=str(model_dir), reward_funcs=answer_reward, args=cfg, train_dataset=data,
                              processing_class=tok, callbacks=[timer])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    timed = timer.times[1:]
    return {"step_s": statistics.fmean(timed), "gen_tokens": args.prompts * args.group_size * statistics.fmean(lengths[1:] or lengths),
            "peak_mem_mb": peak}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", nargs="+", default=["interleaved", "parallel"], choices=["interleaved", "parallel"])
    p.add_argument("--size", nargs="+", default=["smoke"], choices=["smoke", "cpu", "gpu"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    p.add_argument("--preset", default="wavalign")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--beta", type=float, default=0.001, help="KL weight (both channels; 0 skips the reference)")
    p.add_argument("--vs-trl", action="store_true", help="also run TRL's GRPOTrainer (interleaved only)")
    p.add_argument("--real-size", action="store_true", help="Qwen2-0.5B-shaped model (random weights)")
    p.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak for the MFU (auto on H100/A100)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = ["0.5B"] if args.real_size else args.size
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"preset {args.preset}, {args.prompts} prompts x G={args.group_size}, max {args.max_new_tokens} new tokens, "
          f"beta {args.beta}, {args.steps} timed steps", flush=True)
    header = (f"{'system':<7} {'arch':<12} {'size':<5} {'params':>8} {'step s':>8} {'gen s':>7} {'reward s':>8} "
              f"{'train s':>8} {'train tok/s':>11} {'gen tok/s':>9} {'peak MB':>8} {'MFU':>6} {'TRL/kit':>8}")
    print(header, flush=True)
    for arch in args.arch:
        for size in sizes:
            k = kit_step(args, arch, size, device)
            mfu = f"{k['mfu'] * 100:>5.1f}%" if k["mfu"] == k["mfu"] else f"{'-':>6}"
            print(f"{'kit':<7} {arch:<12} {k['size']:<5} {k['params_M']:>7.1f}M {k['step_s']:>8.3f} "
                  f"{k['generate_s']:>7.3f} {k['reward_s']:>8.4f} {k['train_s']:>8.3f} {k['tokens_per_s']:>11.0f} "
                  f"{k['gen_tokens'] / k['generate_s']:>9.0f} {k['peak_mem_mb']:>8.0f} {mfu} {'':>8}", flush=True)
            if args.vs_trl and arch == "interleaved":
                t = trl_step(args, k, device)
                peak = f"{t['peak_mem_mb']:>8.0f}" if t["peak_mem_mb"] == t["peak_mem_mb"] else f"{'-':>8}"
                print(f"{'trl':<7} {arch:<12} {k['size']:<5} {k['params_M']:>7.1f}M {t['step_s']:>8.3f} "
                      f"{'-':>7} {'-':>8} {'-':>8} {'-':>11} {t['gen_tokens'] / t['step_s']:>9.0f} "
                      f"{peak} {'-':>6} {t['step_s'] / k['step_s']:>7.2f}x", flush=True)
    print("train tok/s: prompt + response tokens through the fused training pass per second of the step; "
          "gen tok/s: generated tokens per second of generation (TRL: per second of its whole step); "
          "MFU: 6 N T (+ 2 N T reference) / train-pass time / bf16 peak (GPU); peak MB: CUDA peak allocation (kit on "
          "CPU: the process's peak RSS); TRL/kit: TRL's step time over the kit's.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
