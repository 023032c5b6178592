"""report.md reads like the notebooks: sections in notebook order, figures with caption and reading, the graders'
quality, the drift table, audio once each with its caption, links that resolve inside OUT."""

import json
import os
import re

import nbformat
import numpy as np
import pandas as pd
import soundfile as sf

from wavalign_kit.report import write_report, write_summary


def make_run(out, profile="smoke"):
    for sub in ("notebooks", "figures", "audio", "metrics"):
        (out / sub).mkdir(parents=True)
    names = ["00_world_and_base_model.ipynb", "03_hybrid_training.ipynb", "04_evaluation.ipynb"]
    for name in names[:2]:                      # 04's executed notebook is missing: no link to it
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell(f"[badge](x)\n\n# {name[:2]} · Title of {name[3:-6]}\n\ntext")]
        nbformat.write(nb, out / "notebooks" / name)
    manifest = {"profile": profile, "finished": "2026-01-01T00:00:00", "total_notebook_s": 12.0, "seeds": [0],
                "git": {"commit": "abc"}, "hardware": {"cpu": "cpu", "cpu_count": 2, "gpus": []},
                "notebooks": [{"name": n, "status": "completed", "duration_s": 4.0} for n in names],
                "parameters": {"profile": profile, "seed": 0, "seeds": [0], "config": {
                    "world": {"evaluator_utterances": 300, "test_size": 9},
                    "train": {"steps": 4, "prompts_per_step": 2, "group_size": 4}}}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    t = 0
    for name, meta in (("03_curves", {"caption": "curves.", "reading": "- they move."}),
                       ("00_rate", {"caption": "rates.", "reading": "- tempo spans."}),
                       ("00_loss", {"caption": "loss.", "reading": ""}), ("custom", None)):
        (out / "figures" / f"{name}.png").write_bytes(b"png")
        if meta:
            (out / "figures" / f"{name}.json").write_text(json.dumps(meta))
        t += 10
        os.utime(out / "figures" / f"{name}.png", (t, t))
    world = {"styles": {"train": {"neutral": 1, "happy": 1}},
             "evaluators": {"recognizer_wer": 0.9, "style_accuracy": 0.7, "recognizer_wer_by_style": {"happy": 0.95}}}
    (out / "metrics" / "world_summary.json").write_text(json.dumps(world))
    pd.DataFrame({"examples": [8], "iq_text_accuracy": [0.25]}, index=["interleaved"]).to_csv(
        out / "metrics" / "base_heldout.csv")
    pd.DataFrame([dict(architecture="interleaved", preset=p, seed=0, step=s, kl_text=0.01, kl_speech=k,
                       **{"lambda": 1.0}) for p, k in (("grpo_full", 0.3), ("grpo_text", 0.01)) for s in (1, 2, 3)]
                 ).to_csv(out / "metrics" / "training_curves.csv", index=False)
    rows = [dict(model=m, seed=0, example_id=f"e{i}", style="neutral", iq_text=float(i % 2), wer=0.5)
            for m in ("base", "wavalign") for i in range(6)]
    pd.DataFrame(rows).to_csv(out / "metrics" / "responses.csv", index=False)
    wav = np.zeros(160, dtype="float32")
    for i, (name, caption) in enumerate((("00_sample", "base: text 'hi'; heard as 'hi'"),
                                         ("04_base", "base again: text 'hi'; heard as 'hi'"),
                                         ("04_wavalign", "wavalign: text 'yo'; heard as 'no'"))):
        sf.write(out / "audio" / f"{name}.wav", wav if name != "04_wavalign" else wav + 0.1, 16000)
        (out / "audio" / f"{name}.wav.json").write_text(json.dumps({"caption": caption}))
        os.utime(out / "audio" / f"{name}.wav", (100 + i, 100 + i))


def test_report_reads_in_notebook_order_with_captions_readings_and_blocks(tmp_path):
    out = tmp_path / "run"
    make_run(out)
    report = write_report(out, write_summary(out)).read_text()
    heads = re.findall(r"^## (.*)$", report, flags=re.M)
    assert heads[:4] == ["The notebooks", "00 · Title of world_and_base_model", "03 · Title of hybrid_training",
                         "04_evaluation"]
    assert heads[4:] == ["Other figures", "Listen", "Metrics (CSV)", "Metrics (JSON)"]
    # figures: in their notebook's section, in the order they were saved, caption and reading beneath
    s00, s03, s04 = (report.index(f"## {h}") for h in heads[1:4])
    assert s00 < report.index("figures/00_rate.png") < report.index("figures/00_loss.png") < s03
    assert s03 < report.index("figures/03_curves.png") < s04
    assert "![03_curves](figures/03_curves.png)\n\n*Figure: curves.*\n\n- they move." in report
    assert report.index("![custom](figures/custom.png)") > report.index("## Other figures")
    # the graders and the base model under 00, the drift table under 03, the results and their reading under 04
    assert s00 < report.index("| recogniser WER (all styles) | 0.900 |") < s03
    assert "too poor to grade speech" in report and "25 % of 8 held-out questions" in report
    assert s03 < report.index("| interleaved | grpo_full | 3 | 1 | 1.0000 | 0.0100 | 0.0100 | 0.3000 |") < s04
    assert report.index("### Results") > s04 and "**iq_text**" in report
    # links resolve inside OUT; the missing executed notebook is named, not linked
    assert "[00_world_and_base_model.ipynb](notebooks/00_world_and_base_model.ipynb)" in report
    assert "04_evaluation.ipynb (not written)" in report
    for link in re.findall(r"\]\(((?:notebooks|figures|audio|metrics)/[^)]+)\)", report):
        assert (out / link).is_file(), link
    # audio: each clip once, the identical one folded into the first, captions kept
    assert report.count("audio/00_sample.wav") == 1 and "(the same audio: [04_base](audio/04_base.wav))" in report
    assert "- [04_wavalign](audio/04_wavalign.wav): wavalign: text 'yo'; heard as 'no'" in report
    assert "not meaningful" in report                     # a smoke run says so


def test_a_cpu_run_carries_no_smoke_notice(tmp_path):
    out = tmp_path / "run"
    make_run(out, profile="cpu")
    assert "not meaningful" not in write_report(out, write_summary(out)).read_text()
