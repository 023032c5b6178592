"""Takeaways of notebooks 01 (reward analysis) and 02 (rollout statistics), each checked against the paper's claim.

The paper's claims, as the notebooks test them: an acoustic judge agrees with itself less often than a semantic
judge (test-retest agreement 0.38-0.70 semantic, 0.09-0.51 acoustic); speech tokens outnumber text tokens, so a
sequence-level reward is diluted over them; text-token gradients are much larger than speech-token gradients and
nearly orthogonal to them; GRPO groups with equal rewards carry no signal, and the adaptive gate then leans on
the anchor.
"""

from __future__ import annotations

import pandas as pd

from wavalign_kit.takeaways.phrasing import (
    bullet_list,
    compare,
    finite,
    mean_interval,
    num,
    percent,
    ratio_phrase,
)

SEMANTIC, ACOUSTIC, CROSS = "semantic_judge", "acoustic_judge", "semantic vs acoustic"
ORTHOGONAL = 0.1     # |cosine| below this reads as nearly orthogonal


def judge_reading(agreement: pd.DataFrame) -> str:
    """Test-retest agreement of the semantic and the acoustic judge (mean over prompts, bootstrap interval) and
    whether the acoustic one is the noisier, per architecture."""
    lines = []
    for arch, part in agreement.groupby("architecture", sort=False):
        est = {j: mean_interval(part.loc[part.judge == j, "agreement"].dropna()) for j in (SEMANTIC, ACOUSTIC, CROSS)}
        verdict = compare("semantic judge", est[SEMANTIC], "acoustic judge", est[ACOUSTIC],
                          f"{arch}: test-retest agreement per prompt")
        if float(est[SEMANTIC]["ci_low"]) > float(est[ACOUSTIC]["ci_high"]):
            verdict += " The acoustic judge is the noisier signal, as the paper reports (0.38-0.70 vs 0.09-0.51)."
        elif float(est[ACOUSTIC]["ci_low"]) > float(est[SEMANTIC]["ci_high"]):
            verdict += " Here the semantic judge is the noisier one, unlike the paper."
        lines.append(verdict)
        if est[CROSS]["n"]:
            lines.append(f"{arch}: the semantic and the acoustic judge order a group's samples alike in "
                         f"{num(est[CROSS]['mean'], 2)} [{num(est[CROSS]['ci_low'], 2)}, {num(est[CROSS]['ci_high'], 2)}] "
                         "of the pairs: they reward different things.")
    return bullet_list(lines)


def dilution_reading(counts: pd.DataFrame) -> str:
    """Speech tokens per text token and the text share of a response, per architecture."""
    lines = []
    for arch, part in counts.groupby("architecture", sort=False):
        share = float(part["text_share"].mean())
        lines.append(f"{arch}: a response holds {num(part['text_tokens'].mean(), 1)} text and "
                     f"{num(part['speech_tokens'].mean(), 1)} speech tokens on average ({len(part)} responses); "
                     f"{percent(share)} of its tokens are text, so a full-token loss spends {percent(1 - share)} of its "
                     "per-token credit on speech tokens.")
    return bullet_list(lines)


def gradient_reading(grads: pd.DataFrame) -> str:
    """Norm ratio and cosine of the text- and speech-token gradients, against the paper's claim, per architecture."""
    lines = []
    for _, row in grads.iterrows():
        ratio, cos = float(row["norm_ratio"]), float(row["cosine"])
        size = ratio_phrase(ratio, "the text-token gradient", "the speech-token gradient")
        if finite(ratio) and ratio >= 1.5:
            size += ", the paper's direction"
        elif finite(ratio):
            size += "; the paper's large text-over-speech gap does not show here"
        if not finite(cos):
            angle = "their cosine could not be measured"
        elif abs(cos) < ORTHOGONAL:
            angle = f"they are nearly orthogonal (cosine {num(cos, 2)}), as the paper reports"
        elif cos < 0:
            angle = f"they pull against each other (cosine {num(cos, 2)})"
        else:
            angle = f"they partly agree (cosine {num(cos, 2)}), less orthogonal than the paper reports"
        lines.append(f"{row['architecture']}: {size}; {angle}. (One batch of rollouts: a single measurement, "
                     "without an interval.)")
    return bullet_list(lines)


def reward_analysis_reading(agreement: pd.DataFrame, counts: pd.DataFrame, grads: pd.DataFrame) -> str:
    """Notebook 01's takeaways as Markdown bullets."""
    return "\n".join(x for x in (judge_reading(agreement), dilution_reading(counts), gradient_reading(grads)) if x)


def rollout_reading(table: pd.DataFrame) -> str:
    """Notebook 02: how the share of zero-variance groups moves with the temperature and the group size.
    ``table``: index (architecture, temperature, group_size), column ``zero_var_share``."""
    def movement(lo: float, hi: float, start: str, end: str, prep: str) -> str:
        if hi == lo:
            return f"stays at {percent(lo)} from {start} to {end}"
        return f"{'falls' if hi < lo else 'rises'} from {percent(lo)} {prep} {start} to {percent(hi)} {prep} {end}"

    lines = []
    frame = table.reset_index()
    for arch, part in frame.groupby("architecture", sort=False):
        temps, sizes = sorted(part["temperature"].unique()), sorted(part["group_size"].unique())
        G = sizes[len(sizes) // 2]
        by_t = part[part.group_size == G].set_index("temperature")["zero_var_share"]
        if len(temps) > 1:
            lines.append(f"{arch}, G = {G}: the share of groups whose samples all score the same "
                         + movement(by_t.get(temps[0]), by_t.get(temps[-1]), f"temperature {temps[0]:g}",
                                    f"{temps[-1]:g}", "at") + ".")
        T = temps[len(temps) // 2]
        by_g = part[part.temperature == T].set_index("group_size")["zero_var_share"]
        if len(sizes) > 1:
            lines.append(f"{arch}, temperature {T:g}: it " + movement(by_g.get(sizes[0]), by_g.get(sizes[-1]),
                                                                     f"G = {sizes[0]}", f"G = {sizes[-1]}", "with")
                         + "; those groups give GRPO no gradient.")
    return bullet_list(lines)


def gate_reading(gates: pd.DataFrame, lambda_max: float) -> str:
    """Notebook 02: where the adaptive gate's lambda_raw sits, with continuous and with whole-point rewards.
    ``gates``: one row per group, columns ``scores`` and ``lambda_raw``."""
    lines = []
    for name, part in gates.groupby("scores", sort=False):
        lam = part["lambda_raw"].dropna()
        if lam.empty:
            continue
        median, share_low = float(lam.median()), float((lam < 0.25 * lambda_max).mean())
        lean = ("mostly follows the anchor" if median < 0.25 * lambda_max else
                "mostly follows the preference loss" if median > 0.75 * lambda_max else "mixes both")
        lines.append(f"With {name} judge scores, lambda_raw has median {num(median, 3)} (mean {num(lam.mean(), 3)}, max "
                     f"{num(lam.max(), 3)} of at most {lambda_max:g}); {percent(share_low)} of {len(lam)} groups sit "
                     f"below a quarter of lambda_max: a step on such groups {lean}.")
    return bullet_list(lines)


def component_reading(rewards: pd.DataFrame, components: list[str]) -> str:
    """Notebook 01: per reward component, the share of prompt groups in which it varies (GRPO learns only from
    those), per architecture. ``rewards``: `analysis.reward_frame` rows with ``architecture``."""
    lines = []
    for arch, part in rewards.groupby("architecture", sort=False):
        varies = {c: float(part.groupby("prompt")[c].nunique().gt(1).mean()) for c in components if c in part}
        ranked = sorted(varies, key=varies.get, reverse=True)
        shown = ", ".join(f"{c} {percent(varies[c])}" for c in ranked)
        dead = [c for c in ranked if varies[c] == 0]
        lines.append(f"{arch}: share of prompt groups in which a component varies: {shown}"
                     + (f"; {', '.join(dead)} never {'varies' if len(dead) == 1 else 'vary'} within a group, so "
                        f"{'it' if len(dead) == 1 else 'each'} alone would give GRPO no signal" if dead else "") + ".")
    return bullet_list(lines)


def channel_reading(table: pd.DataFrame) -> str:
    """Notebook 02: per-channel entropy and length at the lowest and highest temperature (mean over group sizes).
    ``table``: index (architecture, temperature, group_size), columns entropy_* and tokens_*."""
    lines = []
    for arch, part in table.reset_index().groupby("architecture", sort=False):
        by_t = part.groupby("temperature")[["entropy_text", "entropy_speech", "tokens_text", "tokens_speech"]].mean()
        for t in sorted({by_t.index.min(), by_t.index.max()}):
            row = by_t.loc[t]
            lines.append(f"{arch}, temperature {t:g}: entropy {num(row['entropy_text'], 2)} nats per text token vs "
                         f"{num(row['entropy_speech'], 2)} per speech token; {num(row['tokens_text'], 1)} text and "
                         f"{num(row['tokens_speech'], 1)} speech tokens per response.")
    return bullet_list(lines)
