"""Tests of the rollout decoder: greedy tokens equal HF generate (interleaved) and a no-cache loop (parallel),
log-probs equal a fresh forward with finished rows leaving the batch, forced positions, the lean step against
transformers' step and its fallback, cache fallback, compile."""

from __future__ import annotations

import copy
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from wavalign_kit.models import Sampling, build_model
from wavalign_kit.models.decoding import DecodeOptions, left_pad
from wavalign_kit.models.interleaved import InterleavedSlots
from wavalign_kit.models.lean_step import LeanStep
from wavalign_kit.world.tokenizer import build_tokenizer

WORDS = "what is two plus three five the answer yes no alice lives in paris".split()
UNITS = 24
GREEDY = Sampling(0.0, 1.0)


@pytest.fixture(scope="module")
def tokenizer():
    torch.set_num_threads(1)
    return build_tokenizer(WORDS, UNITS)


def examples():
    return [SimpleNamespace(task_type="t2s", question_text="what is two plus three", prompt_units=None),
            SimpleNamespace(task_type="s2s", question_text="what is five", prompt_units=np.arange(9) % UNITS),
            SimpleNamespace(task_type="t2s", question_text="alice lives in paris yes", prompt_units=None)]


def sharp_model(arch, tokenizer, seed=0):
    """A smoke model whose logits are far apart (random init is near-uniform: greedy ties would be arbitrary)
    and whose channel-closing tokens win in some contexts, so that greedy rows end at different steps."""
    model = build_model(arch, "smoke", tokenizer, num_units=UNITS, seed=seed)
    lay, g = model.layout, torch.Generator().manual_seed(seed)
    closing = [lay.text_end_id, lay.end_audio_id if arch == "interleaved" else lay.speech_pad_id]
    with torch.no_grad():
        for name, p in model.model.named_parameters():
            if "head" in name:
                p.copy_(torch.randn(p.shape, generator=g))
                p[closing] *= 3.0
    return model


def greedy(model, max_new=40, G=2, **options):
    model.decode_options = DecodeOptions(**options)
    return model.generate(examples(), num_samples=G, text_sampling=GREEDY, speech_sampling=GREEDY,
                          max_new_tokens=max_new, seed=0)


def responses(rollout):
    b = rollout.batch
    return [b.input_ids[i, int(b.prompt_lengths[i]): int(b.attention_mask[i].sum())] for i in range(len(rollout.texts))]


class SlotProcessor(LogitsProcessor):
    """HF generate logits processor that applies the kit's interleaved slot masks."""

    def __init__(self, model, prompt_length: int, rows: int) -> None:
        self.slots = InterleavedSlots(model.layout, model.tokenizer, len(model.tokenizer), rows, torch.device("cpu"))
        self.prompt_length, self.kind = prompt_length, None

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] > self.prompt_length:
            self.slots.update(self.kind, input_ids[:, -1])
        self.kind = self.slots.slots()
        return scores.masked_fill(~self.slots.allowed(self.kind)[:, : scores.shape[-1]], float("-inf"))


def test_greedy_interleaved_equals_hf_generate(tokenizer):
    model = sharp_model("interleaved", tokenizer, seed=1)          # rows end after 4, 17 and 40 (cap) tokens
    kit = responses(greedy(model))
    prompts = [model.encode_prompt(e) for e in examples()]
    ids, attn = (x.repeat_interleave(2, 0) for x in left_pad(prompts, model.layout.pad_id))   # G = 2 rows each
    hf = model.model.generate(input_ids=ids, attention_mask=attn, do_sample=False,
                              max_new_tokens=40, eos_token_id=model.layout.eos_id, pad_token_id=model.layout.pad_id,
                              logits_processor=LogitsProcessorList([SlotProcessor(model, ids.shape[1], 6)]))
    finished = 0
    for row, (k, h) in enumerate(zip(kit, hf[:, ids.shape[1]:])):
        stop = (h == model.layout.eos_id).nonzero()
        h = h[: int(stop[0]) + 1] if len(stop) else h
        assert torch.equal(k, h), row
        finished += bool(len(stop))
    assert finished >= 2


def no_cache_greedy(model, prompt: np.ndarray, max_new: int) -> torch.Tensor:
    """The parallel oracle: one row, no padding, a full forward over the whole sequence at every step."""
    rules = model.slot_rules(1, model.model.config.vocab_size, torch.device("cpu"))
    seq = torch.as_tensor(prompt)[None]                                              # (1, L, S)
    out = []
    for _ in range(max_new):
        logits = model.model(input_ids=seq).logits[:, -1]                            # (1, S, V)
        allowed, _ = rules.allowed_tokens()
        step, _ = rules.resolve(logits.masked_fill(~allowed, float("-inf")).argmax(-1))
        rules.advance(step)
        out.append(step[0])
        seq = torch.cat([seq, step[:, None]], 1)
        if step[0, 0] == model.layout.eos_id:
            break
    return torch.stack(out)


@pytest.mark.parametrize("static_cache", [True, False])
def test_greedy_parallel_equals_a_no_cache_loop(tokenizer, static_cache):
    model = sharp_model("parallel", tokenizer, seed=5)             # rows end after 35, 6 and 26 tokens
    kit = responses(greedy(model, static_cache=static_cache))
    assert min(len(k) for k in kit) < 10
    with torch.no_grad():
        for row, e in enumerate(np.repeat(examples(), 2)):
            assert torch.equal(kit[row], no_cache_greedy(model, model.encode_prompt(e), 40)), row


@pytest.mark.parametrize("arch", ["interleaved", "parallel"])
def test_logprobs_and_forced_positions_with_finished_rows_leaving_the_batch(tokenizer, arch, monkeypatch):
    """Sampled rollouts whose rows end at different steps (compaction runs): log-probs equal a fresh forward,
    and the decoder's forced positions equal forced_mask of the same responses (teacher-forced)."""
    from wavalign_kit.models import decoding

    compactions = []
    keep_rows = decoding._keep_rows
    monkeypatch.setattr(decoding, "_keep_rows", lambda cache, rows: compactions.append(len(rows)) or keep_rows(cache, rows))
    model = build_model(arch, "smoke", tokenizer, num_units=UNITS)
    model.decode_options = DecodeOptions(stop_check_every=2)
    s = Sampling(1.0, 1.0)
    r = model.generate(examples(), num_samples=4, text_sampling=s, speech_sampling=s, max_new_tokens=60, seed=3)
    assert compactions and compactions[-1] < 12
    b, lay = r.batch, model.layout
    lengths = b.attention_mask.sum(1) - b.prompt_lengths
    assert len(set(lengths.tolist())) > 3 and int(lengths.max()) > 2 * int(lengths.min())   # rows ended apart
    fresh = model.token_logprobs(b)[0].detach()
    assert torch.allclose(fresh, r.logprobs, atol=1e-4)
    prompts = [model.encode_prompt(e) for e in np.repeat(examples(), 4)]
    assert torch.equal(model.forced_mask(prompts, [x.numpy() for x in responses(r)]), r.forced)
    assert not (r.forced & ~b.response_mask).any()
    targets = b.input_ids[:, 1:].reshape(len(prompts), -1)                            # the token of each position
    if arch == "interleaved":   # exactly the eos of each finished row (its slot allows nothing else)
        assert torch.equal(r.forced, b.response_mask & (targets == lay.eos_id))
    else:                       # every text_pad / eos, and the speech pads of the delay
        text_pos = b.text_mask
        assert torch.equal(r.forced & text_pos,
                           text_pos & ((targets == lay.text_pad_id) | (targets == lay.eos_id)))
        delay = torch.zeros_like(b.response_mask).reshape(len(prompts), -1, 2)
        for i, p in enumerate(b.prompt_lengths.tolist()):
            delay[i, p - 1: p - 1 + lay.speech_delay, 1] = True
        assert (r.forced | ~delay.reshape(len(prompts), -1)).all()


@pytest.mark.parametrize("arch", ["interleaved", "parallel"])
def test_forced_mask_of_gold_targets(tokenizer, arch):
    """Laid-out SFT targets: interleaved forces only eos; parallel forces text_pad/eos after text_end, the
    speech pads of the delay and every speech pad after the one that ended speech."""
    model = build_model(arch, "smoke", tokenizer, num_units=UNITS, speech_delay=2)
    lay = model.layout
    text = model.text_ids("alice lives in paris")
    cases = [(text, np.arange(7) % UNITS), (text[:1], np.arange(3)), (text, np.arange(1))]
    prompts = [model.encode_prompt(examples()[0])] * len(cases)
    targets = [model.encode_response(model.decode_text(t), u) for t, u in cases]
    forced = model.forced_mask(prompts, targets).reshape(len(cases), -1, 1 if arch == "interleaved" else 2)
    for i, (t, u) in enumerate(cases):
        start = len(prompts[i]) - 1
        got = forced[i, start: start + len(targets[i])]
        want = torch.zeros_like(got)
        if arch == "interleaved":
            want[-1] = True                                                          # eos
        else:
            want[len(t) + 1:, 0] = True                                              # after text_end
            want[: lay.speech_delay, 1] = True
            want[lay.speech_delay + len(u) + 1:, 1] = True                           # after the pad that ended speech
        assert torch.equal(got, want), (i, got.squeeze(-1).T, want.squeeze(-1).T)
        assert not forced[i, :start].any() and not forced[i, start + len(targets[i]):].any()


def test_dynamic_cache_fallback_is_logged_and_decodes_the_same(tokenizer, caplog):
    """A model whose cache is not plain full attention (sliding window) decodes with the dynamic cache."""
    from transformers import AutoModelForCausalLM

    from wavalign_kit.models import InterleavedModel

    model = sharp_model("interleaved", tokenizer, seed=1)
    cfg = copy.deepcopy(model.model.config)
    cfg.use_sliding_window, cfg.sliding_window, cfg.max_window_layers = True, 4096, 0
    cfg.layer_types = ["sliding_attention"] * cfg.num_hidden_layers
    sliding = InterleavedModel(AutoModelForCausalLM.from_config(cfg), tokenizer, model.layout)
    sliding.model.load_state_dict(model.model.state_dict())
    with caplog.at_level(logging.WARNING, logger="wavalign_kit.models.decoding"):
        a, b = responses(greedy(sliding)), responses(greedy(sliding))
    assert sum("decoding with the dynamic cache" in m for m in caplog.messages) == 1
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(torch.equal(x, y) for x, y in zip(a, responses(greedy(model))))      # window longer than the rows


@pytest.mark.parametrize("arch", ["interleaved", "parallel"])
def test_lean_step_draws_the_tokens_of_the_transformers_step(tokenizer, arch, monkeypatch):
    """The lean step (taken by default: it is counted) and transformers' static-cache step draw the same tokens
    with the same log-probs, finished rows leaving the batch on the way."""
    steps = []
    call = LeanStep.__call__
    monkeypatch.setattr(LeanStep, "__call__", lambda self, *a: steps.append(1) or call(self, *a))
    model, s = sharp_model(arch, tokenizer, seed=2), Sampling(1.0, 0.9)
    runs = []
    for lean in (True, False):
        model.decode_options = DecodeOptions(lean_step=lean, stop_check_every=2)
        runs.append(model.generate(examples(), num_samples=3, text_sampling=s, speech_sampling=s,
                                   max_new_tokens=50, seed=5))
        if lean:
            assert len(steps) > 20
    assert torch.equal(runs[0].batch.input_ids, runs[1].batch.input_ids)
    assert torch.allclose(runs[0].logprobs, runs[1].logprobs, atol=1e-5)


def test_lean_step_falls_back_for_adapted_projections(tokenizer, caplog, monkeypatch):
    """A LoRA-adapted network (projections are peft layers) decodes with transformers' forward, says so once,
    and, its adapters initialised to zero, draws the tokens of the plain network."""
    from wavalign_kit.models import decoding
    from wavalign_kit.models.lora import apply_lora

    monkeypatch.setattr(decoding, "_SAID", set())        # said once per process: earlier tests may have said it

    model = sharp_model("interleaved", tokenizer, seed=1)
    plain = responses(greedy(model))
    apply_lora(model, {"enabled": True, "r": 4})
    with caplog.at_level(logging.INFO, logger="wavalign_kit.models.decoding"):
        adapted, again = responses(greedy(model)), responses(greedy(model))
    assert sum("decoding with the transformers forward" in m for m in caplog.messages) == 1
    assert all(torch.equal(x, y) for x, y in zip(plain, adapted))
    assert all(torch.equal(x, y) for x, y in zip(adapted, again))


def test_compiled_decode_step_draws_the_same_tokens(tokenizer):
    model = build_model("interleaved", "smoke", tokenizer, num_units=UNITS)
    s = Sampling(1.0, 0.9)
    runs = []
    for compile_step in (False, True):
        model.decode_options = DecodeOptions(compile_step=compile_step)
        runs.append(model.generate(examples()[:2], num_samples=2, text_sampling=s, speech_sampling=s,
                                   max_new_tokens=12, seed=7))
    assert torch.equal(runs[0].batch.input_ids, runs[1].batch.input_ids)
    assert torch.allclose(runs[0].logprobs, runs[1].logprobs, atol=1e-4)


@pytest.mark.parametrize("top_p, top_k", [(0.5, 0), (0.8, 0), (1.0, 2), (0.7, 3), (0.3, 0)])
def test_truncation_by_rejection_and_by_sort_draw_the_truncated_distribution(top_p, top_k):
    from wavalign_kit.models.sampling import truncated_by_rejection, truncated_by_sort

    ranked = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.06, 0.04])
    above = ranked.cumsum(0) - ranked                                    # mass ranked higher
    keep = (above < top_p) & ((torch.arange(6) < top_k) if top_k else True)
    order = torch.tensor([3, 0, 5, 1, 4, 2])                             # tokens not in rank order
    probs, expected = torch.zeros(6), torch.zeros(6)
    probs[order], expected[order] = ranked, ranked * keep / (ranked * keep).sum()
    rows = 20000
    for draw in (truncated_by_sort, truncated_by_rejection):
        g = torch.Generator().manual_seed(0)
        tokens = draw(probs.repeat(rows, 1), torch.full((rows,), top_p), torch.full((rows,), top_k), g)
        freq = torch.bincount(tokens, minlength=6) / rows
        assert (freq - expected).abs().max() < 0.015, (draw.__name__, freq, expected)
