"""The claims table: paired contrasts between presets and their verdicts, on frames with known effects."""

from __future__ import annotations

import numpy as np
import pandas as pd

from wavalign_kit.claims import Contrast, claim_verdicts, contrast_table, verdict


def responses(effects: dict[str, dict[str, float]], *, items: int = 60, seeds=(0, 1, 2)) -> pd.DataFrame:
    """Per model, metric: a shift of per-item scores that every model shares (paired noise) plus the effect."""
    rng = np.random.default_rng(0)
    base = {m: rng.normal(0, 1, size=(len(seeds), items)) for m in ("wer", "iq_text")}
    rows = []
    for model, shift in effects.items():
        for si, s in enumerate(seeds):
            for i in range(items):
                rows.append({"model": model, "seed": s, "example_id": f"e{i}",
                             **{m: base[m][si, i] + shift.get(m, 0.0) + rng.normal(0, 0.05) for m in base}})
    return pd.DataFrame(rows)


def test_verdicts_follow_the_interval_and_the_predicted_side():
    assert verdict(0.1, 0.3, +1) == "reproduced" and verdict(-0.3, -0.1, +1) == "contradicted"
    assert verdict(-0.1, 0.3, +1) == "inconclusive" and verdict(-0.3, -0.1, -1) == "reproduced"
    assert verdict(-0.1, 0.3, 0) == "not worse" and verdict(-0.3, -0.1, 0) == "contradicted"
    assert verdict(float("nan"), 0.1, 1) == "no data"


def test_paired_contrasts_see_small_shifts_under_shared_item_noise():
    frame = responses({"grpo_full": {"wer": 0.1}, "grpo_text": {}, "base": {}, "sft": {"iq_text": 0.1}})
    contrasts = [Contrast("1", "grpo_full", "grpo_text", "wer", +1), Contrast("2", "grpo_text", "base", "iq_text", +1),
                 Contrast("2", "grpo_text", "sft", "iq_text", +1), Contrast("2", "grpo_text", "nowhere", "wer", 1)]
    table = contrast_table(frame, contrasts, resamples=500)
    assert list(table["verdict"]) == ["reproduced", "inconclusive", "contradicted"]     # the missing model: no row
    assert np.isclose(table["delta"].iloc[0], 0.1, atol=0.02) and table["cells"].iloc[0] == 180
    claims = claim_verdicts(table).set_index("claim")["verdict"]
    assert claims["1"] == "holds" and claims["2"] == "contradicted"


def test_contrasts_are_taken_within_each_architecture():
    a = responses({"grpo_full": {"wer": 0.2}, "grpo_text": {}}).assign(architecture="interleaved")
    b = responses({"grpo_full": {}, "grpo_text": {}}).assign(architecture="parallel")
    table = contrast_table(pd.concat([a, b]), [Contrast("1", "grpo_full", "grpo_text", "wer", +1)], resamples=500)
    assert dict(zip(table["architecture"], table["verdict"])) == {"interleaved": "reproduced",
                                                                  "parallel": "inconclusive"}


def test_the_reading_and_the_report_block_follow_the_table(tmp_path):
    from wavalign_kit.report_sections import claims_block
    from wavalign_kit.takeaways import claims_reading

    frame = responses({"grpo_full": {"wer": 0.1}, "grpo_text": {}, "base": {}})
    contrasts = [Contrast("1", "grpo_full", "grpo_text", "wer", +1), Contrast("2", "grpo_text", "base", "iq_text", +1)]
    table = contrast_table(frame, contrasts, resamples=500)
    reading = claims_reading(table)
    assert "Claim 1: **holds**; 1 of 1 contrasts reproduced" in reading and "grpo_full - grpo_text wer +0.1" in reading
    assert "Claim 2: **inconclusive**; no interval of its 1 contrasts excludes 0" in reading
    assert "about 0.1 would exclude 0 by chance" in reading
    assert claims_reading(table.iloc[:0]).startswith("- No claim can be tested")
    (tmp_path / "metrics").mkdir()
    assert claims_block(tmp_path) == []                        # no claims.csv: no section
    table.to_csv(tmp_path / "metrics" / "claims.csv", index=False)
    block = "\n".join(claims_block(tmp_path))
    assert "### The paper's claims" in block and reading in block
    assert "| architecture | claim | verdict | reproduced | contradicted | contrasts |" in block
    assert "|  | 1 | holds | 1 | 0 | 1 |" in block and "| index |" not in block


def test_the_reading_of_at_least_as_good_and_of_missing_metrics():
    from wavalign_kit.takeaways import claims_reading

    frame = responses({"wavalign": {"iq_text": 0.2}, "sft": {}, "base": {}}).assign(eq_style=np.nan)
    contrasts = [Contrast("3", "wavalign", "sft", "iq_text", 0), Contrast("1", "wavalign", "sft", "eq_style", -1)]
    reading = claims_reading(contrast_table(frame, contrasts, resamples=500))
    assert "Claim 3: **not worse**; no baseline is better beyond its interval in 1 contrasts" in reading
    assert "no interval" not in reading and "Claim 1: no data" in reading
    assert "Of the 1 intervals" in reading                    # the no-data contrast is not counted
