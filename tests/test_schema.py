"""JSONL schema validation: each kind of problem, all reported at once as file:line:field; unit caching."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from wavalign_kit.world.schema import SchemaError, load_examples, units_path
from wavalign_kit.world.units import UnitCacheError


class FrameCodec:
    """A stand-in codec for these tests: one unit per 1000 samples (loudness bucket)."""

    num_units = 4

    def __init__(self):
        self.calls = 0

    def encode(self, wav, sr):
        self.calls += 1
        frames = wav[: len(wav) // 1000 * 1000].reshape(-1, 1000)
        return np.minimum((np.abs(frames).mean(axis=1) * 40).astype(np.int64), 3)


def _wav(path, sr=16_000, n=4000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.sin(np.arange(n) / 5.0), sr, subtype="PCM_16")


def _record(i, task_type="s2s"):
    audio = [f"audio/{i}-q.wav"] if task_type == "s2s" else []
    return {"id": f"r{i}", "task": "arithmetic", "template": "arithmetic/plus/train0", "style": "neutral",
            "answer": "two", "check": {"type": "number", "answer": "two"}, "task_type": task_type,
            "question_text": "what is one plus one",
            "messages": [{"role": "user", "content": "<|audio|>" if audio else "what is one plus one"},
                         {"role": "assistant", "content": "one plus one is two"}],
            "audios": audio, "sft_target_text": "one plus one is two", "sft_target_audio": f"audio/{i}-a.wav",
            "rejected_text": "one plus one is three", "rejected_audio": f"audio/{i}-r.wav"}


@pytest.fixture
def world(tmp_path):
    for i in range(4):
        for kind in ("q", "a", "r"):
            _wav(tmp_path / f"audio/{i}-{kind}.wav")
    return tmp_path


def _write(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_valid_file_loads_and_caches_units(world):
    path = _write(world / "train.jsonl", [_record(0), _record(1, "t2s")])
    codec = FrameCodec()
    exs = load_examples(path, codec=codec)
    assert [e.id for e in exs] == ["r0", "r1"] and codec.calls == 5          # 2 + 3 audio files encoded
    assert exs[0].prompt_units.tolist() == codec.encode(sf.read(world / "audio/0-q.wav")[0], 16_000).tolist()
    assert exs[1].prompt_units is None and exs[1].rejected_text == "one plus one is three"
    assert units_path(world, "audio/0-a.wav").is_file()
    again = load_examples(path)                                               # from the cache, no codec needed
    assert all(np.array_equal(a.target_units, b.target_units) for a, b in zip(exs, again))


def test_missing_cache_without_codec_names_the_fix(world):
    path = _write(world / "train.jsonl", [_record(0)])
    with pytest.raises(FileNotFoundError, match="pass codec="):
        load_examples(path)


def test_every_problem_is_reported_at_once(world):
    _wav(world / "audio/8k.wav", sr=8000)
    (world / "audio/corrupt.wav").write_bytes(b"RIFF\x00\x00garbage")
    bad_type, no_target, unknown, empty = _record(0), _record(1), _record(2), _record(3)
    bad_type["sft_target_text"] = 7
    del no_target["sft_target_text"]
    unknown["task_type"] = "a2a"
    unknown["task"] = "poetry"
    empty["messages"] = []
    files = _record(0)
    files["id"] = "files"
    files["audios"] = ["audio/missing.wav"]
    files["sft_target_audio"] = "audio/corrupt.wav"
    files["rejected_audio"] = "audio/8k.wav"
    dup = _record(1)
    lines = [bad_type, "{not json", no_target, unknown, empty, files, dup]
    path = _write(world / "train.jsonl", lines)
    before = path.read_bytes()
    with pytest.raises(SchemaError) as err:
        load_examples(path, codec=FrameCodec())
    found = {(p.line, p.field) for p in err.value.problems}
    assert {(1, "sft_target_text"), (2, "<json>"), (3, "sft_target_text"), (4, "task_type"), (4, "task"),
            (5, "messages"), (6, "audios[0]"), (6, "sft_target_audio"), (6, "rejected_audio"), (7, "id")} <= found
    message = str(err.value)
    for needle in (f"{path}:1: sft_target_text: expected a non-empty string", f"{path}:2: <json>: malformed JSON",
                   f"{path}:3: sft_target_text: missing", "unknown task type 'a2a'", "does not exist",
                   "unreadable or corrupt", "sample rate 8000 Hz", "duplicate id 'r1'"):
        assert needle in message, needle
    assert path.read_bytes() == before and not (world / "units").exists()     # nothing touched


def test_structural_problems(world):
    wrong = _record(0)
    wrong["audios"] = []                             # s2s needs its user audio
    wrong["messages"][0]["content"] = "hello"        # and the audio placeholder
    t2s = _record(1, "t2s")
    t2s["messages"][0]["content"] = "something else"
    lonely = _record(2)
    del lonely["rejected_audio"]
    checkless = _record(3)
    checkless["check"] = {"type": "regex"}
    path = _write(world / "x.jsonl", [wrong, t2s, lonely, [1, 2], checkless])
    with pytest.raises(SchemaError) as err:
        load_examples(path)
    found = {(p.line, p.field) for p in err.value.problems}
    assert {(1, "audios"), (1, "messages"), (2, "messages"), (3, "rejected_audio"), (4, "<record>"),
            (5, "check")} <= found


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="wavalign world"):
        load_examples(tmp_path / "nope.jsonl")


# ---- loader robustness: empty files, encodings, check field types, unit caches --------------------------------

def test_empty_split_file_is_an_error_naming_the_file(world):
    for content in (b"", b"\n  \n"):
        path = world / "train.jsonl"
        path.write_bytes(content)
        with pytest.raises(SchemaError, match="holds no records") as err:
            load_examples(path, codec=FrameCodec())
        assert str(path) in str(err.value) and path.read_bytes() == content


def test_invalid_utf8_is_reported_with_its_line_among_the_others(world):
    path = world / "train.jsonl"
    bad_check = _record(2)
    bad_check["check"] = {"type": "n_words", "n": "four"}
    lines = [json.dumps(_record(0)).encode(), b'{"id": "caf\xe9"}', json.dumps(bad_check).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    before = path.read_bytes()
    with pytest.raises(SchemaError) as err:
        load_examples(path, codec=FrameCodec())
    found = {(p.line, p.field) for p in err.value.problems}
    assert {(2, "<encoding>"), (3, "check.n")} <= found and not any(line == 1 for line, _ in found)
    assert f"{path}:2: <encoding>: not valid UTF-8" in str(err.value)
    assert f"{path}:3: check.n: expected a positive integer" in str(err.value)
    assert path.read_bytes() == before and not (world / "units").exists()


def test_check_fields_are_validated_with_the_rest(world):
    checks = [{"type": "n_words", "n": "four"}, {"type": "number", "answer": 7}, {"type": "yes_no", "answer": "perhaps"},
              {"type": "contains"}]
    records = []
    for i, check in enumerate(checks):
        records.append(_record(i))
        records[-1]["check"] = check
    records[1]["sft_target_text"] = ""
    path = _write(world / "train.jsonl", records)
    with pytest.raises(SchemaError) as err:
        load_examples(path, codec=FrameCodec())
    found = {(p.line, p.field) for p in err.value.problems}
    assert {(1, "check.n"), (2, "check.answer"), (2, "sft_target_text"), (3, "check.answer"), (4, "check.answer")} <= found


def _cached(world, codec=None):
    path = _write(world / "train.jsonl", [_record(0)])
    load_examples(path, codec=codec or FrameCodec())
    return path, units_path(world, "audio/0-a.wav")


def test_corrupt_unit_cache_names_the_cache_or_is_re_encoded(world):
    path, cache = _cached(world)
    cache.write_bytes(b"PK\x03\x04 not a zip")
    before = {p: p.read_bytes() for p in (path, cache, world / "audio/0-a.wav")}
    with pytest.raises(UnitCacheError, match="corrupt unit cache") as err:
        load_examples(path)
    assert str(cache) in str(err.value) and "codec=" in str(err.value)
    assert before == {p: p.read_bytes() for p in before}                     # nothing touched
    codec = FrameCodec()
    with pytest.warns(UserWarning, match="re-encoding"):
        ex = load_examples(path, codec=codec)[0]
    expected = codec.encode(sf.read(world / "audio/0-a.wav")[0].astype(np.float32), 16_000)
    assert ex.target_units.tolist() == expected.tolist()
    assert load_examples(path)[0].target_units.tolist() == expected.tolist()  # the repaired cache is used again


def test_units_outside_the_codec_range_are_a_corrupt_cache(world):
    path, cache = _cached(world)
    np.savez(cache, units=np.array([0, 99]), audio_digest=np.load(cache)["audio_digest"])
    load_examples(path)                                                        # no codec: no range to check
    with pytest.warns(UserWarning, match="outside 0..4"):
        assert load_examples(path, codec=FrameCodec())[0].target_units.max() < 4


def test_replaced_audio_makes_its_units_stale(world):
    path, cache = _cached(world)
    old_units = load_examples(path)[0].target_units
    _wav(world / "audio/0-a.wav", n=8000)                                      # a replaced, longer recording
    before = cache.read_bytes()
    with pytest.raises(UnitCacheError, match="stale unit cache") as err:
        load_examples(path)
    assert str(cache) in str(err.value) and cache.read_bytes() == before
    with pytest.warns(UserWarning, match="changed after its units were encoded"):
        new_units = load_examples(path, codec=FrameCodec())[0].target_units
    assert len(new_units) == 8 != len(old_units) == 4


def test_own_data_mode_accepts_any_task_check_and_sample_rate(world):
    _wav(world / "audio/24k.wav", sr=24_000, n=6000)
    free = _record(0)
    free.update(task="poetry", check={"type": "rhyme", "with": "moon"}, sft_target_audio="audio/24k.wav")
    bare = {k: v for k, v in _record(1).items() if k not in ("id", "task", "template", "style", "answer", "check")}
    path = _write(world / "train.jsonl", [free, bare])
    with pytest.raises(SchemaError) as err:                                    # the kit's schema refuses them
        load_examples(path, codec=FrameCodec())
    assert {(1, "task"), (1, "check"), (1, "sft_target_audio"), (2, "id"), (2, "check")} <= {
        (p.line, p.field) for p in err.value.problems}
    exs = load_examples(path, codec=FrameCodec(), kit=False, sample_rate=None)
    assert [e.task for e in exs] == ["poetry", "own"] and exs[1].id == "train-00002" and exs[1].check == {}
    assert len(exs[0].target_units) == 6                                        # 24 kHz file, no resampling rate given
    bad = dict(bare, check={"type": "n_words", "n": "four"})                   # kit check types still validated
    with pytest.raises(SchemaError, match="check.n"):
        load_examples(_write(world / "x.jsonl", [bad]), codec=FrameCodec(), kit=False, sample_rate=None)


def test_audio_paths_must_stay_inside_the_data_directory(world):
    outside = _record(0)
    outside["sft_target_audio"] = "../elsewhere.wav"
    with pytest.raises(SchemaError, match="inside it"):
        load_examples(_write(world / "train.jsonl", [outside]), codec=FrameCodec())
