"""Layouts of real models: the ``models.layout`` section, read from YAML, ``key=value``, notebook parameters or
Python, and checked against the model's tokenizer before anything else runs.

    models:
      path: /models/my-sdm
      layout:
        file: glm4_voice                # optional: a shipped layout (configs/layouts/NAME.yaml) or a YAML path;
        ratio: "13 26"                  #           the keys given here override the file's
        text_end: null                  # a token set to null is absent

On the command line: ``models.layout=vita_audio_boost`` (a file alone), ``models.layout.file=my_layout.yaml``,
``models.layout.ratio="3 6"``, ``models.layout.text_end=null``; in a notebook: the ``layout`` parameter (a name,
a path or a mapping); in Python: ``load_pretrained(path, LayoutConfig(...))`` or a dict of the same keys.

`LayoutConfig.resolve(tokenizer)` is the one place that turns token names into a `ChannelLayout`; every
problem names the key at fault (``models.layout.X``) and the fix: a token the tokenizer lacks, speech-token ids
that are not consecutive, a declared unit count that differs from the tokenizer's speech tokens (both numbers).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from wavalign_kit.channels import RESPONSE_AUDIO, ChannelLayout, InterleaveRatio
from wavalign_kit.config import CONFIG_DIR, ConfigError, from_dict, load_yaml, suggest

LAYOUT_DIR = CONFIG_DIR / "layouts"
WHERE = "models.layout"


@dataclass
class LayoutConfig:
    """Which tokens of a model's vocabulary are speech, which close a channel, and how a response interleaves."""

    file: str = ""                                 # shipped layout name or YAML path; keys given here override it
    kind: Literal["interleaved", "parallel"] = "interleaved"
    speech_token_pattern: str = "<|audio_{i}|>"    # token of unit i ({i} is replaced by 0, 1, ...)
    speech_offset: int | None = None               # instead of a pattern: the id of unit 0 (units are consecutive)
    num_units: int | None = None                   # None: every pattern token the tokenizer holds; else checked
    begin_audio: str | None = "<|begin_of_audio|>"  # opens user speech in prompts (and speech runs, "chunks")
    end_audio: str | None = "<|end_of_audio|>"     # closes user speech in prompts (and speech in responses)
    text_end: str | None = "<|text_end|>"          # closes the text channel; null: the schedule and eos do
    eos: str | None = None                         # end of turn; None: the tokenizer's eos token
    pad: str | None = None                         # None: the tokenizer's pad token (else eos)
    ratio: str | None = None                       # interleaved text:speech chunk sizes, e.g. "1 10 4 10" (required)
    response_audio: Literal["end", "chunks", "none"] = "end"   # boundary tokens in responses (channels.py)
    num_codebooks: int = 1                         # parallel: speech streams
    text_pad: str | None = None                    # parallel: text stream filler (required)
    speech_pad: str | None = None                  # parallel: speech stream filler (required)
    speech_delay: int = 0                          # parallel: speech starts this many steps after text
    model: str = ""                                # documentation: the model family the layout describes
    source: str = ""                               # documentation: where the token names and ratio come from
    tested: bool = False                           # documentation: checked against real weights?

    def __post_init__(self) -> None:
        if self.response_audio not in RESPONSE_AUDIO:
            raise ConfigError(f"{WHERE}.response_audio: {self.response_audio!r} is not one of {list(RESPONSE_AUDIO)}")
        if self.ratio is not None:
            try:
                InterleaveRatio.parse(str(self.ratio))
            except ValueError as err:
                raise ConfigError(f"{WHERE}.ratio: {err}") from None
        if self.num_units is not None and self.num_units < 1:
            raise ConfigError(f"{WHERE}.num_units: must be >= 1 (or null: count the tokenizer's), got {self.num_units}")
        if "{i}" not in self.speech_token_pattern:
            raise ConfigError(f"{WHERE}.speech_token_pattern: {self.speech_token_pattern!r} has no '{{i}}' for the "
                              "unit number, e.g. '<|audio_{i}|>'")

    # ------------------------------------------------------------------ tokenizer -> ChannelLayout
    def resolve(self, tokenizer: Any, where: str = WHERE) -> ChannelLayout:
        """The ChannelLayout of these settings over ``tokenizer``; ValueError naming ``where.key`` and the fix."""
        key = (lambda k: f"{where}.{k}") if where else (lambda k: k)
        vocab = tokenizer.get_vocab()
        added = list(getattr(tokenizer, "get_added_vocab", dict)())   # suggestions among the added tokens only

        def token_id(name: str, token: str | None, required: bool = False) -> int | None:
            if token is None:
                if required:
                    raise ValueError(f"{key(name)}: a {self.kind} layout needs this token; set {key(name)} to the "
                                     "model's token")
                return None
            if token not in vocab:
                raise ValueError(f"{key(name)}: the tokenizer has no token {token!r}; set {key(name)} to the model's "
                                 f"own token, or to null if the model has none{suggest(token, added)}")
            return int(vocab[token])

        start, units = self._speech_ids(vocab, key, len(tokenizer))
        eos = token_id("eos", self.eos) if self.eos is not None else tokenizer.eos_token_id
        if eos is None:
            raise ValueError(f"{key('eos')}: the tokenizer has no eos token; set {key('eos')} to the end-of-turn token")
        pad = token_id("pad", self.pad) if self.pad is not None else tokenizer.pad_token_id
        pad = eos if pad is None else pad
        text_end = token_id("text_end", self.text_end)
        try:
            if self.kind == "parallel":
                return ChannelLayout.parallel(
                    num_codebooks=self.num_codebooks, num_units=units, speech_start=start, eos_id=eos, pad_id=pad,
                    begin_audio_id=token_id("begin_audio", self.begin_audio),
                    end_audio_id=token_id("end_audio", self.end_audio),
                    text_pad_id=token_id("text_pad", self.text_pad, True),
                    speech_pad_id=token_id("speech_pad", self.speech_pad, True), text_end_id=text_end,
                    speech_delay=self.speech_delay)
            if self.ratio is None:
                raise ValueError(f"{key('ratio')}: the interleave ratio of the model's responses is not declared; set "
                                 f"it, e.g. {key('ratio')}='1 10 4 10' (VITA-Audio-Boost) or '13 26' (GLM-4-Voice)")
            return ChannelLayout.interleaved(
                speech_start=start, num_units=units, begin_audio_id=token_id("begin_audio", self.begin_audio),
                end_audio_id=token_id("end_audio", self.end_audio), text_end_id=text_end, eos_id=eos, pad_id=pad,
                ratio=self.ratio, response_audio=self.response_audio)
        except ValueError as err:
            if where and str(err).startswith(where):
                raise
            raise ValueError(f"{where or 'layout'}: {err}") from None

    def _speech_ids(self, vocab: dict[str, int], key, vocab_size: int) -> tuple[int, int]:
        """(id of unit 0, number of units), checked: consecutive ids, declared count equal to the tokenizer's."""
        if self.speech_offset is not None:
            if self.num_units is None:
                raise ValueError(f"{key('num_units')}: with {key('speech_offset')} (speech tokens by id) the unit count "
                                 "must be given")
            if self.speech_offset < 0 or self.speech_offset + self.num_units > vocab_size:
                raise ValueError(f"{key('speech_offset')}: ids {self.speech_offset}..{self.speech_offset + self.num_units - 1}"
                                 f" lie outside the tokenizer's {vocab_size} tokens")
            return self.speech_offset, self.num_units
        pattern = self.speech_token_pattern
        regex = re.compile("^" + re.escape(pattern).replace(re.escape("{i}"), "([0-9]+)") + "$")
        found = {int(m.group(1)): i for tok, i in vocab.items() if (m := regex.match(tok))}
        if not found or 0 not in found:
            raise ValueError(f"{key('speech_token_pattern')}: the tokenizer has no token {pattern.format(i=0)!r}; set "
                             f"{key('speech_token_pattern')} to the model's speech-token naming (e.g. '<sp_{{i}}>'), or "
                             f"{key('speech_offset')} to the id of unit 0")
        held = 0
        while held in found:
            held += 1
        declared = self.num_units if self.num_units is not None else held
        if declared != held or len(found) != held:
            extra = (f" (and {len(found) - held} more after a gap at {pattern.format(i=held)!r})" if len(found) > held
                     else f" (no {pattern.format(i=held)!r})" if declared > held else "")
            raise ValueError(
                f"{key('num_units')}: declared {declared} speech units but the tokenizer holds {held} speech tokens "
                f"{pattern.format(i=0)!r}..{pattern.format(i=held - 1)!r}{extra}; undeclared speech tokens would be "
                f"treated as text (and get RL gradient). Set {key('num_units')}={held} or leave it out")
        ids = [found[u] for u in range(held)]
        start = ids[0]
        if ids != list(range(start, start + held)):
            bad = next(u for u, i in enumerate(ids) if i != start + u)
            raise ValueError(f"{key('speech_token_pattern')}: speech token ids are not consecutive "
                             f"({pattern.format(i=bad)!r} has id {ids[bad]}, expected {start + bad}); the kit maps unit u "
                             "to id(unit 0) + u")
        return start, held


def known_layouts() -> list[str]:
    """Names of the layout files shipped in configs/layouts."""
    return sorted(p.stem for p in LAYOUT_DIR.glob("*.yaml"))


def layout_file(name_or_path: str) -> Path:
    """The YAML of a shipped layout name or a path; ConfigError with a suggestion when neither exists."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{WHERE}.file: {path} does not exist")
        return path
    shipped = LAYOUT_DIR / f"{name_or_path}.yaml"
    if not shipped.is_file():
        known = known_layouts()
        raise ConfigError(f"{WHERE}.file: unknown layout '{name_or_path}'{suggest(str(name_or_path), known)}; shipped: "
                          f"{', '.join(known)}; or give a YAML path")
    return shipped


def load_layout(spec: Any) -> LayoutConfig | None:
    """A LayoutConfig from ``models.layout``: None / "" (no layout), a shipped name or YAML path, a mapping of
    LayoutConfig keys (``file`` first, then the mapping's keys over it) or a LayoutConfig. Unknown keys are a
    ConfigError with a suggestion."""
    if spec is None or spec == "" or spec == {}:
        return None
    if isinstance(spec, LayoutConfig):
        return spec
    if isinstance(spec, (str, Path)):
        spec = {"file": str(spec)}
    if not isinstance(spec, dict):
        raise ConfigError(f"{WHERE}: expected a layout name, a YAML path or a mapping of layout keys, got {spec!r}")
    data = dict(spec)
    if data.get("file"):
        path = layout_file(str(data["file"]))
        base = load_yaml(path)
        if base.get("file"):
            raise ConfigError(f"{path}: a layout file may not name another file (key 'file')")
        from_dict(LayoutConfig, base, str(path))   # a typo is reported against the file that holds it
        data = {**base, **data}
    return from_dict(LayoutConfig, data, WHERE)


def merge_layout(base: Any, extra: Any) -> Any:
    """``extra`` over ``base``, each a layout name / path (``{"file": it}``), a mapping or None: the notebooks'
    ``layout`` parameter over the profile's ``models.layout``, key by key."""
    def as_dict(x: Any) -> dict[str, Any]:
        return {} if x in (None, "") else {"file": str(x)} if isinstance(x, (str, Path)) else dict(x)

    merged = {**as_dict(base), **as_dict(extra)}
    return merged or None


def layout_dict(cfg: LayoutConfig) -> dict[str, Any]:
    """The settings as a plain mapping (for records and notebook tables)."""
    return dataclasses.asdict(cfg)
