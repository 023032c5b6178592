"""The methods' formulas (train.grpo, train.sft, train.dpo, mixing): hand-computed advantages, KL, RL loss per
mask, anchor, DPO; gradient properties and gradcheck. Non-finite values are not checked inside the losses (that
would synchronise the host on every call); the trainer skips and counts such steps (tests/test_reliability.py)."""

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavalign_kit.mixing import mixed_loss
from wavalign_kit.rollout_stats import token_stats
from wavalign_kit.train.dpo import dpo_loss, sequence_logps
from wavalign_kit.train.grpo import group_advantages, k3_kl, policy_token_term, rl_loss, routed_advantages
from wavalign_kit.train.sft import anchor_loss

K = 0.5 + math.log(2) - 1  # k3 with pi = 0.5, pi_ref = 0.25
A = 1 / 1.0001  # advantage magnitude of rewards [1, 3]: (3 - 2) / (1 + 1e-4)

# one prompt, G = 2, N = 3: row 0 = text text speech, row 1 = text speech speech
TEXT = torch.tensor([[True, True, False], [True, False, False]])
SPEECH = ~TEXT


def kl_batch():
    logp = torch.full((2, 3), math.log(0.5), dtype=torch.float64)
    ref = torch.full((2, 3), math.log(0.25), dtype=torch.float64)
    adv = group_advantages(torch.tensor([[1.0, 3.0]], dtype=torch.float64)).reshape(-1)
    return logp, ref, adv


def test_group_advantages_by_hand():
    adv = group_advantages(torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]]))
    expected = [-1.3415207972320402, -0.4471735990773467, 0.4471735990773467, 1.3415207972320402]
    assert torch.allclose(adv[0], torch.tensor(expected), atol=1e-6)
    assert torch.equal(adv[1], torch.zeros(4))
    for bad, name in ((torch.tensor([[1.0, float("nan")]]), "rewards"), (torch.zeros(2, 0), "rewards"),
                      (torch.zeros(3), "rewards"), (torch.tensor([[1.0, float("inf")]]), "rewards")):
        with pytest.raises(ValueError, match=name):
            group_advantages(bad)


@settings(max_examples=40, deadline=None)
@given(r=st.floats(-10, 10, allow_nan=False), g=st.integers(1, 8))
def test_identical_rewards_have_zero_advantage(r, g):
    assert torch.equal(group_advantages(torch.full((3, g), r)), torch.zeros(3, g))


def test_k3_by_hand():
    logp, ref, _ = kl_batch()
    assert torch.allclose(k3_kl(logp, ref), torch.full((2, 3), K, dtype=torch.float64))
    x = torch.randn(100)
    assert (k3_kl(x, torch.randn(100)) >= 0).all() and torch.equal(k3_kl(x, x), torch.zeros(100))
    with pytest.raises(ValueError, match="ref_logp"):
        k3_kl(x, torch.randn(99))


@pytest.mark.parametrize("which,expected", [("all", 0.15 * K), ("text", 0.1 * K), ("speech", 0.2 * K)])
def test_rl_loss_per_mask_by_hand(which, expected):
    # term = -(A_i - beta_c * k): text rows carry beta_text = 0.1, speech tokens beta_speech = 0.2; the +-A cancel
    logp, ref, adv = kl_batch()
    mask = {"all": TEXT | SPEECH, "text": TEXT, "speech": SPEECH}[which]
    loss, stats = rl_loss(logp, adv, mask, group_size=2, text_mask=TEXT, speech_mask=SPEECH, ref_logp=ref,
                          beta_text=0.1, beta_speech=0.2)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert stats["rows_skipped"] == 0 and stats["tokens"] == mask.sum().item()
    # the per-channel KL of the training log (rollout_stats.token_stats, its one home)
    channel = token_stats(SimpleNamespace(text_mask=TEXT, speech_mask=SPEECH), kl=k3_kl(logp, ref))
    assert channel["kl_text"].item() == pytest.approx(K) and channel["kl_speech"].item() == pytest.approx(K)


def test_rl_loss_channel_weights_by_hand():
    logp, ref, adv = kl_batch()
    loss, _ = rl_loss(logp, adv, TEXT | SPEECH, group_size=2, text_mask=TEXT, speech_mask=SPEECH, ref_logp=ref,
                      beta_text=0.1, beta_speech=0.2, text_weight=2.0)
    # row 0: (2*2(A + .1k) + (A + .2k)) / 3, row 1: (2(-A + .1k) + 2(-A + .2k)) / 3, mean of the two
    assert loss.item() == pytest.approx((A + 1.2 * K) / 6, abs=1e-12)


def test_rl_loss_skips_empty_rows_and_counts_them():
    # P = 2, G = 2; row 3 has no text token: skipped, not widened to its speech tokens
    logp = torch.zeros(4, 2, dtype=torch.float64)
    text = torch.tensor([[True, False], [True, True], [True, False], [False, False]])
    adv = torch.tensor([1.0, -1.0, 2.0, 5.0], dtype=torch.float64)
    loss, stats = rl_loss(logp, adv, text, group_size=2, text_mask=text, speech_mask=~text)
    assert loss.item() == pytest.approx(((-1 + 1) / 2 + (-2)) / 2)
    assert stats["rows_skipped"] == 1 and stats["prompts_skipped"] == 0 and stats["tokens"] == 4
    text[2:] = False  # the whole second group is empty: it drops out of the prompt mean
    loss, stats = rl_loss(logp, adv, text, group_size=2, text_mask=text, speech_mask=~text)
    assert loss.item() == pytest.approx(0.0) and stats["prompts_skipped"] == 1
    with pytest.raises(ValueError, match="token_mask.*no token"):
        rl_loss(logp, adv, torch.zeros(4, 2, dtype=torch.bool), group_size=2, text_mask=text, speech_mask=~text)


def test_rl_loss_bad_input_names_the_argument():
    logp, ref, adv = kl_batch()
    kw = dict(group_size=2, text_mask=TEXT, speech_mask=SPEECH)
    with pytest.raises(ValueError, match="group_size"):
        rl_loss(logp, adv, TEXT, **{**kw, "group_size": 4})
    with pytest.raises(ValueError, match="token_mask"):
        rl_loss(logp, adv, TEXT[:, :2], **kw)
    with pytest.raises(ValueError, match="advantages"):
        rl_loss(logp, torch.tensor([1.0, 2.0, 3.0]), TEXT, **kw)
    with pytest.raises(ValueError, match="ref_logp"):
        rl_loss(logp, adv, TEXT, beta_text=0.1, **kw)
    with pytest.raises(ValueError, match="ref_logp"):
        rl_loss(logp, adv, TEXT, ref_logp=ref[:, :2], beta_text=0.1, **kw)
    with pytest.raises(ValueError, match="token_mask"):
        rl_loss(logp, adv, TEXT.int(), **kw)
    # NaN outside the mask is ignored: padding positions may hold anything
    loss, _ = rl_loss(logp.masked_fill(SPEECH, float("nan")), adv, TEXT, **kw)
    assert torch.isfinite(loss)


def logp_from_logits(logits, tokens):
    return torch.log_softmax(logits, dim=-1).gather(-1, tokens[..., None]).squeeze(-1)  # (B, T)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), which=st.sampled_from(["text", "speech"]), beta=st.floats(0.0, 0.5))
def test_masked_channel_gets_exactly_zero_gradient(seed, which, beta):
    g = torch.Generator().manual_seed(seed)
    B, T, V, G = 4, 6, 7, 2
    logits = torch.randn(B, T, V, generator=g, requires_grad=True)
    tokens = torch.randint(0, V, (B, T), generator=g)
    text = torch.rand(B, T, generator=g) < 0.5
    text[:, 0] = True
    text[:, 1] = False
    speech = ~text
    ref = logp_from_logits(torch.randn(B, T, V, generator=g), tokens)
    adv = group_advantages(torch.randn(B // G, G, generator=g)).reshape(-1)
    mask = text if which == "text" else speech
    loss, _ = rl_loss(logp_from_logits(logits, tokens), adv, mask, group_size=G, text_mask=text,
                      speech_mask=speech, ref_logp=ref, beta_text=beta, beta_speech=beta)
    loss.backward()
    assert torch.count_nonzero(logits.grad[~mask]) == 0
    assert logits.grad[mask].abs().sum() > 0


def test_stopgrad_ratio_gives_advantage_times_score_gradient():
    logp, _, adv = kl_batch()
    x = logp.clone().requires_grad_(True)
    term = policy_token_term(x, adv)
    assert torch.equal(term.detach(), -adv[:, None].expand(2, 3))  # ratio is 1 in value
    term.sum().backward()
    assert torch.allclose(x.grad, -adv[:, None].expand(2, 3))


def test_ppo_clipping_by_hand():
    logp = torch.log(torch.tensor([[0.6, 0.3]], dtype=torch.float64)).requires_grad_(True)
    old = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, stats = rl_loss(logp, torch.tensor([1.0], dtype=torch.float64), mask, group_size=1, text_mask=mask,
                          speech_mask=~mask, old_logp=old, clip_eps=0.1)
    # token 0: ratio 1.2 clipped to 1.1 (no gradient); token 1: ratio 0.6 < 0.9 with A > 0 keeps min = 0.6
    assert loss.item() == pytest.approx(-(1.1 + 0.6) / 2)
    loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 1].item() == pytest.approx(-0.6 / 2)
    assert stats["clip_frac"] == 1.0


def test_fused_mixed_loss_gradcheck():
    g = torch.Generator().manual_seed(0)
    B, N = 4, 5
    text = torch.rand(B, N, generator=g) < 0.5
    text[:, 0] = True
    speech = ~text
    old = -torch.rand(B, N, generator=g, dtype=torch.float64) - 0.1
    ref = -torch.rand(B, N, generator=g, dtype=torch.float64) - 0.1
    adv = group_advantages(torch.randn(2, 2, generator=g, dtype=torch.float64)).reshape(-1)
    target = -torch.rand(B, N, generator=g, dtype=torch.float64) - 0.1

    def fused(logp_rl, logp_sft, lam):
        rl, _ = rl_loss(logp_rl, adv, text, group_size=2, text_mask=text, speech_mask=speech, ref_logp=ref,
                        beta_text=0.05, beta_speech=0.02, text_weight=1.5, old_logp=old)
        anchor = anchor_loss(logp_sft, text | speech, text_mask=text, speech_mask=speech, speech_weight=0.5)
        return mixed_loss(rl, anchor, lam)

    inputs = (old.clone().requires_grad_(True), target.clone().requires_grad_(True),
              torch.tensor(0.3, dtype=torch.float64, requires_grad=True))
    assert torch.autograd.gradcheck(fused, inputs)


def test_anchor_loss_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]])
    text = torch.tensor([[True, True, False], [True, False, False]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    assert anchor_loss(logp, mask).item() == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert anchor_loss(logp, ~text & mask).item() == pytest.approx(3.0)  # speech-only ablation
    w = anchor_loss(logp, mask, text_mask=text, speech_mask=~text, text_weight=0.5, speech_weight=2.0)
    assert w.item() == pytest.approx((0.5 * (1 + 2 + 4) + 2 * 3) / 4)
    with pytest.raises(ValueError, match="token_mask"):
        anchor_loss(logp, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="text_mask, speech_mask"):
        anchor_loss(logp, mask, text_weight=0.5)


def test_sequence_logps_fp32_sum_and_mean():
    logp = torch.tensor([[-1.0, -2.0, -3.0]], dtype=torch.bfloat16)
    mask = torch.tensor([[True, False, True]])
    s = sequence_logps(logp, mask, "sum")
    assert s.dtype == torch.float32 and s.item() == -4.0
    assert sequence_logps(logp, mask, "mean").item() == -2.0
    with pytest.raises(ValueError, match="mask"):
        sequence_logps(logp, torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction"):
        sequence_logps(logp, mask, "max")


def dpo_inputs():
    chosen = torch.tensor([[-1.0, -2.0, -9.0]], requires_grad=True)
    rejected = torch.tensor([[-3.0, -1.0, -1.0]], requires_grad=True)
    ref_c = torch.tensor([[-1.5, -1.5, -9.0]])
    ref_r = torch.tensor([[-2.0, -2.0, -2.0]])
    return chosen, rejected, ref_c, ref_r, torch.tensor([[True, True, False]]), torch.ones(1, 3, dtype=torch.bool)


def test_dpo_sum_and_mean_by_hand():
    loss, stats = dpo_loss(*dpo_inputs(), beta=0.1, reduction="sum")
    # c=-3, r=-5, ref_c=-3, ref_r=-6: logits = 0.1 * (2 - 3) = -0.1
    assert loss.item() == pytest.approx(math.log1p(math.exp(0.1)), abs=1e-6)
    assert stats["reward_chosen"] == pytest.approx(0.0) and stats["reward_rejected"] == pytest.approx(0.1)
    assert stats["reward_margin"] == pytest.approx(-0.1) and stats["accuracy"] == 0.0
    loss, stats = dpo_loss(*dpo_inputs(), beta=0.1, reduction="mean")
    # c=-1.5, r=-5/3, ref_c=-1.5, ref_r=-2: logits = 0.1 * (1/6 - 1/2) = -1/30
    assert loss.item() == pytest.approx(math.log1p(math.exp(1 / 30)), abs=1e-6)
    assert stats["reward_margin"] == pytest.approx(-1 / 30, abs=1e-6)
    loss, stats = dpo_loss(*dpo_inputs(), beta=0.1, sft_weight=0.5)
    assert stats["sft_loss"] == pytest.approx(1.5)
    assert loss.item() == pytest.approx(math.log1p(math.exp(0.1)) + 0.75, abs=1e-6)


def test_dpo_gradient_and_skipped_pairs():
    chosen, rejected, ref_c, ref_r, cm, rm = dpo_inputs()
    loss, _ = dpo_loss(chosen, rejected, ref_c, ref_r, cm, rm)
    loss.backward()
    s = 1 / (1 + math.exp(-0.1))  # d/dc of -log sigmoid(z) = -(1 - sigmoid(z)) * beta, z = -0.1
    assert chosen.grad[0, :2].tolist() == pytest.approx([-(1 - (1 - s)) * 0.1] * 2, abs=1e-6)
    assert chosen.grad[0, 2] == 0
    two = [torch.cat([x.detach(), x.detach()]) for x in dpo_inputs()]
    two[4][1] = False
    _, stats = dpo_loss(*two)
    assert stats["pairs_skipped"] == 1
    two[4][0] = False
    with pytest.raises(ValueError, match="chosen_mask"):
        dpo_loss(*two)
    bad = list(dpo_inputs())
    bad[2] = bad[2][:, :2]
    with pytest.raises(ValueError, match="mask"):
        dpo_loss(*bad)


def test_routed_advantages_by_hand():
    sem = torch.tensor([[1.0, 3.0]])
    ac = torch.tensor([[4.0, 2.0]])
    text = torch.tensor([[True, False, False], [True, True, False]])
    speech = torch.tensor([[False, True, True], [False, False, True]])
    out = routed_advantages(sem, ac, text, speech, acoustic_weight=2.0)
    assert torch.allclose(out, torch.tensor([[-A, 2 * A, 2 * A], [A, A, -2 * A]]))
    with pytest.raises(ValueError, match="acoustic_rewards"):
        routed_advantages(sem, ac[:, :1], text, speech)
    with pytest.raises(ValueError, match="text_mask"):
        routed_advantages(sem, ac, text[:1], speech[:1])


def test_mixed_loss():
    assert mixed_loss(torch.tensor(2.0), torch.tensor(4.0), 0.25).item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="lam"):
        mixed_loss(torch.tensor(2.0), torch.tensor(4.0), 1.5)


def test_half_precision_is_reduced_in_fp32():
    logp = torch.full((2, 3), -0.1, dtype=torch.bfloat16, requires_grad=True)
    mask = torch.ones(2, 3, dtype=torch.bool)
    loss, _ = rl_loss(logp, torch.tensor([1.0, -1.0]), mask, group_size=2, text_mask=mask, speech_mask=~mask)
    assert loss.dtype == torch.float32 and anchor_loss(logp, mask).dtype == torch.float32
    loss.backward()
    assert logp.grad.dtype == torch.bfloat16
