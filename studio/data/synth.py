"""Procedural synthesis: drums, basses, pads, bells, plucks, risers and sound effects made with numpy
and scipy, each described by the parameters that made it.

A clip is made in two steps so the planner can budget and caption without rendering: `design(category,
rng)` draws the parameters and says what they sound like (a `Recipe`), and `render(recipe, rate, rng)`
turns a recipe into stereo float audio [2, frames]. Levels are arbitrary; the builder normalises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.signal import butter, fftconvolve, lfilter, sosfilt

from studio.data.captions import Description
from studio.prompt_facts import note_frequency

Params = dict[str, Any]


@dataclass(frozen=True)
class Recipe:
    """What to render (`kind` names the renderer) and what it will sound like."""

    kind: str
    category: str | None
    params: Params
    seconds: float
    description: Description


# ---------------------------------------------------------------- signal helpers


def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / sr


def _frames(seconds: float, sr: int) -> int:
    return max(1, round(seconds * sr))


def _grid(freq: float) -> float:
    return 2 ** (round(math.log2(max(freq, 1.0)) * 48) / 48)


@lru_cache(maxsize=4096)
def _design(kind: str, cutoff: float | tuple[float, float], sr: int, order: int) -> np.ndarray:
    return butter(order, cutoff, btype=kind, fs=sr, output="sos")


def _filter(
    x: np.ndarray, kind: str, freq: float | tuple[float, float], sr: int, order: int = 2
) -> np.ndarray:
    # Cutoffs snap to a 1/48-octave grid (inaudible) so designs repeat and the cache serves them:
    # designing a filter costs more than running it over a short clip.
    nyq = sr / 2 * 0.95  # keep cutoffs valid at any corpus rate
    if kind == "bandpass":
        lo, hi = freq  # type: ignore[misc]
        lo, hi = _grid(max(lo, 10.0)), min(_grid(hi), nyq)
        if hi <= lo * 1.01:
            return np.zeros_like(x)
        cutoff: float | tuple[float, float] = (lo, hi)
    else:
        cutoff = min(_grid(float(freq)), nyq)  # type: ignore[arg-type]
    return sosfilt(_design(kind, cutoff, sr, order), x, axis=-1)


def _env(t: np.ndarray, attack: float, tau: float) -> np.ndarray:
    """Linear attack then exponential decay with time constant `tau` (about a third of the audible decay)."""
    rise = np.minimum(t / max(attack, 1e-6), 1.0)
    return rise * np.exp(-np.maximum(t - attack, 0.0) / tau)


def _hz_midi(freq: float) -> int:
    return round(69 + 12 * math.log2(freq / 440.0))


def _phase(freq: np.ndarray | float, n: int, sr: int) -> np.ndarray:
    """Phase in cycles of a (possibly gliding) oscillator."""
    f = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    return np.cumsum(f) / sr


def _poly_blep(p: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """PolyBLEP residual that rounds off a saw's jump so it does not alias audibly."""
    out = np.zeros_like(p)
    lo = p < dt
    x = p[lo] / dt[lo]
    out[lo] = x + x - x * x - 1.0
    hi = p > 1.0 - dt
    x = (p[hi] - 1.0) / dt[hi]
    out[hi] = x * x + x + x + 1.0
    return out


def _saw(freq: np.ndarray | float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    p = (_phase(freq, n, sr) + phase0) % 1.0
    dt = np.broadcast_to(np.asarray(freq, dtype=np.float64) / sr, (n,))
    return 2.0 * p - 1.0 - _poly_blep(p, dt)


def _square(freq: np.ndarray | float, n: int, sr: int, phase0: float = 0.0) -> np.ndarray:
    return 0.5 * (_saw(freq, n, sr, phase0) - _saw(freq, n, sr, phase0 + 0.5))


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Equal-power pan, -1 left … 1 right."""
    angle = (position + 1.0) * math.pi / 4
    return np.stack([mono * math.cos(angle), mono * math.sin(angle)])


def _place(buffer: np.ndarray, sound: np.ndarray, start: int) -> None:
    """Add `sound` into `buffer` (last axis is time) at frame `start`, cut at the end."""
    if start >= buffer.shape[-1]:
        return
    length = min(sound.shape[-1], buffer.shape[-1] - start)
    buffer[..., start : start + length] += sound[..., :length]


def _slow_noise(n: int, sr: int, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random movement in about [-1, 1] (gusts, rumble, drift)."""
    x = _filter(rng.standard_normal(n + sr), "lowpass", rate_hz, sr, order=2)[sr:]
    return x / (np.abs(x).max() + 1e-9)


def _sweep_bank(noise: np.ndarray, centre: np.ndarray, lo: float, hi: float, sr: int) -> np.ndarray:
    """Noise through a band that follows `centre` (Hz per frame): a bank of fixed bands crossfaded,
    which sounds like a moving filter without a per-sample filter loop."""
    bands = np.geomspace(lo, hi, 10)
    out = np.zeros_like(noise)
    weights_sum = np.zeros_like(noise)
    log_c = np.log2(np.maximum(centre, 1.0))
    for f in bands:
        w = np.exp(-(((log_c - math.log2(f)) / 0.6) ** 2))
        out += _filter(noise, "bandpass", (f / 1.35, f * 1.35), sr) * w
        weights_sum += w
    return out / np.maximum(weights_sum, 1e-3)


def _choice(rng: np.random.Generator, options: list[Any] | tuple[Any, ...]) -> Any:
    return options[int(rng.integers(len(options)))]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _log_u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _decay_word(seconds: float, short: float, long: float) -> str | None:
    if seconds < short:
        return "short"
    return "long tail" if seconds > long else None


CHORDS = {
    "major chord": (0, 4, 7),
    "minor chord": (0, 3, 7),
    "major seventh chord": (0, 4, 7, 11),
    "minor seventh chord": (0, 3, 7, 10),
    "sus2 chord": (0, 2, 7),
    "sus4 chord": (0, 5, 7),
    "minor ninth chord": (0, 3, 7, 10, 14),
}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "dorian": (0, 2, 3, 5, 7, 9, 10)}


# ---------------------------------------------------------------- drums


KICK_STYLES: dict[str, dict[str, tuple[float, float]]] = {
    # f_start -> f_end: the pitch drop; pitch_tau: how fast it drops; amp_tau: body decay time constant
    "808": {
        "f_start": (110, 190),
        "f_end": (41, 56),
        "pitch_tau": (0.03, 0.08),
        "amp_tau": (0.18, 0.45),
        "click": (0.05, 0.3),
        "drive": (0.0, 0.3),
    },
    "techno": {
        "f_start": (250, 420),
        "f_end": (45, 62),
        "pitch_tau": (0.015, 0.035),
        "amp_tau": (0.06, 0.14),
        "click": (0.4, 0.9),
        "drive": (0.3, 0.9),
    },
    "punchy": {
        "f_start": (180, 320),
        "f_end": (48, 65),
        "pitch_tau": (0.02, 0.04),
        "amp_tau": (0.07, 0.16),
        "click": (0.3, 0.7),
        "drive": (0.1, 0.4),
    },
    "sub": {
        "f_start": (75, 110),
        "f_end": (34, 45),
        "pitch_tau": (0.04, 0.1),
        "amp_tau": (0.25, 0.5),
        "click": (0.0, 0.0),
        "drive": (0.0, 0.0),
    },
    "tight": {
        "f_start": (150, 260),
        "f_end": (50, 70),
        "pitch_tau": (0.01, 0.025),
        "amp_tau": (0.03, 0.06),
        "click": (0.3, 0.8),
        "drive": (0.0, 0.3),
    },
}


def _draw(rng: np.random.Generator, ranges: dict[str, tuple[float, float]]) -> Params:
    return {name: _u(rng, lo, hi) for name, (lo, hi) in ranges.items()}


def _design_kick(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, list(KICK_STYLES))
    p = _draw(rng, KICK_STYLES[style])
    audible = p["amp_tau"] * 4
    decay = _decay_word(audible, 0.3, 1.0)
    quals: list[str] = []
    details: list[str] = [d for d in [decay] if d]
    if p["drive"] > 0.6:
        quals.append("distorted")
    if p["click"] > 0.5:
        details.append("sharp click")
    subject, synonyms, note = {
        "808": ("808 kick", ("808 bass drum", "808"), _hz_midi(p["f_end"])),
        "techno": ("techno kick", ("909 kick", "kick drum"), None),
        "punchy": ("kick", ("kick drum", "bass drum"), None),
        "sub": ("sub kick", ("deep kick drum", "sub bass drum"), None),
        "tight": ("kick drum", ("kick", "bass drum"), None),
    }[style]
    quals += {
        "808": ["deep", "boomy"],
        "techno": ["hard", "punchy"],
        "punchy": ["punchy", "tight"],
        "sub": ["deep", "soft"],
        "tight": ["dry", "tight"],
    }[style]
    desc = Description(subject, tuple(quals), tuple(details), note=note, synonyms=synonyms)
    return Recipe("kick", "kick", p, min(max(0.35, audible * 1.5), 3.0), desc)


def _kick(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _time(n, sr)
    freq = p["f_end"] + (p["f_start"] - p["f_end"]) * np.exp(-t / p["pitch_tau"])
    body = np.sin(2 * np.pi * _phase(freq, n, sr)) * _env(t, 0.001, p["amp_tau"])
    click = _filter(rng.standard_normal(n), "highpass", 1500, sr) * np.exp(-t / 0.004) * p["click"]
    x = body + 0.5 * click
    if p["drive"] > 0:
        k = 1 + 6 * p["drive"]
        x = np.tanh(x * k) / math.tanh(k)
    return _pan(x, 0.0)


def _design_snare(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, ["snare", "808 snare", "snappy snare", "fat snare", "trap snare"])
    p: Params = {
        "tone_hz": _u(rng, 150, 260),
        "tone_tau": _u(rng, 0.03, 0.08),
        "noise_tau": _u(rng, 0.05, 0.2),
        "noise_lo": _u(rng, 900, 2500),
        "noise_hi": _u(rng, 6000, 12000),
        "tone_mix": _u(rng, 0.3, 0.8),
    }
    if style == "808 snare":
        p.update(tone_mix=_u(rng, 0.8, 1.2), tone_tau=_u(rng, 0.06, 0.12), noise_lo=_u(rng, 2500, 4000))
    elif style == "snappy snare":
        p.update(noise_tau=_u(rng, 0.04, 0.08), noise_lo=_u(rng, 2000, 3500))
    elif style == "fat snare":
        p.update(noise_tau=_u(rng, 0.18, 0.3), tone_hz=_u(rng, 140, 190))
    elif style == "trap snare":
        p.update(noise_tau=_u(rng, 0.07, 0.14), noise_lo=_u(rng, 1500, 3000), tone_hz=_u(rng, 190, 260))
    quals = []
    if p["noise_lo"] > 2200:
        quals.append("bright")
    if p["noise_tau"] < 0.08:
        quals.append("tight")
    elif p["noise_tau"] > 0.17:
        quals.append("fat")
    if p["tone_mix"] > 0.7:
        quals.append("tonal")
    details = [d for d in [_decay_word(p["noise_tau"] * 4, 0.3, 0.8)] if d]
    desc = Description(style, tuple(quals), tuple(details), synonyms=("snare drum", "snare hit"))
    return Recipe("snare", "snare", p, max(0.3, min(p["noise_tau"] * 6, 1.8)), desc)


def _snare(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _time(n, sr)
    glide = p["tone_hz"] * (1 + 0.4 * np.exp(-t / 0.01))
    tone = np.sin(2 * np.pi * _phase(glide, n, sr)) + 0.5 * np.sin(2 * np.pi * _phase(glide * 1.6, n, sr))
    tone *= _env(t, 0.0005, p["tone_tau"]) * p["tone_mix"]
    left, right = (
        _filter(rng.standard_normal(n), "bandpass", (p["noise_lo"], p["noise_hi"]), sr)
        * _env(t, 0.0005, p["noise_tau"])
        * 2.5
        for _ in range(2)
    )
    return np.stack([tone + 0.8 * left + 0.2 * right, tone + 0.2 * left + 0.8 * right])


HAT_RATIOS = (1.0, 1.4471, 1.6170, 1.9265, 2.5028, 2.6637)  # the TR-808's six square oscillators


def _design_hat(rng: np.random.Generator) -> Recipe:
    kind = _choice(rng, ["closed", "closed", "open", "pedal"])
    tau = _u(rng, *{"closed": (0.01, 0.03), "open": (0.12, 0.4), "pedal": (0.015, 0.03)}[kind])
    p: Params = {
        "base_hz": _u(rng, 280, 560),
        "noise_mix": _u(rng, 0.2, 0.7),
        "hp_hz": _u(rng, 5500, 9000) if kind != "pedal" else _u(rng, 3500, 5500),
        "tau": tau,
        "pan": _u(rng, -0.3, 0.3),
    }
    quals = ["crisp" if p["hp_hz"] > 7000 else "dark"]
    if p["noise_mix"] < 0.4:
        quals.append("metallic")
    details = ["long sizzle"] if kind == "open" and tau > 0.25 else []
    style = "808" if p["noise_mix"] < 0.35 and rng.random() < 0.5 else None
    desc = Description(
        f"{kind} hi-hat", tuple(quals), tuple(details), style=style, synonyms=(f"{kind} hihat", f"{kind} hat")
    )
    return Recipe("hat", "hi-hat", p, max(0.25, min(tau * 7, 2.5)), desc)


def _hat(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _time(n, sr)
    metal = sum(np.sign(np.sin(2 * np.pi * (p["base_hz"] * r * t + rng.random()))) for r in HAT_RATIOS)
    x = metal / len(HAT_RATIOS) * (1 - p["noise_mix"]) + rng.standard_normal(n) * p["noise_mix"]
    x = _filter(x, "highpass", p["hp_hz"], sr, order=4) * _env(t, 0.0005, p["tau"])
    return _pan(x, p["pan"])


def _design_clap(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, ["808 clap", "hand clap", "layered clap"])
    p: Params = {
        "bursts": int(rng.integers(3, 6)),
        "spacing": _u(rng, 0.006, 0.014),
        "tail_tau": _u(rng, 0.05, 0.22),
        "centre_hz": _u(rng, 900, 1900),
        "width": _u(rng, 0.0, 0.8),
    }
    quals = ["wide"] if p["width"] > 0.5 else []
    quals.append("roomy" if p["tail_tau"] > 0.15 else "tight")
    desc = Description(style, tuple(quals), synonyms=("clap", "handclap"))
    return Recipe("clap", "clap", p, max(0.3, min(p["tail_tau"] * 6 + 0.05, 1.6)), desc)


def _clap(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _time(n, sr)
    env = np.zeros(n)
    for i in range(p["bursts"]):
        start = i * p["spacing"] * (1 + 0.2 * rng.standard_normal())
        env += np.where(t >= start, np.exp(-np.maximum(t - start, 0) / 0.003), 0.0)
    last = (p["bursts"] - 1) * p["spacing"]
    env += np.where(t >= last, 0.6 * np.exp(-np.maximum(t - last, 0) / p["tail_tau"]), 0.0)
    band = (p["centre_hz"] / 1.7, p["centre_hz"] * 2.0)
    mid = _filter(rng.standard_normal(n), "bandpass", band, sr)
    side = _filter(rng.standard_normal(n), "bandpass", band, sr) * p["width"]
    return np.stack([(mid + side) * env, (mid - side) * env])


def _design_cymbal(rng: np.random.Generator) -> Recipe:
    kind = _choice(rng, ["crash", "crash", "ride", "splash", "china"])
    tau = _u(rng, *{"crash": (0.6, 1.4), "ride": (0.5, 1.0), "splash": (0.2, 0.4), "china": (0.5, 1.1)}[kind])
    p: Params = {
        "kind": kind,
        "tau": tau,
        "low_hz": _u(rng, 300, 700),
        "bright": _u(rng, 0.3, 1.0),
        "bell_hz": _u(rng, 500, 900),
    }
    quals = ["bright" if p["bright"] > 0.65 else "warm"]
    details = [d for d in [_decay_word(tau * 4, 1.2, 3.0)] if d]
    subject = {
        "crash": "crash cymbal",
        "ride": "ride cymbal",
        "splash": "splash cymbal",
        "china": "china cymbal",
    }[kind]
    if kind == "ride":
        details.append("stick ping")
    desc = Description(subject, tuple(quals), tuple(details), synonyms=(kind, "cymbal"))
    return Recipe("cymbal", "cymbal", p, max(1.0, min(tau * 5, 6.0)), desc)


def _cymbal(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _time(n, sr)
    partials = np.zeros(n)
    for f in np.geomspace(p["low_hz"], min(12000, sr * 0.45), 24) * rng.uniform(0.9, 1.1, 24):
        tau_k = p["tau"] * rng.uniform(0.5, 1.3) * (1.5 - 0.5 * p["bright"])
        partials += (
            np.sin(2 * np.pi * (f * t + rng.random())) * np.exp(-t / tau_k) / math.sqrt(f / p["low_hz"])
        )
    chans = []
    for _ in range(2):
        noise = _filter(rng.standard_normal(n), "highpass", 3000 + 3000 * p["bright"], sr)
        x = 0.3 * partials / 24 + noise * _env(t, 0.002, p["tau"] * 0.8)
        if p["kind"] == "ride":
            x = 0.5 * x + np.sin(2 * np.pi * p["bell_hz"] * t) * _env(t, 0.001, p["tau"]) * 0.4
        if p["kind"] == "china":
            x = np.tanh(3 * x)
        chans.append(x)
    return np.stack(chans)


# ---------------------------------------------------------------- tonal


def _design_bass(rng: np.random.Generator) -> Recipe:
    wave = _choice(rng, ["sub", "saw", "square", "acid", "fm", "reese"])
    p: Params = {
        "wave": wave,
        "cut_hi": _log_u(rng, 400, 3000),
        "cut_lo": _log_u(rng, 120, 400),
        "filter_tau": _u(rng, 0.05, 0.4),
        "release": _u(rng, 0.03, 0.2),
        "drive": _u(rng, 0.0, 0.6),
    }
    name = {
        "sub": "sub bass",
        "saw": "saw bass",
        "square": "square bass",
        "acid": "acid bass",
        "fm": "FM bass",
        "reese": "reese bass",
    }[wave]
    quals = ["deep"] if wave == "sub" or p["cut_hi"] < 800 else ["bright"] if p["cut_hi"] > 1800 else []
    if p["filter_tau"] < 0.1 and wave != "sub":
        quals.append("plucky")
    if p["drive"] > 0.4:
        quals.append("gritty")
    if rng.random() < 0.45:
        note = int(rng.integers(28, 44))
        dur = _u(rng, 0.4, 2.5)
        p.update(notes=[(0.0, note, dur)])
        details = ["long sustain"] if dur > 1.5 else ["short note"] if dur < 0.6 else []
        desc = Description(
            name,
            tuple(quals),
            tuple(details),
            note=note,
            synonyms=(f"{wave} bass note" if wave != "fm" else "FM bass note", "bass"),
        )
        return Recipe("bass", "bass", p, dur + p["release"] * 5 + 0.05, desc)
    bpm = _u(rng, 88, 140)
    root = int(rng.integers(0, 12))
    mode = _choice(rng, ["minor", "minor", "major", "dorian"])
    step = 60 / bpm / 4
    bars = 2 if 32 * step < 8 else 1
    notes = []
    for i in range(16 * bars):
        beat_weight = 0.9 if i % 4 == 0 else 0.35 if i % 2 == 0 else 0.25
        if rng.random() < beat_weight:
            # mostly the root, sometimes the octave or another scale step (index into the scale)
            degree = _choice(rng, ["octave", 0, 0, 0, 0, 4, 2, 5, 6])
            offset = 12 if degree == "octave" else SCALES[mode][degree]
            notes.append((i * step, 28 + root + offset, step * _u(rng, 0.4, 0.95)))
    if not notes:
        notes = [(0.0, 28 + root, step * 2)]
    p.update(notes=notes)
    desc = Description(
        f"{name} line",
        tuple(quals),
        harmony=f"in {{root}} {mode}",
        root=root,
        bpm=bpm,
        synonyms=(f"{name} riff", "bassline"),
    )
    return Recipe("bass", "bass", p, 16 * bars * step + p["release"] * 5, desc)


def _bass_voice(p: Params, freq: float, dur: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = _frames(dur + p["release"] * 5, sr)
    t = _time(n, sr)
    gate = np.where(t < dur, 1.0, np.exp(-(t - dur) / p["release"]))
    amp = np.minimum(t / 0.004, 1.0) * gate
    wave = p["wave"]
    if wave == "sub":
        return np.sin(2 * np.pi * freq * t) * amp
    if wave == "fm":
        index = 1 + 4 * np.exp(-t / p["filter_tau"])
        return np.sin(2 * np.pi * freq * t + index * np.sin(2 * np.pi * freq * t)) * amp
    if wave == "reese":
        x = _saw(freq * 1.006, n, sr) + _saw(freq / 1.006, n, sr, 0.3)
    elif wave == "square":
        x = _square(freq, n, sr)
    else:
        x = _saw(freq, n, sr)
    dark = _filter(x, "lowpass", p["cut_lo"], sr)
    bright = _filter(x, "lowpass", p["cut_hi"], sr)
    sweep = np.exp(-t / p["filter_tau"])
    y = dark + (bright - dark) * sweep  # crossfading two filters sounds like a filter envelope
    if wave == "acid":
        y += 1.5 * _filter(x, "bandpass", (p["cut_hi"] / 1.15, p["cut_hi"] * 1.15), sr) * sweep
    y += 0.5 * np.sin(2 * np.pi * freq * t)  # keep the fundamental under the filter
    if p["drive"] > 0:
        y = np.tanh(y * (1 + 3 * p["drive"]))
    return y * amp


def _bass(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    for start, note, dur in p["notes"]:
        _place(out, _bass_voice(p, note_frequency(note), dur, sr, rng), round(start * sr))
    return _pan(out, 0.0)


PAD_CUTOFFS = {
    "warm analog": (700, 1500),
    "lush detuned": (1200, 2500),
    "dark ambient": (350, 800),
    "bright supersaw": (2500, 5000),
    "soft": (500, 1000),
}


def _design_pad(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, ["warm analog", "lush detuned", "dark ambient", "bright supersaw", "soft"])
    chord = _choice(rng, list(CHORDS))
    root_note = int(rng.integers(45, 60))
    p: Params = {
        "notes": [root_note + i for i in CHORDS[chord]],
        "voices": int(rng.integers(3, 6)),
        "detune_cents": _u(rng, 4, 18),
        "cutoff": _u(rng, *PAD_CUTOFFS[style]),
        "attack": _u(rng, 0.2, 1.8),
        "release": _u(rng, 0.4, 1.5),
        "lfo_hz": _u(rng, 0.08, 0.5) if rng.random() < 0.5 else 0.0,
        "wave": "square" if style == "soft" and rng.random() < 0.5 else "saw",
    }
    seconds = _u(rng, 3.0, 8.0)
    p["hold"] = seconds - p["release"] * 1.5
    details = ["slow attack"] if p["attack"] > 1.0 else []
    if p["lfo_hz"]:
        details.append("slowly evolving filter")
    desc = Description(
        "pad",
        (style,),
        tuple(details),
        harmony=f"{{root}} {chord}",
        root=root_note % 12,
        synonyms=("synth pad", "pad chord"),
    )
    return Recipe("pad", "pad", p, seconds, desc)


def _pad(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _time(n, sr)
    out = np.zeros((2, n))
    osc = _square if p["wave"] == "square" else _saw
    k = 0
    for note in p["notes"]:
        for v in range(p["voices"]):
            spread = (v / max(p["voices"] - 1, 1) - 0.5) * 2
            freq = note_frequency(note) * 2 ** (spread * p["detune_cents"] / 1200)
            _place(out, _pan(osc(freq, n, sr, rng.random()), 0.7 * spread * (-1) ** k), 0)
            k += 1
    bright = _filter(out, "lowpass", p["cutoff"], sr)
    if p["lfo_hz"]:
        dark = _filter(out, "lowpass", p["cutoff"] / 3, sr)
        mix = 0.5 + 0.5 * np.sin(2 * np.pi * p["lfo_hz"] * t - math.pi / 2)
        bright = dark + (bright - dark) * mix
    gate = np.where(t < p["hold"], 1.0, np.exp(-(t - p["hold"]) / (p["release"] / 3)))
    return bright * np.minimum(t / p["attack"], 1.0) * gate


def _design_bell(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, ["FM bell", "glass bell", "tubular bell", "chime", "soft bell"])
    note = int(rng.integers(*{"tubular bell": (55, 72), "chime": (84, 97)}.get(style, (67, 91))))
    p: Params = {
        "note": note,
        "ratio": {"FM bell": 3.5, "glass bell": 1.41, "tubular bell": 2.76, "chime": 5.0, "soft bell": 2.0}[
            style
        ],
        "index": _u(rng, 1.5, 5.0) if style != "soft bell" else _u(rng, 0.6, 1.5),
        "index_tau": _u(rng, 0.2, 1.2),
        "tau": _u(rng, 0.4, 2.0) if style != "chime" else _u(rng, 0.2, 0.6),
        "shimmer_hz": _u(rng, 0.3, 2.5),
    }
    details = [d for d in [_decay_word(p["tau"] * 4, 1.2, 4.5)] if d]
    quals = ["bright" if p["index"] > 3 else "mellow"]
    if style == "glass bell":
        quals.insert(0, "glassy")
    desc = Description(style, tuple(quals), tuple(details), note=note, synonyms=("bell", "bell tone"))
    return Recipe("bell", "bell", p, max(1.0, min(p["tau"] * 5, 8.0)), desc)


def _bell(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _time(n, sr)
    fc = note_frequency(p["note"])
    index = p["index"] * np.exp(-t / p["index_tau"])
    amp = _env(t, 0.001, p["tau"])
    chans = []
    for detune in (0.0, p["shimmer_hz"]):  # slightly detuned right channel: slow beating shimmer
        f = fc + detune
        chans.append(np.sin(2 * np.pi * f * t + index * np.sin(2 * np.pi * f * p["ratio"] * t)) * amp)
    return np.stack(chans)


def _design_pluck(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, ["plucked string", "pluck synth", "pluck arpeggio"])
    p: Params = {
        "decay": _u(rng, 0.99, 0.9985),
        "brightness": _u(rng, 0.2, 1.0),
        "style": style,
        "cutoff": _log_u(rng, 1200, 5000),
        "tau": _u(rng, 0.08, 0.3),
    }
    quals = ["bright" if p["brightness"] > 0.6 else "soft"]
    if style != "pluck arpeggio":
        note = int(rng.integers(48, 84))
        p["notes"] = [(0.0, note)]
        seconds = _u(rng, 0.8, 2.5)
        desc = Description(style, tuple(quals), note=note, synonyms=("pluck", "plucked note"))
        return Recipe("pluck", "pluck", p, seconds, desc)
    bpm = _u(rng, 90, 150)
    root = int(rng.integers(0, 12))
    chord = _choice(rng, ["major chord", "minor chord", "minor seventh chord", "major seventh chord"])
    base = 55 + root
    pitches = [base + i for i in CHORDS[chord]] + [base + 12]
    pattern = _choice(rng, ["up", "down", "up and down"])
    order = pitches if pattern == "up" else pitches[::-1] if pattern == "down" else pitches + pitches[-2:0:-1]
    step = 60 / bpm / 4
    count = 16 if 16 * step < 6 else 8
    p["notes"] = [(i * step, order[i % len(order)]) for i in range(count)]
    arp = chord.replace(" chord", " arpeggio")
    desc = Description(
        "pluck",
        tuple(quals),
        (f"{pattern} pattern",),
        harmony=f"{{root}} {arp}",
        root=root,
        bpm=bpm,
        synonyms=("plucked arpeggio", "pluck synth arpeggio"),
    )
    return Recipe("pluck", "pluck", p, count * step + 1.0, desc)


def _karplus_strong(
    freq: float, n: int, sr: int, decay: float, brightness: float, rng: np.random.Generator
) -> np.ndarray:
    """A plucked string: a noise burst circulating in a delay line with a lowpass in the loop."""
    period = max(2, round(sr / freq - 0.5))
    burst = rng.uniform(-1, 1, period)
    if brightness < 0.99:
        burst = _filter(burst, "lowpass", 500 + 8000 * brightness, sr, order=1)
    excitation = np.zeros(n)
    excitation[: min(period, n)] = burst[: min(period, n)]
    a = np.zeros(period + 2)
    a[0], a[period], a[period + 1] = 1.0, -decay / 2, -decay / 2
    return lfilter([1.0], a, excitation)


def _pluck(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    for start, note in p["notes"]:
        length = n - round(start * sr)
        if p["style"] == "pluck synth":
            t = _time(length, sr)
            x = _saw(note_frequency(note), length, sr)
            voice = _filter(x, "lowpass", p["cutoff"], sr) * _env(t, 0.002, p["tau"])
        else:
            voice = _karplus_strong(note_frequency(note), length, sr, p["decay"], p["brightness"], rng)
        _place(out, voice, round(start * sr))
    return _pan(out, _u(rng, -0.2, 0.2))


# ---------------------------------------------------------------- effects


def _design_riser(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, ["white noise riser", "synth riser", "tension riser", "uplifter"])
    seconds = _u(rng, 2.0, 8.0)
    p: Params = {
        "f0": _u(rng, 120, 400),
        "f1": _u(rng, 2000, 7000),
        "tone_mix": 0.0 if style == "white noise riser" else _u(rng, 0.3, 0.8),
        "curve": _u(rng, 1.5, 3.5),
        "cut": bool(rng.random() < 0.5),
    }
    details = [f"{round(seconds)} second build", "rising pitch" if p["tone_mix"] else "rising noise"]
    if p["cut"]:
        details.append("stops abruptly")
    quals = ["building"] if style != "tension riser" else ["dark", "building"]
    desc = Description(style, tuple(quals), tuple(details), synonyms=("riser", "build-up sweep"))
    return Recipe("riser", "riser", p, seconds, desc)


def _sweep(p: Params, n: int, sr: int, rng: np.random.Generator, upward: bool) -> np.ndarray:
    t = _time(n, sr)
    pos = t / t[-1] if n > 1 else t
    if not upward:
        pos = 1.0 - pos
    centre = p["f0"] * (p["f1"] / p["f0"]) ** pos
    level = pos ** p["curve"] if upward else (1 - (1 - pos) ** 0.5) * np.exp(-(1 - pos) * 2)
    chans = []
    for side in (0, 1):
        noise = _sweep_bank(rng.standard_normal(n), centre, p["f0"], p["f1"], sr)
        tone = _saw(centre / 4, n, sr, 0.25 * side) if p["tone_mix"] else 0.0
        chans.append((noise * (1 - p["tone_mix"]) * 3 + tone * p["tone_mix"] * 0.5) * level)
    x = np.stack(chans)
    if p.get("cut"):
        x[:, -round(0.01 * sr) :] *= np.linspace(1, 0, round(0.01 * sr))
    return x


def _riser(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    return _sweep(p, n, sr, rng, upward=True)


IMPACTS = {  # style: how it is made
    "cinematic impact": "boom",
    "trailer hit": "boom",
    "boom impact": "boom",
    "metallic impact": "boom",
    "punch": "punch",
    "body hit": "punch",
    "wooden impact": "wood",
    "door slam": "wood",
    "sub drop": "drop",
}


def _design_impact(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, list(IMPACTS))
    kind = IMPACTS[style]
    p: Params = {
        "kind": kind,
        "boom_hz": _u(rng, 38, 70) if kind != "punch" else _u(rng, 70, 140),
        "boom_tau": _u(rng, 0.25, 0.9) if kind == "boom" else _u(rng, 0.03, 0.12),
        "crack_tau": _u(rng, 0.01, 0.05),
        "crack_hz": _u(rng, 1500, 5000) if kind != "punch" else _u(rng, 800, 2500),
        "metal": style == "metallic impact",
        "tail_tau": _u(rng, 0.3, 1.2) if kind != "punch" else _u(rng, 0.02, 0.08),
        "modes": sorted(_u(rng, 120, 900) for _ in range(4)),  # a wooden board's resonances
        "rattle": _u(rng, 0.0, 0.6) if style == "door slam" else 0.0,
        "drop_s": _u(rng, 0.8, 2.5),
    }
    if kind == "drop":
        seconds = p["drop_s"] + 0.5
        details = ["falling pitch", "deep boom"]
    elif kind == "boom":
        seconds = max(1.2, min(p["boom_tau"] * 5 + p["tail_tau"], 5.0))
        details = ["deep boom"] + ([d for d in [_decay_word(seconds, 1.0, 3.0)] if d])
    else:
        seconds = max(0.5, p["boom_tau"] * 5 + p["tail_tau"] * (3 if kind == "wood" else 1))
        details = {"punch": ["short thud"], "wood": ["hollow knock"]}[kind]
    if p["rattle"] > 0.3:
        details.append("rattling frame")
    quals = {"boom": ["huge", "heavy", "punchy"], "punch": ["hard", "dull", "punchy"],
             "wood": ["heavy", "dull"], "drop": ["huge", "deep"]}[kind]  # fmt: skip
    desc = Description(style, (_choice(rng, quals),), tuple(details), synonyms=("impact", "hit"))
    return Recipe("impact", "impact", p, seconds, desc)


def _impact(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _time(n, sr)
    kind = p["kind"]
    if kind == "drop":  # a sine falling an octave and more, the classic trailer sub drop
        freq = p["boom_hz"] * (2.5 - 1.5 * np.minimum(t / p["drop_s"], 1.0))
        drop = np.sin(2 * np.pi * _phase(freq, n, sr)) * _env(t, 0.005, p["drop_s"] / 2)
        return _pan(np.tanh(1.5 * drop), 0.0)
    freq = p["boom_hz"] * (1 + 1.5 * np.exp(-t / 0.05))
    boom = np.sin(2 * np.pi * _phase(freq, n, sr)) * _env(t, 0.002, p["boom_tau"])
    chans = []
    for _ in range(2):
        crack = _filter(rng.standard_normal(n), "bandpass", (p["crack_hz"] / 2, p["crack_hz"] * 2), sr)
        tail = _filter(rng.standard_normal(n), "lowpass", 900, sr) * _env(t, 0.01, p["tail_tau"]) * 0.6
        x = boom + crack * _env(t, 0.0005, p["crack_tau"]) * 0.8 + tail
        if p["metal"]:
            ring = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(400, 3000, 5))
            x += ring * _env(t, 0.001, p["tail_tau"]) * 0.15
        if kind == "wood":
            x += sum(np.sin(2 * np.pi * f * t) for f in p["modes"]) * _env(t, 0.001, 0.06) * 0.5
        if p["rattle"]:
            buzz = _filter(rng.standard_normal(n), "bandpass", (1500, 5000), sr)
            x += buzz * (np.sin(2 * np.pi * 30 * t) > 0.6) * _env(t, 0.05, 0.15) * p["rattle"]
        chans.append(x)
    return np.stack(chans)


EXPLOSIONS = ("explosion", "distant explosion", "big explosion", "blast", "grenade explosion",
              "underwater explosion", "firework burst", "cannon blast")  # fmt: skip


def _design_explosion(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, EXPLOSIONS)
    muffled = style in ("distant explosion", "underwater explosion")
    short = style in ("grenade explosion", "firework burst")
    seconds = _u(rng, 1.5, 4.0) if short else _u(rng, 2.5, 7.0)
    p: Params = {
        "cutoff": _u(rng, 150, 450) if muffled else _u(rng, 700, 2000),
        "attack": _u(rng, 0.03, 0.1) if muffled else _u(rng, 0.003, 0.02),
        "tau": _u(rng, 0.15, 0.5) if short else _u(rng, 0.5, min(1.8, seconds / 3)),
        "rumble": _u(rng, 0.3, 0.8),
        "debris": 0.0 if muffled or style == "firework burst" else _u(rng, 0.0, 1.0),
        "thump_hz": _u(rng, 32, 55),
        "bubbles": int(rng.integers(6, 20)) if style == "underwater explosion" else 0,
        "crackle": _u(rng, 0.4, 1.0) if style == "firework burst" else 0.0,
        "echo": _u(rng, 0.25, 0.7) if style == "cannon blast" or rng.random() < 0.15 else 0.0,
    }
    details = ["long rumble"] if p["tau"] > 1.0 else ["short rumble"]
    if p["debris"] > 0.4:
        details.append("falling debris")
    details += ["bubbling"] * bool(p["bubbles"]) + ["crackling sparks"] * bool(p["crackle"])
    details += ["echoing"] * bool(p["echo"])
    quals = ["muffled"] if muffled else [_choice(rng, ["huge", "loud", "powerful"])]
    desc = Description(style, tuple(quals), tuple(details), synonyms=("explosion", "blast", "detonation"))
    return Recipe("explosion", "explosion", p, seconds, desc)


def _explosion(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = _time(n, sr)
    env = _env(t, p["attack"], p["tau"]) * (1 + p["rumble"] * _slow_noise(n, sr, 6.0, rng))
    thump = np.sin(2 * np.pi * _phase(p["thump_hz"] * (1 + np.exp(-t / 0.08)), n, sr))
    thump *= _env(t, p["attack"], 0.35)
    chans = []
    for _ in range(2):
        body = _filter(rng.standard_normal(n), "lowpass", p["cutoff"], sr, order=4) * env * 4
        crack = _filter(rng.standard_normal(n), "lowpass", 6000, sr) * _env(t, p["attack"], 0.04)
        x = body + thump + crack * (0.0 if p["cutoff"] < 500 else 0.5)
        if p["debris"]:
            clicks = np.zeros(n)
            count = int(40 * p["debris"] * t[-1])
            where = (rng.exponential(t[-1] / 3, count) * sr).astype(int)
            where = where[where < n]
            clicks[where] = rng.uniform(-1, 1, len(where)) * np.exp(-where / sr / p["tau"])
            x += _filter(clicks, "bandpass", (1500, 6000), sr) * 2 * p["debris"]
        if p["crackle"]:  # sparks: dense tiny pops thinning out over a second or two
            pops = np.zeros(n)
            where = (rng.exponential(0.6, int(300 * p["crackle"])) * sr).astype(int) + round(0.05 * sr)
            where = where[where < n]
            pops[where] = rng.uniform(-1, 1, len(where))
            x += _filter(pops, "bandpass", (800, 4000), sr) * p["crackle"] * 0.6
        for _ in range(p["bubbles"]):  # gas bubbles rising: low sines gliding up
            start, length = _u(rng, 0.1, t[-1] / 2), _u(rng, 0.05, 0.2)
            m = _frames(length, sr)
            tb = _time(m, sr)
            glide = _u(rng, 60, 250) * (1 + 2 * tb / length)
            _place(x, np.sin(2 * np.pi * _phase(glide, m, sr)) * _env(tb, 0.005, length / 3) * 0.5,
                   round(start * sr))  # fmt: skip
        chans.append(x)
    out = np.stack(chans)
    if p["echo"]:  # an outdoor slap-back: the blast returns off distant walls, duller each time
        for k in (1, 2, 3):
            echo = _filter(out, "lowpass", 1500 / k, sr) * 0.45**k
            out[:, round(k * p["echo"] * sr) :] += echo[:, : n - round(k * p["echo"] * sr)]
    return out


SURFACES = ("gravel", "wood", "concrete", "grass", "snow", "metal", "dirt")


def _design_footsteps(rng: np.random.Generator) -> Recipe:
    surface = _choice(rng, SURFACES)
    pace = _choice(rng, ["slow walk", "walking", "brisk walk", "running"])
    rate = _u(
        rng,
        *{"slow walk": (1.3, 1.7), "walking": (1.7, 2.1), "brisk walk": (2.1, 2.5), "running": (2.8, 3.6)}[
            pace
        ],
    )
    steps = int(rng.integers(3, 10))
    passing = bool(rng.random() < 0.3)
    p: Params = {
        "surface": surface,
        "rate": rate,
        "steps": steps,
        "passing": passing,
        "heavy": _u(rng, 0.5, 1.0),
    }
    floor = {"wood": "a wooden floor", "metal": "a metal grating", "concrete": "concrete"}.get(
        surface, surface
    )
    details = [pace] + (["passing left to right"] if passing else [])
    verb = "running" if pace == "running" else "walking"
    desc = Description(
        f"footsteps on {floor}",
        ("heavy",) if p["heavy"] > 0.85 else (),
        tuple(details),
        synonyms=(f"{verb} on {floor}", f"steps on {floor}"),
    )
    return Recipe("footsteps", "footsteps", p, min(steps / rate + 0.6, 8.0), desc)


def _grains(
    n: int, sr: int, count: int, spread: float, band: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """Many tiny crunches in a short window: gravel, snow, dry leaves."""
    out = np.zeros(n)
    grain = _frames(0.0015, sr)
    for start in rng.gamma(2.0, spread / 4, count):
        i = round(start * sr)
        if i + grain < n:
            out[i : i + grain] += rng.standard_normal(grain) * rng.uniform(0.2, 1.0) * np.hanning(grain)
    return _filter(out, "bandpass", band, sr)


def _step(surface: str, sr: int, level: float, rng: np.random.Generator) -> np.ndarray:
    n = _frames(0.25, sr)
    t = _time(n, sr)
    noise = rng.standard_normal(n)
    thud = _filter(noise, "lowpass", 500, sr) * _env(t, 0.002, 0.015) * 2
    if surface == "concrete":
        x = _filter(noise, "bandpass", (300, 5000), sr) * _env(t, 0.001, 0.012) + 0.5 * thud
    elif surface == "wood":
        ring = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(120, 420, 3)) * _env(t, 0.001, 0.05)
        x = _filter(noise, "bandpass", (100, 2500), sr) * _env(t, 0.001, 0.015) + 0.4 * ring + thud
    elif surface == "gravel":
        x = _grains(n, sr, int(rng.integers(25, 50)), 0.1, (1000, 9000), rng) * 1.5 + thud
    elif surface == "snow":
        x = _grains(n, sr, int(rng.integers(40, 80)), 0.15, (400, 3500), rng) + 0.7 * thud
    elif surface == "grass":
        x = _filter(noise, "bandpass", (1500, 7000), sr) * _env(t, 0.02, 0.05) * 0.6 + 0.3 * thud
    elif surface == "metal":
        ring = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(700, 3000, 4)) * _env(t, 0.001, 0.12)
        x = _filter(noise, "bandpass", (500, 5000), sr) * _env(t, 0.001, 0.01) + 0.25 * ring + thud
    else:  # dirt
        x = thud * 1.5 + _grains(n, sr, int(rng.integers(5, 15)), 0.06, (500, 3000), rng)
    return x * level


def _footsteps(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros((2, n))
    interval = 1.0 / p["rate"]
    toe_delay = interval * _u(rng, 0.08, 0.14)
    for i in range(p["steps"]):
        start = 0.05 + i * interval * (1 + 0.03 * rng.standard_normal())
        level = p["heavy"] * 10 ** (rng.normal(0, 2) / 20) * (0.8 if i % 2 else 1.0)
        pan = (-0.6 + 1.2 * i / max(p["steps"] - 1, 1)) if p["passing"] else 0.15 * (-1) ** i
        heel = _step(p["surface"], sr, level, rng)
        toe = _filter(
            _step(p["surface"], sr, level * 0.5, rng), "highpass", 300, sr
        )  # toe: lighter, brighter
        _place(out, _pan(heel, pan), round(start * sr))
        _place(out, _pan(toe, pan), round((start + toe_delay) * sr))
    return out


RAIN = {  # drops per second and the level of the hiss bed under them
    "drizzling": ((8, 25), 0.02),
    "light": ((25, 80), 0.04),
    "steady": ((120, 350), 0.12),
    "heavy": ((450, 1200), 0.35),
    "pouring": ((1200, 2500), 0.6),
}
RAIN_SURFACES = (None, None, "a tin roof", "a window", "leaves", "an umbrella", "a tent", "a car roof",
                 "puddles")  # fmt: skip


def _design_rain(rng: np.random.Generator) -> Recipe:
    intensity = _choice(rng, list(RAIN))
    surface = _choice(rng, RAIN_SURFACES)
    density, bed = RAIN[intensity]
    p: Params = {
        "density": _u(rng, *density),
        "bed": bed * _u(rng, 0.7, 1.3),
        "surface": surface,
        "thunder": _choice(rng, [None, None, None, None, "distant", "close"]),
        "bed_cut": _u(rng, 3000, 9000),
        "drips": _u(rng, 0.7, 2.5) if rng.random() < 0.2 else 0.0,
        "wind": _u(rng, 0.3, 1.0) if rng.random() < 0.2 else 0.0,
        "indoors": _u(rng, 700, 1600) if surface in (None, "a window") and rng.random() < 0.25 else 0.0,
    }
    details = {"distant": ["distant thunder"], "close": ["thunder overhead"], None: []}[p["thunder"]]
    details += ["dripping gutter"] * bool(p["drips"]) + ["windy"] * bool(p["wind"])
    details += ["heard from indoors"] * bool(p["indoors"])
    where = f" on {surface}" if surface else ""
    storm = p["thunder"] == "close" and intensity in ("heavy", "pouring")
    subject = "thunderstorm rain" if storm else "rain"
    quals = (intensity, "muffled") if p["indoors"] else (intensity,)
    desc = Description(
        f"{subject}{where}", quals, tuple(details), synonyms=(f"rainfall{where}", "rain ambience")
    )
    return Recipe("rain", "rain", p, _u(rng, 4.0, 10.0), desc)


def _droplet(sr: int, surface: str | None, rng: np.random.Generator) -> np.ndarray:
    fabric = surface in ("an umbrella", "a tent")
    length = _u(rng, 0.02, 0.05) if fabric or surface == "puddles" else _u(rng, 0.004, 0.02)
    n = _frames(length, sr)
    t = _time(n, sr)
    if surface == "leaves":
        return _filter(rng.standard_normal(n), "bandpass", (2000, 8000), sr) * _env(t, 0.0005, length / 4)
    if fabric:  # a taut membrane: a dull thump at its own low resonance
        thump = np.sin(2 * np.pi * _u(rng, 180, 500) * t) * _env(t, 0.0005, length / 4)
        return thump + _filter(rng.standard_normal(n), "bandpass", (300, 2500), sr) * _env(t, 0.0003, 0.002)
    f0 = _u(rng, 500, 1400) if surface == "puddles" else _u(rng, 1500, 5000)
    chirp = f0 * (1 + _u(rng, 0.1, 0.6) * t / length)  # a falling drop's bubble rings upward in pitch
    x = np.sin(2 * np.pi * _phase(chirp, n, sr)) * _env(t, 0.0003, length / 3)
    if surface in ("a tin roof", "a car roof"):
        band = (2000, 5000) if surface == "a tin roof" else (700, 2200)
        ring = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(*band, 3))
        x += ring * _env(t, 0.0003, length * (1.0 if surface == "a tin roof" else 0.5)) * 0.3
    elif surface == "a window":
        x = _filter(x + 0.3 * rng.standard_normal(n) * _env(t, 0.0002, 0.001), "highpass", 1500, sr)
    return x


def _rain(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    seconds = n / sr
    t = _time(n, sr)
    out = np.zeros((2, n))
    count = max(6, int(p["density"] * seconds))
    for _ in range(6):  # six droplet shapes, each convolved with its own random impulse train
        shape = _droplet(sr, p["surface"], rng)
        hits = rng.integers(0, n, count // 6)
        amps = rng.lognormal(-1.0, 0.8, len(hits))
        angles = rng.uniform(0, math.pi / 2, len(hits))
        for ch, gains in enumerate((np.cos(angles), np.sin(angles))):
            train = np.zeros(n)
            np.add.at(train, hits, amps * gains)
            out[ch] += fftconvolve(train, shape)[:n]
    swell = 1 + 0.2 * _slow_noise(n, sr, 0.3, rng)
    for ch in range(2):
        bed = _filter(rng.standard_normal(n), "bandpass", (300, p["bed_cut"]), sr)
        out[ch] += bed * p["bed"] * swell * 4
    if p["drips"]:  # a gutter: big single drops at a steady, slightly uneven pace
        drop = _droplet(sr, "puddles", rng) * 3
        pan = _u(rng, -0.7, 0.7)
        for at in np.arange(_u(rng, 0, 0.5), seconds, 1 / p["drips"]):
            _place(out, _pan(drop, pan), round((at + _u(rng, -0.05, 0.05)) * sr))
    if p["wind"]:
        for ch in range(2):
            gust = (0.6 + 0.4 * _slow_noise(n, sr, 0.4, rng)) ** 2
            out[ch] += _filter(rng.standard_normal(n), "bandpass", (200, 900), sr) * gust * p["wind"] * 1.5
    if p["thunder"]:
        start = _u(rng, 0.0, seconds / 2)
        rumble = _filter(rng.standard_normal(n), "lowpass", 120, sr, order=4)
        late = np.maximum(t - start, 0)
        out += rumble * _env(late, 0.6, 1.2) * (t >= start) * 6
        if p["thunder"] == "close":  # overhead lightning cracks before the rumble rolls in
            crack = _filter(rng.standard_normal((2, n)), "bandpass", (400, 5000), sr)
            out += crack * _env(late, 0.003, 0.15) * (t >= start) * 4
    if p["indoors"]:  # walls and glass let only the low end through
        out = _filter(out, "lowpass", p["indoors"], sr, order=4)
    return out


def _design_wind(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, ["howling", "gusty", "gentle", "cold"])
    p: Params = {
        "centres": sorted(_log_u(rng, 150, 1500) for _ in range(4)),
        "width": 1.05 if style == "howling" else _u(rng, 1.3, 2.0),
        "gust_hz": _u(rng, 0.15, 0.5) if style != "gusty" else _u(rng, 0.6, 1.5),
        "rumble": _u(rng, 0.0, 0.5),
    }
    subject, synonyms = {
        "howling": ("howling wind", ("wind howling", "whistling wind")),
        "gusty": ("gusty wind", ("wind gusts", "strong wind")),
        "gentle": ("gentle breeze", ("soft wind", "light breeze")),
        "cold": ("cold wind", ("arctic wind", "winter wind")),
    }[style]
    details = ["low rumble"] if p["rumble"] > 0.3 else []
    desc = Description(subject, (), tuple(details), synonyms=synonyms)
    return Recipe("wind", "wind", p, _u(rng, 4.0, 10.0), desc)


def _wind(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    chans = []
    for _ in range(2):
        x = np.zeros(n)
        for centre in p["centres"]:
            band = _filter(rng.standard_normal(n), "bandpass", (centre / p["width"], centre * p["width"]), sr)
            gust = (0.6 + 0.4 * _slow_noise(n, sr, p["gust_hz"], rng)) ** 2
            x += band * gust * (3.0 if p["width"] < 1.1 else 1.0)
        x += _filter(rng.standard_normal(n), "lowpass", 100, sr) * p["rumble"] * 2
        chans.append(x)
    return np.stack(chans)


def _design_ui(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, ["blip", "confirm", "error", "notification", "click"])
    base = int(rng.integers(72, 92))
    wave = _choice(rng, ["sine", "triangle", "square"]) if style != "error" else "square"
    tone = _u(rng, 0.03, 0.1)
    notes = {
        "blip": [base],
        "confirm": [base, base + _choice(rng, [4, 5, 7, 12])] + ([base + 12] if rng.random() < 0.4 else []),
        "error": [base - 12, base - 15],
        "notification": [base, base + _choice(rng, [-5, 7, 12])],
        "click": [base + 12],
    }[style]
    if style == "click":
        tone = _u(rng, 0.005, 0.015)
    elif style == "notification":
        tone = _u(rng, 0.12, 0.3)
    p: Params = {"notes": notes, "wave": wave, "tone": tone, "gap": _u(rng, 0.02, 0.08)}
    subject, synonyms, details = {
        "blip": ("UI blip", ("interface beep", "short blip"), ()),
        "confirm": ("confirmation sound", ("success chime", "UI confirm"), ("rising tones",)),
        "error": ("error beep", ("UI error sound", "warning buzz"), ("falling tones",)),
        "notification": ("notification chime", ("alert sound", "message ping"), (f"{len(notes)} notes",)),
        "click": ("button click", ("UI click", "interface tick"), ()),
    }[style]
    quals = ("soft",) if wave == "sine" else ("retro",) if wave == "square" else ("clean",)
    desc = Description(subject, quals, details, synonyms=synonyms)
    seconds = max(0.25, len(notes) * (tone + p["gap"]) + tone * 3 + 0.05)
    return Recipe("ui", "ui-blip", p, seconds, desc)


def _ui(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    length = _frames(p["tone"] * 4, sr)
    t = _time(length, sr)
    for i, note in enumerate(p["notes"]):
        f = note_frequency(note)
        if p["wave"] == "sine":
            x = np.sin(2 * np.pi * f * t)
        elif p["wave"] == "triangle":
            x = 2 * np.abs(2 * ((f * t) % 1.0) - 1) - 1
        else:
            x = _filter(_square(f, length, sr), "lowpass", 5000, sr)
        _place(out, x * _env(t, 0.002, p["tone"]), round(i * (p["tone"] + p["gap"]) * sr))
    return _pan(out, 0.0)


# ---------------------------------------------------------------- drum loops

GROOVES: dict[str, dict[str, Any]] = {
    "house": {
        "bpm": (118, 128),
        "kick": "x...x...x...x...",
        "clap": "....x.......x...",
        "open": "..x...x...x...x.",
        "hat": "",
        "detail": "four on the floor",
    },
    "techno": {
        "bpm": (126, 140),
        "kick": "x...x...x...x...",
        "clap": "........x.......",
        "open": "",
        "hat": "xxxxxxxxxxxxxxxx",
        "detail": "driving sixteenth hats",
    },
    "hip hop": {
        "bpm": (80, 96),
        "kick": "x......x.xx.....",
        "snare": "....x.......x...",
        "open": "",
        "hat": "x.x.x.x.x.x.x.x.",
        "swing": 0.6,
        "detail": "swung hi-hats",
    },
    "trap": {
        "bpm": (130, 150),
        "kick": "x.....x...x.....",
        "snare": "........x.......",
        "open": "",
        "hat": "x.x.x.xxx.x.xxxx",
        "detail": "hi-hat rolls, half-time snare",
    },
    "breakbeat": {
        "bpm": (125, 140),
        "kick": "x.x.......xx....",
        "snare": "....x..x.x..x..x",
        "open": "",
        "hat": "x.x.x.x.x.x.x.x.",
        "detail": "syncopated kicks",
    },
    "drum and bass": {
        "bpm": (168, 176),
        "kick": "x.........x.....",
        "snare": "....x.......x...",
        "open": "",
        "hat": "x.x.x.x.x.x.x.x.",
        "detail": "fast two-step",
    },
    "electro": {
        "bpm": (110, 125),
        "kick": "x.....x...x.....",
        "snare": "....x.......x...",
        "open": "",
        "hat": "xxxxxxxxxxxxxxxx",
        "detail": "robotic sixteenths",
    },
    "disco": {
        "bpm": (115, 124),
        "kick": "x...x...x...x...",
        "snare": "....x.......x...",
        "open": "..x...x...x...x.",
        "hat": "x.x.x.x.x.x.x.x.",
        "detail": "open hats on the offbeat",
    },
}


def design_loop(
    rng: np.random.Generator, genre: str | None = None, bpm: float | None = None, bars: int | None = None
) -> Recipe:
    """A GROOVES pattern on drums designed for it; `genre`, `bpm` and `bars` are drawn when not given."""
    genre = genre or _choice(rng, list(GROOVES))
    groove = GROOVES[genre]
    bpm = bpm or _u(rng, *groove["bpm"])
    bar = 240 / bpm
    bars = bars or max(1, min(4, int(7.5 // bar)))
    parts = {
        "kick": _design_kick(rng).params,
        "snare": _design_snare(rng).params,
        "clap": _design_clap(rng).params,
        "hat": {**_design_hat(rng).params, "tau": _u(rng, 0.01, 0.03)},
        "open": {**_design_hat(rng).params, "tau": _u(rng, 0.1, 0.2)},
    }
    p: Params = {"genre": genre, "bpm": bpm, "bars": bars, "parts": parts, "swing": groove.get("swing", 0.5)}
    desc = Description(
        "drum loop", (), (groove["detail"],), style=genre, bpm=bpm, synonyms=("drum beat", "drum groove")
    )
    return Recipe("loop", "drum-loop", p, bars * bar + 0.3, desc)


def _loop(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    groove = GROOVES[p["genre"]]
    step = 60 / p["bpm"] / 4
    out = np.zeros((2, n))
    voices = {"kick": _kick, "snare": _snare, "clap": _clap, "hat": _hat, "open": _hat}
    for name, voice in voices.items():
        pattern = groove.get(name, "")
        if not pattern:
            continue
        hit = voice(p["parts"][name], _frames(1.0, sr), sr, rng)
        for bar in range(p["bars"]):
            for i, c in enumerate(pattern):
                if c != "x":
                    continue
                # swing delays every second sixteenth; accents fall on the beat
                at = (bar * 16 + i) * step + (p["swing"] - 0.5) * 2 * step * (i % 2)
                accent = 1.0 if i % 4 == 0 else 0.75 + 0.1 * rng.random()
                gain = accent * (0.45 if name in ("hat", "open") else 1.0)
                _place(out, hit * gain, round(at * sr))
    return out


# ---------------------------------------------------------------- textures (no category)


def _design_texture(rng: np.random.Generator) -> Recipe:
    style = _choice(rng, ["vinyl crackle", "tape hiss", "radio static", "downlifter"])
    seconds = _u(rng, 3.0, 8.0)
    if style == "downlifter":
        p: Params = {
            "f0": _u(rng, 150, 400),
            "f1": _u(rng, 2500, 7000),
            "tone_mix": _u(rng, 0.0, 0.6),
            "curve": 1.0,
        }
        desc = Description(
            "downlifter",
            ("falling",),
            (f"{round(seconds)} second sweep down",),
            synonyms=("downward noise sweep", "filter sweep down"),
        )
        return Recipe("downlifter", None, p, seconds, desc)
    p = {"style": style, "clicks": _u(rng, 5, 40), "hiss": _u(rng, 0.1, 0.6)}
    subject, synonyms = {
        "vinyl crackle": ("vinyl crackle", ("record noise", "dusty vinyl texture")),
        "tape hiss": ("tape hiss", ("analog tape noise", "cassette hiss")),
        "radio static": ("radio static", ("shortwave noise", "untuned radio")),
    }[style]
    desc = Description(subject, ("lo-fi",), ("noise texture",), synonyms=synonyms)
    return Recipe("texture", None, p, seconds, desc)


def _texture(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    chans = []
    for _ in range(2):
        hiss = _filter(rng.standard_normal(n), "bandpass", (2000, 10000), sr) * p["hiss"]
        if p["style"] == "tape hiss":
            x = hiss * (1 + 0.1 * _slow_noise(n, sr, 4.0, rng))
        elif p["style"] == "radio static":
            band = _filter(rng.standard_normal(n), "bandpass", (400, 3500), sr)
            x = band * (0.6 + 0.4 * _slow_noise(n, sr, 3.0, rng)) + hiss
        else:
            clicks = np.zeros(n)
            where = rng.integers(0, n, int(p["clicks"] * n / sr))
            clicks[where] = rng.uniform(-1, 1, len(where)) * rng.lognormal(0, 0.8, len(where))
            x = _filter(clicks, "highpass", 800, sr) * 3 + 0.3 * hiss
        chans.append(x)
    return np.stack(chans)


def _downlifter(p: Params, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    return _sweep(p, n, sr, rng, upward=False)


DESIGNERS: dict[str | None, Callable[[np.random.Generator], Recipe]] = {
    "kick": _design_kick,
    "snare": _design_snare,
    "hi-hat": _design_hat,
    "clap": _design_clap,
    "cymbal": _design_cymbal,
    "bass": _design_bass,
    "pad": _design_pad,
    "bell": _design_bell,
    "pluck": _design_pluck,
    "riser": _design_riser,
    "impact": _design_impact,
    "explosion": _design_explosion,
    "footsteps": _design_footsteps,
    "rain": _design_rain,
    "wind": _design_wind,
    "ui-blip": _design_ui,
    "drum-loop": design_loop,
    None: _design_texture,
}
RENDERERS: dict[str, Callable[[Params, int, int, np.random.Generator], np.ndarray]] = {
    "kick": _kick,
    "snare": _snare,
    "hat": _hat,
    "clap": _clap,
    "cymbal": _cymbal,
    "bass": _bass,
    "pad": _pad,
    "bell": _bell,
    "pluck": _pluck,
    "riser": _riser,
    "impact": _impact,
    "explosion": _explosion,
    "footsteps": _footsteps,
    "rain": _rain,
    "wind": _wind,
    "ui": _ui,
    "loop": _loop,
    "texture": _texture,
    "downlifter": _downlifter,
}
PROCEDURAL_CATEGORIES: tuple[str | None, ...] = tuple(DESIGNERS)


def design(category: str | None, rng: np.random.Generator) -> Recipe:
    """Draw the parameters of one sound of `category` (None: a noise texture or a downward sweep)."""
    return DESIGNERS[category](rng)


def render(recipe: Recipe, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Stereo float32 audio [2, frames] of the recipe's planned length."""
    n = _frames(recipe.seconds, sample_rate)
    audio = RENDERERS[recipe.kind](recipe.params, n, sample_rate, rng)
    return np.asarray(audio, dtype=np.float32)
