"""Training data: clips as fixed-length audio or as VAE latents, and the latent cache.

Corpora are read with `studio.data.read_manifest` (docs/data.md). Every random choice a clip makes
in a batch (crop offset, phrasing, posterior draw) comes from a seed derived from (run seed, epoch,
clip index), so a resumed run sees exactly the batches an uninterrupted one would have seen, on
any rank and in any data-loader worker.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset, DistributedSampler, Sampler

from studio.audio import fit_length, load_audio
from studio.data.manifest import Clip, CorpusError
from studio.models.autoencoder import Autoencoder, vae_sample
from studio.prompt_facts import without_facts


def split_clips(clips: list[Clip], split: str, corpus: str | Path, required: bool = True) -> list[Clip]:
    """The clips of one split; an empty split is an error when `required`."""
    chosen = [c for c in clips if c.split == split]
    if required and not chosen:
        raise CorpusError(
            f"{corpus}: the manifest has no clips in the '{split}' split",
            f'mark some clips "split": "{split}" when building the corpus',
        )
    return chosen


def draw_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for one use of one clip."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def fixed_keys(count: int, seed: int) -> list[tuple[int, int]]:
    """Dataset keys with draws that never change: for validation."""
    return [(i, draw_seed(seed, 0, i)) for i in range(count)]


def balanced_epoch(
    categories: Sequence[str | None], power: float, focus: Mapping[str | None, float] | None = None
) -> list[int]:
    """Clip indices for one epoch in which rare categories come round more often.

    A clip whose category has n clips appears round((n_max / n) ** power) times: power 0 keeps the
    corpus's own proportions, 1 draws every category about equally often, and 0.5 (square-root
    sampling) sits between. Clips without a category count as one group. `focus` multiplies the
    repeats of the categories it names (None: the clips of no category), so a run can dwell on
    what the model gets wrong without a corpus rebuilt around it.
    """
    counts = Counter(categories)
    largest = max(counts.values(), default=0)
    weights = focus or {}
    return [
        index
        for index, category in enumerate(categories)
        for _ in range(max(1, round((largest / counts[category]) ** power * weights.get(category, 1.0))))
    ]


class StepSampler(Sampler[tuple[int, int]]):
    """Endless (clip index, draw seed) keys for one rank, epoch after epoch.

    `epoch` lists the clip indices of one epoch (`range(len(dataset))`, or `balanced_epoch`'s
    repeats). Each epoch is a DistributedSampler shuffle of it (so ranks see disjoint shards); the
    sampler starts `skip` keys in, which is how a resumed run picks up mid-epoch without decoding what
    it skips. A repeated clip gets a fresh draw each time it comes round.
    """

    def __init__(self, epoch: Sequence[int], seed: int, rank: int = 0, world: int = 1, skip: int = 0):
        self.epoch, self.seed, self.rank, self.world, self.skip = list(epoch), seed, rank, world, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        shard = DistributedSampler(
            range(len(self.epoch)), num_replicas=self.world, rank=self.rank, seed=self.seed
        )
        number, offset = divmod(self.skip, len(shard))
        while True:
            shard.set_epoch(number)
            for position in list(shard)[offset:]:
                yield self.epoch[position], draw_seed(self.seed, number, position)
            number, offset = number + 1, 0


def synthetic_tones(rng: np.random.Generator, frames: int, rate: int, channels: int) -> np.ndarray:
    """One to four held notes, [channels, frames] float32: each a pure sine or a harmonic series
    (2–12 partials of random strengths below 16 kHz) at a pitch drawn log-uniformly from 30 Hz to
    8 kHz and a level from −40 to −3 dBFS, with random phases, a vibrato or glide now and then, its
    own place in the stereo field, fades at random, sometimes over a quiet noise floor.

    An autoencoder that is to give back any pitch must have met pitches between the notes a
    corpus's instruments happen to play, and plain tones, which recordings seldom hold.
    """
    t = np.arange(frames) / rate
    audio = np.zeros((channels, frames))
    for _ in range(int(rng.integers(1, 5))):
        f0 = float(np.exp(rng.uniform(np.log(30), np.log(8000))))
        bend = np.zeros(frames)
        if rng.random() < 0.25:  # vibrato of up to 30 cents at 4–7 Hz
            bend = rng.uniform(0, 30) * np.sin(2 * np.pi * rng.uniform(4, 7) * t + rng.uniform(0, 2 * np.pi))
        elif rng.random() < 0.15:  # a glide of up to a fifth either way
            bend = rng.uniform(-700, 700) * t / t[-1]
        # the phase of a partial k is k times the fundamental's, integrated over its bending frequency
        phase = 2 * np.pi * np.cumsum(f0 * 2 ** (bend / 1200)) / rate
        partials = 1 if rng.random() < 0.4 else int(rng.integers(2, 13))
        note = np.zeros(frames)
        for k in range(1, partials + 1):
            if k * f0 * 2 ** (np.abs(bend).max() / 1200) < min(16000, rate / 2 - 500):
                note += rng.uniform(0.05, 1) / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
        level = 10 ** (rng.uniform(-40, -3) / 20) / max(1e-9, float(np.abs(note).max()))
        envelope = np.ones(frames)
        if rng.random() < 0.5:
            attack, release = rng.uniform(0.002, 0.2, size=2) * rate
            envelope = np.minimum(
                1, np.minimum(np.arange(frames) / attack, np.arange(frames)[::-1] / release)
            )
        pan = rng.uniform(0.2, 0.8) if channels == 2 else 0.5
        gains = np.array([np.sqrt(1 - pan), np.sqrt(pan)])[:channels] * (np.sqrt(2) if channels == 2 else 1)
        audio += gains[:, None] * (level * envelope * note)[None]
    if rng.random() < 0.3:
        audio += 10 ** (rng.uniform(-80, -50) / 20) * rng.standard_normal(audio.shape)
    return (audio / max(1.0, float(np.abs(audio).max()) / 0.99)).astype(np.float32)


class AudioClips(Dataset):
    """Clips as `frames`-long audio: long clips cropped at random, short ones padded with silence.

    An item is {"audio": [channels, frames], "seconds": how much of it is the clip, "caption"}. With
    `tone_share`, that share of the items is `synthetic_tones` in place of the clip (autoencoder
    training only: the caption is meaningless).
    """

    def __init__(
        self, clips: list[Clip], sample_rate: int, channels: int, frames: int, tone_share: float = 0.0
    ):
        self.clips, self.sample_rate, self.channels, self.frames = clips, sample_rate, channels, frames
        self.tone_share = tone_share

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        clip, rng = self.clips[index], np.random.default_rng(seed)
        if self.tone_share and rng.random() < self.tone_share:
            audio = synthetic_tones(rng, self.frames, self.sample_rate, self.channels)
            return {
                "audio": torch.from_numpy(audio),
                "seconds": self.frames / self.sample_rate,
                "caption": "tones",
            }
        audio = load_audio(clip.file, self.sample_rate, self.channels)
        if audio.shape[1] > self.frames:
            start = int(rng.integers(0, audio.shape[1] - self.frames + 1))
            audio = audio[:, start : start + self.frames]
        seconds = min(audio.shape[1], self.frames) / self.sample_rate
        return {
            "audio": torch.from_numpy(np.ascontiguousarray(fit_length(audio, self.frames))),
            "seconds": seconds,
            "caption": clip.captions[int(rng.integers(len(clip.captions)))],
        }


def vae_fingerprint(vae: Autoencoder) -> str:
    """A short hash of the VAE's weights: cached latents are only valid for the VAE that made them."""
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class LatentCache:
    """Per-clip VAE posteriors (mean and stdev) on disk, under a folder named for the VAE's weights.

    Encoding is the expensive part of flow and ARC training on a small machine; with the
    posterior cached, every step still draws a fresh latent from it, as on-the-fly encoding would.
    """

    folder: Path
    sample_rate: int
    channels: int
    min_frames: int  # clips shorter than the model's window are padded to it before encoding

    @classmethod
    def for_vae(
        cls, root: str | Path, vae: Autoencoder, sample_rate: int, channels: int, min_frames: int
    ) -> LatentCache:
        name = f"{vae_fingerprint(vae)}-{sample_rate}hz-{min_frames}"
        return cls(Path(root) / name, sample_rate, channels, min_frames)

    def path(self, clip: Clip) -> Path:
        # Ids may hold slashes or odd characters; a hash makes a safe, stable file name.
        return self.folder / f"{hashlib.sha1(clip.id.encode()).hexdigest()[:24]}.safetensors"

    def missing(self, clips: list[Clip]) -> list[Clip]:
        return [c for c in clips if not self.path(c).is_file()]

    @torch.no_grad()
    def encode(self, clip: Clip, vae: Autoencoder, device: torch.device) -> None:
        audio = load_audio(clip.file, self.sample_rate, self.channels)
        frames = audio.shape[1]
        padded = math.ceil(max(frames, self.min_frames) / vae.hop) * vae.hop
        x = torch.from_numpy(np.ascontiguousarray(fit_length(audio, padded)))[None].to(device)
        _, mean, stdev = vae_sample(vae.encoder(x).float(), None)
        tensors = {
            "mean": (mean[0] / vae.scale).cpu().contiguous(),
            "stdev": (stdev[0] / vae.scale).cpu().contiguous(),
        }
        path = self.path(clip)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file(tensors, str(tmp), metadata={"id": clip.id, "frames": str(frames)})
        tmp.replace(path)  # atomic: a crash never leaves a half-written entry behind

    def load(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(mean, stdev) [latent_dim, latent_frames] and the clip's length in audio frames."""
        path = self.path(clip)
        try:
            with safe_open(str(path), "pt") as handle:
                frames = int(handle.metadata()["frames"])
                mean, stdev = handle.get_tensor("mean"), handle.get_tensor("stdev")
        except (SafetensorError, OSError, KeyError, ValueError, TypeError) as exc:
            raise CorpusError(
                f"{path}: cached latents for clip '{clip.id}' are unreadable ({exc})",
                f"delete {self.folder} and train again to re-encode",
            ) from exc
        return mean, stdev, frames


class LatentClips(Dataset):
    """Clips as `latent_length` frames of latents drawn from their cached posterior.

    Long clips are cropped at a random latent frame; short ones were padded with silence before
    encoding. "seconds" is how much of the window the clip fills (the seconds conditioner's value),
    "start" where in the clip the window begins, in seconds (where a stated tempo's beats fall).
    With `padded_seconds_share` p, a short clip is conditioned, p of the time, on a length drawn
    between its own and the window's instead: what follows it there is silence, so a model learns
    that a hit asked for at any length still decays, as a user asking for a kick without a length
    expects. With `fact_dropout` q, a caption that names a note or tempo loses it q of the time: the
    note-rendered clips state theirs in nearly every caption, and a model must also learn what
    "piano note" with no note named sounds like.
    """

    def __init__(
        self,
        clips: list[Clip],
        cache: LatentCache,
        latent_length: int,
        hop: int,
        padded_seconds_share: float = 0.0,
        fact_dropout: float = 0.0,
    ):
        self.clips, self.cache, self.latent_length, self.hop = clips, cache, latent_length, hop
        self.padded_seconds_share, self.fact_dropout = padded_seconds_share, fact_dropout

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        clip, rng = self.clips[index], np.random.default_rng(seed)
        mean, stdev, frames = self.cache.load(clip)
        start = int(rng.integers(0, mean.shape[1] - self.latent_length + 1))
        mean = mean[:, start : start + self.latent_length]
        stdev = stdev[:, start : start + self.latent_length]
        noise = torch.from_numpy(rng.standard_normal(mean.shape, dtype=np.float32))
        window = self.latent_length * self.hop
        filled = max(0.0, min(window, frames - start * self.hop))
        caption = clip.captions[int(rng.integers(len(clip.captions)))]
        if filled < window and rng.random() < self.padded_seconds_share:
            filled = rng.uniform(filled, window)
        if self.fact_dropout and rng.random() < self.fact_dropout:
            caption = without_facts(caption) or caption
        return {
            "latents": mean + stdev * noise,
            "seconds": filled / self.cache.sample_rate,
            "start": start * self.hop / self.cache.sample_rate,
            "caption": caption,
        }


def window_conditions(batch: dict[str, Any]) -> tuple[list[str], list[float], list[float]]:
    """A LatentClips batch's (captions, seconds, starts): what a model is conditioned on."""
    return list(batch["caption"]), batch["seconds"].tolist(), batch["start"].tolist()


class Prompts(Dataset):
    """Prompts and lengths without audio, for training that reads none (caption-only distillation).

    An item is {"caption", "seconds"}: one of the clip's captions and its length, capped at the
    window, or `designed_share` of the time a caption and length the corpus builder's generators
    write for a fresh design of the clip's category (data.build.designed_caption), so the prompts
    reach notes, tempi and phrasings no clip has. Categories stay in the corpus's proportions (or
    balanced, as the run asks), since the draws follow the clips.
    """

    def __init__(self, clips: list[Clip], window_seconds: float, designed_share: float = 0.0):
        self.clips, self.window_seconds, self.designed_share = clips, window_seconds, designed_share

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        # The builder needs the data extra (MIDI, synthesis): only a run that designs prompts loads it.
        from studio.data.build import designed_caption

        index, seed = key
        clip, rng = self.clips[index], np.random.default_rng(seed)
        designed = designed_caption(clip.category, rng) if rng.random() < self.designed_share else None
        # A hand-made manifest may leave a clip's length out (0): the whole window then.
        caption, seconds = designed or (clip.captions[int(rng.integers(len(clip.captions)))], clip.seconds)
        return {
            "caption": caption,
            "seconds": min(float(seconds or self.window_seconds), self.window_seconds),
        }
