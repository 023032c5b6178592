"""The smoke world end to end: files, summary, JSONL schema fields, units/text band, caching, loading, CLI."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from wavalign_kit.config import ConfigError
from wavalign_kit.world import (
    Example,
    WorldConfig,
    build_world,
    load_examples,
    load_world,
    main,
    verify,
    world_config,
)
from wavalign_kit.world.build import BUILDING, _prepare_dir
from wavalign_kit.world.corpus import text_tokens
from wavalign_kit.world.schema import AUDIO_PLACEHOLDER
from wavalign_kit.world.tasks import TASKS

AUTHOR_FIELDS = ("messages", "audios", "sft_target_text", "sft_target_audio", "task_type", "question_text",
                 "rejected_text", "rejected_audio")
KIT_FIELDS = ("id", "task", "template", "style", "answer", "check", "answer_seen")
SPLITS = ("train", "rl", "valid", "test")


def test_world_files_and_summary(smoke_world_dir):
    cfg = world_config("smoke")
    for name in ("summary.json", "train.jsonl", "rl.jsonl", "valid.jsonl", "test.jsonl", "facts.json", "codec/codec.json",
                 "tokenizer/tokenizer.json", "evaluators/recognizer", "evaluators/style", "evaluators/unit_lm",
                 "examiners/recognizer", "examiners/style", "examiners/unit_lm", "examiners/utterances.jsonl"):
        assert (smoke_world_dir / name).exists(), name
    assert not (smoke_world_dir / BUILDING).exists()
    summary = json.loads((smoke_world_dir / "summary.json").read_text())
    assert summary["config_hash"] == cfg.hash()
    assert summary["sizes"]["train"] == cfg.train_size and summary["sizes"]["test"] == cfg.test_size
    assert summary["sizes"]["rl"] == cfg.rl_size and summary["sizes"]["valid"] == cfg.valid_size
    assert 0.0 <= summary["recognizer_wer"] and 0.0 <= summary["style_accuracy"] <= 1.0
    assert set(summary["timings"]) >= {"synthesise", "fit codec", "encode units", "train evaluators"}
    assert summary["units_per_text_token"]["count"] == cfg.train_size + cfg.rl_size + cfg.valid_size + cfg.test_size
    assert summary["units_per_text_token"]["outside"] == 0
    for name in ("evaluators", "examiners"):         # both sets' held-out figures, side by side
        figures = summary[name]
        assert 0.0 <= figures["recognizer_wer"] and 0.0 <= figures["style_accuracy"] <= 1.0
        assert figures["heldout_utterances"] == summary["sizes"][f"{name[:-1]}_heldout"]
    assert summary["recognizer_wer"] == summary["evaluators"]["recognizer_wer"]   # top level: the reward models


def test_jsonl_records_carry_the_authors_and_kit_fields(smoke_world_dir):
    for split in SPLITS:
        for line in (smoke_world_dir / f"{split}.jsonl").read_text().splitlines():
            r = json.loads(line)
            assert set(AUTHOR_FIELDS + KIT_FIELDS) <= set(r)
            user, assistant = r["messages"]
            assert user["role"] == "user" and assistant == {"role": "assistant", "content": r["sft_target_text"]}
            if r["task_type"] == "s2s":
                assert user["content"] == AUDIO_PLACEHOLDER and len(r["audios"]) == 1
            else:
                assert user["content"] == r["question_text"] and r["audios"] == []
            assert all(not p.startswith("/") and (smoke_world_dir / p).is_file()
                       for p in [*r["audios"], r["sft_target_audio"], r["rejected_audio"]])
            assert verify(r["check"], r["sft_target_text"])
            assert isinstance(r["answer_seen"], bool)


def test_every_response_has_4_to_10_units_per_text_token(smoke_world):
    for split in SPLITS:
        for ex in smoke_world.split(split):
            for text, units in ((ex.target_text, ex.target_units), (ex.rejected_text, ex.rejected_units)):
                ratio = len(units) / text_tokens(text)
                assert 4.0 <= ratio <= 10.0, (ex.id, text, ratio)


def test_load_world_splits(smoke_world):
    train = smoke_world.split("train")
    assert len(train) == smoke_world.summary["sizes"]["train"] and isinstance(train[0], Example)
    num_units = smoke_world.codec.num_units
    for ex in train:
        assert ex.target_units.dtype == np.int64 and 0 <= ex.target_units.min() <= ex.target_units.max() < num_units
        assert (ex.prompt_units is None) == (ex.task_type == "t2s")
    # the cached units are the codec's encoding of the stored audio
    from wavalign_kit.speech import read_wav

    ex = train[0]
    wav = read_wav(smoke_world.root / ex.record["sft_target_audio"])
    assert np.array_equal(smoke_world.codec.encode(wav, 16_000), ex.target_units)
    # the tokenizer knows every word of the world and every unit
    tok = smoke_world.tokenizer
    ids = tok(" ".join(e.question_text + " " + e.target_text for e in train))["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.convert_tokens_to_ids(f"<|audio_{num_units - 1}|>") != tok.unk_token_id
    with pytest.raises(ValueError, match="split"):
        smoke_world.split("dev")


def test_train_and_test_share_no_template(smoke_world):
    parts = lambda exs: {p for e in exs for p in e.record["template"].split("+")}  # noqa: E731
    assert not parts(smoke_world.split("train")) & parts(smoke_world.split("test"))
    assert not parts(smoke_world.split("rl")) & parts(smoke_world.split("test"))


def test_rl_and_valid_questions_are_not_warm_start_questions(smoke_world):
    train = {e.question_text for e in smoke_world.split("train")}
    for split in ("rl", "valid"):
        assert not train & {e.question_text for e in smoke_world.split(split)}, split
        assert smoke_world.summary[f"{split}_questions_in_train"] == 0
    assert smoke_world.summary["test_questions_in_train"] == 0


def test_answer_seen_and_its_shares(smoke_world):
    targets = {s: {e.target_text for e in smoke_world.split(s)} for s in ("train", "rl")}
    for split in SPLITS:
        trained = targets["train"] | (targets["rl"] if split in ("valid", "test") else set())
        exs = smoke_world.split(split)
        assert [e.record["answer_seen"] for e in exs] == [e.target_text in trained for e in exs]
        shares = smoke_world.summary["answer_seen"][split]
        assert shares["all"] == pytest.approx(np.mean([e.record["answer_seen"] for e in exs]), abs=1e-3)
        assert set(shares["per_task"]) == {e.task for e in exs}


def test_style_requests_in_test_and_rl(smoke_world):
    for split in ("rl", "test"):
        exs = smoke_world.split(split)
        styled = [e for e in exs if e.task == "style"]
        assert len(styled) >= 0.3 * len(exs) and all(e.style != "neutral" for e in styled)
        assert any(e.style == "neutral" for e in exs)             # neutral adherence is measured on these
        assert smoke_world.summary["styles"][split]["neutral"] == len(exs) - len(styled)
        assert {e.task for e in exs} == set(TASKS)                # every task, even at smoke scale


def test_second_build_is_a_noop(smoke_world_dir, capsys):
    before = {p: p.stat().st_mtime_ns for p in smoke_world_dir.rglob("*") if p.is_file()}
    start = time.perf_counter()
    summary = build_world(world_config("smoke"), smoke_world_dir)
    assert time.perf_counter() - start < 2.0
    assert "reusing" in capsys.readouterr().out
    assert summary == json.loads((smoke_world_dir / "summary.json").read_text())
    assert before == {p: p.stat().st_mtime_ns for p in smoke_world_dir.rglob("*") if p.is_file()}


def test_cli_reuses_and_prints_evaluator_figures(smoke_world_dir, capsys):
    assert main(["--profile", "smoke", "--out", str(smoke_world_dir)]) == 0
    out = capsys.readouterr().out
    assert "reusing" in out and "recognizer_wer" in out and "style_accuracy" in out


def test_other_config_into_same_dir_is_an_error(smoke_world_dir):
    with pytest.raises(ConfigError, match="different config.*--overwrite"):
        build_world(world_config("smoke", {"seed": 1}), smoke_world_dir)


def test_cli_reports_config_errors(smoke_world_dir, capsys):
    from wavalign_kit.cli import main as wavalign

    assert wavalign(["world", "--profile", "smoke", "--out", str(smoke_world_dir), "-p", "world.train_size=3"]) == 2
    assert "different config" in capsys.readouterr().err
    assert wavalign(["world", "--profile", "smoke", "--out", str(smoke_world_dir), "-p", "train_sise=3"]) == 2
    assert "unknown key 'train_sise'" in capsys.readouterr().err


def test_interrupted_build_is_cleaned_and_foreign_dirs_refused(tmp_path):
    partial = tmp_path / "partial"
    (partial / "audio").mkdir(parents=True)
    (partial / "audio" / "x.wav").write_bytes(b"half")
    (partial / "train.jsonl").write_text("{")
    (partial / BUILDING).write_text("abc")
    assert _prepare_dir("def", partial, overwrite=False, quiet=True) is None
    assert sorted(p.name for p in partial.iterdir()) == [BUILDING]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        _prepare_dir("def", foreign, overwrite=False, quiet=True)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_world_config_errors():
    with pytest.raises(ConfigError, match="unknown key 'train_sise'"):
        world_config("smoke", {"train_sise": 3})
    with pytest.raises(ConfigError, match="styles"):
        world_config("smoke", {"styles": ["neutral", "grumpy"]})
    with pytest.raises(ConfigError, match="ratio_bounds"):
        WorldConfig(ratio_bounds=[5.0, 2.0]).validate()
    with pytest.raises(ConfigError, match="examiner_utterances=1: .* none is left to train on"):
        WorldConfig(examiner_utterances=1).validate()
    with pytest.raises(ConfigError, match="evaluators"):
        world_config("smoke", {"evaluators": {"scale": "smoke", "epochs": 3}})
    with pytest.raises(ConfigError, match="world.evaluators.device='gpu0'"):
        world_config("smoke", {"evaluators": {"scale": "smoke", "device": "gpu0"}})
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            world_config("smoke", {"evaluators": {"device": "cuda"}})
    assert world_config({"seed": 5, "world": {"train_size": 7}}).seed == 5
    assert world_config("cpu").train_size > world_config("smoke").train_size


def _copy_world(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def _snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "audio" not in p.parts}


@pytest.mark.parametrize("damage", ["summary", "tokenizer", "split", "audio"])
def test_a_corrupted_world_is_reported_not_reused(smoke_world_dir, tmp_path, capsys, damage):
    from wavalign_kit.world import CorruptWorldError, load_world

    root = _copy_world(smoke_world_dir, tmp_path / "w")
    expect = {"summary": "summary.json is corrupted", "tokenizer": "tokenizer.json is missing",
              "split": "rl.jsonl has", "audio": "audio holds"}[damage]
    if damage == "summary":
        (root / "summary.json").write_text((root / "summary.json").read_text()[:100])
    elif damage == "tokenizer":
        (root / "tokenizer" / "tokenizer.json").unlink()
    elif damage == "split":
        (root / "rl.jsonl").write_text((root / "rl.jsonl").read_text().split("\n", 1)[1])
    else:
        next((root / "audio").iterdir()).unlink()
    before = _snapshot(root)
    with pytest.raises(CorruptWorldError, match=expect):
        build_world(world_config("smoke"), root)
    with pytest.raises(CorruptWorldError, match=expect):
        load_world(root)
    from wavalign_kit.cli import main as wavalign

    assert wavalign(["world", "--profile", "smoke", "--out", str(root)]) == 2
    out = capsys.readouterr()
    assert "corrupted" in out.err and "--overwrite" in out.err and "reusing" not in out.out
    assert _snapshot(root) == before                              # nothing removed or rewritten
    assert _prepare_dir(world_config("smoke").hash(), root, overwrite=True, quiet=True) is None
    assert sorted(p.name for p in root.iterdir()) == [BUILDING]   # --overwrite removes it and rebuilds


def test_load_examples_round_trip(smoke_world_dir):
    exs = load_examples(smoke_world_dir / "valid.jsonl")
    assert [e.id for e in exs] == [json.loads(line)["id"] for line in
                                   (smoke_world_dir / "valid.jsonl").read_text().splitlines()]


def test_examiners_are_independent_of_the_reward_models(smoke_world, smoke_world_dir):
    """No shared weights and no shared utterances (text or audio) between the evaluators and the examiners."""
    from wavalign_kit.evaluators import read_manifest

    for kind in ("recognizer", "style", "unit_lm"):
        ev = getattr(smoke_world.evaluators, kind).net.state_dict()
        ex = getattr(smoke_world.examiners, kind).net.state_dict()
        shared = [k for k in ev.keys() & ex.keys()
                  if ev[k].shape == ex[k].shape and ev[k].is_floating_point() and torch.equal(ev[k], ex[k])
                  and ev[k].abs().sum() > 0 and not (ev[k] == 1).all()]      # layer-norm gains start at 1
        assert not shared, (kind, shared)
    assert smoke_world.examiners.recognizer.spec["encoder"] != smoke_world.evaluators.recognizer.spec["encoder"]
    ev_rows, ex_rows = read_manifest(smoke_world_dir / "evaluators"), read_manifest(smoke_world_dir / "examiners")
    cfg = world_config("smoke")
    assert len(ev_rows) == cfg.evaluator_utterances and len(ex_rows) == cfg.examiner_utterances
    assert not {r["text"] for r in ev_rows} & {r["text"] for r in ex_rows}
    assert not {r["audio"] for r in ev_rows} & {r["audio"] for r in ex_rows}
    corpus = {ex.target_text for split in SPLITS for ex in smoke_world.split(split)}
    assert not corpus & ({r["text"] for r in ev_rows} | {r["text"] for r in ex_rows})
    seeds = {json.loads((smoke_world_dir / s / "metrics.json").read_text())["seed"] for s in ("evaluators", "examiners")}
    assert len(seeds) == 2


def test_world_reuses_cached_evaluator_sets(tmp_path):
    """A second world with the same evaluator config and speech reuses that set; another config retrains."""
    import torch
    from threadpoolctl import threadpool_limits

    small = {"train_size": 6, "valid_size": 2, "test_size": 2, "evaluator_utterances": 60, "examiner_utterances": 40,
             "codec_fit_utterances": 20, "num_units": 32,
             "evaluators": {"scale": "smoke", "recognizer_epochs": 1, "style_epochs": 1, "unit_lm_epochs": 1},
             "examiners": {"scale": "smoke", "recognizer_epochs": 1, "style_epochs": 1, "unit_lm_epochs": 1}}
    cache = tmp_path / "cache"
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        first = build_world(world_config("smoke", small), tmp_path / "a", quiet=True, workers=1, evaluator_cache=cache)
        other = build_world(world_config("smoke", {**small, "examiners": {**small["examiners"], "seed": 7}}),
                            tmp_path / "b", quiet=True, workers=1, evaluator_cache=cache)
    assert [first[s]["cache"]["status"] for s in ("evaluators", "examiners")] == ["trained", "trained"]
    assert [other[s]["cache"]["status"] for s in ("evaluators", "examiners")] == ["reused", "trained"]
    assert other["evaluators"]["recognizer_wer"] == first["evaluators"]["recognizer_wer"]
    assert other["examiners"]["seed"] == 7 and first["examiners"]["seed"] == first["evaluators"]["seed"] + 1
    a, b = load_world(tmp_path / "a"), load_world(tmp_path / "b")
    assert all(torch.equal(v, b.evaluators.recognizer.net.state_dict()[k])
               for k, v in a.evaluators.recognizer.net.state_dict().items())
