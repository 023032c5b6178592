"""Diagnostic: does a warm start that reads more wordings let RL's gain reach the held-out wording?

The text-prompt (t2s) half of the cpu world's train split is replaced by as many new t2s items drawn from the
training templates plus ``EXTRA`` (about twice as many paraphrases per question family, words of the closed
vocabulary only, none of them a test template); their target speech is an existing train target's audio with the
same text and style. Spoken prompts (s2s) stay as built (new ones would need synthesis). The warm start (the cpu
profile's settings) is trained on that split into ``--out``/models/base-interleaved, then ``rl_sanity`` runs on it unchanged: the
rl, valid and test splits are the world's own, so its test figures are held-out ones.

    python benchmarks/sweeps/rl-sanity/warmstart_wording.py --out data/cpu/warmstart-wording [rl_sanity args]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import rl_sanity  # noqa: E402

from wavalign_kit.config import load_profile  # noqa: E402
from wavalign_kit.paths import Workspace  # noqa: E402
from wavalign_kit.workspace import prepare_base_model  # noqa: E402
from wavalign_kit.world import load_world  # noqa: E402
from wavalign_kit.world import templates as T  # noqa: E402
from wavalign_kit.world.build import write_atomic  # noqa: E402
from wavalign_kit.world.schema import load_examples, read_records  # noqa: E402
from wavalign_kit.world.tasks import generate_split  # noqa: E402

# (table, key) -> training paraphrases added to it
EXTRA: dict[tuple[str, ...], list[str]] = {
    ("ARITHMETIC", "plus"): ["please add {a} and {b}", "say what {a} plus {b} is", "tell me what {a} plus {b} is",
                             "how much do you get when you add {a} and {b}"],
    ("ARITHMETIC", "minus"): ["please take {b} away from {a}", "say what {a} minus {b} is",
                              "tell me what {a} minus {b} is", "what is left when you take {b} away from {a}"],
    ("COUNTING", "words"): ["tell me how many words are in this list {items}", "please count the words {items}",
                            "say how many words you hear in {items}"],
    ("COUNTING", "word"): ["say how many times {w} is in {items}", "tell me how often {w} is in {items}",
                           "count how many times you hear {w} in {items}"],
    ("FACTS", "city"): ["tell me the city where {p} lives", "say which city {p} lives in", "where is {p} living"],
    ("FACTS", "colour"): ["which colour does {p} like", "tell me the favourite colour of {p}",
                          "what is the colour that {p} likes"],
    ("FACTS", "pet"): ["what animal does {p} have", "tell me which animal {p} has", "what pet does {p} keep"],
    ("FACTS", "job"): ["tell me the job of {p}", "which job does {p} have", "what does {p} work as"],
    ("N_WORDS",): ["reply with exactly {n} {q}", "use {n} to answer {q}", "please answer in exactly {n} {q}"],
    ("YES_NO",): ["reply yes or no {q}", "say yes or no {q}", "please answer yes or no {q}"],
    ("STYLE_REQUESTS",): ["please answer {adv} {q}", "reply {adv} {q}", "be {adj} and reply {q}"],
}


@contextmanager
def extra_train_templates() -> Iterator[None]:
    """The template tables of templates.py with EXTRA appended to their training wording, restored afterwards."""
    specs = [getattr(T, key[0]) if len(key) == 1 else getattr(T, key[0])[key[1]] for key in EXTRA]
    saved = [list(spec["train"]) for spec in specs]
    vocab = set(T.vocabulary())
    for spec, extra in zip(specs, EXTRA.values()):
        assert not set(extra) & set(spec["train"] + spec["test"]), extra
        assert all(set(re.sub(r"\{\w+\}", " ", t).split()) <= vocab for t in extra), extra
        spec["train"].extend(extra)
    try:
        yield
    finally:
        for spec, train in zip(specs, saved):
            spec["train"][:] = train


def paraphrased_train(world_dir: Path, out: Path, seed: int) -> Path:
    """Write the train split with its t2s half redrawn over the extended templates to ``out``/train.jsonl."""
    records = read_records(world_dir / "train.jsonl")
    audio = {(r["sft_target_text"], r["style"]): r["sft_target_audio"] for r in records}
    test_questions = {r["question_text"] for r in read_records(world_dir / "test.jsonl")}
    keep = [r for r in records if r["task_type"] == "s2s"]
    need = len(records) - len(keep)
    facts = json.loads((world_dir / "facts.json").read_text())
    rng, new = np.random.default_rng(seed), []
    with extra_train_templates():
        while len(new) < need:
            for it in generate_split(rng, 200, "train", facts):
                if (it.target_text, it.style) in audio and it.question not in test_questions and len(new) < need:
                    new.append({"id": f"train-x{len(new):05d}", "audios": [], "task_type": "t2s",
                                "messages": [{"role": "user", "content": it.question},
                                             {"role": "assistant", "content": it.target_text}],
                                "question_text": it.question, "sft_target_text": it.target_text,
                                "sft_target_audio": audio[(it.target_text, it.style)], "task": it.task,
                                "template": it.template, "style": it.style, "rejected_style": it.rejected_style,
                                "answer": it.answer, "check": it.check, "answer_seen": True})
    out.mkdir(parents=True, exist_ok=True)
    for name in ("audio", "units"):          # the world's audio and unit cache, read where the split expects them
        if not (out / name).exists():
            (out / name).symlink_to((world_dir / name).resolve())
    write_atomic(out / "train.jsonl", "".join(json.dumps(r) + "\n" for r in keep + new))
    print(f"train split: {len(keep)} spoken prompts kept, {len(new)} text prompts redrawn over "
          f"{len({r['template'] for r in keep + new})} templates", flush=True)
    return out / "train.jsonl"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", default=str(ROOT / "data" / "cpu" / "world"))
    p.add_argument("--out", default=str(ROOT / "data" / "cpu" / "warmstart-wording"))
    p.add_argument("--seed", type=int, default=123, help="seed of the redrawn text prompts")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads of the warm start and of rl_sanity")
    args, rest = p.parse_known_args()
    world_dir, out = Path(args.world), Path(args.out)
    world = load_world(world_dir)
    train = load_examples(paraphrased_train(world_dir, out / "split", args.seed), codec=world.codec)
    view = rl_sanity.SplitView(world, {"train": train})
    view.root = out / "split"
    torch.set_num_threads(args.threads)
    ws = Workspace(out)                          # the warm start goes to out/models/base-interleaved
    summary = prepare_base_model(view, "interleaved", load_profile("cpu"), ws)
    print(f"warm start: {summary['train_seconds']} s, final loss {summary['final_loss']:.3f}", flush=True)
    return rl_sanity.main(["--world", str(world_dir), "--base", str(ws.base_model("interleaved")),
                           "--threads", str(args.threads), *rest], wrap_world=lambda _: view)


if __name__ == "__main__":
    raise SystemExit(main())
