"""Warm start on a small synthetic world, through the training core (an SFT run): the loss falls, the run resumes
exactly, figures are written."""

from __future__ import annotations

import json
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wavalign_kit.models import SpokenDialogueModel
from wavalign_kit.models import warmstart as ws
from wavalign_kit.train import sft
from wavalign_kit.train.checkpoint import latest_checkpoint
from wavalign_kit.world.schema import Example
from wavalign_kit.world.tokenizer import build_tokenizer

NUMBERS = "zero one two three four five six seven eight nine".split()
UNITS = 16


def word_units(word: str) -> list[int]:
    """Each word is 'spoken' as a fixed sequence of three units."""
    h = zlib.crc32(word.encode())
    return [(h >> s) % UNITS for s in (0, 5, 10)]


class Recognizer:
    """Reads units back into words by the fixed word -> units code (a perfect recogniser of this world)."""

    def __init__(self, words):
        self.code = {tuple(word_units(w)): w for w in words}

    def transcribe(self, units_list):
        return [" ".join(self.code.get(tuple(int(x) for x in u[i:i + 3]), "?") for i in range(0, len(u) - 2, 3))
                for u in units_list]


class Style:
    styles = ["neutral", "happy"]

    def predict(self, units_list):
        return ["neutral"] * len(units_list)


def make_world():
    rng = np.random.default_rng(0)
    words = NUMBERS + ["what", "is", "plus"]
    def example(i):
        a, b = rng.integers(0, 5, size=2)
        answer = NUMBERS[a + b]
        q = f"what is {NUMBERS[a]} plus {NUMBERS[b]}"
        units = np.array(word_units(answer), dtype=np.int64)
        return Example(id=f"ex{i}", task="arithmetic", task_type="t2s", question_text=q, prompt_units=None,
                       target_text=answer, target_units=units, style="neutral", answer=answer,
                       check={"type": "contains", "answer": answer})
    splits = {"train": [example(i) for i in range(64)], "valid": [example(i) for i in range(8)],
              "test": [example(i) for i in range(6)]}
    return SimpleNamespace(root="synthetic", tokenizer=build_tokenizer(words, UNITS),
                           codec=SimpleNamespace(num_units=UNITS), split=splits.__getitem__,
                           evaluators=SimpleNamespace(recognizer=Recognizer(words), style=Style()))


CFG = dict(size="smoke", steps=12, batch_size=8, lr=5e-3, warmup_steps=2, eval_every=6, valid_examples=8,
           checkpoint_every=4, eval_examples=6, eval_batch=6, max_new_tokens=24)


@pytest.fixture(scope="module")
def world():
    torch.set_num_threads(1)
    return make_world()


@pytest.fixture(scope="module")
def finished(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("ws") / "interleaved"
    return out, ws.run_warmstart(world, "interleaved", CFG, out)


def test_warmstart_lowers_the_loss_and_writes_its_outputs(finished):
    out, summary = finished
    rows = json.loads((out / ws.SUMMARY).read_text())
    assert rows["steps"] == 12 and summary["final_loss"] < 0.6 * summary["first_loss"]
    for name in ("loss.csv", "loss.png", "wavalign_model.json", "model.safetensors", f"{ws.TRAINING}/metrics.csv"):
        assert (out / name).is_file(), name
    assert latest_checkpoint(out / ws.TRAINING).name == "checkpoint-000012"
    held = summary["heldout"]
    assert held["examples"] == 6 and 0.0 <= held["iq_text_accuracy"] <= 1.0
    assert 0.0 <= held["wer_speech_vs_text"] <= 1.0 and held["style_accuracy"] == 1.0
    assert SpokenDialogueModel.load(out).arch == "interleaved"


def test_a_finished_warmstart_is_reused(world, finished):
    out, summary = finished
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert ws.run_warmstart(world, "interleaved", CFG, out) == json.loads((out / ws.SUMMARY).read_text())
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_an_interrupted_warmstart_resumes_to_the_same_model(world, finished, tmp_path, monkeypatch):
    out_full, _ = finished
    real, calls = sft.loss, {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:      # training steps 1..6 + one validation batch at step 6, then step 7 crashes
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sft, "loss", crashing)
    with pytest.raises(KeyboardInterrupt):
        ws.run_warmstart(world, "interleaved", CFG, tmp_path, evaluate=False)
    assert latest_checkpoint(tmp_path / ws.TRAINING).name == "checkpoint-000004"
    monkeypatch.setattr(sft, "loss", real)
    ws.run_warmstart(world, "interleaved", CFG, tmp_path, evaluate=False)
    full = (out_full / "loss.csv").read_text().splitlines()
    resumed = (tmp_path / "loss.csv").read_text().splitlines()
    assert full == resumed
    a, b = SpokenDialogueModel.load(out_full).model, SpokenDialogueModel.load(tmp_path).model
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n


def test_parallel_warmstart_runs(world, tmp_path):
    summary = ws.run_warmstart(world, "parallel", {**CFG, "steps": 6, "eval_every": 0}, tmp_path)
    assert summary["final_loss"] < summary["first_loss"] and summary["heldout"]["examples"] == 6


def test_warmstart_cli_on_the_smoke_world(smoke_world_dir, tmp_path, capsys):
    """`wavalign warmstart` end to end on a real (smoke) world: the model talks and is scored by the evaluators."""
    out = tmp_path / "smoke-interleaved"
    assert ws.main(["--profile", "smoke", "--world", str(smoke_world_dir), "--arch", "interleaved", "--out", str(out),
                    "warmstart.steps=8", "warmstart.eval_examples=4", "warmstart.max_new_tokens=64"]) == 0
    summary = json.loads((out / ws.SUMMARY).read_text())
    assert summary["steps"] == 8 and summary["final_loss"] < summary["first_loss"]
    held = summary["heldout"]
    assert held["examples"] == 4 and 0.0 <= held["wer_speech_vs_text"] <= 1.0
    assert '"iq_text_accuracy"' in capsys.readouterr().out


def test_warmstart_weights_text_tokens(world):
    """The warm start trains the anchor with text tokens weighted ``text_weight`` (token-mean over the targets)."""
    from wavalign_kit.models import build_model

    model = build_model("interleaved", "smoke", world.tokenizer, num_units=UNITS)
    batch = sft.target_batch(model, world.split("train")[:3])
    nll = -model.token_logprobs(batch)[0].detach()
    t, s = batch.text_mask, batch.speech_mask
    weighted = ws.train_config(ws.WarmstartConfig(text_weight=3.0))
    expected = (3 * nll[t].sum() + nll[s].sum()) / (t.sum() + s.sum())
    assert torch.allclose(sft.anchor_term(-nll, batch, weighted), expected, atol=1e-6)
    plain = ws.train_config(ws.WarmstartConfig(text_weight=1.0))
    assert torch.allclose(sft.anchor_term(-nll, batch, plain), nll[t | s].mean(), atol=1e-6)
    assert (weighted.algorithm, weighted.split, weighted.eval_split) == ("sft", "train", "valid")
