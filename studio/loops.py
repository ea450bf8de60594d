"""Export and loop tools: take a generated clip to a file a DAW or a player takes as it is.

All functions are pure: they take float32 [channels, frames] arrays (a 1-D array is read as mono) and
return new arrays, except `export_audio`, which writes. librosa and pydub are imported where they are
used, because they are slow to import and only these tools need them.
"""

from __future__ import annotations

import math
import numbers
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from studio.audio import atomic_path, write_audio
from studio.errors import AudioError

TEMPO_HINT = "give the tempo yourself: 'Source BPM' in the studio's loop tools, source_bpm in Python"
EXPORT_SUFFIXES = {"wav16": ".wav", "wav24": ".wav", "flac": ".flac", "mp3": ".mp3"}
EXPORT_FORMATS = tuple(EXPORT_SUFFIXES)
MP3_BITRATE = "320k"
MIN_BPM, MAX_BPM = 20.0, 400.0
BEAT_SEARCH_BPM = (60.0, 200.0)  # the tempi estimate_bpm considers
TEMPO_PRIOR_BPM, TEMPO_PRIOR_OCTAVES = 100.0, 1.0  # centre and spread of its prior
PULSE_LEVELS = (1, 2, 4)  # beats, eighths, sixteenths: what a tempo's pulse is made of
ONSET_HOP_S = 0.0116  # onset envelope resolution: a sixteenth at 200 BPM is 6.5 of its frames
MAX_TEMPO_SECONDS = 60.0  # the tempo is read from the first minute
MIN_BEAT_ONSETS = 4  # fewer onsets than this make no beat
# A beat's pulse must stand this far above the best pulse of the same onset envelope shuffled in
# time (mean of PULSE_SHUFFLES shuffles): white noise and rain score 0.7-0.95 there, held-out and
# generated drum loops 1.7-2.6.
PULSE_OVER_SHUFFLED = 1.3
PULSE_SHUFFLES = 8
LOOP_FADE_S = 0.005  # long enough to hide the click of a cut, short enough to keep the transient
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl-Kessler key profiles (Krumhansl 1990), tonic first.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def export_audio(audio: np.ndarray, sample_rate: int, path: Path, fmt: str) -> Path:
    """Write a clip as 16- or 24-bit WAV, 24-bit FLAC or 320 kbit/s MP3; returns the file written.

    The suffix of `path` is set from the format, so the file always says what it holds. Every format
    is written atomically (temp file + rename), so a watched folder never sees half a file.
    """
    if fmt not in EXPORT_FORMATS:
        raise AudioError(f"unknown export format '{fmt}'", f"use one of {', '.join(EXPORT_FORMATS)}")
    audio = _as_audio(audio)
    sample_rate = _check_rate(sample_rate)
    path = Path(path).with_suffix(EXPORT_SUFFIXES[fmt])
    if fmt == "mp3":
        return _export_mp3(audio, sample_rate, path)
    return write_audio(path, audio, sample_rate, 16 if fmt == "wav16" else 24)


def trim_silence(
    audio: np.ndarray, sample_rate: int, threshold_db: float = -60.0, pad_s: float = 0.01
) -> np.ndarray:
    """Cut leading and trailing audio quieter than `threshold_db` (dBFS, loudest channel), keeping
    `pad_s` either side so soft attacks and tails survive. All-silent input gives `pad_s` of silence
    (at least one frame), so a silent take stays a valid clip rather than an error."""
    audio = _as_audio(audio)
    sample_rate = _check_rate(sample_rate)
    if not threshold_db < 0:
        raise AudioError(f"threshold_db must be below 0 dBFS, got {threshold_db}", "-60 is usual")
    if not pad_s >= 0:
        raise AudioError(f"pad_s must be 0 or more, got {pad_s}")
    pad = round(pad_s * sample_rate)
    loud = np.flatnonzero(np.abs(audio).max(axis=0) > _amplitude(threshold_db))
    if loud.size == 0:
        return np.zeros((audio.shape[0], min(max(pad, 1), audio.shape[1])), np.float32)
    start = max(loud[0] - pad, 0)
    end = min(loud[-1] + 1 + pad, audio.shape[1])
    return audio[:, start:end].copy()


def normalize_loudness(
    audio: np.ndarray, sample_rate: int, target_lufs: float = -14.0, peak_ceiling_db: float = -1.0
) -> np.ndarray:
    """Scale to `target_lufs` integrated loudness (ITU-R BS.1770, via pyloudnorm), but never above
    `peak_ceiling_db` sample peak: the gain is lowered instead, so a very dynamic clip can end up
    quieter than the target rather than clipped. -14 LUFS / -1 dB is what streaming services play at.

    Clips shorter than BS.1770's 400 ms gating block, or quieter than its -70 LUFS absolute gate, are
    measured by channel-summed mean square (BS.1770 without the K-weighting and the gates), a close
    approximation for short one-shots. Silence is returned as it is: no gain can make it loud."""
    audio = _as_audio(audio)
    sample_rate = _check_rate(sample_rate)
    if not -70 <= target_lufs <= 0:
        raise AudioError(
            f"target_lufs must be from -70 to 0, got {target_lufs}", "-14 for streaming, -23 for EBU R128"
        )
    if not -60 <= peak_ceiling_db <= 0:
        raise AudioError(f"peak_ceiling_db must be from -60 to 0, got {peak_ceiling_db}", "-1 dB is usual")
    loudness = _integrated_loudness(audio, sample_rate)
    if not math.isfinite(loudness):
        return audio.copy()
    ceiling = _amplitude(peak_ceiling_db)
    gain = min(_amplitude(target_lufs - loudness), ceiling / float(np.abs(audio).max()))
    scaled = (audio.astype(np.float64) * gain).astype(np.float32)
    # Rounding to float32 can land one ulp above the ceiling; the ceiling is a promise.
    limit = np.float32(ceiling)
    return np.clip(scaled, -limit, limit)


def fade(audio: np.ndarray, sample_rate: int, fade_in_s: float = 0.0, fade_out_s: float = 0.0) -> np.ndarray:
    """Equal-power (quarter-sine) fade in and out; the first and last faded samples are exactly 0.

    Equal-power rather than linear: it keeps the level up through most of the fade, so a short fade
    against a click takes less of the sound with it, and two such fades overlapped keep constant power.
    A fade longer than the clip is shortened to the clip."""
    audio = _as_audio(audio)
    sample_rate = _check_rate(sample_rate)
    for label, seconds in (("fade_in_s", fade_in_s), ("fade_out_s", fade_out_s)):
        if not (math.isfinite(seconds) and seconds >= 0):
            raise AudioError(f"{label} must be 0 or more seconds, got {seconds}")
    frames = audio.shape[1]
    gain = np.ones(frames, np.float64)
    n_in = min(round(fade_in_s * sample_rate), frames)
    n_out = min(round(fade_out_s * sample_rate), frames)
    if n_in:
        gain[:n_in] *= _rising(n_in)
    if n_out:
        gain[frames - n_out :] *= _rising(n_out)[::-1]
    return (audio * gain).astype(np.float32)


def estimate_bpm(audio: np.ndarray, sample_rate: int) -> float:
    """Tempo of the clip in BPM, within BEAT_SEARCH_BPM: the beat whose pulse, with its eighths and
    sixteenths, lines up best with the clip's onsets (`pulse_strength`), weighed by how common that
    tempo is (a log-normal prior around TEMPO_PRIOR_BPM, as beat trackers use).

    Every onset of the clip votes, not only the beats a tracker picked, so a loop gives its tempo to
    a fraction of a percent from a few seconds, where a beat tracker has too few beats to fit and
    often takes a short loop's kick and snare for a half-time beat. Which level is the beat stays
    a guess where the music allows two: below about 95 BPM a beat with busy eighths can read at
    twice its tempo; give the tempo yourself there. A clip whose onsets pulse at their best tempo
    no more than PULSE_OVER_SHUFFLED times as much as they do shuffled in time (a noise, rain, a
    drone) has no beat: AudioError, as for silence."""
    import librosa

    mono = _mono(audio)
    sample_rate = _check_rate(sample_rate)
    if not mono.any():
        raise AudioError("the audio is silent: it has no beat", TEMPO_HINT)
    envelope, frame_rate, hop = _onset_envelope(mono, sample_rate)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate, hop_length=hop)
    if len(onsets) < MIN_BEAT_ONSETS:
        raise AudioError(
            f"no steady beat found in the audio ({len(onsets)} onsets; a beat needs {MIN_BEAT_ONSETS})",
            TEMPO_HINT,
        )
    low, high = BEAT_SEARCH_BPM
    bpms = low * 2 ** np.arange(0, np.log2(high / low), 0.001)  # 0.07% apart: far finer than a take can tell
    prior = np.exp(-0.5 * (np.log2(bpms / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)
    weighted = pulse_strength(envelope, frame_rate, bpms) * prior
    # The shuffles on every tenth tempo: they have no sharp peak to miss, and 8 of them then cost
    # less than the clip's own pass
    if weighted.max() < PULSE_OVER_SHUFFLED * shuffled_pulse(envelope, frame_rate, bpms[::10], prior[::10]):
        raise AudioError(
            f"no steady beat found in the audio: its {len(onsets)} onsets pulse no more at any tempo "
            "than the same onsets shuffled in time",
            TEMPO_HINT,
        )
    return float(bpms[np.argmax(weighted)])


def shuffled_pulse(envelope: np.ndarray, frame_rate: float, bpms: np.ndarray, prior: np.ndarray) -> float:
    """The best prior-weighted pulse strength of the onset envelope with its frames shuffled, the
    mean over PULSE_SHUFFLES fixed shuffles: what the clip's onsets give at their best with no beat
    in them. Any envelope pulses at some tempo; a noise's about as much as its shuffles do."""
    rng = np.random.default_rng(0)
    shuffles = (rng.permutation(envelope) for _ in range(PULSE_SHUFFLES))
    return float(np.mean([(pulse_strength(s, frame_rate, bpms) * prior).max() for s in shuffles]))


def _onset_envelope(mono: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float, int]:
    """librosa's onset strength (the rise of log-mel power) every ~11.6 ms, of the first
    MAX_TEMPO_SECONDS; its frames per second and its hop in samples."""
    import librosa

    hop = max(1, round(sample_rate * ONSET_HOP_S))
    head = mono[: round(MAX_TEMPO_SECONDS * sample_rate)].astype(np.float32)
    return librosa.onset.onset_strength(y=head, sr=sample_rate, hop_length=hop), sample_rate / hop, hop


def pulse_strength(envelope: np.ndarray, frame_rate: float, bpms: np.ndarray) -> np.ndarray:
    """For each tempo of `bpms`, how strongly the onset envelope pulses at its beat, eighths and
    sixteenths (PULSE_LEVELS): the summed magnitudes of the envelope's Fourier components there, as
    a share of the envelope's total deviation from its mean (so 0 to len(PULSE_LEVELS))."""
    deviation = envelope - envelope.mean()
    times = np.arange(len(envelope)) / frame_rate
    strength = np.zeros(len(bpms))
    for block in range(0, len(bpms), 128):  # a minute of envelope by 128 tempi is 10 MB a level
        rows = slice(block, block + 128)
        for level in PULSE_LEVELS:
            waves = np.exp(-2j * np.pi * np.outer(bpms[rows] / 60 * level, times))
            strength[rows] += np.abs(waves @ deviation)
    return strength / max(float(np.abs(deviation).sum()), 1e-12)


def estimate_key(audio: np.ndarray, sample_rate: int) -> str:
    """The key, e.g. "A minor" or "C# major": the clip's mean chroma correlated against the 24
    rotations of the Krumhansl-Kessler major and minor profiles (Krumhansl-Schmuckler)."""
    import librosa

    mono = _mono(audio)
    sample_rate = _check_rate(sample_rate)
    chroma = librosa.feature.chroma_cqt(y=mono, sr=sample_rate).mean(axis=1) if mono.any() else None
    if chroma is None or np.ptp(chroma) == 0:
        raise AudioError("no pitched content to find a key in", "use a clip with notes or chords")
    return _best_key(chroma)


def make_loop(
    audio: np.ndarray,
    sample_rate: int,
    target_bpm: float,
    bars: int | None = None,
    beats_per_bar: int = 4,
    source_bpm: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A loop at `target_bpm`: time-stretched from the source tempo (estimated when None), cut to a
    whole number of bars from the start of the clip (the most that fit, or `bars`), with a few-ms
    fade at the cut so the loop does not click where it wraps.

    The loop starts where the clip starts: trim a lead-in first (trim_silence) if the clip has one.
    Returns the loop and {source_bpm, target_bpm, bars, seconds, stretch_rate}."""
    audio = _as_audio(audio)
    sample_rate = _check_rate(sample_rate)
    target_bpm = _check_bpm("target_bpm", target_bpm)
    if not isinstance(beats_per_bar, int) or not 1 <= beats_per_bar <= 32:
        raise AudioError(f"beats_per_bar must be a whole number from 1 to 32, got {beats_per_bar}")
    if bars is not None and (not isinstance(bars, int) or bars < 1):
        raise AudioError(
            f"bars must be a whole number from 1 up, got {bars}", "or leave it out for the most that fit"
        )
    if source_bpm is None:
        source_bpm = estimate_bpm(audio, sample_rate)
    source_bpm = _check_bpm("source_bpm", source_bpm)
    rate = target_bpm / source_bpm
    stretched = _time_stretch(audio, rate)
    bar_frames = beats_per_bar * 60.0 / target_bpm * sample_rate
    fits = int(stretched.shape[1] // bar_frames)
    if fits < 1 or (bars is not None and bars > fits):
        wanted = f"{bars} bars" if bars is not None else "one bar"
        length_s, bar_s = stretched.shape[1] / sample_rate, bar_frames / sample_rate
        raise AudioError(
            f"the clip is too short for {wanted} at {target_bpm:g} BPM: it is {length_s:.2f} s "
            f"after stretching, a bar is {bar_s:.2f} s" + (f", so {fits} bar(s) fit" if fits else ""),
            "use a longer clip, fewer bars, fewer beats per bar, or a faster target tempo",
        )
    bars = bars if bars is not None else fits
    frames = min(round(bars * bar_frames), stretched.shape[1])
    loop = fade(stretched[:, :frames], sample_rate, fade_out_s=LOOP_FADE_S)
    report = {
        "source_bpm": source_bpm,
        "target_bpm": target_bpm,
        "bars": bars,
        "seconds": frames / sample_rate,
        "stretch_rate": rate,
    }
    return loop, report


# -- helpers ----------------------------------------------------------------------------------------


def _as_audio(audio: np.ndarray) -> np.ndarray:
    """float32 [channels, frames], or AudioError saying what is wrong with it."""
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise AudioError(f"audio must be a non-empty [channels, frames] array, got shape {np.shape(audio)}")
    if not np.isfinite(array).all():
        raise AudioError("the audio holds NaN or infinite samples")
    return array


def _check_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise AudioError(f"sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


def _check_bpm(label: str, bpm: float) -> float:
    if isinstance(bpm, bool) or not isinstance(bpm, numbers.Real) or not MIN_BPM <= bpm <= MAX_BPM:
        raise AudioError(
            f"{label} must be from {MIN_BPM:g} to {MAX_BPM:g} BPM, got {bpm}",
            "a half- or double-time reading can be fixed by halving or doubling it",
        )
    return float(bpm)


def _amplitude(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _mono(audio: np.ndarray) -> np.ndarray:
    return _as_audio(audio).mean(axis=0)


def _rising(n: int) -> np.ndarray:
    """A quarter-sine from exactly 0 to exactly 1 over n samples (a lone sample gets gain 0)."""
    if n == 1:
        return np.zeros(1)
    return np.sin(np.linspace(0.0, np.pi / 2, n))


def _integrated_loudness(audio: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness in LUFS; -inf only for digital silence."""
    import pyloudnorm

    meter = pyloudnorm.Meter(sample_rate)
    if audio.shape[1] / sample_rate > meter.block_size:
        gated = float(meter.integrated_loudness(audio.T.astype(np.float64)))
        if math.isfinite(gated):
            return gated
    power = float(np.sum(np.mean(audio.astype(np.float64) ** 2, axis=1)))
    return -0.691 + 10.0 * math.log10(power) if power > 0 else -math.inf


def _best_key(chroma: np.ndarray) -> str:
    """The tonic and mode whose rotated profile correlates best with a 12-bin chroma vector."""
    best, best_score = "", -math.inf
    for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE)):
        for tonic in range(12):
            score = np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]
            if score > best_score:
                best, best_score = f"{NOTE_NAMES[tonic]} {mode}", score
    return best


def _time_stretch(audio: np.ndarray, rate: float) -> np.ndarray:
    """Change tempo by `rate` (>1 is faster), keeping pitch; each channel alike (librosa is mono)."""
    if math.isclose(rate, 1.0, rel_tol=1e-9):
        return audio
    import librosa

    stretched = [librosa.effects.time_stretch(channel, rate=rate) for channel in audio]
    return np.stack(stretched).astype(np.float32)


def _export_mp3(audio: np.ndarray, sample_rate: int, path: Path) -> Path:
    """320 kbit/s MP3 through pydub and ffmpeg, written to a temp file and renamed into place."""
    if shutil.which("ffmpeg") is None:
        raise AudioError(
            "MP3 export needs ffmpeg",
            hint="install it: apt-get install ffmpeg / brew install ffmpeg / winget install ffmpeg",
        )
    if audio.shape[0] > 2:
        raise AudioError(
            f"MP3 holds mono or stereo, not {audio.shape[0]} channels", "export WAV or FLAC instead"
        )
    from pydub import AudioSegment
    from pydub.exceptions import CouldntEncodeError

    pcm = (np.clip(audio, -1.0, 1.0).T * 32767.0).round().astype("<i2")  # interleaved 16-bit frames
    segment = AudioSegment(
        data=pcm.tobytes(), sample_width=2, frame_rate=sample_rate, channels=audio.shape[0]
    )
    with atomic_path(path, (CouldntEncodeError,)) as tmp:
        segment.export(str(tmp), format="mp3", bitrate=MP3_BITRATE).close()
    return path
