"""Strict config loading: unknown keys and wrong types are one clear error naming the key."""

from dataclasses import dataclass, field

import pytest

from wavalign_kit.config import ConfigError, deep_update, from_dict, load_profile, load_yaml, parse_overrides


@dataclass
class Inner:
    lr: float = 1e-3


@dataclass
class Outer:
    steps: int = 10
    mask: str = "text"
    flags: list[str] = field(default_factory=list)
    enabled: bool = False
    inner: Inner = field(default_factory=Inner)


def test_from_dict_fills_and_coerces():
    cfg = from_dict(Outer, {"steps": "12", "enabled": "true", "flags": "a,b", "inner": {"lr": "2e-4"}})
    assert cfg == Outer(steps=12, enabled=True, flags=["a", "b"], inner=Inner(lr=2e-4))


def test_unknown_key_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"train: unknown key 'stpes' \(did you mean 'steps'\?\)"):
        from_dict(Outer, {"stpes": 3}, "train")
    with pytest.raises(ConfigError, match=r"train.inner: unknown key 'lrr'"):
        from_dict(Outer, {"inner": {"lrr": 1}}, "train")
    with pytest.raises(ConfigError, match=r"train.steps: expected an integer"):
        from_dict(Outer, {"steps": "ten"}, "train")


def test_overrides_merge_and_yaml_errors(tmp_path):
    over = parse_overrides(["train.lr=1e-4", "seed=3", "train.mask=text"])
    assert over == {"train": {"lr": 1e-4, "mask": "text"}, "seed": 3}
    assert deep_update({"train": {"lr": 1, "steps": 2}}, over)["train"] == {"lr": 1e-4, "steps": 2, "mask": "text"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["train.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(bad)
    with pytest.raises(ConfigError, match="unknown profile 'smok'.*did you mean 'smoke'"):
        load_profile("smok")
    assert load_profile("smoke")["profile"] == "smoke"


def test_a_profile_extends_another_key_by_key(tmp_path):
    full, cpu = load_profile("cpu-full"), load_profile("cpu")
    assert "extends" not in full and full["profile"] == "cpu-full" and full["world"] == cpu["world"]
    assert full["pipeline"]["architectures"] == ["interleaved", "parallel"]
    assert full["pipeline"]["num_workers"] == cpu["pipeline"]["num_workers"]        # inherited inside a section
    (tmp_path / "mine.yaml").write_text("extends: cpu\ntrain: {steps: 7}\n")
    (tmp_path / "child.yaml").write_text("extends: mine.yaml\neval: {num_samples: 3}\n")
    child = load_profile(tmp_path / "child.yaml")
    assert child["train"]["steps"] == 7 and child["train"]["lr"] == cpu["train"]["lr"] and child["eval"]["num_samples"] == 3
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_profile(tmp_path / "loop.yaml")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "back.yaml").write_text("extends: ../loop2.yaml\n")
    (tmp_path / "loop2.yaml").write_text("extends: sub/back.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):       # a cycle through other spellings of a path
        load_profile(tmp_path / "loop2.yaml")
    (tmp_path / "bad.yaml").write_text("extends: [cpu]\n")
    with pytest.raises(ConfigError, match="name a profile"):
        load_profile(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("extends: cpuu\n")
    with pytest.raises(ConfigError, match="did you mean 'cpu'"):
        load_profile(tmp_path / "typo.yaml")
    from wavalign_kit.config import check_sections

    with pytest.raises(ConfigError, match="unknown section 'extends'"):     # -f files and overrides cannot extend
        check_sections({"extends": "cpu"}, "my.yaml")
