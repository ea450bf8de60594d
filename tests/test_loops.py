"""Export and loop tools on synthetic audio whose tempo, key, loudness and length are known."""

from __future__ import annotations

import shutil

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from studio.errors import AudioError
from studio.loops import (
    EXPORT_FORMATS,
    estimate_bpm,
    estimate_key,
    export_audio,
    fade,
    make_loop,
    normalize_loudness,
    trim_silence,
)

SR = 22050


def click_track(bpm: float, seconds: float, rate: int = SR, channels: int = 1) -> np.ndarray:
    """A 2 kHz click, 9 ms long, on every beat from the first sample."""
    audio = np.zeros(round(seconds * rate), np.float32)
    n = np.arange(200)
    click = (0.8 * np.exp(-n / 30.0) * np.sin(2 * np.pi * 2000 * n / rate)).astype(np.float32)
    for start in np.arange(0, audio.size - click.size, 60.0 / bpm * rate).round().astype(int):
        audio[start : start + click.size] += click
    return np.repeat(audio[None], channels, axis=0)


def tones(freqs: list[float], seconds: float, rate: int = SR, level: float = 0.2) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (level * sum(np.sin(2 * np.pi * f * t) for f in freqs)).astype(np.float32)[None]


def drum_loop(bpm: float, seconds: float, rate: int = 44100) -> np.ndarray:
    """A rock beat: hi-hat eighths, kick on 1, 3 and the "and" of 2, snare on 2 and 4; synthesised
    drums, seeded noise."""
    rng = np.random.default_rng(round(bpm * 100))
    t = np.arange(round(0.09 * rate)) / rate
    hits = {
        "hat": 0.2 * rng.standard_normal(t.size) * np.exp(-t * 120),
        "kick": np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 40)) * t) * np.exp(-t * 25),
        "snare": 0.5 * rng.standard_normal(t.size) * np.exp(-t * 30),
    }
    audio = np.zeros(round(seconds * rate) + t.size)
    for sixteenth in range(int(seconds * bpm / 15) + 1):
        step = sixteenth % 16
        start = round(sixteenth * 15 / bpm * rate)
        for name, plays in (("hat", step % 2 == 0), ("kick", step in (0, 6, 8)), ("snare", step in (4, 12))):
            if plays:
                audio[start : start + t.size] += hits[name]
    return audio[None, : round(seconds * rate)].astype(np.float32)


@pytest.mark.parametrize("bpm", [97.4, 117.6, 138.2])
def test_estimate_bpm_of_a_four_second_drum_loop_is_its_beat_to_half_a_percent(bpm):
    # a take's length: a beat tracker reads such a loop at half its tempo (kick and snare) or off by
    # a few percent (too few beats to fit); every onset voting on the tempo reads it exactly
    assert estimate_bpm(drum_loop(bpm, 4.18), 44100) == pytest.approx(bpm, rel=0.005)


@pytest.mark.parametrize("bpm", [100, 120, 140])
def test_estimate_bpm_of_a_click_track(bpm):
    assert estimate_bpm(click_track(bpm, 8.0), SR) == pytest.approx(bpm, abs=2)


def test_estimate_bpm_with_a_dropped_beat_and_at_44_1_khz():
    audio = click_track(120, 8.0, rate=44100)
    audio[:, round(2.0 * 44100) : round(2.1 * 44100)] = 0  # one click missing
    assert estimate_bpm(audio, 44100) == pytest.approx(120, abs=2)


def test_tempo_and_key_of_silence_are_clear_errors():
    silence = np.zeros((1, SR * 4), np.float32)
    with pytest.raises(AudioError, match="silent: it has no beat"):
        estimate_bpm(silence, SR)
    with pytest.raises(AudioError, match="no steady beat"):
        estimate_bpm(tones([440.0], 4.0), SR)
    with pytest.raises(AudioError, match="no pitched content"):
        estimate_key(silence, SR)


def drops(times_s: np.ndarray, seconds: float, seed: int, rate: int = 44100) -> np.ndarray:
    """Rain-like clicks: a 20 ms burst of seeded noise at each time, over a quiet hiss."""
    rng = np.random.default_rng(seed)
    audio = 0.01 * rng.standard_normal(round(seconds * rate))
    burst = round(0.02 * rate)
    decay = np.exp(-np.arange(burst) / 200)
    for start in (times_s * rate).astype(int):
        audio[start : start + burst] += rng.uniform(0.1, 0.5) * rng.standard_normal(burst) * decay
    return audio[None].astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_and_rain_have_no_beat_but_the_same_drops_on_a_grid_do(seed):
    rng = np.random.default_rng(seed)
    with pytest.raises(AudioError, match="no steady beat"):
        estimate_bpm(0.1 * rng.standard_normal((2, 44100 * 4)).astype(np.float32), 44100)
    with pytest.raises(AudioError, match="no steady beat"):
        estimate_bpm(drops(np.sort(rng.uniform(0, 4.1, 40)), 4.18, seed), 44100)
    bpm = rng.uniform(90, 140)
    assert estimate_bpm(drops(np.arange(0, 7.9, 60 / bpm), 8.0, seed), 44100) == pytest.approx(bpm, rel=0.01)


def test_estimate_key_of_an_a_minor_triad_and_a_c_major_scale():
    assert estimate_key(tones([220.0, 261.63, 329.63], 3.0), SR) == "A minor"
    scale = [261.63, 293.66, 329.63, 349.23, 392.0, 440.0, 493.88, 523.25]
    assert estimate_key(np.concatenate([tones([f], 0.4) for f in scale], axis=1), SR) == "C major"
    assert estimate_key(tones([277.18, 349.23, 415.30], 3.0), SR) == "C# major"


def test_trim_silence_keeps_the_tone_and_the_pad():
    rate, pad_s = 8000, 0.01
    tone = (0.5 * np.cos(2 * np.pi * 440 * np.arange(rate // 2) / rate)).astype(np.float32)[None]  # loud ends
    silence = np.zeros((1, rate // 2), np.float32)
    audio = np.repeat(np.concatenate([silence, tone, silence], axis=1), 2, axis=0)
    trimmed = trim_silence(audio, rate, pad_s=pad_s)
    pad = round(pad_s * rate)
    assert trimmed.shape == (2, tone.shape[1] + 2 * pad)
    np.testing.assert_array_equal(trimmed[:, pad:-pad], audio[:, rate // 2 : rate // 2 + tone.shape[1]])


def test_trim_silence_of_silence_is_a_short_silent_clip():
    trimmed = trim_silence(np.zeros((2, 8000), np.float32), 8000, pad_s=0.01)
    assert trimmed.shape == (2, 80) and not trimmed.any()


def test_normalize_to_minus_14_lufs_under_the_ceiling():
    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal((2, SR * 3))).astype(np.float32)
    out = normalize_loudness(audio, SR, target_lufs=-14.0, peak_ceiling_db=-1.0)
    loudness = pyloudnorm.Meter(SR).integrated_loudness(out.T.astype(np.float64))
    assert loudness == pytest.approx(-14.0, abs=0.5)
    assert 20 * np.log10(np.abs(out).max()) <= -1.0


def test_normalize_never_passes_the_peak_ceiling():
    audio = tones([440.0], 2.0, level=0.01)
    audio[0, :: SR // 2] = 0.5  # spikes: reaching -14 LUFS would push them far over the ceiling
    out = normalize_loudness(audio, SR, target_lufs=-6.0, peak_ceiling_db=-1.0)
    assert np.abs(out).max() <= 10 ** (-1.0 / 20)
    assert np.abs(out).max() == pytest.approx(10 ** (-1.0 / 20), rel=1e-5)


def test_normalize_a_clip_shorter_than_the_gating_block_and_silence():
    short = tones([1000.0], 0.2, level=0.01)
    out = normalize_loudness(short, SR, target_lufs=-20.0)
    mean_square_lufs = -0.691 + 10 * np.log10(np.mean(out.astype(np.float64) ** 2))
    assert mean_square_lufs == pytest.approx(-20.0, abs=0.1)
    whisper = tones([1000.0], 1.0, level=1e-4)  # below BS.1770's -70 LUFS gate, still made loud
    assert np.abs(normalize_loudness(whisper, SR)).max() > 0.1
    silence = np.zeros((1, SR), np.float32)
    np.testing.assert_array_equal(normalize_loudness(silence, SR), silence)


def test_fades_reach_zero_and_leave_the_middle_alone():
    audio = np.ones((2, SR), np.float32)
    out = fade(audio, SR, fade_in_s=0.1, fade_out_s=0.2)
    assert out.shape == audio.shape and out.dtype == np.float32
    assert np.all(out[:, 0] == 0) and np.all(out[:, -1] == 0)
    np.testing.assert_array_equal(out[:, round(0.1 * SR) : -round(0.2 * SR)], 1.0)
    assert np.all(np.diff(out[0, : round(0.1 * SR)]) > 0)
    assert out[0, round(0.05 * SR)] == pytest.approx(np.sin(np.pi / 4), abs=1e-3)  # equal-power midpoint


def test_a_fade_longer_than_the_clip_is_clamped_and_a_negative_one_refused():
    out = fade(np.ones((1, 100), np.float32), SR, fade_in_s=10.0)
    assert out.shape == (1, 100) and out[0, 0] == 0 and out[0, -1] == pytest.approx(1.0)
    with pytest.raises(AudioError, match="fade_out_s must be 0 or more"):
        fade(np.ones((1, 100), np.float32), SR, fade_out_s=-1.0)


def test_make_loop_from_100_to_120_bpm_is_whole_bars():
    audio = click_track(100, 10.0, channels=2)
    loop, report = make_loop(audio, SR, target_bpm=120, source_bpm=100)
    bar = 4 * 60 / 120 * SR  # 10 s at 100 BPM is 8.33 s at 120 BPM: 4 whole 2-second bars
    assert report == {
        "source_bpm": 100.0,
        "target_bpm": 120.0,
        "bars": 4,
        "seconds": 8.0,
        "stretch_rate": 1.2,
    }
    assert loop.shape[0] == 2 and abs(loop.shape[1] - 4 * bar) <= 4
    assert np.all(loop[:, -1] == 0)  # faded at the cut
    assert estimate_bpm(loop, SR) == pytest.approx(120, abs=2)


def test_make_loop_estimates_the_source_tempo_and_takes_fewer_bars():
    loop, report = make_loop(click_track(100, 10.0), SR, target_bpm=120, bars=2)
    assert report["source_bpm"] == pytest.approx(100, abs=2)
    assert report["bars"] == 2 and report["stretch_rate"] == pytest.approx(1.2, abs=0.03)
    assert abs(loop.shape[1] - round(2 * 4 * 60 / 120 * SR)) <= 4


def test_make_loop_refuses_what_does_not_fit_and_absurd_tempi():
    audio = click_track(100, 10.0)
    with pytest.raises(AudioError, match=r"too short for 5 bars at 120 BPM.*so 4 bar\(s\) fit"):
        make_loop(audio, SR, target_bpm=120, bars=5, source_bpm=100)
    with pytest.raises(AudioError, match="too short for one bar"):
        make_loop(audio[:, : SR // 2], SR, target_bpm=120, source_bpm=100)
    with pytest.raises(AudioError, match="target_bpm must be from 20 to 400"):
        make_loop(audio, SR, target_bpm=1000, source_bpm=100)
    with pytest.raises(AudioError, match="bars must be a whole number"):
        make_loop(audio, SR, target_bpm=120, bars=0, source_bpm=100)


@pytest.mark.parametrize(
    "fmt, suffix, file_format, subtype, tolerance",
    [
        ("wav16", ".wav", "WAV", "PCM_16", 1e-4),
        ("wav24", ".wav", "WAV", "PCM_24", 1e-6),
        ("flac", ".flac", "FLAC", "PCM_24", 1e-6),
    ],
)
def test_export_lossless_formats_read_back(tmp_path, fmt, suffix, file_format, subtype, tolerance):
    audio = np.repeat(tones([440.0], 0.5, level=0.5), 2, axis=0)
    path = export_audio(audio, SR, tmp_path / "take.mp3", fmt)
    assert path == tmp_path / f"take{suffix}" and [p.name for p in tmp_path.iterdir()] == [path.name]
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.channels, info.samplerate) == (file_format, subtype, 2, SR)
    back, _ = sf.read(str(path), dtype="float32", always_2d=True)
    assert np.abs(back.T - audio).max() <= tolerance


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_export_mp3_with_ffmpeg(tmp_path):
    audio = np.repeat(tones([440.0], 1.0, rate=44100, level=0.5), 2, axis=0)
    path = export_audio(audio, 44100, tmp_path / "take.wav", "mp3")
    assert path == tmp_path / "take.mp3" and [p.name for p in tmp_path.iterdir()] == ["take.mp3"]
    info = sf.info(str(path))
    assert info.format == "MP3" and info.channels == 2 and info.samplerate == 44100
    assert abs(info.duration - 1.0) < 0.1


def test_export_mp3_without_ffmpeg_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="MP3 export needs ffmpeg") as caught:
        export_audio(np.zeros((1, 100), np.float32), SR, tmp_path / "take", "mp3")
    assert "apt-get install ffmpeg" in caught.value.hint
    assert not any(tmp_path.iterdir())


def test_export_refuses_unknown_formats_and_bad_audio(tmp_path):
    with pytest.raises(AudioError, match="unknown export format 'ogg'") as caught:
        export_audio(np.zeros((1, 100), np.float32), SR, tmp_path / "x", "ogg")
    assert all(fmt in caught.value.hint for fmt in EXPORT_FORMATS)
    with pytest.raises(AudioError, match="NaN"):
        export_audio(np.full((1, 100), np.nan, np.float32), SR, tmp_path / "x", "wav16")
    with pytest.raises(AudioError, match="non-empty"):
        export_audio(np.zeros((1, 0), np.float32), SR, tmp_path / "x", "wav16")
