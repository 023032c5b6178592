"""A user's own data: JSONL in the authors' schema at 24 kHz, a toy codec given by import path, loaded as a World."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import soundfile as sf

from wavalign_kit.config import ConfigError
from wavalign_kit.world import JsonlWorld, SchemaError, World, load_own_data, load_world

TOY_CODEC = '''
import numpy as np
from wavalign_kit.codec import SpeechCodec


class ToyCodec(SpeechCodec):
    """12 kHz, 50 units/s: each 240-sample frame's loudness, bucketed into 8 units."""

    sample_rate, frame_rate, num_units = 12_000, 50.0, 8

    def __init__(self, gain=40.0):
        self.gain = gain
        self.rates_seen = []

    def encode(self, wav, sr):
        self.rates_seen.append(sr)
        frames = wav[: len(wav) // 240 * 240].reshape(-1, 240)
        return np.minimum((np.abs(frames).mean(axis=1) * self.gain).astype(np.int64), 7)

    def decode(self, units):
        return np.zeros(240 * len(units), dtype=np.float32)

    def save(self, dir):
        pass

    @classmethod
    def load(cls, dir):
        return cls(gain=float(open(f"{dir}/gain.txt").read()))
'''


def _wav(path, seconds, freq, sr=24_000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, 0.2 * np.sin(2 * np.pi * freq * t) * np.linspace(0.2, 1.0, t.size), sr, subtype="PCM_16")


def _record(i, question, answer, task_type="t2s", **kit):
    audios = [f"audio/q{i}.wav"] if task_type == "s2s" else []
    return {"messages": [{"role": "user", "content": "<|audio|>" if audios else question},
                         {"role": "assistant", "content": answer}],
            "audios": audios, "sft_target_text": answer, "sft_target_audio": f"audio/a{i}.wav",
            "task_type": task_type, "question_text": question, **kit}


@pytest.fixture
def own_data(tmp_path, monkeypatch):
    (tmp_path / "toycodecs.py").write_text(textwrap.dedent(TOY_CODEC))
    monkeypatch.syspath_prepend(str(tmp_path))
    root = tmp_path / "mydata"
    for i in range(4):
        _wav(root / f"audio/a{i}.wav", 0.5 + 0.1 * i, 220)
        _wav(root / f"audio/q{i}.wav", 0.4, 330)
    _wav(root / "audio/r0.wav", 0.3, 110)
    train = [_record(0, "What is the capital of France?", "Paris.", task="geography",
                     check={"type": "regex", "pattern": "Paris"}, rejected_text="Rome.", rejected_audio="audio/r0.wav"),
             _record(1, "Say hello", "Hello there!", "s2s")]
    test = [_record(2, "What is two plus two?", "Four.", check={"type": "number", "answer": "4"}),
            _record(3, "Say hello again", "Hello there!", "s2s", style="happy")]
    for name, recs in (("train", train), ("test", test)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (root / "codec").mkdir()
    (root / "codec/gain.txt").write_text("40")
    (root / "world.yaml").write_text("codec: toycodecs:ToyCodec\ncodec_dir: codec\ntokenizer: words\n")
    return root


def test_own_data_loads_as_a_world(own_data):
    import librosa

    world = load_world(own_data)
    assert isinstance(world, JsonlWorld) and isinstance(world, World) and world.evaluators is None
    assert world.summary["sizes"] == {"train": 2, "test": 2} and world.summary["codec"]["sample_rate"] == 12_000
    assert world.summary["tasks"]["train"] == {"geography": 1, "own": 1}
    train, test = world.split("train"), world.split("test")
    assert [e.task for e in train] == ["geography", "own"] and train[0].rejected_text == "Rome."
    assert train[1].prompt_units is not None and train[0].prompt_units is None
    # units: the 24 kHz audio resampled to the codec's 12 kHz, then encoded at 12 kHz (0.5 s -> 25 frames)
    wav, sr = sf.read(own_data / "audio/a0.wav", dtype="float32")
    expected = world.codec.encode(librosa.resample(wav, orig_sr=sr, target_sr=12_000), 12_000)
    assert sr == 24_000 and len(train[0].target_units) == 25 and train[0].target_units.tolist() == expected.tolist()
    assert set(world.codec.rates_seen) == {12_000}
    assert (own_data / "units/audio/a0.npz").is_file()
    # answers seen in train, the kit's check where one is given, the words tokenizer covers the data
    assert [e.record["answer_seen"] for e in test] == [False, True]
    assert world.summary["answer_seen"]["test"]["all"] == 0.5
    from wavalign_kit.world import has_kit_check, verify

    assert has_kit_check(test[0]) and verify(test[0], "It is 4") and not has_kit_check(train[0])
    ids = world.tokenizer(" ".join(e.question_text + " " + e.target_text for e in train + test))["input_ids"]
    assert world.tokenizer.unk_token_id not in ids
    with pytest.raises(FileNotFoundError, match="rl.jsonl"):
        world.split("rl")


def test_codec_by_instance_or_import_path(own_data):
    import toycodecs

    world = load_own_data(own_data, toycodecs.ToyCodec(gain=80.0))            # arguments beat world.yaml ...
    assert world.codec.gain == 80.0 and world.tokenizer is not None            # ... the rest comes from it
    (own_data / "world.yaml").unlink()
    world = load_own_data(own_data, "toycodecs:ToyCodec")                     # constructor, no codec_dir
    assert world.codec.gain == 40.0 and world.tokenizer is None and world.summary["sizes"]["train"] == 2
    with pytest.raises(ConfigError, match="pass codec="):
        load_own_data(own_data)
    with pytest.raises(ConfigError, match="no 'Nope'"):
        load_own_data(own_data, "toycodecs:Nope")
    with pytest.raises(ConfigError, match="package.module:ClassName"):
        load_own_data(own_data, "toycodecs.ToyCodec")
    with pytest.raises(ConfigError, match="cannot import"):
        load_own_data(own_data, "no_such_package:Codec")


def test_schema_problems_of_every_split_at_once(own_data):
    train = (own_data / "train.jsonl").read_text().splitlines()
    bad = json.loads(train[1])
    del bad["sft_target_text"]
    (own_data / "train.jsonl").write_text(train[0] + "\n" + json.dumps(bad) + "\n")
    (own_data / "test.jsonl").write_bytes(b'{"broken\n')
    with pytest.raises(SchemaError) as err:
        load_world(own_data)
    where = {(p.file.rsplit("/", 1)[-1], p.line, p.field) for p in err.value.problems}
    assert {("train.jsonl", 2, "sft_target_text"), ("test.jsonl", 1, "<json>")} <= where


def test_a_directory_without_world_or_manifest_names_both(tmp_path):
    with pytest.raises(FileNotFoundError, match="world.yaml"):
        load_world(tmp_path)


def test_the_warm_start_accepts_own_data(own_data, tmp_path):
    import torch

    from wavalign_kit.models.warmstart import run_warmstart

    torch.set_num_threads(1)
    (own_data / "valid.jsonl").write_text((own_data / "test.jsonl").read_text())   # the warm start's valid loss
    world = load_world(own_data)
    summary = run_warmstart(world, "interleaved", {"size": "smoke", "steps": 2, "batch_size": 2, "eval_every": 0,
                                                   "valid_examples": 2}, tmp_path / "base", evaluate=False)
    assert summary["steps"] == 2 and np.isfinite(summary["final_loss"])
