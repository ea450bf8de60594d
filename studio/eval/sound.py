"""What a listener hears in a sound, measured: pitch, tonal lines on a frame grid, DC, rumble,
noise where a note was, decay, tempo, where onsets fall on a beat grid, and distances between a
sound and its copy or another take.

Pure functions over float arrays [channels, frames] (or [frames]) at a given rate; the autoencoder
evaluation (vae.py) runs them on round trips, the voice measures (voice.py) on takes.
"""

from __future__ import annotations

import itertools

import numpy as np

COMB_PEAKS = 10  # the strongest spectral peaks a comb score looks at
COMB_BAND = (60.0, 5000.0)
COMB_TOLERANCE = 0.02  # of the grid spacing, either side: chance of a random peak landing is 4%
LOW_BAND_HZ = 40.0  # below it: rumble, steps and DC, not a note (E1, a bass guitar's lowest, is 41.2 Hz)
LEVEL_FLOOR_DBFS = -120.0  # a level below this is silence
TEMPO_TOLERANCE = 0.03  # a tempo within 3% is the tempo asked for
ONSET_HOP = 256  # onset envelope frames: 5.8 ms at 44.1 kHz
ONSET_GAP_S = 0.05  # onsets closer than this are one
ONSET_HEIGHT = 0.3  # an onset's flux is at least this share of the take's strongest


def mono(audio: np.ndarray) -> np.ndarray:
    """The channel mix in float64; a 1-D signal passes through."""
    audio = np.asarray(audio, dtype=np.float64)
    return audio.mean(axis=0) if audio.ndim == 2 else audio


def _power_spectra(audio: np.ndarray, size: int, hop: int) -> np.ndarray:
    """Power spectra [windows, size // 2 + 1] of the channel mix, Hann windows of `size`."""
    signal = np.pad(mono(audio), (0, size))
    windows = np.lib.stride_tricks.sliding_window_view(signal, size)[::hop]
    return np.abs(np.fft.rfft(windows * np.hanning(size), axis=1)) ** 2 + 1e-12


def fine_spectrum(audio: np.ndarray, rate: int, min_size: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, log power) of the whole signal's channel mix under one Hann window, zero-padded
    to at least `min_size` points (0.17 Hz apart at 44.1 kHz) so a line's position can be read to a
    fraction of a hertz."""
    signal = mono(audio)
    size = max(min_size, 1 << int(np.ceil(np.log2(max(len(signal), 2)))))
    power = np.abs(np.fft.rfft(signal * np.hanning(len(signal)), n=size)) ** 2
    return np.fft.rfftfreq(size, 1 / rate), np.log(power + 1e-30)


def _refined(freqs: np.ndarray, log_power: np.ndarray, index: int) -> float:
    """A peak's frequency between bins: the vertex of the parabola through it and its neighbours."""
    if index <= 0 or index >= len(log_power) - 1:
        return float(freqs[index])
    left, mid, right = log_power[index - 1 : index + 2]
    curvature = left - 2 * mid + right
    offset = 0.0 if curvature >= 0 else 0.5 * (left - right) / curvature
    return float(freqs[index] + offset * (freqs[1] - freqs[0]))


def strongest_peaks(
    audio: np.ndarray, rate: int, count: int, band: tuple[float, float], floor_db: float = 60.0
) -> list[float]:
    """The frequencies of the `count` strongest spectral peaks inside `band`, strongest first, each
    read between bins. A peak is the maximum of the fine spectrum over ±10 Hz (more for clips under
    0.4 s, whose lines are wider), so a line's window sidelobes are not peaks of their own, and it
    is within `floor_db` of the strongest: below that there is nothing but sidelobes and round-off
    to find in a clean tone."""
    freqs, log_power = fine_spectrum(audio, rate)
    seconds = mono(audio).shape[-1] / rate
    separation_hz = min(20.0, max(10.0, 4.0 / max(seconds, 1e-3)))
    reach = max(1, round(separation_hz / (freqs[1] - freqs[0])))
    padded = np.pad(log_power, reach, constant_values=-np.inf)
    neighbourhood = np.lib.stride_tricks.sliding_window_view(padded, 2 * reach + 1).max(axis=1)
    inside = (freqs >= band[0]) & (freqs <= band[1])
    candidates = np.flatnonzero(inside & (log_power >= neighbourhood))
    if candidates.size == 0:
        return []
    loudest = log_power[candidates].max()
    candidates = candidates[log_power[candidates] >= loudest - floor_db * np.log(10) / 10]
    order = candidates[np.argsort(log_power[candidates])[::-1][:count]]
    return [_refined(freqs, log_power, int(i)) for i in order]


def comb_hits(audio: np.ndarray, rate: int, grid_hz: float) -> tuple[int, int]:
    """(peaks on the grid, peaks looked at) among the COMB_PEAKS strongest in COMB_BAND: a peak is on
    the grid within COMB_TOLERANCE of the spacing from a whole multiple of `grid_hz`."""
    peaks = np.array(strongest_peaks(audio, rate, COMB_PEAKS, COMB_BAND))
    if peaks.size == 0:
        return 0, 0
    distance = np.abs(peaks / grid_hz - np.round(peaks / grid_hz))
    return int((distance <= COMB_TOLERANCE).sum()), int(peaks.size)


def comb_score(clips: list[np.ndarray], rate: int, grid_hz: float) -> float:
    """The share of all the clips' strongest peaks that sit on the grid: about 0.04 by chance, near
    1 when a decoder rings at its frame rate. A grid of rate/1024 Hz holds the multiples of rate/512
    too."""
    hits = np.array([comb_hits(clip, rate, grid_hz) for clip in clips])
    return float(hits[:, 0].sum() / max(1, hits[:, 1].sum()))


def cents(frequency: float, reference: float) -> float:
    return float(1200 * np.log2(frequency / reference))


def dominant_frequency(audio: np.ndarray, rate: int, band: tuple[float, float] = (20.0, 20000.0)) -> float:
    """The frequency of the strongest spectral line in `band`, read to a small fraction of a hertz."""
    return strongest_peaks(audio, rate, 1, band)[0]


def partial_frequency(audio: np.ndarray, rate: int, near: float, half_width: float) -> float:
    """The frequency of the strongest line within ±`half_width` Hz of `near`."""
    return dominant_frequency(audio, rate, (max(1.0, near - half_width), near + half_width))


def note_pitch_error_cents(original: np.ndarray, copy: np.ndarray, rate: int, f0: float) -> float:
    """How far (cents) a copy of a note sits from the original: the note's loudest partial among its
    first eight harmonics of the nominal `f0` is found in the original, and the same partial (the
    strongest line within half a harmonic spacing of it) in the copy. A partial's shift is the
    note's: a soundfont's detuning or a piano's stretched partials cancel out."""
    harmonics = [k * f0 for k in range(1, 9) if k * f0 < rate / 2 - f0]
    freqs, log_power = fine_spectrum(original, rate)
    strength = [log_power[np.abs(freqs - h) <= 0.03 * h].max() for h in harmonics]
    harmonic = harmonics[int(np.argmax(strength))]
    reference = partial_frequency(original, rate, harmonic, 0.03 * harmonic)
    return cents(partial_frequency(copy, rate, reference, f0 / 2), reference)


def dc_offset_dbfs(audio: np.ndarray) -> float:
    """The largest of the channels' mean values, in dBFS (−inf: none at all)."""
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    offset = np.abs(audio.mean(axis=1)).max()
    return float(20 * np.log10(offset)) if offset > 0 else float("-inf")


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio (dB), channels end to end: how much of the
    estimate is the reference, at whatever gain, against everything else. It counts phase: a copy
    with the right spectrum and the wrong phases scores low."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    est = np.asarray(estimate, dtype=np.float64).ravel()
    energy = ref @ ref
    if energy == 0:
        return float("nan")
    target = (est @ ref) / energy * ref
    residual = est - target
    return float(10 * np.log10((target @ target + 1e-20) / (residual @ residual + 1e-20)))


def frame_rate_partials_db(
    original: np.ndarray, round_trip: np.ndarray, rate: int, hop: int, band: tuple[float, float] = (100, 1000)
) -> float:
    """How much more the round trip than the original (dB) stands out at the whole multiples of the
    latent frame rate (rate / hop) inside `band`: the hum a decoder adds when it cannot make a
    steady sound without repeating itself every latent frame.

    Each signal's power at the multiples is taken relative to its power halfway between them, so
    a level change or broadband content counts for nothing. Mean power spectrum (channels mixed)
    over 8192-sample Hann windows with a hop of 2048.
    """
    size = 8192
    frame_rate = rate / hop
    multiples = np.arange(np.ceil(band[0] / frame_rate), np.floor(band[1] / frame_rate) + 1) * frame_rate
    on = np.round(multiples * size / rate).astype(int)
    between = np.round((multiples + frame_rate / 2) * size / rate).astype(int)

    def contrast(audio: np.ndarray) -> float:
        power = _power_spectra(audio, size, 2048).mean(axis=0)
        return float(10 * np.log10(power[on].sum() / power[between].sum()))

    return contrast(round_trip) - contrast(original)


def spectral_flatness_db(
    original: np.ndarray, round_trip: np.ndarray, rate: int, band: tuple[float, float] = (100, 5000)
) -> float:
    """How much flatter (more like noise) the round trip's spectrum is than the original's, in dB:
    a decoder that smears a note's harmonic lines into noise with the same envelope reads well
    above 0, one that keeps them reads about 0, and level counts for nothing.

    Spectral flatness (geometric over arithmetic mean power inside `band`) of each 4096-sample
    window within 30 dB of the signal's loudest, averaged; channels mixed.
    """
    size = 4096
    freqs = np.fft.rfftfreq(size, 1 / rate)
    inside = (freqs >= band[0]) & (freqs <= band[1])

    def flatness(audio: np.ndarray) -> float:
        power = _power_spectra(audio, size, 1024)[:, inside]
        total = power.sum(axis=1)
        loud = total >= total.max() * 1e-3
        per_window = np.exp(np.log(power[loud]).mean(axis=1)) / power[loud].mean(axis=1)
        return float(10 * np.log10(per_window.mean()))

    return flatness(round_trip) - flatness(original)


def low_band_share_db(audio: np.ndarray, rate: int, cutoff: float = LOW_BAND_HZ) -> float:
    """The share of the signal's power below `cutoff` Hz, in dB (0 Hz included; level counts for
    nothing): one Hann-windowed spectrum of the whole clip, channels mixed."""
    power = _power_spectra(audio, audio.shape[-1], audio.shape[-1])[0]
    low = np.fft.rfftfreq(audio.shape[-1], 1 / rate) < cutoff
    return float(10 * np.log10(power[low].sum() / power.sum()))


def low_band_excess_db(
    original: np.ndarray, round_trip: np.ndarray, rate: int, cutoff: float = LOW_BAND_HZ
) -> float:
    """How much larger the round trip's share of power below `cutoff` Hz is than the original's, in
    dB (`low_band_share_db` of each): the rumble a decoder adds when its latent frames' changes leak
    into the output as steps."""
    return low_band_share_db(round_trip, rate, cutoff) - low_band_share_db(original, rate, cutoff)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The Pearson correlation of two signals' channel mixes, sample against sample over their
    common length, with no search over lags: 1 for the same take, about 0 for independent ones. NaN
    when either is constant."""
    x, y = mono(a), mono(b)
    frames = min(len(x), len(y))
    x, y = x[:frames] - x[:frames].mean(), y[:frames] - y[:frames].mean()
    scale = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / scale) if scale > 0 else float("nan")


def mean_abs_correlation(takes: list[np.ndarray]) -> float:
    """The mean over every pair of takes of |`correlation`|: how much takes of one prompt are the
    same waveform, whatever the sign. Needs at least two takes."""
    if len(takes) < 2:
        raise ValueError("correlation between takes needs at least two takes")
    pairs = itertools.combinations(takes, 2)
    return float(np.mean([abs(correlation(a, b)) for a, b in pairs]))


def _dbfs(rms: np.ndarray | float) -> np.ndarray:
    """RMS values as dBFS levels, none below LEVEL_FLOOR_DBFS."""
    return np.maximum(LEVEL_FLOOR_DBFS, 20 * np.log10(np.maximum(rms, 1e-300)))


def decay_db(audio: np.ndarray, rate: int, window_s: float = 0.01) -> float:
    """How far a sound falls from its loudest moment to its second half, in dB: the highest RMS
    level (dBFS) over consecutive `window_s` windows of the channel mix, minus the RMS level of the
    second half of the whole signal. Levels stop at LEVEL_FLOOR_DBFS, so a silent second half counts
    as −120 dBFS. A drum hit that dies away scores tens of dB; a sound that holds, 0 to a few."""
    signal = mono(audio)
    size = max(1, round(window_s * rate))
    windows = signal[: len(signal) // size * size].reshape(-1, size)  # at least one window long
    peak = _dbfs(np.sqrt(np.mean(windows**2, axis=1))).max()
    tail = signal[len(signal) // 2 :]
    return float(peak - _dbfs(np.sqrt(np.mean(tail**2))))


def median_f0(audio: np.ndarray, rate: int, near_hz: float) -> tuple[float | None, float]:
    """(f0 in Hz, voiced share): librosa's pYIN on the channel mix, searched from 1.5 octaves below
    to 1.5 octaves above `near_hz` (so an octave error is still found, and `near_hz` sits on pYIN's
    tenth-of-a-semitone grid), the median f0 over the frames it calls voiced, and the share of frames
    it calls voiced. f0 is None when no frame is voiced. Frames are long enough for two periods of
    the lowest frequency searched, and at least 2048 samples."""
    import librosa  # slow to import; only pitch needs it

    fmin = near_hz * 2**-1.5
    fmax = min(near_hz * 2**1.5, rate / 2)
    frame = max(2048, 1 << int(np.ceil(np.log2(2 * rate / fmin))))
    f0, voiced, _ = librosa.pyin(mono(audio), fmin=fmin, fmax=fmax, sr=rate, frame_length=frame)
    if not voiced.any():
        return None, 0.0
    return float(np.median(f0[voiced])), float(voiced.mean())


def pitch_class_error(f0: float, target_hz: float) -> tuple[float, int]:
    """(cents, octaves) from `target_hz` to `f0`, octaves folded out: cents in [−600, 600) is how far
    f0 sits from the nearest frequency of the target's pitch class, octaves how many octaves that
    frequency is from the target (0: the note asked for; −1: an octave below)."""
    total = cents(f0, target_hz)
    octaves = int(np.floor((total + 600) / 1200))
    return total - 1200 * octaves, octaves


def tempo_relation(estimated: float | None, asked: float, tolerance: float = TEMPO_TOLERANCE) -> str:
    """How a tempo estimate relates to the tempo asked for: "right" within ±`tolerance` (a
    fraction) of it, "half-time" or "double-time" within that of half or twice it, "wrong"
    otherwise, "none" when there was no estimate."""
    if estimated is None:
        return "none"
    for relation, factor in (("right", 1.0), ("half-time", 0.5), ("double-time", 2.0)):
        if abs(estimated / (asked * factor) - 1) <= tolerance:
            return relation
    return "wrong"


def onset_times(audio: np.ndarray, rate: int) -> np.ndarray:
    """Seconds at which sounds start: peaks of the spectral flux (the rise of log power summed over
    bins, 1,024-point windows every ONSET_HOP samples) at least ONSET_HEIGHT of the strongest and
    ONSET_GAP_S apart, each placed at its window's centre (a sharp click reads one hop early)."""
    size = 1024
    lead = np.zeros((*np.shape(audio)[:-1], size))  # silence before, so a sound at 0 s is a rise too
    log_power = np.log(_power_spectra(np.concatenate([lead, audio], axis=-1), size, ONSET_HOP))
    flux = np.maximum(np.diff(log_power, axis=0), 0).sum(axis=1)
    if not flux.any():
        return np.zeros(0)
    gap = max(1, round(ONSET_GAP_S * rate / ONSET_HOP))
    floor = ONSET_HEIGHT * flux.max()
    peaks = []
    for i in np.argsort(flux)[::-1]:
        if flux[i] < floor:
            break
        if all(abs(i - j) >= gap for j in peaks):
            peaks.append(i)
    # flux[i] compares window i + 1 with window i: the rise sits at window i + 1's centre
    return np.sort((np.array(peaks) + 1) * ONSET_HOP + size / 2 - size) / rate


def grid_lock(audio: np.ndarray, rate: int, bpm: float) -> tuple[float, float] | None:
    """How the onsets of a take that starts on a beat sit on the sixteenth-note grid of `bpm`:
    (lock, offset). lock is the length of the mean of the onsets' grid phases as unit vectors: 1
    when every onset falls at the same place in its sixteenth, near 0 when they fall anywhere (a
    loop at another tempo, or played out of time). offset is that place, in sixteenths from the
    grid line (−0.5 to 0.5): near 0 when the beats fall where the grid says. None with fewer than
    four onsets."""
    onsets = onset_times(audio, rate)
    if len(onsets) < 4:
        return None
    phases = np.exp(2j * np.pi * onsets * bpm / 60 * 4)
    mean = phases.mean()
    return float(abs(mean)), float(np.angle(mean) / (2 * np.pi))
