"""Tests of the spoken dialogue models: layout-following generation, log-prob consistency, save/load, LoRA, errors."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wavalign_kit.models import Sampling, SpokenDialogueModel, apply_lora, build_model, load_pretrained
from wavalign_kit.models.interleaved import InterleavedSlots
from wavalign_kit.models.lora import LoraSettings
from wavalign_kit.models.sampling import sample_tokens
from wavalign_kit.world.tokenizer import build_tokenizer

WORDS = "what is two plus three five the answer yes no alice lives in paris".split()
UNITS = 24


@pytest.fixture(scope="module")
def tokenizer():
    torch.set_num_threads(1)
    return build_tokenizer(WORDS, UNITS)


def examples():
    return [SimpleNamespace(task_type="t2s", question_text="what is two plus three", prompt_units=None),
            SimpleNamespace(task_type="s2s", question_text="what is five", prompt_units=np.arange(9) % UNITS)]


def roll(model, seed=0, G=3, max_new=48, temp=1.0):
    s = Sampling(temp, 1.0)
    return model.generate(examples(), num_samples=G, text_sampling=s, speech_sampling=s, max_new_tokens=max_new,
                          seed=seed)


@pytest.mark.parametrize("arch", ["interleaved", "parallel"])
def test_generation_logprobs_equal_fresh_forward(tokenizer, arch):
    model = build_model(arch, "smoke", tokenizer, num_units=UNITS)
    r = roll(model)
    b = r.batch
    assert b.input_ids.shape[0] == 6 and r.group_size == 3 and r.prompt_index == [0, 0, 0, 1, 1, 1]
    assert len(r.texts) == len(r.units) == 6
    fresh, ent = model.token_logprobs(b, with_entropy=True)
    assert fresh.shape == r.logprobs.shape == b.response_mask.shape
    assert torch.allclose(fresh.detach(), r.logprobs, atol=1e-4)
    assert (r.logprobs[~b.response_mask] == 0).all() and (r.logprobs[b.response_mask] < 0).all()
    assert (ent[b.response_mask] > 0).all()
    # channel masks: disjoint, inside the response, covering it
    assert not (b.text_mask & b.speech_mask).any()
    assert torch.equal(b.text_mask | b.speech_mask, b.response_mask)


@pytest.mark.parametrize("arch", ["interleaved", "parallel"])
def test_generated_responses_follow_the_layout(tokenizer, arch):
    """A finished response is exactly layout_response of its own split: the decoder obeys the ratio/delay."""
    model = build_model(arch, "smoke", tokenizer, num_units=UNITS)
    r = roll(model, seed=1, max_new=80)
    lay, checked = model.layout, 0
    for i in range(len(r.texts)):
        p = int(r.batch.prompt_lengths[i])
        n = int(r.batch.attention_mask[i].sum())
        resp = r.batch.input_ids[i, p:n].numpy()
        eos_at = resp[..., 0] if arch == "parallel" else resp
        if eos_at[-1] != lay.eos_id:
            continue                                        # hit max_new_tokens
        text, units = lay.split_response(resp)
        if len(units) == 0:
            continue
        assert np.array_equal(lay.layout_response(text, units), resp)
        assert r.texts[i] == model.decode_text(text)
        checked += 1
    assert checked >= 1


def test_slot_machine_accepts_every_layout(tokenizer):
    """Teacher-forcing layout_response through the decoder's state machine: every token is allowed."""
    model = build_model("interleaved", "smoke", tokenizer, num_units=UNITS, ratio="1 3 2 4")
    lay, rng = model.layout, np.random.default_rng(0)
    text_ids = model.text_ids(" ".join(WORDS))
    for _ in range(40):
        text = list(rng.choice(text_ids, size=rng.integers(1, 9)))
        units = rng.integers(0, UNITS, size=rng.integers(1, 30))
        resp = torch.as_tensor(lay.layout_response(text, units))
        slots = InterleavedSlots(lay, tokenizer, len(tokenizer), 1, torch.device("cpu"))
        for tok in resp:
            kind = slots.slots()
            assert bool(slots.allowed(kind)[0, tok]), (text, units, resp)
            slots.update(kind, tok.view(1))
        assert bool(slots.finished.all())


def test_sample_tokens_respects_mask_temperature_and_top_p():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]]).repeat(400, 1)
    allowed = torch.tensor([[False, True, True, True]]).repeat(400, 1)
    one = torch.ones(400)
    greedy = sample_tokens(logits, allowed, 0 * one, one, 0 * one.long(), g)
    assert (greedy == 1).all()
    nucleus = sample_tokens(logits, allowed, one, 0.5 * one, 0 * one.long(), g)    # p(1) = 0.67 > 0.5
    assert (nucleus == 1).all()
    free = sample_tokens(logits, allowed, one, one, 0 * one.long(), g)
    assert set(free.tolist()) == {1, 2, 3}
    topk = sample_tokens(logits, allowed, one, one, 2 * one.long(), g)
    assert set(topk.tolist()) == {1, 2}


def test_generation_is_deterministic_under_a_seed(tokenizer):
    model = build_model("interleaved", "smoke", tokenizer, num_units=UNITS)
    a, b = roll(model, seed=5), roll(model, seed=5)
    assert torch.equal(a.batch.input_ids, b.batch.input_ids)


def _perturb(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("arch", ["interleaved", "parallel"])
@pytest.mark.parametrize("lora", [False, True])
def test_save_load_round_trip(tokenizer, tmp_path, arch, lora):
    model = build_model(arch, "smoke", tokenizer, num_units=UNITS)
    if lora:
        apply_lora(model, LoraSettings(enabled=True, r=4, train_heads=True))
    _perturb(model.model)
    batch = roll(model).batch
    before = model.token_logprobs(batch)[0]
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / ("peft_model.safetensors" if lora else "model.safetensors")).is_file()
    loaded = SpokenDialogueModel.load(tmp_path / "m")
    assert loaded.arch == arch and loaded.is_lora() == lora and loaded.layout == model.layout
    assert torch.allclose(loaded.token_logprobs(batch)[0], before, atol=1e-5)
    text = "what is two plus three"
    assert loaded.text_ids(text) == model.text_ids(text) and loaded.decode_text(loaded.text_ids(text)) == text


@pytest.mark.parametrize("arch", ["interleaved", "parallel"])
def test_reference_is_the_base_model_under_lora(tokenizer, arch):
    model = build_model(arch, "smoke", tokenizer, num_units=UNITS)
    batch = roll(model).batch
    base = model.token_logprobs(batch)[0].detach()
    apply_lora(model, LoraSettings(enabled=True, r=4))
    opt = torch.optim.SGD([p for p in model.model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(2):   # lora_B starts at zero: two steps move the policy
        loss = -model.token_logprobs(batch)[0].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy = model.token_logprobs(batch)[0].detach()
    ref = model.reference_logprobs(batch)
    assert not torch.allclose(policy, base, atol=1e-3)
    assert torch.allclose(ref, base, atol=1e-5) and not ref.requires_grad


def test_reference_is_a_frozen_copy_under_full_finetuning(tokenizer):
    model = build_model("interleaved", "smoke", tokenizer, num_units=UNITS)
    batch = roll(model).batch
    base = model.token_logprobs(batch)[0].detach()
    model.snapshot_reference()
    _perturb(model.model)
    assert torch.allclose(model.reference_logprobs(batch), base, atol=1e-6)
    assert not torch.allclose(model.token_logprobs(batch)[0].detach(), base, atol=1e-3)


def test_load_pretrained_and_its_errors(tokenizer, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Wav2Vec2Config

    tiny = build_model("interleaved", "smoke", tokenizer, num_units=UNITS)
    tiny.model.save_pretrained(tmp_path / "ok")
    tokenizer.save_pretrained(tmp_path / "ok")
    model = load_pretrained(tmp_path / "ok", {"ratio": "2 8"}, dtype="float32")
    assert model.layout.num_units == UNITS and model.arch == "interleaved"
    assert roll(model, G=1, max_new=8).batch.input_ids.shape[0] == 2
    # a tokenizer without the declared speech tokens
    core = Tokenizer(models.WordLevel(vocab={"<unk>": 0, "<pad>": 1, "hello": 2}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    plain = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<pad>")
    tiny.model.save_pretrained(tmp_path / "nospeech")
    plain.save_pretrained(tmp_path / "nospeech")
    with pytest.raises(ValueError, match="speech tokens"):
        load_pretrained(tmp_path / "nospeech")
    # a config that is not a causal LM
    Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path / "w2v")
    with pytest.raises(ValueError, match="not a causal language model"):
        load_pretrained(tmp_path / "w2v")
    with pytest.raises(ValueError, match="not a local model directory"):
        load_pretrained(tmp_path / "missing")


def test_dual_stream_model_saves_with_transformers(tokenizer, tmp_path):
    from transformers import AutoConfig, AutoModel

    model = build_model("parallel", "smoke", tokenizer, num_units=UNITS)
    model.model.save_pretrained(tmp_path / "d")
    assert (tmp_path / "d" / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(tmp_path / "d").model_type == "wavalign_dual_stream"
    again = AutoModel.from_pretrained(tmp_path / "d")
    ids = torch.randint(0, len(tokenizer), (2, 5, 2))
    assert torch.allclose(again(ids).logits, model.model(ids).logits, atol=1e-6)


def test_model_sizes(tokenizer):
    from wavalign_kit.models import count_parameters

    n = count_parameters(build_model("interleaved", "smoke", tokenizer, num_units=UNITS))
    assert 1e5 < n < 2e6


def test_selective_logprobs_equal_the_full_log_softmax_in_any_chunking():
    from wavalign_kit.models.sampling import gather_logprobs

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 2, 11, generator=g, requires_grad=True)          # (B, L, S, V)
    tokens = torch.randint(0, 11, (3, 7, 2), generator=g)
    full = logits.log_softmax(-1)
    want_logp = full.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    want_ent = -(full.exp() * full).sum(-1)
    for chunk in (11, 50, 1 << 24):                                             # 1 row, a few rows, all rows
        logp, ent = gather_logprobs(logits, tokens, with_entropy=True, chunk_elements=chunk)
        assert torch.allclose(logp, want_logp, atol=1e-6) and torch.allclose(ent, want_ent, atol=1e-6)
        assert not ent.requires_grad and logp.requires_grad
    grad, = torch.autograd.grad(gather_logprobs(logits, tokens, chunk_elements=50)[0].sum(), logits)
    want, = torch.autograd.grad(want_logp.sum(), logits)
    assert torch.allclose(grad, want, atol=1e-6)
    half, _ = gather_logprobs(logits.detach().bfloat16(), tokens)
    assert half.dtype == torch.float32 and torch.allclose(half, want_logp, atol=0.05)
