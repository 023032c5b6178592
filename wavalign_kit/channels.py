"""Channel layout: which token positions are text and which are speech, for interleaved and parallel models.

Two layouts are supported (DESIGN.md section 3):

- **interleaved** (GLM-4-Voice, VITA-Audio): one token stream; unit ``u`` is token ``speech_start + u``; the
  boundary tokens ``begin_audio_id`` / ``end_audio_id`` count as speech; a response alternates chunks of text
  and speech by an :class:`InterleaveRatio` (``"1 10 4 10"``: 1 text then 10 speech, then 4:10 repeating).
  ``response_audio`` says where responses carry the boundary tokens: ``"end"`` (the kit's models: ``end_audio``
  after the last unit), ``"chunks"`` (VITA-Audio's data format: every run of speech between text is wrapped in
  ``begin_audio`` ... ``end_audio``) or ``"none"`` (GLM-4-Voice: no boundary in responses).
- **parallel** (Kimi-Audio, Moshi): at each step the model emits one text token (stream 0) and one token
  per speech codebook (streams 1..K); ids have shape ``(T, 1 + K)``.

A channel without a closing token (no ``text_end``; speech without ``end_audio`` in responses) is closed by the
schedule: the first token of the other channel, or ``eos``, where the ratio gives the closed channel's turn. In
the parallel layout without ``text_end`` the first ``text_pad`` closes the text stream.

Channel rules: ``eos`` is text, ``text_end`` is text, ``pad`` is neither channel. In the parallel layout every
non-pad step of stream 0 is text (``text_pad`` included: the text head generates it) and every non-pad step
of streams 1..K is speech (``speech_pad`` included); a step is padding when its stream-0 token is ``pad_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

TEXT, SPEECH = 0, 1
RESPONSE_AUDIO = ("end", "chunks", "none")   # where interleaved responses carry audio boundary tokens


@dataclass(frozen=True)
class InterleaveRatio:
    """Text:speech chunk sizes of an interleaved response: every pair but the last is used once, in order;
    the last pair repeats. When one channel runs out, the other continues alone."""

    chunks: tuple[tuple[int, int], ...]  # ((1, 10), (4, 10))

    def __post_init__(self) -> None:
        if not self.chunks:
            raise ValueError("ratio: needs at least one (text, speech) pair, e.g. '1 10 4 10'")
        for a, b in self.chunks:
            if a < 0 or b < 0 or a + b == 0:
                raise ValueError(f"ratio: pair ({a}, {b}) must be non-negative and not both 0")

    @classmethod
    def parse(cls, spec: str | Sequence[int]) -> InterleaveRatio:
        """Parse ``"1 10 4 10"`` (or ``[1, 10, 4, 10]``) into pairs ``((1, 10), (4, 10))``."""
        try:
            nums = [int(x) for x in (spec.replace(",", " ").split() if isinstance(spec, str) else spec)]
        except (TypeError, ValueError):
            raise ValueError(f"ratio: {spec!r} is not a list of integers such as '1 10 4 10'") from None
        if not nums or len(nums) % 2:
            raise ValueError(f"ratio: {spec!r} needs an even number of integers (text speech pairs), e.g. '1 10 4 10'")
        return cls(tuple((nums[i], nums[i + 1]) for i in range(0, len(nums), 2)))

    def schedule(self, n_text: int, n_speech: int) -> list[tuple[int, int]]:
        """Chunk sizes ``(text, speech)`` actually laid out for ``n_text`` text and ``n_speech`` speech tokens.

        >>> InterleaveRatio.parse("1 10 4 10").schedule(6, 25)
        [(1, 10), (4, 10), (1, 5)]
        """
        if n_text < 0 or n_speech < 0:
            raise ValueError(f"schedule: counts must be >= 0, got n_text={n_text}, n_speech={n_speech}")
        out: list[tuple[int, int]] = []
        rt, rs, i = n_text, n_speech, 0
        while rt > 0 and rs > 0:
            a, b = self.chunks[min(i, len(self.chunks) - 1)]
            t, s = min(a, rt), min(b, rs)
            out.append((t, s))
            rt, rs, i = rt - t, rs - s, i + 1
        if rt or rs:  # one channel ran out: the other continues alone
            out.append((rt, rs))
        return out


@dataclass(frozen=True)
class ChannelLayout:
    """Where text and speech live in a model's token stream(s); see the module docstring for the rules."""

    kind: Literal["interleaved", "parallel"]
    speech_start: int | None  # unit u <-> token id speech_start + u (parallel: None means id u)
    num_units: int
    begin_audio_id: int | None  # boundary tokens, counted as speech
    end_audio_id: int | None
    text_end_id: int | None  # ends the text channel of a response (counted as text)
    eos_id: int  # end of turn (text)
    pad_id: int  # padding (neither channel)
    ratio: InterleaveRatio | None
    num_codebooks: int = 0
    text_pad_id: int | None = None
    speech_pad_id: int | None = None
    speech_delay: int = 0  # speech streams start this many steps after the text stream
    response_audio: Literal["end", "chunks", "none"] = "end"  # interleaved: boundary tokens in responses

    def __post_init__(self) -> None:
        if self.kind not in ("interleaved", "parallel"):
            raise ValueError(f"kind: {self.kind!r} is not 'interleaved' or 'parallel'")
        if self.response_audio not in RESPONSE_AUDIO:
            raise ValueError(f"response_audio: {self.response_audio!r} is not one of {list(RESPONSE_AUDIO)}")
        if self.response_audio == "chunks" and (self.begin_audio_id is None or self.end_audio_id is None):
            raise ValueError("response_audio='chunks' wraps each speech run in begin_audio ... end_audio: both tokens "
                             "are required")
        if self.num_units <= 0:
            raise ValueError(f"num_units: must be > 0, got {self.num_units}")
        if self.kind == "interleaved":
            if self.speech_start is None or self.ratio is None:
                raise ValueError("speech_start and ratio: both are required for an interleaved layout")
            lo, hi = self.speech_start, self.speech_start + self.num_units
            named = {"begin_audio_id": self.begin_audio_id, "end_audio_id": self.end_audio_id,
                     "text_end_id": self.text_end_id, "eos_id": self.eos_id, "pad_id": self.pad_id}
            for name, v in named.items():
                if v is not None and lo <= v < hi:
                    raise ValueError(f"{name}: {v} lies inside the speech token range [{lo}, {hi})")
            specials = [v for k, v in named.items() if v is not None and k != "pad_id"]
            if len(set(specials)) != len(specials):  # pad may equal eos (then pass `valid` to the masks)
                raise ValueError(f"begin_audio_id, end_audio_id, text_end_id, eos_id: must be distinct, got {specials}")
        else:
            if self.num_codebooks < 1:
                raise ValueError(f"num_codebooks: a parallel layout needs >= 1 codebook, got {self.num_codebooks}")
            if self.text_pad_id is None or self.speech_pad_id is None:
                raise ValueError("text_pad_id and speech_pad_id: both are required for a parallel layout")
            if self.speech_delay < 0:
                raise ValueError(f"speech_delay: must be >= 0, got {self.speech_delay}")
            lo = self.speech_start or 0
            if lo <= self.speech_pad_id < lo + self.num_units:
                raise ValueError(f"speech_pad_id: {self.speech_pad_id} collides with the unit ids [{lo}, {lo + self.num_units})")
            text_specials = [self.text_pad_id, self.eos_id, self.pad_id] + ([self.text_end_id] if self.text_end_id is not None else [])
            if len(set(text_specials)) != len(text_specials):
                raise ValueError("text_pad_id, text_end_id, eos_id, pad_id: must be distinct in a parallel layout")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def interleaved(cls, *, speech_start: int, num_units: int, begin_audio_id: int | None, end_audio_id: int | None,
                    text_end_id: int | None, eos_id: int, pad_id: int,
                    ratio: str | Sequence[int] | InterleaveRatio = "1 10 4 10",
                    response_audio: Literal["end", "chunks", "none"] = "end") -> ChannelLayout:
        """An interleaved layout from explicit token ids."""
        r = ratio if isinstance(ratio, InterleaveRatio) else InterleaveRatio.parse(ratio)
        return cls("interleaved", speech_start, num_units, begin_audio_id, end_audio_id, text_end_id, eos_id, pad_id, r,
                   response_audio=response_audio)

    @classmethod
    def parallel(cls, *, num_codebooks: int, num_units: int, text_pad_id: int, speech_pad_id: int,
                 text_end_id: int | None, eos_id: int, pad_id: int, speech_delay: int = 0,
                 speech_start: int | None = None, begin_audio_id: int | None = None,
                 end_audio_id: int | None = None) -> ChannelLayout:
        """A parallel layout (stream 0 text, streams 1..K speech); speech ids are ``speech_start + u``
        when the model shares one vocabulary across heads, else ``u``. ``begin_audio_id`` / ``end_audio_id``
        frame user speech in prompts (on the text stream)."""
        return cls("parallel", speech_start, num_units, begin_audio_id, end_audio_id, text_end_id, eos_id, pad_id, None,
                   num_codebooks=num_codebooks, text_pad_id=text_pad_id, speech_pad_id=speech_pad_id,
                   speech_delay=speech_delay)

    @classmethod
    def from_tokenizer(cls, tokenizer, *, speech_token_pattern: str = "<|audio_{i}|>", num_units: int | None = None,
                       begin_audio: str | None = "<|begin_of_audio|>", end_audio: str | None = "<|end_of_audio|>",
                       text_end: str | None = "<|text_end|>", eos: str | None = None, pad: str | None = None,
                       ratio: str | Sequence[int] = "1 10 4 10",
                       response_audio: Literal["end", "chunks", "none"] = "end") -> ChannelLayout:
        """An interleaved layout read from a Hugging Face tokenizer.

        Speech tokens are ``speech_token_pattern.format(i=u)`` for u = 0..num_units-1 (``num_units=None``: as many
        as the vocabulary holds, counting up from 0; a declared count must equal the tokenizer's) and must have
        consecutive ids. ``eos``/``pad`` default to the tokenizer's own eos / pad tokens (pad falls back to eos;
        then pass ``valid`` to the mask methods). Any token set to None is absent. A missing token, a gap in the
        speech ids or a unit count that differs from the tokenizer's raises ``ValueError`` naming the argument.
        Real models: `wavalign_kit.layouts.LayoutConfig` (the ``models.layout`` section) does the same from YAML.
        """
        from wavalign_kit.layouts import LayoutConfig

        return LayoutConfig(speech_token_pattern=speech_token_pattern, num_units=num_units, begin_audio=begin_audio,
                            end_audio=end_audio, text_end=text_end, eos=eos, pad=pad,
                            ratio=" ".join(map(str, ratio)) if not isinstance(ratio, str) else ratio,
                            response_audio=response_audio).resolve(tokenizer, where="")

    # ------------------------------------------------------------------ masks
    def _unit_id_mask(self, ids: Tensor) -> Tensor:
        lo = self.speech_start or 0
        return (ids >= lo) & (ids < lo + self.num_units)

    def _valid(self, ids: Tensor, valid: Tensor | None) -> Tensor:
        """Non-padding positions; parallel: per step from stream 0, broadcast over streams."""
        if self.kind == "parallel":
            self._check_parallel_ids(ids)
            v = (ids[..., 0] != self.pad_id) if valid is None else valid.bool()
            if v.shape != ids.shape[:-1]:
                raise ValueError(f"valid: shape {tuple(v.shape)} must be the ids' steps {tuple(ids.shape[:-1])}")
            return v.unsqueeze(-1).expand(ids.shape)
        v = (ids != self.pad_id) if valid is None else valid.bool()
        if v.shape != ids.shape:
            raise ValueError(f"valid: shape {tuple(v.shape)} must equal ids shape {tuple(ids.shape)}")
        return v

    def _check_parallel_ids(self, ids: Tensor) -> None:
        if ids.dim() < 2 or ids.shape[-1] != 1 + self.num_codebooks:
            raise ValueError(f"ids: a parallel layout needs shape (..., T, {1 + self.num_codebooks}), got {tuple(ids.shape)}")

    def _stream_is_speech(self, ids: Tensor) -> Tensor:
        stream = torch.arange(ids.shape[-1], device=ids.device) >= 1
        return stream.expand(ids.shape)

    def speech_mask(self, ids: Tensor) -> Tensor:
        """Speech positions. Interleaved ``(B, T)``: unit tokens and audio boundary tokens, ``pad`` excluded.
        Parallel ``(B, T, 1+K)``: streams 1..K at non-padding steps."""
        if self.kind == "parallel":
            return self._stream_is_speech(ids) & self._valid(ids, None)
        m = self._unit_id_mask(ids)
        for b in (self.begin_audio_id, self.end_audio_id):
            if b is not None:
                m = m | (ids == b)
        return m & (ids != self.pad_id)

    def text_mask(self, ids: Tensor, valid: Tensor | None = None) -> Tensor:
        """Text positions: everything valid that is not speech (``eos`` and ``text_end`` included).

        ``valid`` (same shape as ids, or ``(B, T)`` steps for parallel) marks real tokens; default ``ids != pad_id``
        (pass it explicitly when the tokenizer's pad token equals eos)."""
        v = self._valid(ids, valid)
        if self.kind == "parallel":
            return ~self._stream_is_speech(ids) & v
        return ~self.speech_mask(ids) & v

    def masks(self, ids: Tensor, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(text_mask, speech_mask)`` of ``ids``, both restricted to ``valid``; disjoint by construction."""
        v = self._valid(ids, valid)
        speech = (self._stream_is_speech(ids) if self.kind == "parallel" else self.speech_mask(ids)) & v
        return ~speech & v, speech

    @staticmethod
    def select(text_mask: Tensor, speech_mask: Tensor, which: Literal["all", "text", "speech"]) -> Tensor:
        """The token mask for a loss: ``"all"`` = text | speech, ``"text"``, or ``"speech"``."""
        if text_mask.shape != speech_mask.shape:
            raise ValueError(f"text_mask {tuple(text_mask.shape)} and speech_mask {tuple(speech_mask.shape)}: shapes differ")
        if which == "all":
            return text_mask | speech_mask
        if which == "text":
            return text_mask.clone()
        if which == "speech":
            return speech_mask.clone()
        raise ValueError(f"which: {which!r} is not one of 'all', 'text', 'speech'")

    # ------------------------------------------------------------------ units <-> ids
    def units_to_ids(self, units) -> list[int]:
        """Token ids of speech units (flattened in row-major order for several codebooks)."""
        u = np.asarray(units, dtype=np.int64).reshape(-1)
        if u.size and (u.min() < 0 or u.max() >= self.num_units):
            raise ValueError(f"units: values must lie in [0, {self.num_units}), got [{u.min()}, {u.max()}]")
        return (u + (self.speech_start or 0)).tolist()

    def ids_to_units(self, ids) -> np.ndarray:
        """Units of speech token ids (inverse of :meth:`units_to_ids`); non-unit ids raise ``ValueError``."""
        a = np.asarray(ids, dtype=np.int64).reshape(-1) - (self.speech_start or 0)
        if a.size and (a.min() < 0 or a.max() >= self.num_units):
            raise ValueError(f"ids: not all are speech unit ids (unit range [0, {self.num_units}) after offset)")
        return a

    # ------------------------------------------------------------------ response layout
    def _check_text_ids(self, text_ids: Sequence[int]) -> list[int]:
        t = [int(x) for x in text_ids]
        specials = {self.eos_id, self.pad_id, self.text_end_id, self.begin_audio_id, self.end_audio_id,
                    self.text_pad_id}
        lo = self.speech_start
        for x in t:
            if x in specials or (self.kind == "interleaved" and lo <= x < lo + self.num_units):
                raise ValueError(f"text_ids: {x} is a speech or special token id; pass plain text token ids")
        return t

    def _units_2d(self, units) -> np.ndarray:
        u = np.asarray(units, dtype=np.int64)
        k = self.num_codebooks
        if u.ndim == 1 and k == 1:
            u = u[:, None]
        if u.ndim != 2 or u.shape[1] != k:
            raise ValueError(f"units: expected shape (T, {k}){' or (T,)' if k == 1 else ''}, got {u.shape}")
        return u

    def layout_response(self, text_ids: Sequence[int], units: np.ndarray) -> np.ndarray:
        """The target response exactly as the model must generate it.

        Interleaved ``(T,)``: text (with ``text_end`` as its final token, when the layout has one) and speech units
        alternate in chunks by the ratio schedule, boundary tokens by ``response_audio``; ``eos`` ends it.
        Parallel ``(T, 1+K)``: stream 0 = text, ``text_end`` (or, without one, a first ``text_pad``), ``text_pad``
        until speech has finished, then ``eos``; streams 1..K = ``speech_delay`` x ``speech_pad``, the units, then
        ``speech_pad`` (also on the eos step).
        """
        text = self._check_text_ids(text_ids)
        if self.kind == "interleaved":
            u = np.asarray(units, dtype=np.int64)
            if u.ndim != 1:
                raise ValueError(f"units: interleaved layouts take one codebook, shape (T,), got {u.shape}")
            text_seq = text + ([self.text_end_id] if self.text_end_id is not None else [])
            return np.asarray(self._interleave(text_seq, self.units_to_ids(u)) + [self.eos_id], dtype=np.int64)
        u = self._units_2d(units)
        unit_ids = np.asarray(self.units_to_ids(u), dtype=np.int64).reshape(u.shape)
        text_seq = text + [self.text_end_id if self.text_end_id is not None else self.text_pad_id]
        body = max(len(text_seq), self.speech_delay + len(u)) if len(u) else len(text_seq)
        out = np.full((body + 1, 1 + self.num_codebooks), self.speech_pad_id, dtype=np.int64)
        out[:, 0] = self.text_pad_id
        out[:len(text_seq), 0] = text_seq
        out[body, 0] = self.eos_id
        out[self.speech_delay:self.speech_delay + len(u), 1:] = unit_ids
        return out

    def _interleave(self, text_seq: list[int], speech: list[int]) -> list[int]:
        """Text and speech chunks by the ratio schedule with the boundary tokens of ``response_audio``: "end" puts
        ``end_audio`` after the last unit; "chunks" wraps every run of speech (consecutive chunks with no text
        between them form one run) in ``begin_audio`` ... ``end_audio``; "none" adds nothing."""
        sched = self.ratio.schedule(len(text_seq), len(speech))
        out: list[int] = []
        ti = si = 0
        for k, (t, s) in enumerate(sched):
            out += text_seq[ti:ti + t]
            ti += t
            if not s:
                continue
            run_start = t > 0 or k == 0 or sched[k - 1][1] == 0
            run_end = k + 1 == len(sched) or sched[k + 1][0] > 0
            if self.response_audio == "chunks" and run_start:
                out.append(self.begin_audio_id)
            out += speech[si:si + s]
            si += s
            if self.response_audio == "chunks" and run_end:
                out.append(self.end_audio_id)
            elif self.response_audio == "end" and si == len(speech) and self.end_audio_id is not None:
                out.append(self.end_audio_id)
        return out

    def split_response(self, ids) -> tuple[list[int], np.ndarray]:
        """Inverse of :meth:`layout_response` for a generated response: ``(text token ids, units)``.

        Reads up to the first ``eos`` (or ``pad``); text stops at ``text_end`` (parallel without one: at the first
        ``text_pad``); special tokens are dropped.
        Interleaved units have shape ``(T,)``; parallel ``(T, K)`` (``(T,)`` when K == 1); in the parallel layout
        a speech step counts when all its codebooks hold units.
        """
        a = np.asarray(ids, dtype=np.int64)
        lo = self.speech_start or 0
        if self.kind == "interleaved":
            if a.ndim != 1:
                raise ValueError(f"ids: an interleaved response is 1-D, got shape {a.shape}")
            stop = np.flatnonzero((a == self.eos_id) | (a == self.pad_id))
            a = a[: stop[0]] if stop.size else a
            is_unit = (a >= lo) & (a < lo + self.num_units)
            text_part = a
            if self.text_end_id is not None:
                end = np.flatnonzero(a == self.text_end_id)
                text_part = a[: end[0]] if end.size else a
            drop = {self.begin_audio_id, self.end_audio_id, self.text_end_id}
            text = [int(x) for x in text_part if not (lo <= x < lo + self.num_units) and int(x) not in drop]
            return text, a[is_unit] - lo
        self._check_parallel_ids(torch.as_tensor(a))
        stop = np.flatnonzero((a[:, 0] == self.eos_id) | (a[:, 0] == self.pad_id))
        a = a[: stop[0]] if stop.size else a
        stream0 = a[:, 0]
        end = np.flatnonzero(stream0 == (self.text_end_id if self.text_end_id is not None else self.text_pad_id))
        stream0 = stream0[: end[0]] if end.size else stream0
        text = [int(x) for x in stream0 if x not in (self.text_pad_id, self.text_end_id)]
        sp = a[:, 1:]
        step_has_units = ((sp >= lo) & (sp < lo + self.num_units)).all(axis=1)
        units = sp[step_has_units] - lo
        return text, (units[:, 0] if self.num_codebooks == 1 else units)
