"""aisfx audio embeddings: audio (any rate, any channels) -> one 512-d vector per clip.

aisfx (Ma & Lerch, ISMIR 2022; MIT code, weights shipped in the wheel) is a 9-layer CNN trained to
classify sound-effect libraries. It was trained on an Essentia mel front-end; the package's
librosa alternative differs from it (triangles linear in Hz rather than in mel, peak normalisation,
and it returns the spectrogram transposed, which its blocking then cuts along the wrong axis).
Essentia is a heavy native dependency, so the front-end the network was trained on is reimplemented
here in numpy, step by step:

- EasyLoader: mono mix (mean of channels), 44.1 kHz (other rates are resampled here with a
  polyphase filter, not Essentia's resampler), level untouched (its default replayGain of -6 dB
  plus its 6 dB preamp is a factor of 1);
- FrameCutter (2048 / 1024, startFromZero false): frame k is centred on sample k·1024, zero-padded
  at both ends, frames while the frame start is inside the signal: ceil((n + 1024) / 1024) frames;
- Windowing: symmetric Hann, not normalised (the zero-phase rotation does not change a magnitude);
- Spectrum -> MelBands(96, 0–22050 Hz, htkMel warping, weighting "warping", unit_sum, power):
  triangles built in the mel domain over bins ceil(f_lo / df) .. floor(f_hi / df), each normalised
  to sum 1, applied to |X|²;
- shift_scale_log: log10(10000 · x + 1), then the package's "original" min-max scaling (/ 9.4578);
- blocks of 100 frames (2.3 s) with a hop of 50, a trailing partial block dropped, a clip shorter
  than one block zero-padded to it (aisfx asserts instead when a clip has 50 frames or fewer).

tests/test_eval.py checks the front-end against values recorded from Essentia itself. A clip's
embedding is the mean of its blocks' embeddings.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from studio.audio import mel_filterbank, read_audio, resample
from studio.errors import StudioError

SAMPLE_RATE = 44100
N_FFT = 2048
HOP = 1024
N_MELS = 96
F_MIN, F_MAX = 0.0, 22050.0
SPEC_MAX = 9.457798957824707  # aisfx spectrogram_normalize("original"): min 0, max over its corpora
BLOCK_FRAMES = 100
BLOCK_HOP = 50
EMBEDDING_DIM = 512
# Bump when anything above changes, so cached embeddings of the old front-end are not reused.
FRONT_END_VERSION = 1


class EmbeddingModelError(StudioError):
    """The aisfx package or its weights could not be loaded."""


def mel_spectrogram(mono: np.ndarray) -> np.ndarray:
    """44.1 kHz mono samples -> the network's input features [frames, 96], scaled to about [0, 1]."""
    signal = np.asarray(mono, dtype=np.float64)
    frames = math.ceil((signal.size + N_FFT // 2) / HOP)
    padded = np.zeros((frames - 1) * HOP + N_FFT)
    padded[N_FFT // 2 : N_FFT // 2 + signal.size] = signal
    windows = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:frames]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / (N_FFT - 1))
    power = np.abs(np.fft.rfft(windows * hann, axis=1)) ** 2
    bands = power @ mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, F_MIN, F_MAX).T
    return np.log10(10000.0 * bands + 1.0) / SPEC_MAX


def spectrogram_blocks(spec: np.ndarray) -> np.ndarray:
    """[frames, 96] -> [blocks, 100, 96]: aisfx's blocking with drop_partial_block and a hop of 0.5."""
    count = max(1, (spec.shape[0] - BLOCK_FRAMES) // BLOCK_HOP + 1)
    padded = np.zeros((max(spec.shape[0], BLOCK_FRAMES), spec.shape[1]), dtype=np.float32)
    padded[: spec.shape[0]] = spec
    return np.stack([padded[i * BLOCK_HOP : i * BLOCK_HOP + BLOCK_FRAMES] for i in range(count)])


def to_mono_44k(audio: np.ndarray, rate: int) -> np.ndarray:
    """[channels, frames] or [frames] at any rate -> float32 mono at 44.1 kHz."""
    audio = np.asarray(audio, dtype=np.float32)
    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    return resample(mono[None], int(rate), SAMPLE_RATE)[0]


def _load_network(device: torch.device) -> torch.nn.Module:
    try:
        from aisfx.inference import get_path_modelWeights
        from aisfx.models.cnn2d import EmbeddingNet
    except ImportError as exc:
        raise EmbeddingModelError(
            "the aisfx embedding model is not installed",
            "pip install --no-deps aisfx (its pinned librosa/numpy versions are not needed)",
        ) from exc
    # The shipped checkpoint is a pickle of (state_dict, {dataset: (index, classes)}). It is loaded
    # with torch's weights-only unpickler, which builds tensors and plain containers and refuses any
    # other global; the numpy scalar and dtype types allowed here only rebuild the numpy ints in that dict. So
    # only the file from the installed wheel is read, and it cannot run code when it is.
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar

    path = Path(get_path_modelWeights())
    allowed = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype(np.int64))]
    try:
        with torch.serialization.safe_globals(allowed):
            weights, _datasets = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise EmbeddingModelError(
            f"{path}: cannot read the aisfx weights ({exc})".splitlines()[0],
            "reinstall it: pip install --force-reinstall --no-deps aisfx",
        ) from exc
    # Only the embedding trunk is used; the per-dataset classifier heads are not.
    prefix = "embedding_net."
    trunk = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    network = EmbeddingNet("max", 3, 1, 64)  # the X-Sequential-CE configuration aisfx loads
    network.load_state_dict(trunk, strict=True)
    return network.eval().requires_grad_(False).to(device)


class AisfxEmbedder:
    """Clip embeddings from the aisfx network, batched over blocks, with an on-disk cache for files."""

    def __init__(
        self, device: str | torch.device = "cpu", batch_size: int = 32, cache_dir: Path | None = None
    ):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self._network: torch.nn.Module | None = None

    @property
    def network(self) -> torch.nn.Module:
        if self._network is None:
            self._network = _load_network(self.device)
        return self._network

    @torch.inference_mode()
    def embed(self, clips: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
        """(audio [channels, frames] or [frames], rate) per clip -> float32 [clips, 512]."""
        if not clips:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        blocks = [spectrogram_blocks(mel_spectrogram(to_mono_44k(audio, rate))) for audio, rate in clips]
        stacked = torch.from_numpy(np.concatenate(blocks))
        outputs = [
            self.network(stacked[i : i + self.batch_size].to(self.device)).float().cpu()
            for i in range(0, len(stacked), self.batch_size)
        ]
        per_block = torch.cat(outputs).numpy()
        owners = np.repeat(np.arange(len(blocks)), [len(b) for b in blocks])
        sums = np.zeros((len(blocks), EMBEDDING_DIM))
        np.add.at(sums, owners, per_block)
        return (sums / np.bincount(owners)[:, None]).astype(np.float32)

    def embed_files(self, paths: Sequence[Path]) -> np.ndarray:
        """Embeddings of audio files, reusing cached ones whose file has not changed."""
        result = np.zeros((len(paths), EMBEDDING_DIM), dtype=np.float32)
        missing = []
        for i, path in enumerate(paths):
            cached = self._cache_file(path)
            if cached is not None and cached.is_file():
                result[i] = np.load(cached)
            else:
                missing.append(i)
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            embeddings = self.embed([read_audio(paths[i]) for i in chunk])
            for i, embedding in zip(chunk, embeddings, strict=True):
                result[i] = embedding
                cached = self._cache_file(paths[i])
                if cached is not None:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    np.save(cached, embedding)
        return result

    def _cache_file(self, path: Path) -> Path | None:
        if self.cache_dir is None:
            return None
        stat = Path(path).stat()
        key = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{FRONT_END_VERSION}"
        return self.cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.npy"
