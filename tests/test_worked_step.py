"""The worked WavAlign step (notebook 03): every intermediate agrees with the formulas, and nothing is updated."""

import matplotlib
import numpy as np
import pytest
import torch

from wavalign_kit.config import load_yaml
from wavalign_kit.models import build_model
from wavalign_kit.train.config import preset_path, resolve_config
from wavalign_kit.train.synthetic import synthetic_reward
from wavalign_kit.worked_step import ROLES, explain_step, plot_roles

matplotlib.use("Agg")
SMALL = {"steps": 3, "prompts_per_step": 2, "group_size": 4, "max_new_tokens": 24, "progress": False}


def worked(world, preset: str, arch: str = "interleaved", **over):
    cfg, _ = resolve_config({"seed": 0}, load_yaml(preset_path(preset)), {**SMALL, **over})
    model = build_model(arch, "smoke", world.tokenizer, num_units=world.num_units)
    before = [p.detach().clone() for p in model.model.parameters()]
    step = explain_step(model, world.split("rl")[: cfg.prompts_per_step], cfg, reward=synthetic_reward(), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.model.parameters())), "explain_step changed weights"
    return cfg, step


def test_wavalign_step_intermediates_follow_the_formulas(synthetic):
    cfg, step = worked(synthetic, "wavalign")
    r = step.responses
    assert len(r) == cfg.prompts_per_step * cfg.group_size and len(step.anchors) == cfg.prompts_per_step
    # WavAlign's M_RL is the text channel: it counts every text token and no speech token
    assert (r["M_RL tokens"] == r["text tokens"]).all()
    roles = step.roles[: len(r)]
    assert not np.isin(roles, [3]).any() and (roles == 1).sum() == r["M_RL tokens"].sum()
    assert (roles == 4).sum() == r["speech tokens"].sum()
    # anchor rows: every target token is in M_SFT (anchor_token_type all)
    anchor = step.roles[len(r):]
    assert ((anchor == 5) | (anchor == 6)).sum() == step.anchors["M_SFT tokens"].sum()
    assert (anchor == 6).sum() == step.anchors["speech tokens"].sum()
    # advantages: standardised within each group
    for _, group in r.groupby("prompt"):
        assert abs(group["advantage"].mean()) < 1e-6
        spread = group["reward"].std(ddof=0)
        assert group["advantage"].std(ddof=0) == pytest.approx(1.0 if spread > 1e-3 else 0.0, abs=1e-2)
    # the gate: lambda_raw per group, the step's lambda is their mean (first step: no EMA)
    g = step.gates
    lam_raw = cfg.lambda_max * g["reward_gate"] * g["info_gate"]
    np.testing.assert_allclose(g["lambda_raw"], lam_raw, rtol=1e-9)
    assert step.losses["lambda"] == pytest.approx(g["lambda_raw"].mean())
    np.testing.assert_allclose(g["reward_max"], r.groupby("prompt")["reward"].max(), rtol=1e-9)
    # the mixed loss
    lo, lam = step.losses, step.losses["lambda"]
    assert lo["loss"] == pytest.approx(lam * lo["loss_rl"] + (1 - lam) * lo["loss_anchor"], rel=1e-5)
    assert lo["grad_norm_rl"] > 0 and lo["grad_norm_anchor"] > 0
    assert set(step.tokens.columns) == {"position", "token", "channel", "in M_RL"}
    assert (step.tokens["in M_RL"] == (step.tokens["channel"] == "text")).all()


def test_full_token_grpo_puts_speech_in_m_rl_and_has_no_anchor(synthetic):
    cfg, step = worked(synthetic, "grpo_full")
    r = step.responses
    assert (r["M_RL tokens"] == r["text tokens"] + r["speech tokens"]).all()
    assert step.anchors.empty and step.losses["lambda"] == 1.0
    assert (step.roles == 3).sum() == r["speech tokens"].sum()


def test_parallel_layout_and_the_roles_figure(synthetic):
    cfg, step = worked(synthetic, "wavalign", arch="parallel")
    fig = plot_roles(step, cfg.group_size)
    labels = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert labels <= set(ROLES) and "text, in M_RL" in labels and "anchor speech (M_SFT)" in labels


def test_only_the_grpo_step_is_explained(synthetic):
    cfg, _ = resolve_config({"seed": 0}, load_yaml(preset_path("dpo_text")), SMALL)
    model = build_model("interleaved", "smoke", synthetic.tokenizer, num_units=synthetic.num_units)
    with pytest.raises(ValueError, match="GRPO"):
        explain_step(model, synthetic.split("rl")[:2], cfg, reward=synthetic_reward())


def test_the_reading_spells_out_the_steps_numbers(synthetic):
    from wavalign_kit.takeaways import worked_step_reading

    _, step = worked(synthetic, "wavalign")
    text = worked_step_reading(step)
    assert f"selects {int(step.responses['M_RL tokens'].sum())} of the" in text
    assert f"This step's lambda is {step.losses['lambda']:.4f}" in text
    first = step.gates.iloc[0]
    assert "Gate, prompt 0: info_gate = clip(" in text and f"= {first['lambda_raw']:.4f}." in text
    assert f"= {step.losses['loss']:.3f}." in text
