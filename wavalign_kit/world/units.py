"""The speech-unit cache of a JSONL directory: ``units/<audio path>.npz`` holding the units and a content hash of
the audio file they were encoded from.

A cache is used only while its hash matches the audio file: a replaced audio file, a corrupt cache file or units
outside the codec's range are re-encoded from the audio when a codec is given (with a warning naming the cache),
and are a clear error naming the cache file otherwise. Audio is read at its own sample rate and resampled (librosa)
to the codec's ``sample_rate`` before encoding.
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

UNITS_DIR = "units"


class UnitCacheError(ValueError):
    """A unit cache that cannot be used (corrupt, or stale for its audio) and no codec to re-encode it."""


def units_path(root: Path, audio: str) -> Path:
    """The cache file of the units of ``audio`` (a path relative to ``root``, inside it)."""
    return Path(root) / UNITS_DIR / Path(audio).with_suffix(".npz")


def audio_digest(path: Path) -> str:
    """Content hash of an audio file (BLAKE2b, 128 bits, hex)."""
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def save_units(root: Path, audio: str, units: np.ndarray, digest: str | None = None) -> Path:
    """Cache ``units`` of ``audio`` with the audio's content hash (computed when not given); atomic."""
    cache = units_path(root, audio)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.stem + ".tmp.npz")
    np.savez(tmp, units=np.asarray(units, dtype=np.int64),
             audio_digest=np.array(digest or audio_digest(Path(root) / audio)))
    tmp.replace(cache)
    return cache


def encode_audio(codec: Any, path: Path) -> np.ndarray:
    """Units of an audio file: read at its own rate, resampled to ``codec.sample_rate`` (when the codec states
    one), encoded at that rate."""
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise ValueError(f"cannot read audio file {path}: {err}") from None
    wav = wav.mean(axis=1)
    rate = int(getattr(codec, "sample_rate", sr) or sr)
    if rate != sr:
        import librosa

        wav = librosa.resample(wav, orig_sr=sr, target_sr=rate).astype(np.float32)
    return np.asarray(codec.encode(wav, rate), dtype=np.int64)


def _read_cache(cache: Path, num_units: int | None) -> tuple[np.ndarray, str]:
    """(units, audio digest) of a cache file; ValueError describing the damage when it is unusable."""
    try:
        with np.load(cache, allow_pickle=False) as z:
            units, digest = np.asarray(z["units"]), str(z["audio_digest"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"unreadable ({type(err).__name__}: {err})") from None
    if units.ndim != 1 or units.dtype.kind not in "iu":
        raise ValueError(f"holds units of shape {units.shape} and dtype {units.dtype}, expected int (T,)")
    if units.size and (units.min() < 0 or (num_units is not None and units.max() >= num_units)):
        raise ValueError(f"holds units outside 0..{num_units} (min {units.min()}, max {units.max()})")
    return units.astype(np.int64), digest


def load_units(root: Path, audio: str, codec: Any = None) -> np.ndarray:
    """Units of ``audio`` (relative to ``root``) from the cache; with a codec, (re-)encoded and cached when the
    cache is missing, corrupt or stale. Without one: FileNotFoundError (missing) or UnitCacheError naming the cache."""
    root = Path(root)
    cache, wav_path = units_path(root, audio), root / audio
    digest = audio_digest(wav_path)
    if not cache.is_file():
        if codec is None:
            raise FileNotFoundError(f"no cached units {cache} for {wav_path}; pass codec= to encode them")
        problem = None
    else:
        try:
            units, stored = _read_cache(cache, getattr(codec, "num_units", None))
        except ValueError as err:
            problem = f"corrupt unit cache {cache}: {err}"
        else:
            if stored == digest:
                return units
            problem = f"stale unit cache {cache}: {wav_path} changed after its units were encoded"
        if codec is None:
            raise UnitCacheError(f"{problem}; pass codec= to re-encode it from the audio (or delete the cache "
                                 f"file, or rebuild the world)")
        warnings.warn(f"{problem}; re-encoding it from the audio", stacklevel=2)
    units = encode_audio(codec, wav_path)
    save_units(root, audio, units, digest)
    return units
