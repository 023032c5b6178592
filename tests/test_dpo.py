"""DPO: offline pairs from the data set and online pairs from scored samples; channel masks; fp32 sums."""

import math

import numpy as np
import pytest
import torch

from wavalign_kit.config import ConfigError, load_yaml
from wavalign_kit.models import build_model
from wavalign_kit.train import dpo
from wavalign_kit.train.config import preset_path, resolve_config
from wavalign_kit.train.metrics_log import read_metrics
from wavalign_kit.train.synthetic import synthetic_reward
from wavalign_kit.train.trainer import Trainer

SMALL = {"steps": 2, "prompts_per_step": 2, "max_new_tokens": 24, "progress": False}


@pytest.fixture
def world(synthetic):
    return synthetic


def setup(world, preset, **over):
    cfg, _ = resolve_config({"seed": 0}, load_yaml(preset_path(preset)), {**SMALL, **over})
    return cfg, build_model("interleaved", "smoke", world.tokenizer, num_units=world.num_units)


def test_offline_first_step_loss_is_log2(world, tmp_path):
    cfg, model = setup(world, "dpo_full", dpo_source="offline")
    Trainer(cfg, model, world, tmp_path, reward=None).train()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert float(rows[0]["loss_dpo"]) == pytest.approx(math.log(2), abs=1e-5)   # policy == reference
    assert float(rows[0]["pairs"]) == 2 and rows[0]["reward_mean"] == ""
    assert float(rows[1]["loss_dpo"]) < math.log(2)                                 # one step moves it
    # DPO's drift figure is the chosen responses' log-prob drop below the reference, not a KL
    assert all(r["kl_text"] == "" and r["kl_speech"] == "" for r in rows)
    assert float(rows[0]["chosen_logp_drop_text"]) == pytest.approx(0.0, abs=1e-5)
    assert float(rows[1]["chosen_logp_drop_text"]) != pytest.approx(0.0, abs=1e-6)


def test_channel_mask_changes_the_sequence_logps(world):
    cfg_all, model = setup(world, "dpo_full", dpo_source="offline")
    cfg_text, _ = setup(world, "dpo_text", dpo_source="offline")
    ex = world.split("train")[:2]
    pb = dpo.prepare(model, ex, cfg_all)                     # offline: every example has a rejected response
    assert pb.pairs == 2 and pb.rewards is None
    with torch.no_grad():
        # a model that is not the reference: perturb the policy, keep the reference copy
        for p in model.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
        _, st_all = dpo.loss(model.token_logprobs, pb, cfg_all, 1.0)
        _, st_text = dpo.loss(model.token_logprobs, pb, cfg_text, 1.0)
    assert float(st_all["loss_dpo"]) != pytest.approx(float(st_text["loss_dpo"]), abs=1e-7)
    assert pb.ref_logp.dtype == torch.float32


def test_offline_without_rejected_is_an_error(world, tmp_path):
    import copy

    broken = copy.copy(world)
    broken.splits = {**world.splits, "rl": [copy.copy(e) for e in world.splits["rl"]]}
    broken.splits["rl"][0].rejected_text = None
    cfg, model = setup(world, "dpo_text", dpo_source="offline")
    with pytest.raises(ConfigError, match="dpo_source=offline but 1 examples"):
        Trainer(cfg, model, broken, tmp_path)
    cfg, model = setup(world, "dpo_text")   # the default: pairs sampled from the base model, no rejected needed
    Trainer(cfg, model, broken, tmp_path / "auto", reward=synthetic_reward()).train()
    rows = read_metrics(tmp_path / "auto" / "metrics.csv")
    assert rows[0]["reward_mean"] != ""


def test_online_pairs_and_anchor(world, tmp_path):
    cfg, model = setup(world, "dpo_text_anchor", dpo_source="online", pair_min_margin=0.0)
    Trainer(cfg, model, world, tmp_path, reward=synthetic_reward()).train()
    rows = read_metrics(tmp_path / "metrics.csv")
    for r in rows:
        pairs, dropped = float(r["pairs"]), float(r["pairs_skipped"])
        assert pairs + dropped >= 2 and float(r["lambda"]) == 0.5
        if pairs:
            expect = 0.5 * float(r["loss_dpo"]) + 0.5 * float(r["loss_anchor"])
            assert float(r["loss"]) == pytest.approx(expect, rel=1e-4)


def test_online_margin_drops_pairs(world, tmp_path):
    cfg, model = setup(world, "dpo_full", dpo_source="online", pair_min_margin=10.0)  # no gap is that large
    logs: list[str] = []
    Trainer(cfg, model, world, tmp_path, reward=synthetic_reward(), log=logs.append).train()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert all(float(r["pairs"]) == 0 and float(r["pairs_skipped"]) == 2 and r["loss"] == "" for r in rows)
    assert any("nothing to train on" in line for line in logs)
    assert np.isfinite(float(rows[0]["reward_mean"]))


def test_default_pairs_are_base_model_samples_ranked_by_the_reward(world):
    """dpo_source=sampled (the presets' default, as in the paper): pairs come from responses of the reference
    (base) model, not of the moving policy, ranked by the reward: best vs worst, ties dropped and counted."""
    from wavalign_kit.train.pairs import build_pairs
    from wavalign_kit.train.rollout import collect

    cfg, model = setup(world, "dpo_text")
    assert cfg.dpo_source == "sampled"
    examples = world.split("train")[:2]
    model.snapshot_reference()                              # what the trainer does before the first step
    reference = collect(model, examples, cfg, synthetic_reward(), None, seed=3, reference=True)
    with torch.no_grad():                                   # the policy moves away from the reference
        for p in model.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pb = dpo.prepare(model, examples, cfg, reward=synthetic_reward(), seed=3)
    ps = build_pairs(reference.rewards.total, cfg.group_size, cfg.pair_min_margin)
    assert pb.pairs == len(ps.chosen) and pb.dropped == ps.ties + ps.below_margin
    assert np.array_equal(pb.group_rewards, reference.group_rewards)           # the base model's samples
    if ps.chosen:
        chosen = pb.tokens.rows(slice(0, pb.pairs), trim=True)
        expected = reference.rollout.batch.rows(ps.chosen, trim=True)
        assert torch.equal(chosen.input_ids[:, : expected.length], expected.input_ids)
    online = dpo.prepare(model, examples, setup(world, "dpo_text", dpo_source="online")[0],
                         reward=synthetic_reward(), seed=3)
    assert not np.array_equal(online.group_rewards, reference.group_rewards)  # the moved policy samples others
