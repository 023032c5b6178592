"""Bring your own model, codec, data and judge (issue 11): a tiny model built outside the kit (tests/foreign_model.py:
byte-level BPE, its own speech-token naming and boundary tokens, no text-end token, a 3:6 ratio) trains from the
command line alone on a user's 24 kHz JSONL with a user codec and user rewards; every trap of the issue is here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from foreign_model import BEGIN, END, build_foreign_model, write_own_data, write_user_modules

from wavalign_kit.cli import main as cli
from wavalign_kit.config import ConfigError, load_profile
from wavalign_kit.models import Sampling, load_pretrained


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    torch.set_num_threads(1)
    return build_foreign_model(tmp_path_factory.mktemp("models") / "foreign", num_units=64)


@pytest.fixture
def user_code(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(write_user_modules(tmp_path / "usercode")))
    return tmp_path / "usercode"


def profile_with(**models) -> dict:
    cfg = load_profile("smoke")
    cfg["models"] = {**cfg["models"], **models}
    return cfg


def test_foreign_model_generates_on_its_schedule_without_a_text_end(foreign):
    """Trap 1: no text-end token. The decoder follows the 3:6 ratio, wraps every speech run in <speech> ...
    </speech> (response_audio: chunks; trap 5: begin_audio in responses) and closes text by the schedule."""
    model = load_pretrained(foreign, foreign / "layout.yaml", dtype="float32")
    lay, tok = model.layout, model.tokenizer
    assert lay.text_end_id is None and lay.ratio.chunks == ((3, 6),) and lay.response_audio == "chunks"
    ex = type("Ex", (), {"task_type": "t2s", "question_text": "what is two plus three", "prompt_units": None})()
    s = Sampling(1.0, 1.0)
    rollout = model.generate([ex], num_samples=8, text_sampling=s, speech_sampling=s, max_new_tokens=120, seed=0)
    begin, end, finished = tok.convert_tokens_to_ids(BEGIN), tok.convert_tokens_to_ids(END), 0
    for i in range(8):
        p, n = int(rollout.batch.prompt_lengths[i]), int(rollout.batch.attention_mask[i].sum())
        resp = rollout.batch.input_ids[i, p:n].numpy()
        if resp[-1] != lay.eos_id:
            continue
        text, units = lay.split_response(resp)
        assert np.array_equal(lay.layout_response(text, units), resp)              # the layout, token for token
        assert begin in resp and end in resp and (resp == begin).sum() == (resp == end).sum()
        finished += 1
    assert finished >= 3
    # arbitrary bytes of an untrained byte-level model decode to printable text (tables read back row for row)
    assert model.decode_text(model.text_ids("say\rhello\x00 anna")) == "say\ufffdhello\ufffd anna"
    # text-only RL: speech positions (units and boundaries) are never in the text mask
    b = rollout.batch
    ids = b.input_ids[:, 1:]
    speechy = (ids >= lay.speech_start) & (ids < lay.speech_start + 64) | (ids == begin) | (ids == end)
    assert not (b.text_mask & speechy.reshape(b.text_mask.shape)).any()


def test_layout_errors_name_the_key_and_the_command_line(foreign, tmp_path):
    """Trap 2: a typo in a layout key, a missing layout, a missing token: one ConfigError / ValueError naming
    models.layout.<key> and how to set it (never a TypeError, never 'speech_token_pattern=None')."""
    from wavalign_kit.workspace import load_model

    with pytest.raises(ConfigError, match=r"models.layout: unknown key 'ratoi' \(did you mean 'ratio'\?\)"):
        load_model(foreign, profile_with(layout={"file": str(foreign / "layout.yaml"), "ratoi": "3 6"}))
    with pytest.raises(ValueError, match=r"models.layout=glm4_voice.*models.layout.ratio="):
        load_model(foreign, profile_with(layout=None))
    with pytest.raises(ValueError, match=r"models.layout.text_end: the tokenizer has no token '<\|text_end\|>'.*null") as err:
        load_model(foreign, profile_with(layout={"file": str(foreign / "layout.yaml"), "text_end": "<|text_end|>"}))
    assert "=None" not in str(err.value)
    with pytest.raises(ValueError, match=r"models.layout.speech_token_pattern: the tokenizer has no token '<\|audio_0\|>'"):
        load_model(foreign, profile_with(layout={"ratio": "3 6", "text_end": None}))


def test_tiny_model_keys_are_refused_for_a_real_model(foreign):
    """Trap 2: models.ratio shapes the kit's tiny models; given with a real model it is an error, not ignored."""
    from wavalign_kit.workspace import load_model

    with pytest.raises(ConfigError, match=r"models.ratio='4 10' shapes the kit's tiny models only.*ratio 3 6"):
        load_model(foreign, profile_with(layout=str(foreign / "layout.yaml"), ratio="4 10"))
    assert load_model(foreign, profile_with(layout=str(foreign / "layout.yaml"), ratio="3 6")).arch == "interleaved"


def test_unit_counts_are_checked_before_any_rollout(tmp_path, synthetic):
    """Trap 3: a declared unit count that differs from the tokenizer's is refused with both numbers; a model whose
    speech tokens differ from the world's units stops in the trainer's preflight, before any rollout."""
    from wavalign_kit.train.config import resolve_config
    from wavalign_kit.train.trainer import Trainer

    big = build_foreign_model(tmp_path / "big", num_units=96)
    with pytest.raises(ValueError, match="declared 64 speech units but the tokenizer holds 96"):
        load_pretrained(big, {"file": str(big / "layout.yaml"), "num_units": 64})
    model = load_pretrained(big, big / "layout.yaml")
    cfg, _ = resolve_config(load_profile("smoke"), {}, {"world_path": "synthetic", "steps": 1})
    calls = []
    model.generate = lambda *a, **k: calls.append(1)                       # no rollout may happen
    with pytest.raises(ConfigError, match=r"data units.*96|96.*units") as err:
        Trainer(cfg, model, synthetic, tmp_path / "run", log=lambda *_: None)
    assert not calls and "fix:" in str(err.value)


def test_train_help_documents_the_layout_keys():
    """Trap 2: the layout keys are documented where a command-line user looks."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli(["train", "--help"])
    for key in ("models.layout=glm4_voice", "models.layout.ratio", "models.layout.text_end=null", "models.codec",
                "world_path", "mypkg.rewards:MyReward"):
        assert key in out.getvalue(), key


@pytest.mark.parametrize("preset", ["wavalign", "grpo_text", "dpo_text"])
def test_cli_trains_a_foreign_model_on_own_24khz_data(foreign, user_code, tmp_path, preset):
    """The issue's done-criterion, from the command line alone: own JSONL at 24 kHz, the user's codec and rewards
    by import path, the foreign model and its layout file."""
    import pandas as pd

    data = write_own_data(tmp_path / "mydata")
    out = tmp_path / "run"
    args = ["train", "--preset", preset, "--profile", "smoke", "--out", str(out), f"base_model={foreign}",
            f"world_path={data}", f"models.layout={foreign / 'layout.yaml'}", "models.codec=usercodecs:ToneCodec",
            "reward={userrewards:KeywordReward: 1.0, userrewards:LoudnessReward: {weight: 0.5, target: 0.06}}",
            "steps=2", "save_every=2", "prompts_per_step=2", "group_size=4", "max_new_tokens=48",
            "pair_min_margin=0.1"]                      # a margin on the rewards' own 0..1.5 scale (DPO pairs)
    assert cli(args) == 0
    rows = pd.read_csv(out / "metrics.csv")
    assert len(rows) == 2 and {"reward/keyword", "reward/loudness"} <= set(rows.columns)
    assert np.isfinite(rows["loss"]).all()
    assert (data / "units").is_dir()                                            # encoded once by the user's codec


def test_cli_names_a_missing_codec_and_a_bad_reward_path(foreign, user_code, tmp_path, capsys):
    data = write_own_data(tmp_path / "mydata", n=2)
    base = ["train", "--preset", "grpo_text", "--profile", "smoke", "--out", str(tmp_path / "run"),
            f"base_model={foreign}", f"world_path={data}", f"models.layout={foreign / 'layout.yaml'}"]
    assert cli(base + ["reward={userrewards:KeywordReward: 1.0}"]) == 2
    assert "models.codec=package.module:Class" in capsys.readouterr().err
    assert cli(base + ["models.codec=usercodecs:ToneCodec", "reward={userrewards:Nope: 1.0}"]) == 2
    assert "userrewards:Nope" in capsys.readouterr().err


def test_notebooks_decode_with_the_models_own_codec(foreign, user_code, smoke_world):
    """Trap 7: every audio cell decodes with the model's codec (codec parameter -> models.codec), not the world's."""
    from wavalign_kit.notebook import Notebook
    from wavalign_kit.paths import Workspace
    from wavalign_kit.profiles import apply_model_parameters

    cfg = apply_model_parameters(load_profile("smoke"), {"model_path": str(foreign), "layout": str(foreign / "layout.yaml"),
                                                         "codec": "usercodecs:ToneCodec"})
    nb = Notebook(cfg, {"model_path": str(foreign)}, Workspace(foreign.parent / "ws"), smoke_world)
    model = nb.base_model("interleaved")
    assert type(model.codec).__name__ == "ToneCodec" and nb.codec_of(model) is model.codec
    assert nb.codec_of(object()) is nb.model_codec                              # checkpoints loaded without it
    table = nb.setup_checks(model).set_index("check")
    assert {"layout", "codec", "data units", "rewards", "prompt", "response"} <= set(table.index)
    # the kit world's units come from its own codec: decoding them with the model's is refused, both named
    failed = table[table.status == "FAILS"]
    assert list(failed.index) == ["world codec"] and "MelKMeansCodec (16000 Hz)" in failed.found.iloc[0] \
        and "ToneCodec (24000 Hz)" in failed.found.iloc[0]
    plain = Notebook(load_profile("smoke"), {}, nb.ws, smoke_world)
    assert plain.codec_of(model) is model.codec and plain.codec_of(object()) is smoke_world.codec


@pytest.mark.slow
def test_pipeline_runs_the_notebooks_on_a_foreign_model(foreign, smoke_world_dir, tmp_path):
    """`wavalign pipeline -p model_path ... -p layout ...`: the five notebooks on the foreign model (its 64 speech
    tokens are the smoke world's units), notebook 00 showing the preflight table."""
    import json

    import pandas as pd

    out = tmp_path / "pipeline"
    rc = cli(["pipeline", "--profile", "smoke", "--out", str(out), "-p", "model_path", str(foreign),
              "-p", "layout", str(foreign / "layout.yaml"), "-p", "world_dir", str(smoke_world_dir),
              "-p", "presets", "[grpo_text, wavalign]", "-p", "train.steps", "2"])
    assert rc == 0
    state = json.loads((out / "pipeline_state.json").read_text())
    assert {v["status"] for v in state["notebooks"].values()} == {"completed"} and len(state["notebooks"]) == 5
    checks = pd.read_csv(out / "metrics" / "setup_checks_interleaved.csv")
    assert "FAILS" not in set(checks["status"]) and "3 6" in checks.set_index("check").loc["layout", "found"]
    assert (out / "audio" / "base_interleaved_sample.wav").is_file()


def test_the_readmes_python_route(foreign, user_code, tmp_path):
    """README "Bring your own model", in Python: own data, the model and its layout file, the user's reward."""
    from wavalign_kit.config import load_yaml
    from wavalign_kit.rewards import build_reward
    from wavalign_kit.train.config import preset_path, resolve_config
    from wavalign_kit.train.run import train
    from wavalign_kit.world import load_own_data

    world = load_own_data(write_own_data(tmp_path / "mine", n=4), "usercodecs:ToneCodec")
    model = load_pretrained(foreign, foreign / "layout.yaml", dtype="float32")
    model.codec = world.codec
    cfg, _ = resolve_config(load_profile("smoke"), load_yaml(preset_path("wavalign")),
                            {"steps": 1, "max_new_tokens": 48, "group_size": 2, "prompts_per_step": 2})
    last = train(cfg, model, world, tmp_path / "run", reward=build_reward({"userrewards:KeywordReward": 1.0}, world),
                 log=lambda *_: None)
    assert last["step"] == 1 and (tmp_path / "run" / "run.json").is_file()


@pytest.mark.parametrize("param, message", [
    (["layout", "glm4_vocie"], "unknown layout 'glm4_vocie' (did you mean 'glm4_voice'?)"),
    (["layout", "{ratoi: '3 6'}"], "unknown key 'ratoi' (did you mean 'ratio'?)"),
    (["codec", "no_such_pkg:Codec"], "models.codec='no_such_pkg:Codec': cannot import"),
    (["judge", "no_such_pkg:Judge"], "pipeline.judge: reward 'no_such_pkg:Judge': cannot import"),
])
def test_pipeline_checks_the_byo_parameters_before_any_notebook(tmp_path, capsys, param, message):
    assert cli(["pipeline", "--profile", "smoke", "-p", *param, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_evaluate_cli_grades_own_data_with_the_users_judge(foreign, user_code, tmp_path):
    """Own data has no evaluators: `wavalign evaluate` loads the foreign model with its layout and codec and
    reports the user's reward (train.reward) per response, speech metrics left NaN rather than invented."""
    import json

    import pandas as pd

    data = write_own_data(tmp_path / "mydata", n=2)
    out = tmp_path / "eval"
    assert cli(["evaluate", str(foreign), "--world", str(data), "--out", str(out), "--names", "base", "--set",
                f"models.layout={foreign / 'layout.yaml'}", "models.codec=usercodecs:ToneCodec",
                "train.reward={userrewards:KeywordReward: 1.0, userrewards:LoudnessReward: 0.5}"]) == 0
    responses = pd.read_csv(out / "responses.csv")
    assert len(responses) == 2 and {"judge", "judge/keyword", "judge/loudness"} <= set(responses.columns)
    assert np.allclose(responses["judge"], responses["judge/keyword"] + 0.5 * responses["judge/loudness"])
    assert responses["wer"].isna().all() and responses["transcript"].fillna("").eq("").all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["graded_by"] == "the judge (no evaluators)" and "judge" in summary["models"]["base"]
