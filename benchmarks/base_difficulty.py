"""How hard a world is for its warm-started base model: text-channel task accuracy per task on the rl and test
splits (and on seen / unseen answers), sampled as the evaluation samples (temperature 0.7, top-p 0.9).

Also the teacher-forced negative log-likelihood of the targets per token of each channel (text, speech): where
a base model's loss sits when two architectures learn differently at the same budget.

RL needs a base that is imperfect where it trains (no task near 0 or 1, so GRPO groups have reward variance) and
the test split must leave room to generalise. Build a world and warm-start a base, then:

    wavalign world --profile cpu --out data/worlds/cpu --threads 1
    wavalign warmstart --profile cpu --world data/worlds/cpu --arch interleaved --out data/models/cpu-interleaved
    python benchmarks/base_difficulty.py --world data/worlds/cpu --model data/models/cpu-interleaved --seeds 0 1
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from tqdm.auto import tqdm

from wavalign_kit.models import Sampling, SpokenDialogueModel
from wavalign_kit.world import has_kit_check, load_world, verify


def text_accuracy(model, examples, seed: int, *, batch: int, max_new_tokens: int, temperature: float,
                  top_p: float) -> np.ndarray:
    """1/0 per example: whether the sampled text channel passes the example's check."""
    sampling = Sampling(temperature, top_p)
    texts = []
    for i in tqdm(range(0, len(examples), batch), desc=f"seed {seed}", leave=False):
        chunk = examples[i: i + batch]
        texts += model.generate(chunk, num_samples=1, text_sampling=sampling, speech_sampling=sampling,
                                max_new_tokens=max_new_tokens, seed=seed * 100_003 + i).texts
    return np.array([float(verify(ex, t)) for ex, t in zip(examples, texts)])


def channel_nll(model, examples, *, batch: int) -> dict[str, float]:
    """Mean NLL per target token of each channel (text / speech), teacher-forced, in nats; ``words``: the text
    channel without the parallel layout's text_pad steps (the text stream's filler while speech goes on)."""
    from wavalign_kit.train.sft import target_batch

    sums = {"text": 0.0, "words": 0.0, "speech": 0.0}
    counts = dict.fromkeys(sums, 0)
    pad = model.layout.text_pad_id
    for i in range(0, len(examples), batch):
        tokens = target_batch(model, examples[i: i + batch])
        logp, _ = model.token_logprobs(tokens)
        targets = tokens.input_ids[:, 1:].reshape(len(tokens), -1)                 # aligned with logp (B, N)
        words = tokens.text_mask & (targets != pad) if pad is not None else tokens.text_mask
        for name, mask in (("text", tokens.text_mask), ("words", words), ("speech", tokens.speech_mask)):
            sums[name] += float(-logp[mask].sum())
            counts[name] += int(mask.sum())
    return {f"{k}_nll": round(sums[k] / max(counts[k], 1), 4) for k in sums}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", required=True)
    p.add_argument("--model", required=True, help="a warm-started base model directory")
    p.add_argument("--splits", nargs="+", default=["rl", "test"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--max-examples", type=int, default=0, help="first N examples of each split (0: all)")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--max-new-tokens", type=int, default=64, help="enough for the text channel of every answer")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the table here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    world = load_world(a.world)
    model = SpokenDialogueModel.load(a.model)
    model.model.eval()
    table: dict[str, dict] = {}
    for split in a.splits:
        examples = [ex for ex in world.split(split) if has_kit_check(ex)]
        examples = examples[: a.max_examples] if a.max_examples else examples
        with torch.no_grad():
            ok = np.stack([text_accuracy(model, examples, s, batch=a.batch, max_new_tokens=a.max_new_tokens,
                                         temperature=a.temperature, top_p=a.top_p) for s in a.seeds])  # (S, N)
        row = {}
        groups = {t: [i for i, ex in enumerate(examples) if ex.task == t] for t in sorted({ex.task for ex in examples})}
        groups["all"] = list(range(len(examples)))
        for tt in ("s2s", "t2s"):
            groups[f"{tt} prompts"] = [i for i, ex in enumerate(examples) if ex.task_type == tt]
        for flag in (True, False):
            groups[f"{'seen' if flag else 'unseen'} answers"] = [
                i for i, ex in enumerate(examples) if ex.record.get("answer_seen") is flag]
        for name, idx in groups.items():
            if idx:
                per_seed = ok[:, idx].mean(axis=1)
                row[name] = {"n": len(idx), "accuracy": round(float(per_seed.mean()), 3),
                             "per_seed": [round(float(x), 3) for x in per_seed]}
        with torch.no_grad():
            row["target nll"] = channel_nll(model, examples, batch=a.batch)
        table[split] = row
    print(f"text-channel accuracy of {a.model} on {a.world} (temperature {a.temperature}, top-p {a.top_p}, "
          f"seeds {a.seeds})")
    for split, row in table.items():
        print(f"{split}: teacher-forced NLL per target token: " + ", ".join(f"{k} {v:.3f}" for k, v in row["target nll"].items()))
    names = sorted({k for row in table.values() for k in row if k != "target nll"}, key=lambda k: (k == "all", "prompts" in k, "answers" in k, k))
    print(f"{'':18}" + "".join(f"{s:>20}" for s in table))
    for name in names:
        cells = [f"{row[name]['accuracy']:.3f} (n={row[name]['n']})" if name in row else "-" for row in table.values()]
        print(f"{name:18}" + "".join(f"{c:>20}" for c in cells))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(table, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
