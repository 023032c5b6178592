"""Speech codecs: the `SpeechCodec` interface and the embedded world's `MelKMeansCodec` (log-mel + k-means).

MelKMeansCodec, the analogue of a real model's speech tokenizer/decoder:
- analysis: log-mel spectra on a fine hop (`hop / subframes`) are averaged over `subframes` consecutive
  frames, giving one feature vector per codec frame at `frame_rate` Hz (default 20 Hz, hop 800 samples at
  16 kHz; the kit's worlds use 25 Hz, hop 640); 80 mel bands on a 1024-point (64 ms) window resolve the low pitch
  harmonics. The feature is the spectral shape (log-mel minus its band mean) plus the absolute level
  (not normalised per utterance) with a moderate weight, so a unit carries phonetic content, pitch and
  loudness without loudness swamping the phones; speaking rate shows up as the number of units per
  word (no deduplication);
- quantisation: k-means (scikit-learn MiniBatchKMeans, fixed seed) with `num_units` centroids;
- synthesis: each unit's centroid log-mel is held for its frame, mapped to a linear spectrogram
  (librosa `mel_to_stft`) and turned into a waveform by Griffin-Lim (fixed iterations and seed).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from threadpoolctl import ThreadpoolController

from wavalign_kit.speech import SAMPLE_RATE

# Codec matrices are small: multi-threaded BLAS only adds contention (10x slower on a busy 2-core machine).
_BLAS = ThreadpoolController()

_LOG_FLOOR = 1e-6   # power floor before the log: silence maps to one constant vector


class SpeechCodec(ABC):
    """Waveform <-> discrete speech units (one codebook: int64 arrays of shape (T,))."""

    sample_rate: int
    frame_rate: float
    num_units: int
    num_codebooks: int = 1

    @abstractmethod
    def encode(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Mono waveform at `sr` Hz -> units, int64 (T,)."""

    @abstractmethod
    def decode(self, units: np.ndarray) -> np.ndarray:
        """Units (T,) -> float32 waveform in [-1, 1] at `sample_rate`."""

    @abstractmethod
    def save(self, dir: str | Path) -> None:
        """Write the codec to directory `dir` (created if needed)."""

    @classmethod
    @abstractmethod
    def load(cls, dir: str | Path) -> SpeechCodec:
        """Read a codec written by `save`."""

    def unit_features(self) -> np.ndarray | None:
        """(num_units, F) acoustic features of each unit (e.g. its k-means centroid), or None: the evaluators'
        recogniser starts its unit embeddings from them, so units that sound alike start close."""
        return None


@dataclass(frozen=True)
class MelKMeansConfig:
    """Analysis/synthesis settings of MelKMeansCodec (all saved in codec.json)."""

    sample_rate: int = SAMPLE_RATE
    frame_rate: float = 20.0          # codec frames (units) per second
    subframes: int = 4                # fine mel frames averaged into one codec frame
    n_fft: int = 1024
    n_mels: int = 80
    num_units: int = 256
    seed: int = 0
    griffin_lim_iters: int = 32
    level_weight: float = 3.0         # loudness counts like ~level_weight**2 mel bands in the k-means distance

    def __post_init__(self):
        hop = self.sample_rate / self.frame_rate
        if hop != int(hop) or int(hop) % self.subframes:
            raise ValueError(f"frame_rate={self.frame_rate}: sample_rate / frame_rate must be a whole number of "
                             f"samples divisible by subframes={self.subframes} (e.g. 12.5, 20 or 25 Hz at 16 kHz)")

    @property
    def hop(self) -> int:
        """Samples per codec frame."""
        return int(round(self.sample_rate / self.frame_rate))

    @property
    def fine_hop(self) -> int:
        """Samples per fine mel frame."""
        return self.hop // self.subframes


def check_waveform(wav: np.ndarray, sr: int, name: str = "wav") -> np.ndarray:
    """Validate a mono waveform argument and return it as float32 (T,)."""
    wav = np.asarray(wav)
    if wav.ndim == 2 and 1 in wav.shape:
        wav = wav.reshape(-1)
    if wav.ndim != 1:
        raise ValueError(f"{name}: expected mono audio of shape (T,), got shape {wav.shape}")
    if wav.size == 0:
        raise ValueError(f"{name}: the waveform is empty; give at least one sample of audio")
    if not np.all(np.isfinite(wav)):
        raise ValueError(f"{name}: the waveform contains NaN or infinite samples; clean the audio first")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sr={sr!r}: give the waveform's sample rate as a positive integer (Hz)")
    return wav.astype(np.float32)


class MelKMeansCodec(SpeechCodec):
    """Log-mel frames at `frame_rate` Hz quantised by k-means; decoded by Griffin-Lim. See the module doc."""

    kind: ClassVar[str] = "mel_kmeans"

    def __init__(self, config: MelKMeansConfig, centroids: np.ndarray):
        if centroids.shape != (config.num_units, config.n_mels + 1):
            raise ValueError(f"centroids: expected shape {(config.num_units, config.n_mels + 1)}, got {centroids.shape}")
        self.config = config
        self.centroids = centroids.astype(np.float32)            # (num_units, n_mels + 1) features
        self._centroid_sq = (self.centroids.astype(np.float64) ** 2).sum(axis=1)
        self.sample_rate = config.sample_rate
        self.frame_rate = config.frame_rate
        self.num_units = config.num_units
        self._mel_basis: np.ndarray | None = None
        self._mel_inverse: np.ndarray | None = None

    def unit_features(self) -> np.ndarray:
        """The centroids: (num_units, n_mels + 1) log-mel and level features."""
        return self.centroids

    # ---- analysis -----------------------------------------------------------------------------------------
    @property
    def mel_basis(self) -> np.ndarray:
        """The mel filterbank, (n_mels, 1 + n_fft // 2) (librosa's Slaney mel scale)."""
        if self._mel_basis is None:
            import librosa

            cfg = self.config
            self._mel_basis = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels)
        return self._mel_basis

    @property
    def mel_inverse(self) -> np.ndarray:
        """Pseudo-inverse of the mel filterbank, (1 + n_fft // 2, n_mels): mel power -> linear power."""
        if self._mel_inverse is None:
            self._mel_inverse = np.linalg.pinv(self.mel_basis.astype(np.float64))
        return self._mel_inverse

    def features(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Feature per codec frame, float32 (T, n_mels + 1); T = ceil(seconds * frame_rate).

        Columns: the frame's log-mel spectrum minus its mean over bands (spectral shape: phones, pitch
        harmonics), then that mean (the absolute level, loudness) times `level_weight`.
        """
        import librosa

        cfg = self.config
        wav = check_waveform(wav, sr)
        if sr != cfg.sample_rate:
            import soxr  # librosa's resampler

            wav = soxr.resample(wav, sr, cfg.sample_rate, quality="HQ").astype(np.float32)
        n_frames = max(1, int(np.ceil(len(wav) / cfg.hop)))
        wav = np.pad(wav, (0, n_frames * cfg.hop - len(wav)))
        power = np.abs(librosa.stft(wav, n_fft=cfg.n_fft, hop_length=cfg.fine_hop)) ** 2   # (1 + n_fft/2, F)
        mel = self.mel_basis @ power[:, : n_frames * cfg.subframes]                          # (n_mels, T * sub)
        mel = mel.reshape(cfg.n_mels, n_frames, cfg.subframes).mean(axis=2)
        log_mel = np.log(np.maximum(mel, _LOG_FLOOR)).T                                # (T, n_mels)
        level = log_mel.mean(axis=1, keepdims=True)                                    # (T, 1)
        return np.concatenate([log_mel - level, cfg.level_weight * level], axis=1).astype(np.float32)

    def log_mel(self, feats: np.ndarray) -> np.ndarray:
        """Features (T, n_mels + 1) -> log-mel power (T, n_mels): spectral shape + level."""
        return feats[:, :-1] + feats[:, -1:] / self.config.level_weight

    def quantize(self, feats: np.ndarray) -> np.ndarray:
        """Nearest centroid (Euclidean) of each feature row -> int64 (T,)."""
        f = feats.astype(np.float64)
        dist = self._centroid_sq[None, :] - 2.0 * f @ self.centroids.T.astype(np.float64)   # (T, num_units)
        return dist.argmin(axis=1).astype(np.int64)

    def encode(self, wav: np.ndarray, sr: int) -> np.ndarray:
        with _BLAS.limit(limits=1, user_api="blas"):
            return self.quantize(self.features(wav, sr))

    # ---- synthesis ----------------------------------------------------------------------------------------
    def decode(self, units: np.ndarray) -> np.ndarray:
        import librosa

        cfg = self.config
        units = np.asarray(units)
        if units.ndim != 1 or units.size == 0 or not np.issubdtype(units.dtype, np.integer):
            raise ValueError(f"units: expected a non-empty int array of shape (T,), got {units.dtype} {units.shape}")
        if units.min() < 0 or units.max() >= cfg.num_units:
            raise ValueError(f"units: values must lie in [0, {cfg.num_units}), got [{units.min()}, {units.max()}]")
        mel = np.exp(self.log_mel(self.centroids[units].astype(np.float64)).T)     # (n_mels, T)
        mel = np.repeat(mel, cfg.subframes, axis=1)                                 # (n_mels, T * subframes)
        mel = np.concatenate([mel, mel[:, -1:]], axis=1)      # centred STFT of T * hop samples: one more frame
        with _BLAS.limit(limits=1, user_api="blas"):
            stft = np.sqrt(np.maximum(self.mel_inverse @ mel, 0.0))               # (1 + n_fft/2, frames)
            wav = librosa.griffinlim(stft, n_iter=cfg.griffin_lim_iters, hop_length=cfg.fine_hop,
                                     n_fft=cfg.n_fft, init="random", random_state=cfg.seed,
                                     length=len(units) * cfg.hop)
        return np.clip(wav, -1.0, 1.0).astype(np.float32)

    # ---- training and persistence -------------------------------------------------------------------------
    @classmethod
    def fit(cls, wavs: list[np.ndarray], sr: int, num_units: int = 256, frame_rate: float = 20.0, seed: int = 0,
            *, max_frames: int = 200_000, **config) -> MelKMeansCodec:
        """Fit the k-means units on the frames of `wavs` (at most `max_frames`, drawn with `seed`)."""
        from sklearn.cluster import MiniBatchKMeans

        if not 12.5 <= frame_rate <= 50.0:
            raise ValueError(f"frame_rate={frame_rate}: use 12.5 .. 50 Hz (the world's default is 20)")
        cfg = MelKMeansConfig(frame_rate=float(frame_rate), num_units=int(num_units), seed=int(seed), **config)
        if len(wavs) == 0:
            raise ValueError("wavs: give at least one waveform to fit the codec on")
        probe = cls(cfg, np.zeros((cfg.num_units, cfg.n_mels + 1), np.float32))
        feats = np.concatenate([probe.features(w, sr) for w in wavs])
        if len(feats) < num_units:
            raise ValueError(f"wavs: {len(feats)} frames cannot fit {num_units} units; give more audio")
        rng = np.random.default_rng(seed)
        if len(feats) > max_frames:
            feats = feats[np.sort(rng.choice(len(feats), max_frames, replace=False))]
        km = MiniBatchKMeans(n_clusters=cfg.num_units, random_state=seed, batch_size=4096, n_init=3,
                             max_iter=200, reassignment_ratio=0.001)
        with _BLAS.limit(limits=1):
            km.fit(feats)
        return cls(cfg, km.cluster_centers_.astype(np.float32))

    def save(self, dir: str | Path) -> None:
        d = Path(dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / "codec.json").write_text(json.dumps({"kind": self.kind, **asdict(self.config)}, indent=2))
        np.savez(d / "centroids.npz", centroids=self.centroids)

    @classmethod
    def load(cls, dir: str | Path) -> MelKMeansCodec:
        d = Path(dir)
        cfg = _read_codec_json(d)
        cfg.pop("kind")
        with np.load(d / "centroids.npz") as z:
            return cls(MelKMeansConfig(**cfg), z["centroids"])


CODECS: dict[str, type[SpeechCodec]] = {MelKMeansCodec.kind: MelKMeansCodec}


def _read_codec_json(d: Path) -> dict:
    path = d / "codec.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {d} is not a saved codec (see SpeechCodec.save)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); re-save the codec") from None
    if cfg.get("kind") not in CODECS:
        raise ValueError(f"{path}: field 'kind' is {cfg.get('kind')!r}, expected one of {sorted(CODECS)}")
    return cfg


def load_codec(dir: str | Path) -> SpeechCodec:
    """Load any saved codec; its codec.json field `kind` picks the class."""
    return CODECS[_read_codec_json(Path(dir))["kind"]].load(dir)
