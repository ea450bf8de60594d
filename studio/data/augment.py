"""Augmentation: pitch, time stretch, filters, reverb and gain, each recorded as plain JSON (the manifest's
`augment` field) and reflected in the captions.

`choose` draws an augmentation, `describe` edits a clip's facts to match it (a loop stretched by 1.1
plays at 126 BPM, a bell pitched up 2 semitones rings a whole tone higher), `apply` does it to audio.
Gain is applied by the builder after peak normalisation, so "quiet" stays quiet.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

from studio.data.captions import Description

Augment = dict[str, Any]

# Only tonal or rhythmic material is stretched; a stretched one-shot just smears its attack.
STRETCHABLE = {"drum-loop", "bass", "pad", "strings", "organ", "wind", "rain"}
REVERB_SPACES = {"room": (0.3, 0.8), "hall": (1.5, 3.5), "plate": (0.8, 2.0)}


def choose(
    category: str | None,
    rng: np.random.Generator,
    kinds: tuple[str, ...] = ("pitch", "stretch", "filter", "reverb", "gain"),
) -> Augment:
    """One or two augmentations suited to `category`, as JSON-ready parameters."""
    usable = [k for k in kinds if k != "stretch" or category in STRETCHABLE]
    picked = rng.choice(len(usable), size=min(len(usable), int(rng.integers(1, 3))), replace=False)
    out: Augment = {}
    for kind in sorted(usable[i] for i in picked):
        if kind == "pitch":
            span = 3 if category in ("kick", "snare", "hi-hat", "clap", "cymbal", "drum-loop") else 5
            out["pitch_semitones"] = int(rng.choice([s for s in range(-span, span + 1) if s]))
        elif kind == "stretch":
            out["stretch"] = round(float(rng.choice([rng.uniform(0.8, 0.95), rng.uniform(1.05, 1.25)])), 3)
        elif kind == "filter":
            lowpass = bool(rng.random() < 0.6)
            cutoff = rng.uniform(600, 2500) if lowpass else rng.uniform(300, 1200)
            out["filter"] = {"type": "lowpass" if lowpass else "highpass", "cutoff_hz": round(float(cutoff))}
        elif kind == "reverb":
            space = str(rng.choice(sorted(REVERB_SPACES)))
            decay = rng.uniform(*REVERB_SPACES[space])
            out["reverb"] = {
                "space": space,
                "decay_s": round(float(decay), 2),
                "wet": round(float(rng.uniform(0.2, 0.5)), 2),
            }
        else:
            out["gain_db"] = round(float(rng.uniform(-15, -4)), 1)
    return out


def describe(desc: Description, augment: Augment | None) -> Description:
    """The clip's facts after `augment`."""
    if not augment:
        return desc
    if "pitch_semitones" in augment:
        st = augment["pitch_semitones"]
        # varispeed, like a sampler: pitch and tempo move together
        desc = desc.transposed(st).tempo_scaled(2 ** (st / 12))
        if desc.note is None and desc.root is None:
            desc = desc.with_details(
                f"pitched {'up' if st > 0 else 'down'} {abs(st)} semitone{'s' * (abs(st) > 1)}"
            )
    if "stretch" in augment:
        rate = augment["stretch"]
        desc = desc.tempo_scaled(rate)
        if desc.bpm is None:
            desc = desc.with_details("sped up" if rate > 1 else "slowed down")
    if "filter" in augment:
        f = augment["filter"]
        if f["type"] == "lowpass":
            desc = desc.without_qualities("bright", "crisp").with_qualities(
                "muffled" if f["cutoff_hz"] < 1200 else "dark"
            )
        else:
            desc = desc.without_qualities("deep", "boomy", "dark").with_qualities("thin")
    if "reverb" in augment:
        space = augment["reverb"]["space"]
        desc = desc.with_details("in a small room" if space == "room" else f"with {space} reverb")
    if augment.get("gain_db", 0) <= -9:
        desc = desc.without_qualities("loud").with_qualities("quiet")
    return desc


def tags(augment: Augment | None) -> tuple[str, ...]:
    if not augment:
        return ()
    names = {"pitch_semitones": "pitched", "stretch": "stretched", "filter": "filtered", "reverb": "reverb",
             "gain_db": "quiet"}  # fmt: skip
    return ("augmented", *(names[k] for k in augment if k in names))


def _varispeed(audio: np.ndarray, semitones: int) -> np.ndarray:
    # Playing back faster by 2^(st/12) = resampling to 2^(-st/12) as many frames.
    ratio = Fraction(2 ** (-semitones / 12)).limit_denominator(200)
    return resample_poly(audio, ratio.numerator, ratio.denominator, axis=-1)


def _stretch(audio: np.ndarray, rate: float) -> np.ndarray:
    import librosa  # slow to import; only stretching needs it

    return librosa.effects.time_stretch(np.ascontiguousarray(audio, dtype=np.float32), rate=rate)


def _impulse_response(sr: int, decay_s: float, space: str, rng: np.random.Generator) -> np.ndarray:
    """A synthetic stereo room: decorrelated noise decaying by 60 dB over `decay_s`, darker with time."""
    n = max(1, round(decay_s * sr))
    t = np.arange(n) / sr
    envelope = np.exp(-6.9 * t / decay_s)
    noise = rng.standard_normal((2, n)) * envelope
    bright = sosfilt(
        butter(1, min(8000 if space == "plate" else 5000, sr * 0.45), fs=sr, output="sos"), noise
    )
    dark = sosfilt(butter(1, min(1500, sr * 0.45), fs=sr, output="sos"), noise)
    mix = np.exp(-3 * t / decay_s)  # air absorbs highs first
    ir = dark + (bright - dark) * mix
    ir[:, : round(0.01 * sr)] *= np.linspace(0, 1, round(0.01 * sr))[None]  # no direct-sound spike
    return ir / (np.sqrt((ir**2).sum(axis=1, keepdims=True)) + 1e-9)


def apply(audio: np.ndarray, sr: int, augment: Augment | None, rng: np.random.Generator) -> np.ndarray:
    """Pitch, stretch, filter and reverb of `augment` applied to stereo [2, frames]; gain is left to the
    caller (it must come after normalisation)."""
    if not augment:
        return audio
    if "pitch_semitones" in augment:
        audio = _varispeed(audio, augment["pitch_semitones"])
    if "stretch" in augment:
        audio = _stretch(audio, augment["stretch"])
    if "filter" in augment:
        f = augment["filter"]
        sos = butter(2, min(f["cutoff_hz"], sr * 0.45), btype=f["type"], fs=sr, output="sos")
        audio = sosfilt(sos, audio, axis=-1)
    if "reverb" in augment:
        r = augment["reverb"]
        ir = _impulse_response(sr, r["decay_s"], r["space"], rng)
        tail = np.pad(audio, ((0, 0), (0, ir.shape[1])))
        wet = np.stack([fftconvolve(tail[c], ir[c])[: tail.shape[1]] for c in range(2)])
        dry_peak, wet_peak = np.abs(audio).max() + 1e-9, np.abs(wet).max() + 1e-9
        audio = (1 - r["wet"]) * tail + r["wet"] * wet * (dry_peak / wet_peak)
    return np.asarray(audio, dtype=np.float32)
