"""Audio in and out: reading recordings, resampling, channel conversion, atomic WAV writing.

Arrays are float32 [channels, frames]. No torchaudio: libsndfile (soundfile) reads and writes,
scipy resamples with a polyphase filter.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from studio.errors import AudioError

WAV_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}
# What audio files really hold. A header is only a claim: one that says 2,000,003 Hz or 60,000
# channels would cost gigabytes to decode and resample, so such files are refused before decoding.
RATE_RANGE = (1_000, 768_000)
MAX_CHANNELS = 64
# Recordings decoded and resampled at once, whoever sent them: each may take hundreds of megabytes.
DECODING = threading.BoundedSemaphore(2)


@dataclass(frozen=True)
class FitReport:
    """What preparing a recording did to it, to tell the user."""

    original_seconds: float
    resampled_from: int | None
    channels_from: int | None
    trimmed: bool
    padded: bool

    def describe(self) -> str:
        notes = []
        if self.resampled_from:
            notes.append(f"resampled from {self.resampled_from} Hz")
        if self.channels_from:
            notes.append(f"converted from {self.channels_from} channel(s)")
        if self.trimmed:
            notes.append(f"cut from {self.original_seconds:.2f} s")
        if self.padded:
            notes.append(f"padded with silence from {self.original_seconds:.2f} s")
        return ", ".join(notes) or "used as is"


def read_audio(path: str | Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a file; with max_seconds only its beginning, so a two-hour upload costs no more
    memory than the take it seeds."""
    path = Path(path)
    info = _info(path)
    try:
        frames = -1 if max_seconds is None else math.ceil(max_seconds * info.samplerate)
        data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise _unreadable(path, exc) from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the audio file is empty")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    return data.T.copy(), int(rate)


def load_audio(
    path: str | Path, sample_rate: int, channels: int, max_seconds: float | None = None
) -> np.ndarray:
    """A file as float32 [channels, frames] at a model's rate and channel count."""
    audio, rate = read_audio(path, max_seconds=max_seconds)
    return convert_channels(resample(audio, rate, sample_rate), channels)


def audio_seconds(path: str | Path) -> float:
    return float(_info(Path(path)).duration)


def _info(path: Path) -> sf._SoundFileInfo:
    """The file's header, refused where it claims what no recording holds."""
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise _unreadable(path, exc) from exc
    low, high = RATE_RANGE
    if not low <= info.samplerate <= high:
        raise AudioError(
            f"{path}: its header claims {info.samplerate} Hz; audio files run from {low} Hz to {high} Hz",
            "the file is damaged or not audio: re-export it from your editor at 44.1 or 48 kHz",
        )
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioError(
            f"{path}: its header claims {info.channels} channels; Studio reads 1 to {MAX_CHANNELS}",
            "re-export it as mono or stereo",
        )
    return info


def _unreadable(path: Path, exc: Exception) -> AudioError:
    return AudioError(
        f"{path}: not a readable audio file ({exc})".splitlines()[0],
        "use WAV, FLAC, OGG or MP3; convert other formats first (e.g. ffmpeg -i in.m4a out.wav)",
    )


def convert_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    if audio.shape[0] == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=0, keepdims=True)
    if audio.shape[0] == 1:
        return np.repeat(audio, channels, axis=0)
    return (
        audio[:channels]
        if audio.shape[0] > channels
        else np.concatenate([audio, np.repeat(audio[-1:], channels - audio.shape[0], axis=0)])
    )


def resample(audio: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    if rate_from == rate_to:
        return audio
    g = math.gcd(rate_from, rate_to)
    return resample_poly(audio, rate_to // g, rate_from // g, axis=-1).astype(np.float32)


def fit_length(audio: np.ndarray, frames: int) -> np.ndarray:
    """Cut to `frames`, or pad the end with silence."""
    if audio.shape[1] >= frames:
        return audio[:, :frames]
    return np.pad(audio, ((0, 0), (0, frames - audio.shape[1])))


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.01048 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * np.expm1(np.asarray(mel, dtype=np.float64) / 1127.01048)


@cache
def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> np.ndarray:
    """HTK-mel triangles built in the mel domain, each summing to 1 (Essentia's MelBands with
    weighting "warping" and unit_sum), as a read-only [n_mels, n_fft // 2 + 1] matrix.

    A triangle narrower than one FFT bin covers no bin and stays a row of zeros.
    """
    bins = n_fft // 2 + 1
    top = sample_rate / 2 if f_max is None else min(f_max, sample_rate / 2)
    lo, hi = _hz_to_mel(f_min), _hz_to_mel(top)
    edges = _mel_to_hz(lo + np.arange(n_mels + 2) * (hi - lo) / (n_mels + 1))
    bin_hz = (sample_rate / 2) / (bins - 1)
    bank = np.zeros((n_mels, bins))
    for i in range(n_mels):
        left, centre, right = edges[i : i + 3]
        j = np.arange(math.ceil(left / bin_hz), math.floor(right / bin_hz) + 1)
        mel = _hz_to_mel(j * bin_hz)
        rising = (mel - _hz_to_mel(left)) / (_hz_to_mel(centre) - _hz_to_mel(left))
        falling = (_hz_to_mel(right) - mel) / (_hz_to_mel(right) - _hz_to_mel(centre))
        bank[i, j] = np.where(j * bin_hz < centre, rising, falling)
        if bank[i].sum() > 0:
            bank[i] /= bank[i].sum()
    bank.flags.writeable = False
    return bank


def prepare_recording(
    audio: np.ndarray,
    rate: int,
    target_rate: int,
    channels: int,
    frames: int,
    original_seconds: float | None = None,
) -> tuple[np.ndarray, FitReport]:
    """A recording made ready to be encoded: target rate, channel count and length.

    `original_seconds` is the whole recording's length when only its beginning was decoded.
    """
    if audio.ndim == 1:
        audio = audio[None]
    original_channels = audio.shape[0]
    converted = convert_channels(resample(audio.astype(np.float32), rate, target_rate), channels)
    seconds = audio.shape[1] / rate if original_seconds is None else original_seconds
    report = FitReport(
        original_seconds=seconds,
        resampled_from=rate if rate != target_rate else None,
        channels_from=original_channels if original_channels != channels else None,
        trimmed=seconds * target_rate > frames + 0.5,
        padded=converted.shape[1] < frames,
    )
    return fit_length(converted, frames), report


@contextmanager
def atomic_path(path: Path, errors: tuple[type[Exception], ...] = ()) -> Iterator[Path]:
    """A temporary file beside `path` that replaces it only if the block succeeds, so no reader ever
    sees half a file. OSError (and `errors`) become an AudioError that says what to check."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        os.replace(tmp, path)
    except (OSError, *errors) as exc:
        lines = str(exc).strip().splitlines()  # ffmpeg ends pages of banner with the reason
        reason = getattr(exc, "strerror", None) or (lines[-1] if lines else type(exc).__name__)
        raise AudioError(
            f"cannot write {path}: {reason}", "check the folder exists, is writable and the disk has space"
        ) from exc
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def write_audio(path: str | Path, audio: np.ndarray, rate: int, bit_depth: int = 24) -> Path:
    """Write a WAV/FLAC atomically (temp file + rename), so no reader ever sees half a file."""
    path = Path(path)
    if bit_depth not in WAV_SUBTYPES:
        raise AudioError(f"bit depth {bit_depth} is not supported", "use 16, 24 or 32 (float)")
    subtype = WAV_SUBTYPES[bit_depth]
    audio = np.asarray(audio, dtype=np.float32)
    if subtype != "FLOAT":
        audio = np.clip(audio, -1.0, 1.0)  # integer PCM would wrap around, which sounds like noise
    file_format = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    if file_format == "FLAC" and subtype == "FLOAT":
        raise AudioError("FLAC cannot hold 32-bit float", "use 16 or 24 bits, or WAV")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio.T, rate, subtype=subtype, format=file_format)
    return path
