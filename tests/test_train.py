"""Training engine: every preset runs a few steps (synthetic world), the logged figures obey the method's
formulas, and bad input fails clearly or is a counted skip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wavalign_kit.config import ConfigError, load_yaml
from wavalign_kit.errors import JudgeFailure
from wavalign_kit.models import build_model
from wavalign_kit.models.base import Rollout
from wavalign_kit.rewards import CompositeReward, JudgeScores, RewardResult
from wavalign_kit.train import grpo, sft
from wavalign_kit.train.config import TrainConfig, known_presets, preset_path, resolve_config
from wavalign_kit.train.metrics_log import BASE_COLUMNS, read_metrics
from wavalign_kit.train.rollout import ScoredRollout
from wavalign_kit.train.synthetic import AnswerJudge, synthetic_reward
from wavalign_kit.train.trainer import Trainer

SMALL = {"steps": 3, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 24, "save_every": 10,
         "progress": False}


@pytest.fixture
def world(synthetic):
    return synthetic


def make(world, preset: str | None = None, arch: str = "interleaved", **over):
    recipe = load_yaml(preset_path(preset)) if preset else {}
    cfg, _ = resolve_config({"seed": 0}, recipe, {**SMALL, **over})
    model = build_model(cfg.arch if preset is None else arch, "smoke", world.tokenizer, num_units=world.num_units)
    return cfg, model


def run(world, tmp_path, preset=None, arch="interleaved", reward=None, **over):
    cfg, model = make(world, preset, arch, **over)
    logs: list[str] = []
    Trainer(cfg, model, world, tmp_path, reward=reward or synthetic_reward(), log=logs.append).train()
    return read_metrics(tmp_path / "metrics.csv"), logs


def f(row, key) -> float:
    return float(row[key]) if row[key] != "" else math.nan


def test_every_preset_is_shipped():
    expected = {"sft", "grpo_full", "grpo_text", "grpo_text_fixed", "wavalign", "grpo_full_fixed", "routed",
                "dpo_full", "dpo_text", "dpo_text_anchor", "sft_then_grpo", "wavalign_no_ema"}
    assert expected <= set(known_presets())
    for name in known_presets():  # each preset alone is a valid config
        resolve_config({"seed": 0}, load_yaml(preset_path(name)), {})


@pytest.mark.parametrize("preset", sorted(known_presets()))
def test_preset_smoke_run(world, tmp_path, preset):
    # sampled DPO pairs of an untrained model rarely differ by a whole reward point: keep every untied pair
    rows, _ = run(world, tmp_path, preset, **({"pair_min_margin": 0.0} if preset.startswith("dpo") else {}))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert list(rows[0])[: len(BASE_COLUMNS)] == list(BASE_COLUMNS)
    for r in rows:
        assert math.isfinite(f(r, "loss")) and math.isfinite(f(r, "grad_norm")) and f(r, "lr") > 0
        assert f(r, "step_time") > 0 and f(r, "peak_mem_mb") > 0 and f(r, "tokens_per_s") > 0
    assert (tmp_path / "latest").read_text() == "checkpoint-000003"


@pytest.mark.parametrize("preset", ["wavalign", "dpo_text_anchor", "grpo_full"])
def test_parallel_architecture_runs(world, tmp_path, preset):
    rows, _ = run(world, tmp_path, preset, arch="parallel", steps=2)
    assert len(rows) == 2 and all(math.isfinite(f(r, "loss")) for r in rows)


def test_adaptive_lambda_follows_the_ema(world, tmp_path):
    rows, _ = run(world, tmp_path, "wavalign")
    lam = [f(r, "lambda") for r in rows]
    raw = [f(r, "lambda_raw") for r in rows]
    assert lam[0] == pytest.approx(raw[0], abs=1e-6)               # first step: lambda_raw
    for t in (1, 2):                                               # then (1 - 0.9) raw + 0.9 prev
        assert lam[t] == pytest.approx(0.1 * raw[t] + 0.9 * lam[t - 1], abs=1e-5)
    for r in rows:  # the step's loss is the mixture of its logged parts
        expect = f(r, "lambda") * f(r, "loss_rl") + (1 - f(r, "lambda")) * f(r, "loss_anchor")
        assert f(r, "loss") == pytest.approx(expect, rel=1e-4, abs=1e-6)


def test_no_ema_and_fixed_and_pure_rl(world, tmp_path):
    rows, _ = run(world, tmp_path / "a", "wavalign_no_ema")
    assert all(f(r, "lambda") == pytest.approx(f(r, "lambda_raw"), abs=1e-6) for r in rows)
    rows, _ = run(world, tmp_path / "b", "grpo_text_fixed")
    for r in rows:
        assert f(r, "lambda") == 0.5
        assert f(r, "loss") == pytest.approx(0.5 * f(r, "loss_rl") + 0.5 * f(r, "loss_anchor"), rel=1e-4, abs=1e-6)
    rows, _ = run(world, tmp_path / "c", "grpo_full")
    assert all(f(r, "lambda") == 1.0 and r["loss_anchor"] == "" and f(r, "loss") == f(r, "loss_rl") for r in rows)


def test_sft_then_grpo_switches_stage(world, tmp_path):
    rows, _ = run(world, tmp_path, "sft_then_grpo")  # round(0.34 * 3) = 1 SFT step
    assert rows[0]["reward_mean"] == "" and f(rows[0], "lambda") == 0.0 and rows[0]["loss_anchor"] != ""
    assert all(r["reward_mean"] != "" and r["loss_anchor"] == "" for r in rows[1:])


def test_zero_beta_skips_reference_and_logs_it(world, tmp_path):
    rows, logs = run(world, tmp_path, "wavalign", beta_text=0, beta_speech=0)
    assert any("reference pass is skipped" in line for line in logs)
    assert all(r["kl_text"] == "" and r["kl_speech"] == "" for r in rows)
    rows, _ = run(world, tmp_path / "kl", "wavalign", beta_text=0.01, beta_speech=0.01)
    assert f(rows[0], "kl_text") == pytest.approx(0.0, abs=1e-6)   # policy == reference at step 1
    assert f(rows[-1], "kl_text") > 0


def test_per_channel_grad_norms_and_ppo_updates(world, tmp_path):
    rows, _ = run(world, tmp_path, "grpo_full", grad_norm_per_channel=True, updates_per_rollout=2, steps=2)
    assert "grad_norm_text" in rows[0]
    for r in rows:
        assert f(r, "grad_norm_text") > 0 and f(r, "grad_norm_speech") > 0
        assert 0.0 <= f(r, "clip_frac") <= 1.0


def test_routed_needs_both_channels(world, tmp_path):
    cfg, model = make(world, "routed")
    with pytest.raises(ConfigError, match="semantic AND acoustic"):
        Trainer(cfg, model, world, tmp_path, reward=CompositeReward([(AnswerJudge(), 1.0)]))


def test_metrics_have_reward_components_with_accumulation(world, tmp_path):
    rows, _ = run(world, tmp_path, "wavalign", steps=1, grad_accum=2)
    r = rows[0]
    expect = 0.5 * f(r, "reward/answer_judge") + 0.5 * f(r, "reward/length_judge")
    assert f(r, "reward_mean") == pytest.approx(expect, rel=1e-5)
    assert 0 <= f(r, "zero_var_share") <= 1 and f(r, "judge_failures") == 0


# ---------------------------------------------------------------------------------------------- bad input
def test_unknown_preset_key_and_name(tmp_path):
    bad = tmp_path / "recipe.yaml"
    bad.write_text("algorithm: grpo\nrl_tokn_type: text\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml: unknown key 'rl_tokn_type' \(did you mean 'rl_token_type'"):
        resolve_config({}, load_yaml(bad), {}, where=str(bad))
    with pytest.raises(ConfigError, match=r"unknown preset 'wavalgn' \(did you mean 'wavalign'"):
        preset_path("wavalgn")
    with pytest.raises(ConfigError, match="anchor is true but train.mixer is 'none'"):
        TrainConfig(anchor=True, mixer="none")


def test_override_routing():
    cfg, prof = resolve_config({"seed": 4, "train": {"steps": 9}, "world": {}}, {"lr": 1e-3},
                               {"train": {"lr": 2e-3}, "world": {"train_size": 5}, "beta_text": 0.01})
    assert (cfg.steps, cfg.lr, cfg.beta_text, cfg.seed) == (9, 2e-3, 0.01, 4)
    assert prof["world"] == {"train_size": 5}


class NanReward:
    name, channel, needs_audio = "nan_judge", "semantic", False

    def __call__(self, prompts, completions):
        return [float("nan")] * len(completions)


class FailingJudge:
    name, channel, needs_audio = "api_judge", "semantic", False

    def __call__(self, prompts, completions):  # every call fell back to the default score
        return JudgeScores([2.5] * len(completions), failures=len(completions), first_error="HTTP 500")


def test_nan_rewards_and_failing_judge_stop_the_run(world, tmp_path):
    cfg, model = make(world, "wavalign")
    with pytest.raises(ValueError, match="nan_judge.*NaN"):
        Trainer(cfg, model, world, tmp_path / "a", reward=CompositeReward([(NanReward(), 1.0)])).train()
    with pytest.raises(JudgeFailure, match="api_judge.*8 of 8 calls failed.*HTTP 500"):
        Trainer(cfg, model, world, tmp_path / "b", reward=CompositeReward([(FailingJudge(), 1.0)])).train()


def test_missing_sft_targets_with_anchor(world, tmp_path):
    import copy

    broken = copy.copy(world)
    broken.splits = {**world.splits, "rl": [copy.copy(e) for e in world.splits["rl"]]}
    for e in broken.splits["rl"][:3]:
        e.target_text, e.target_units = "", np.zeros(0, dtype=np.int64)
    cfg, model = make(world, "wavalign")
    with pytest.raises(ConfigError, match="split 'rl': 3 of 8 examples have no SFT target"):
        Trainer(cfg, model, broken, tmp_path, reward=synthetic_reward())
    cfg, model = make(world, "grpo_text")  # no anchor asked: fine
    Trainer(cfg, model, broken, tmp_path, reward=synthetic_reward())


def text_only_rollout(model, examples, group_size):
    """A scored rollout whose responses carry no speech token besides boundaries (text + eos only)."""
    prompts, responses = [], []
    for e in examples:
        for _ in range(group_size):
            prompts.append(model.encode_prompt(e))
            responses.append(model.layout.layout_response(model.text_ids(e.target_text), np.zeros(0, np.int64)))
    batch = model.collate(prompts, responses)
    rollout = Rollout(batch, torch.zeros(batch.response_mask.shape), group_size,
                      [e.target_text for e in examples for _ in range(group_size)],
                      [np.zeros(0, np.int64)] * len(responses), [i // group_size for i in range(len(responses))],
                      model.forced_mask(prompts, responses))
    total = np.arange(len(responses), dtype=float) % 3 + 1
    res = RewardResult(total=total, components={"answer_judge": total, "length_judge": total}, failures=0)
    return ScoredRollout(list(examples), rollout, res, {"time_generate": 0, "time_reward": 0})


def test_empty_rl_mask_is_skipped_and_counted(world, tmp_path, monkeypatch):
    cfg, model = make(world, "grpo_text", rl_token_type="speech")
    examples = world.split("train")[:2]
    monkeypatch.setattr(grpo, "collect", lambda m, ex, *a, **k: text_only_rollout(m, ex, 4))
    batch = grpo.prepare(model, examples, cfg, reward=None, codec=None, seed=0)
    assert batch.tokens.speech_mask.sum(1).tolist() == [0] * 8    # text + text_end + eos only
    loss, st = grpo.loss(model.token_logprobs, batch, cfg, 1.0)
    assert loss is None and st["rows_skipped"] == 8
    cfg_a, _ = make(world, "grpo_text_fixed", rl_token_type="speech")
    batch = grpo.prepare(model, examples, cfg_a, reward=None, codec=None, seed=0)
    loss, st = grpo.loss(model.token_logprobs, batch, cfg_a, 0.5)
    assert st["rows_skipped"] == 8 and float(loss.detach()) == pytest.approx(0.5 * float(st["loss_anchor"]), rel=1e-5)
    # in the loop: the step is counted, logged and does no update
    logs: list[str] = []
    before = [p.detach().clone() for p in model.model.parameters()]
    Trainer(cfg, model, world, tmp_path, reward=synthetic_reward(), log=logs.append).train()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert all(f(r, "rows_skipped") == 8 and r["loss"] == "" for r in rows)
    assert any("nothing to train on" in line for line in logs)
    assert all(torch.equal(a, b.detach()) for a, b in zip(before, model.model.parameters()))


def test_lora_reference_is_the_adapter_free_model(world, tmp_path):
    from wavalign_kit.models import apply_lora

    cfg, model = make(world, "wavalign", beta_text=0.01, beta_speech=0.01, lr=1e-2, steps=2)
    apply_lora(model, {"enabled": True, "r": 4, "alpha": 8})
    base = {n: p.detach().clone() for n, p in model.model.named_parameters() if "lora_" not in n}
    Trainer(cfg, model, world, tmp_path, reward=synthetic_reward(), log=lambda *_: None).train()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert f(rows[0], "kl_text") == pytest.approx(0.0, abs=1e-6) and f(rows[1], "kl_text") > 0
    frozen = {n: p for n, p in model.model.named_parameters() if "lora_" not in n}
    assert all(torch.equal(base[n], frozen[n]) for n in base)        # only the adapters moved
    assert (tmp_path / "checkpoint-000002" / "model" / "peft_model.safetensors").is_file()


def test_cli_config_errors_are_one_line(tmp_path, capsys):
    from wavalign_kit.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("algorithm: grpo\nbeta_txt: 0.01\n")
    assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key 'beta_txt' (did you mean 'beta_text'?)" in capsys.readouterr().err
    assert main(["train", "--preset", "wavalign", "--out", str(tmp_path / "o"), "lamda_max=0.5"]) == 2
    assert "did you mean 'lambda_max'" in capsys.readouterr().err


def test_paper_and_code_setups_are_one_override_away():
    recipe = load_yaml(preset_path("wavalign"))
    paper, _ = resolve_config({}, recipe, {"setup": "paper"})
    code, _ = resolve_config({}, recipe, {"setup": "code"})
    assert (paper.beta_text, paper.beta_speech, paper.temperature) == (0.01, 0.01, 0.9)
    assert (code.beta_text, code.beta_speech, code.temperature, code.uses_reference) == (0.0, 0.0, 0.7, False)
    mixed, _ = resolve_config({}, recipe, {"setup": "paper", "temperature": 0.5})  # explicit keys win
    assert (mixed.beta_text, mixed.temperature) == (0.01, 0.5)
    with pytest.raises(ConfigError, match="train.setup"):
        resolve_config({}, recipe, {"setup": "papr"})


@pytest.mark.parametrize("arch", ["interleaved", "parallel"])
def test_forced_tokens_are_not_actions(world, arch):
    """Positions the decoder forces (parallel text_pad / eos, interleaved eos) are left out of the RL and DPO masks:
    no RL gradient reaches them and they do not dilute the text channel."""
    from wavalign_kit.train import dpo

    cfg, model = make(world, "grpo_text", arch)
    examples = world.split("train")[:2]
    batch = grpo.prepare(model, examples, cfg, reward=synthetic_reward(), codec=None, seed=0)
    rl = batch.tokens.rows(slice(0, batch.rl_rows))
    rollout_forced = grpo.collect(model, examples, cfg, synthetic_reward(), None, 0).rollout.forced
    assert not (rl.response_mask & rollout_forced).any()
    assert rollout_forced.any() or arch == "interleaved"   # an untrained interleaved model rarely closes both channels
    # the text-only RL gradient vanishes on every forced position (and on speech), not only outside the response
    logp, _ = model.token_logprobs(batch.tokens)
    logp.retain_grad()
    loss, _ = grpo.loss(lambda b, with_entropy=False: (logp, torch.zeros_like(logp)), batch, cfg, 1.0)
    loss.backward()
    assert torch.count_nonzero(logp.grad[: batch.rl_rows][rollout_forced]) == 0
    # gold targets through DPO: the layout's forced tokens (most of the parallel text stream) leave the text mask
    full = sft.target_batch(model, examples)
    pairs = dpo.prepare(model, examples, make(world, "dpo_text", arch, dpo_source="offline")[0])
    chosen = pairs.tokens.rows(slice(0, len(examples)))
    words = [len(e.target_text.split()) for e in examples]
    assert chosen.text_mask.sum(1).tolist() == [w + 1 for w in words]        # the words and text_end: the choices
    if arch == "parallel":
        assert (full.text_mask.sum(1) > 2 * chosen.text_mask.sum(1)).all()    # text_pad ... eos were counted


@pytest.mark.parametrize("arch", ["interleaved", "parallel"])
def test_anchor_and_warm_start_leave_forced_positions_out(world, arch):
    """By default (anchor_forced=false; warm start: forced_tokens=false) the SFT anchor skips the positions the
    decoder forces, exactly those of forced_mask, and keeps every other target token; anchor_forced=true keeps all."""
    from wavalign_kit.models.warmstart import WarmstartConfig, train_config

    examples = world.split("train")[:3]
    cfg, model = make(world, "sft", arch, anchor_forced=True)
    skip, _ = make(world, "sft", arch)
    full, lean = sft.prepare(model, examples, cfg).tokens, sft.prepare(model, examples, skip).tokens
    prompts = [model.encode_prompt(e) for e in examples]
    forced = model.forced_mask(prompts, [model.encode_response(e.target_text, e.target_units) for e in examples])
    assert torch.equal(full.response_mask, sft.target_batch(model, examples).response_mask)   # forced: all kept
    assert torch.equal(lean.response_mask, full.response_mask & ~forced) and forced.any()
    words = [len(e.target_text.split()) for e in examples]
    assert lean.text_mask.sum(1).tolist() == [w + 1 for w in words]           # the words and text_end
    assert torch.equal(lean.speech_mask, full.speech_mask & ~forced)
    with torch.no_grad():
        logp, _ = model.token_logprobs(full)
    assert float(sft.anchor_term(logp, lean, skip)) != float(sft.anchor_term(logp, full, cfg))
    assert train_config(WarmstartConfig()).anchor_forced is False
    assert train_config(WarmstartConfig(forced_tokens=True)).anchor_forced is True
