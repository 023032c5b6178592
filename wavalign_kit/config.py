"""Strict configuration: dataclasses filled from YAML/dicts, with one clear error per typo."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from wavalign_kit.errors import ConfigError

T = TypeVar("T")
CONFIG_DIR = Path(__file__).parent / "configs"
# The top-level keys of a profile: one section per module's config dataclass, plus the profile's name and seed.
PROFILE_SECTIONS = ("profile", "seed", "world", "models", "warmstart", "train", "eval", "pipeline")

__all__ = ["CONFIG_DIR", "PROFILE_SECTIONS", "ConfigError", "check_range", "deep_update", "from_dict", "load_profile",
           "check_sections", "load_yaml", "parse_overrides", "parse_scalar", "suggest"]


def suggest(key: str, known: list[str]) -> str:
    """' (did you mean ...?)' for the closest known name, or ''."""
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type where this is unambiguous; anything else is a ConfigError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # optional fields: None, or the one other type
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        if len(options) == 1:
            return _coerce(value, options[0], where)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value, where)
    if hint is bool:
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return number
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if origin is dict and not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    if origin in (list, tuple) and isinstance(value, str):
        value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [v if item is Any else _coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
    return value


def check_range(where: str, value: float, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """ConfigError unless ``value`` is finite and within [low, high] (``*_open``: excluding that end)."""
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        raise ConfigError(f"{where}: must be a finite number in {interval}, got {value!r}")


def check_keys(cls: type, data: dict[str, Any], where: str) -> None:
    """Reject keys that dataclass ``cls`` does not have, naming ``where`` and suggesting the closest key."""
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}'{suggest(key, names)}; known keys: {', '.join(names)}")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError naming the key."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    check_keys(cls, data, where)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_update(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base``."""
    out = dict(base)
    for k, v in override.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=1e-4", "seed=3"]`` into a nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override '{pair}': expected KEY=VALUE (e.g. train.lr=1e-4)")
        key, raw = pair.split("=", 1)
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{pair}': '{'.'.join(parts[:i + 1])}' was already given a value ({node!r});"
                                  f" give it as keys instead (a layout file: {'.'.join(parts[:i + 1])}.file=...)")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"override '{pair}': '{key}' was already given keys ({sorted(node[parts[-1]])}); give "
                              f"this value as a key too (a layout file: {key}.file=...)")
        node[parts[-1]] = parse_scalar(raw)
    return out


def parse_scalar(raw: str) -> Any:
    """A command-line value as YAML, except that ``1e-4`` is a number (YAML 1.1 would keep it a string). The one
    parser of ``key=value`` / ``-p key value`` values, shared by every command and the pipeline."""
    try:
        return float(raw) if any(c in raw.lower() for c in ".e") and not raw.lower().startswith(("n", "i")) else int(raw)
    except ValueError:
        pass
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"value {raw!r}: not a number, string or YAML value ({err.problem})") from None


def load_profile(name_or_path: str | Path) -> dict[str, Any]:
    """A profile by name (``smoke``, ``cpu``, ``cpu-full``, ``gpu``) from the kit's configs, or a user YAML by path;
    a top-level key that is not a profile section (a typo such as ``trian:``) is a ConfigError with a suggestion.
    ``extends: NAME_OR_PATH`` starts from that profile and overrides its keys (sections merge key by key)."""
    return _load_profile(name_or_path, ())


def _load_profile(name_or_path: str | Path, chain: tuple[str, ...]) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / "profiles" / f"{name_or_path}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (CONFIG_DIR / "profiles").glob("*.yaml"))
            raise ConfigError(f"unknown profile '{name_or_path}'{suggest(str(name_or_path), known)}; known: {known}")
    here = str(path.resolve())
    if here in chain:
        raise ConfigError(f"{path}: extends itself through {' -> '.join(chain)}")
    profile = load_yaml(path)
    parent = profile.pop("extends", None)            # only a profile file may extend (not -f files or overrides)
    check_sections(profile, str(path))
    if parent is None:
        return profile
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path}: extends={parent!r}: name a profile (cpu) or a YAML path")
    relative = Path(parent).suffix and not Path(parent).is_absolute()
    base = _load_profile(path.parent / parent if relative else parent, (*chain, here))
    return deep_update(base, profile)


def check_sections(profile: dict[str, Any], where: str) -> None:
    """Reject top-level keys of a profile that are not one of PROFILE_SECTIONS."""
    for key in profile:
        if key not in PROFILE_SECTIONS:
            raise ConfigError(f"{where}: unknown section '{key}'{suggest(str(key), list(PROFILE_SECTIONS))}; "
                              f"known sections: {', '.join(PROFILE_SECTIONS)}")
