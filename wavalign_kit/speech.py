"""Speech synthesis for the embedded world: espeak-ng in named speaking styles, plus WAV file I/O.

Two backends render the same `StyleSpec`:
- "library": libespeak-ng bundled by the PyPI wheel `espeakng-loader`, driven through ctypes (synchronous
  output into a callback; 22.05 kHz int16, resampled here to the kit's 16 kHz float32);
- "command": a system `espeak-ng` binary (`espeak-ng -w out.wav -s RATE -p PITCH -a AMP -v VOICE text`).
  The command line has no pitch-range option, so `StyleSpec.pitch_range` is not applied there.
`backend="auto"` prefers the library and falls back to the command. The library backend is deterministic
(same text, style and rng -> same samples); the command backend keeps espeak's pitch flutter, whose phase
depends on what the process synthesised before, so its output varies slightly from call to call.

A style is a distribution, not one point: every utterance draws its rate, pitch, range and amplitude from
the style's centre plus a small uniform jitter (`rng`). The styles are spaced so that they stay apart
after jitter in speaking rate (units per word), pitch, amplitude and voice timbre.
"""

from __future__ import annotations

import atexit
import ctypes
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000
INSTALL_HINT = "install it with `pip install espeakng-loader` (bundles libespeak-ng) or `apt-get install espeak-ng`"


class SynthesizerMissing(RuntimeError):
    """No espeak-ng synthesiser could be loaded; the message names the install command."""


@dataclass(frozen=True)
class StyleSpec:
    """espeak-ng settings of one speaking style (centre values) and their per-utterance jitter.

    rate: words per minute (espeak 80..450); pitch, pitch_range: 0..100; amplitude: 0..200 (espeak's
    default 100); voice: espeak voice name with an optional "+variant" (e.g. "en-us+f3").
    The jitter fields are the half-widths of the uniform draw around each centre (rate_jitter is relative).
    """

    voice: str
    rate: float
    pitch: float
    pitch_range: float
    amplitude: float
    rate_jitter: float = 0.06
    pitch_jitter: float = 4.0
    range_jitter: float = 6.0
    amplitude_jitter: float = 8.0

    def draw(self, rng: np.random.Generator | None) -> dict[str, int]:
        """One utterance's integer espeak parameters (the centre when rng is None)."""
        if rng is None:
            u = np.zeros(4)
        else:
            u = rng.uniform(-1.0, 1.0, size=4)
        return {
            "rate": int(np.clip(round(self.rate * (1.0 + self.rate_jitter * u[0])), 80, 450)),
            "pitch": int(np.clip(round(self.pitch + self.pitch_jitter * u[1]), 0, 100)),
            "range": int(np.clip(round(self.pitch_range + self.range_jitter * u[2]), 0, 100)),
            "amplitude": int(np.clip(round(self.amplitude + self.amplitude_jitter * u[3]), 0, 200)),
        }


STYLES: dict[str, StyleSpec] = {
    "neutral": StyleSpec(voice="en-us", rate=175, pitch=48, pitch_range=45, amplitude=100),
    "happy": StyleSpec(voice="en-us+f3", rate=195, pitch=72, pitch_range=90, amplitude=125),
    "sad": StyleSpec(voice="en-us+m3", rate=125, pitch=22, pitch_range=10, amplitude=65),
    "excited": StyleSpec(voice="en-us+f2", rate=215, pitch=88, pitch_range=100, amplitude=140,
                         range_jitter=3.0),
    "calm": StyleSpec(voice="en-us+m1", rate=150, pitch=35, pitch_range=25, amplitude=85),
    "whisper": StyleSpec(voice="en-us+whisper", rate=165, pitch=50, pitch_range=40, amplitude=90),
    "slow": StyleSpec(voice="en-us", rate=120, pitch=50, pitch_range=55, amplitude=105, rate_jitter=0.05),
}

# espeak-ng's C API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAMS = {"rate": 1, "amplitude": 2, "pitch": 3, "range": 4}
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# libespeak-ng keeps global state and is not thread-safe: one lock guards initialisation and every synth.
_LIBRARY_LOCK = threading.Lock()
_LIBRARY: _EspeakLibrary | None = None


class _EspeakLibrary:
    """The process-wide libespeak-ng handle (initialised once, used under `_LIBRARY_LOCK`)."""

    def __init__(self, library_path: str, data_path: str):
        try:
            self.lib = ctypes.CDLL(library_path)
        except OSError as err:
            raise SynthesizerMissing(f"cannot load libespeak-ng from {library_path!r} ({err}); {INSTALL_HINT}") from None
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByFile.argtypes = [ctypes.c_char_p]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.native_rate = self.lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT)
        if self.native_rate <= 0:
            raise SynthesizerMissing(f"libespeak-ng failed to initialise with data {data_path!r}; {INSTALL_HINT}")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)   # kept alive as long as the library handle
        self.lib.espeak_SetSynthCallback(self._callback)
        self.data_path = Path(data_path)
        self._voice_dir = Path(tempfile.mkdtemp(prefix="wavalign-espeak-voices-"))
        atexit.register(shutil.rmtree, self._voice_dir, True)
        self._voice_files: dict[str, Path] = {}

    def _voice_file(self, voice: str) -> Path:
        """A voice file = base language voice + variant, with pitch flutter and roughness off.

        espeak-ng's flutter oscillator and roughness cycle counter are process-wide statics that are never
        reset, so the same call gives different audio depending on what was synthesised before; with both
        off (and the noise seed set per utterance) synthesis is a pure function of text and parameters.
        """
        if voice not in self._voice_files:
            language, _, variant = voice.partition("+")
            base = [p for p in (self.data_path / "lang").rglob("*") if p.is_file() and p.name.lower() == language.lower()]
            if not base:
                raise ValueError(f"espeak-ng has no language voice {language!r} under {self.data_path / 'lang'}")
            lines = base[0].read_text().splitlines()
            if variant:
                variant_path = self.data_path / "voices" / "!v" / variant
                if not variant_path.is_file():
                    raise ValueError(f"espeak-ng has no voice variant {variant!r} (looked for {variant_path})")
                lines += [ln for ln in variant_path.read_text().splitlines()
                          if not ln.startswith(("language", "name", "flutter", "roughness"))]
            path = self._voice_dir / voice.replace("+", "_")
            path.write_text("\n".join([*lines, "flutter 0", "roughness 0", ""]))
            self._voice_files[voice] = path
        return self._voice_files[voice]

    def _collect(self, samples, num_samples, _events) -> int:
        if samples and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(num_samples,)).copy())
        return 0

    def synth(self, text: str, voice: str, params: dict[str, int], noise_seed: int = 0) -> np.ndarray:
        """int16 samples at `native_rate`; call under `_LIBRARY_LOCK`."""
        # Loading the voice for every utterance also clears the echo buffer and breath filters left over
        # from the previous one.
        if self.lib.espeak_SetVoiceByFile(str(self._voice_file(voice)).encode()) != 0:
            raise ValueError(f"espeak-ng could not load voice {voice!r} from {self._voice_file(voice)}")
        self.lib.espeak_ng_SetRandSeed(noise_seed)   # breath noise of whispered/breathy voices
        for name, value in params.items():
            self.lib.espeak_SetParameter(_PARAMS[name], value, 0)
        data = text.encode("utf-8") + b"\0"
        self._chunks = []
        err = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed with error code {err} on text {text[:60]!r}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def _load_library(library_path: str | None, data_path: str | None) -> _EspeakLibrary:
    global _LIBRARY
    if library_path is None and _LIBRARY is not None:
        return _LIBRARY
    if library_path is None or data_path is None:
        try:
            import espeakng_loader
        except ImportError:
            raise SynthesizerMissing(f"the Python package espeakng-loader is not installed; {INSTALL_HINT}") from None
        library_path = library_path or espeakng_loader.get_library_path()
        data_path = data_path or espeakng_loader.get_data_path()
    if not Path(library_path).is_file():
        raise SynthesizerMissing(f"no libespeak-ng at {library_path!r}; {INSTALL_HINT}")
    with _LIBRARY_LOCK:
        if _LIBRARY is None:
            _LIBRARY = _EspeakLibrary(library_path, data_path)
        return _LIBRARY


def _to_kit_rate(samples_int16: np.ndarray, sr: int) -> np.ndarray:
    """int16 (or float) samples at `sr` -> float32 in [-1, 1] at SAMPLE_RATE."""
    wav = samples_int16.astype(np.float32)
    if samples_int16.dtype == np.int16:
        wav /= 32768.0
    if sr != SAMPLE_RATE and wav.size:
        import soxr  # librosa's resampler; a dependency of librosa

        wav = soxr.resample(wav, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return np.clip(wav, -1.0, 1.0)


class Synthesizer:
    """espeak-ng text-to-speech in the kit's named styles.

    backend: "auto" (library, else command), "library" (espeakng-loader's libespeak-ng via ctypes) or
    "command" (an `espeak-ng` binary). library_path / data_path / command point at non-default installs.
    """

    def __init__(self, backend: str = "auto", *, library_path: str | None = None, data_path: str | None = None,
                 command: str = "espeak-ng"):
        if backend not in ("auto", "library", "command"):
            raise ValueError(f"backend={backend!r}: use 'auto', 'library' or 'command'")
        self._library: _EspeakLibrary | None = None
        self._command: str | None = None
        if backend in ("auto", "library"):
            try:
                self._library = _load_library(library_path, data_path)
            except SynthesizerMissing:
                if backend == "library":
                    raise
        if self._library is None:
            self._command = shutil.which(command)
            if self._command is None:
                tried = "neither libespeak-ng (espeakng-loader) nor" if backend == "auto" else "no"
                raise SynthesizerMissing(f"{tried} an `{command}` command was found; {INSTALL_HINT}")
        self.backend = "library" if self._library is not None else "command"

    def synthesize(self, text: str, style: str = "neutral", rng: np.random.Generator | None = None) -> np.ndarray:
        """Render `text` in `style`; returns float32 samples in [-1, 1] at 16 kHz (jittered when rng is given)."""
        if style not in STYLES:
            raise ValueError(f"style={style!r} is not one of {sorted(STYLES)}")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text={text!r}: give a non-empty string to synthesise")
        spec = STYLES[style]
        params = spec.draw(rng)
        if self._library is not None:
            noise_seed = 0 if rng is None else int(rng.integers(2**31))
            with _LIBRARY_LOCK:
                samples = self._library.synth(text, spec.voice, params, noise_seed)
            return _to_kit_rate(samples, self._library.native_rate)
        return self._synth_command(text, spec.voice, params)

    def _synth_command(self, text: str, voice: str, params: dict[str, int]) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "utt.wav"
            cmd = [self._command, "-w", str(path), "-s", str(params["rate"]), "-p", str(params["pitch"]),
                   "-a", str(params["amplitude"]), "-v", voice, "--", text]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd[:-1])} ...` failed: {proc.stderr.strip()}")
            wav, sr = sf.read(path, dtype="int16")
        return _to_kit_rate(wav if wav.ndim == 1 else wav[:, 0], sr)


_DEFAULT: Synthesizer | None = None


def synthesize(text: str, style: str = "neutral", seed: int | None = None) -> np.ndarray:
    """Module-level convenience: the default backend; `seed` draws the style jitter (None: style centre)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Synthesizer()
    rng = None if seed is None else np.random.default_rng(seed)
    return _DEFAULT.synthesize(text, style, rng)


def write_wav(path: str | Path, wav: np.ndarray, sr: int = SAMPLE_RATE, *, normalize: bool = False) -> Path:
    """Write mono float audio as 16-bit PCM WAV (``normalize``: scale a peak above 0.9 down to 0.9 first)."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"write_wav({path}): expected mono audio of shape (T,), got shape {wav.shape}")
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if normalize and peak > 0.9:
        wav = wav * (0.9 / peak)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wav, -1.0, 1.0), sr, subtype="PCM_16")
    return Path(path)


def read_wav(path: str | Path, expected_sr: int | None = SAMPLE_RATE) -> np.ndarray:
    """Read a mono WAV file as float32; checks its sample rate against `expected_sr` (None: any rate)."""
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise ValueError(f"cannot read audio file {path}: {err}; re-create it (e.g. rebuild the world)") from None
    if expected_sr is not None and sr != expected_sr:
        raise ValueError(f"audio file {path} has sample rate {sr} Hz, expected {expected_sr} Hz; resample it")
    return wav.mean(axis=1) if wav.shape[1] > 1 else wav[:, 0]
