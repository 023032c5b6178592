"""Warm start on a small synthetic world, through the training core (an SFT run): the loss falls, the run resumes
exactly, figures are written."""

from __future__ import annotations

import json

import pytest
import torch

from wavalign_kit.models import SpokenDialogueModel
from wavalign_kit.models import warmstart as ws
from wavalign_kit.train import sft
from wavalign_kit.train.checkpoint import latest_checkpoint

CFG = dict(size="smoke", steps=16, batch_size=8, lr=5e-3, warmup_steps=2, eval_every=6, valid_examples=8,
           checkpoint_every=4, eval_examples=6, eval_batch=6, max_new_tokens=24)


@pytest.fixture(scope="module")
def world(synthetic):
    return synthetic


@pytest.fixture(scope="module")
def finished(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("ws") / "interleaved"
    return out, ws.run_warmstart(world, "interleaved", CFG, out)


def test_warmstart_lowers_the_loss_and_writes_its_outputs(finished):
    out, summary = finished
    rows = json.loads((out / ws.SUMMARY).read_text())
    assert rows["steps"] == 16 and summary["final_loss"] < 0.6 * summary["first_loss"]
    for name in ("loss.csv", "loss.png", "wavalign_model.json", "model.safetensors", f"{ws.TRAINING}/metrics.csv"):
        assert (out / name).is_file(), name
    assert latest_checkpoint(out / ws.TRAINING).name == "checkpoint-000016"
    held = summary["heldout"]
    assert held["examples"] == 6 and 0.0 <= held["iq_text_accuracy"] <= 1.0
    assert 0.0 <= held["wer_speech_vs_text"] <= 1.0 and held["style_accuracy"] == 1.0
    assert SpokenDialogueModel.load(out).arch == "interleaved"


def test_a_finished_warmstart_is_reused(world, finished):
    out, summary = finished
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert ws.run_warmstart(world, "interleaved", CFG, out) == json.loads((out / ws.SUMMARY).read_text())
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    # built before a warmstart key existed (here forced_tokens): it ran with the value of that time
    # (BEFORE_ITS_KEY: forced_tokens=true), so it counts for a config asking for that value, and only for that one
    text = (out / ws.SUMMARY).read_text()
    older = json.loads(text)
    del older["settings"]["warmstart"]["forced_tokens"]
    (out / ws.SUMMARY).write_text(json.dumps(older))
    try:
        assert ws.run_warmstart(world, "interleaved", {**CFG, "forced_tokens": True}, out) == older
        assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    finally:
        (out / ws.SUMMARY).write_text(text)


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

    model = build_model("interleaved", "smoke", world.tokenizer, num_units=world.num_units)
    batch = sft.target_batch(model, world.split("train")[:3])
    nll = -model.token_logprobs(batch)[0].detach()
    t, s = batch.text_mask, batch.speech_mask
    weighted = ws.train_config(ws.WarmstartConfig(text_weight=3.0))
    expected = (3 * nll[t].sum() + nll[s].sum()) / (t.sum() + s.sum())
    assert torch.allclose(sft.anchor_term(-nll, batch, weighted), expected, atol=1e-6)
    plain = ws.train_config(ws.WarmstartConfig(text_weight=1.0))
    assert torch.allclose(sft.anchor_term(-nll, batch, plain), nll[t | s].mean(), atol=1e-6)
    assert (weighted.algorithm, weighted.split, weighted.eval_split) == ("sft", "train", "valid")
