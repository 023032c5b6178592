"""The paper's analyses as functions: judge reliability, reward dilution, gradient interference, rollout sweeps.

- Judge reliability: ``pairwise_agreement`` is, per prompt, the share of sample pairs that two score vectors
  order the same way (tied pairs agree only when both tie) -- the paper's per-prompt judge agreement. Applied
  to two runs of the same noisy judge it is test-retest reliability; applied to semantic vs acoustic scores of
  the same samples it says whether the two reward channels rank the group alike.
- Reward dilution: a sequence-level reward is spread over every response token, but the speech tokens that
  outnumber the text tokens 4-10x carry little of the semantic content it judges.
- Gradient interference: gradients of the preference (RL) loss restricted to text tokens vs to speech tokens,
  on the parameters both channels share: their norms and cosine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor


def pairwise_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) per-prompt share of sample pairs (i < j) ordered alike by scores ``a`` and ``b`` of shape (P, G).

    A pair agrees when sign(a_i - a_j) == sign(b_i - b_j) (so a pair tied in both agrees, tied in one does not).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] < 2:
        raise ValueError(f"pairwise_agreement: expected two (P, G) score arrays with G >= 2, got {a.shape}, {b.shape}")
    i, j = np.triu_indices(a.shape[1], k=1)
    return (np.sign(a[:, i] - a[:, j]) == np.sign(b[:, i] - b[:, j])).mean(axis=1)


def judge_test_retest(score_fn: Callable[[int], np.ndarray], seeds: Sequence[int] = (0, 1)) -> pd.DataFrame:
    """Score the same (P, G) completions twice with a noisy judge (``score_fn(seed)``): per-prompt agreement.

    Returns one row per prompt with the agreement and the two runs' Pearson correlation over all scores.
    """
    if len(seeds) != 2:
        raise ValueError(f"judge_test_retest: seeds must name exactly two judge runs, got {list(seeds)}")
    first, second = (np.asarray(score_fn(s), dtype=np.float64) for s in seeds)
    agree = pairwise_agreement(first, second)
    corr = float(np.corrcoef(first.ravel(), second.ravel())[0, 1]) if first.std() and second.std() else float("nan")
    return pd.DataFrame({"prompt": np.arange(len(agree)), "agreement": agree, "pearson_all": corr})


def channel_token_counts(text_mask: Tensor, speech_mask: Tensor) -> pd.DataFrame:
    """Per response: text and speech token counts and the text share (reward dilution)."""
    n_text = text_mask.sum(dim=1).cpu().numpy().astype(int)
    n_speech = speech_mask.sum(dim=1).cpu().numpy().astype(int)
    total = np.maximum(n_text + n_speech, 1)
    return pd.DataFrame({"text_tokens": n_text, "speech_tokens": n_speech, "text_share": n_text / total,
                         "speech_per_text": n_speech / np.maximum(n_text, 1)})


def flat_cosine(g1: Sequence[Tensor | None], g2: Sequence[Tensor | None]) -> float:
    """Cosine between two gradients given as matching lists of per-parameter tensors (None = zero)."""
    from wavalign_kit.train.grpo import grad_norm

    dot = sum(float((a.double() * b.double()).sum()) for a, b in zip(g1, g2) if a is not None and b is not None)
    n1, n2 = grad_norm(g1), grad_norm(g2)
    return dot / (n1 * n2) if n1 > 0 and n2 > 0 else float("nan")


def shared_parameters(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Trainable parameters outside the token embeddings and output heads: the ones every channel shares."""
    def channel_specific(name: str) -> bool:
        return any("embed" in part or "head" in part or part == "wte" for part in name.split(".")[:-1])

    return [(n, p) for n, p in module.named_parameters() if p.requires_grad and not channel_specific(n)]


def gradient_interference(logp: Tensor, advantages: Tensor, text_mask: Tensor, speech_mask: Tensor, *,
                          group_size: int, params: Sequence[tuple[str, torch.nn.Parameter]],
                          normalisation: str = "channel") -> dict[str, Any]:
    """Norms and cosine of the text-token and speech-token gradients of the RL loss on ``params``.

    ``logp`` (B, N) must carry the graph to ``params``; ``advantages`` (B,) per response. The RL loss is
    `train.grpo.rl_loss` restricted to text tokens, then to speech tokens (`train.grpo.channel_grads`, the same
    function the trainer's ``grad_norm_per_channel`` uses), each normalised by its own token count
    (``normalisation="channel"``) or both by the full response's (``"full"``: the two parts of the full-token
    loss's gradient). Returns overall ``grad_norm_text``, ``grad_norm_speech``, ``norm_ratio`` (text / speech),
    ``cosine``, and a per-parameter frame (``name``, ``norm_text``, ``norm_speech``, ``cosine``).
    """
    from wavalign_kit.train.grpo import channel_grads, grad_norm

    names, tensors = [n for n, _ in params], [p for _, p in params]
    grads = channel_grads(logp, advantages, text_mask | speech_mask, tensors, normalisation=normalisation,
                          group_size=group_size, text_mask=text_mask, speech_mask=speech_mask)
    empty = (None,) * len(tensors)
    text, speech = grads.get("text", empty), grads.get("speech", empty)
    per_param = pd.DataFrame({
        "name": names,
        "norm_text": [grad_norm([g]) for g in text],
        "norm_speech": [grad_norm([g]) for g in speech],
        "cosine": [flat_cosine([a], [b]) for a, b in zip(text, speech)],
    })
    nt, ns = grad_norm(text), grad_norm(speech)
    return {"grad_norm_text": nt, "grad_norm_speech": ns, "norm_ratio": nt / ns if ns > 0 else float("nan"),
            "cosine": flat_cosine(text, speech), "per_parameter": per_param}


def completions_of(rollout: Any) -> list[Any]:
    """The rollout's responses as reward `Completion`s (text channel + speech units)."""
    from wavalign_kit.rewards import Completion

    return [Completion(text=t, units=u) for t, u in zip(rollout.texts, rollout.units)]


def reward_frame(reward: Any, examples: Sequence[Any], rollout: Any) -> pd.DataFrame:
    """Score a rollout: one row per response with prompt, sample, task, target_style, every reward component
    (named as the reward functions) and the weighted total."""
    prompts = [examples[i] for i in rollout.prompt_index]
    result = reward.score(prompts, completions_of(rollout))
    G = rollout.group_size
    frame = pd.DataFrame({"prompt": rollout.prompt_index, "sample": [j % G for j in range(len(prompts))],
                          "task": [ex.task for ex in prompts], "target_style": [ex.style for ex in prompts]})
    for name, values in result.components.items():
        frame[name] = values
    frame["total"] = result.total
    return frame


def group_gates(group_rewards: np.ndarray, **mixer_kw: Any) -> pd.DataFrame:
    """Per prompt group: the adaptive gate's reward_gate, info_gate and lambda_raw (no EMA: one step alone)."""
    from wavalign_kit.mixing import AdaptiveMixer

    rows = []
    for p, group in enumerate(np.asarray(group_rewards, dtype=np.float64)):
        mixer = AdaptiveMixer(**{**mixer_kw, "use_ema": False})
        mixer.update([group])
        rows.append({"prompt": p, **{k: mixer.stats[k] for k in ("reward_gate", "info_gate", "lambda_raw")}})
    return pd.DataFrame(rows)


def rollout_sweep(model: Any, examples: Sequence[Any], reward: Any, *, temperatures: Sequence[float],
                  group_sizes: Sequence[int], max_new_tokens: int, top_p: float = 0.9, seed: int = 0,
                  mixer_kw: dict[str, Any] | None = None) -> pd.DataFrame:
    """Sample G responses per prompt at each temperature (both channels) and group size; one row per response.

    Columns: temperature, group_size, the `rollout_stats.rollout_frame` columns (reward, group mean / var / max,
    zero_var, per-channel token counts, nll and entropy) and the group's adaptive-gate values (`group_gates`).
    """
    from tqdm.auto import tqdm

    from wavalign_kit.models.sampling import Sampling
    from wavalign_kit.rollout_stats import rollout_frame

    frames = []
    grid = [(t, g) for t in temperatures for g in group_sizes]
    for k, (temp, G) in enumerate(tqdm(grid, desc="rollout sweep", leave=False)):
        sampling = Sampling(temperature=float(temp), top_p=top_p)
        rollout = model.generate(list(examples), num_samples=int(G), text_sampling=sampling,
                                 speech_sampling=sampling, max_new_tokens=max_new_tokens, seed=seed + k)
        rewards = reward_frame(reward, examples, rollout)["total"].to_numpy().reshape(-1, int(G))
        with torch.no_grad():
            logp, entropy = model.token_logprobs(rollout.batch, with_entropy=True)
        b = rollout.batch
        frame = rollout_frame(rewards, logp, entropy, b.text_mask, b.speech_mask)
        frame = frame.merge(group_gates(rewards, **(mixer_kw or {})), on="prompt")
        frames.append(frame.assign(temperature=float(temp), group_size=int(G)))
    return pd.concat(frames, ignore_index=True)
