"""Real audio files in and out."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from studio.audio import prepare_recording, read_audio, write_audio
from studio.errors import AudioError


def test_write_then_read_roundtrip(tmp_path):
    audio = (0.5 * np.sin(np.linspace(0, 100, 4410))).astype(np.float32)[None].repeat(2, axis=0)
    for bits, tolerance in ((16, 1e-4), (24, 1e-6), (32, 0)):
        path = write_audio(tmp_path / f"x{bits}.wav", audio, 44100, bits)
        back, rate = read_audio(path)
        assert rate == 44100 and back.shape == audio.shape
        assert np.abs(back - audio).max() <= tolerance
    flac = write_audio(tmp_path / "x.flac", audio, 44100, 16)
    assert sf.info(str(flac)).format == "FLAC"


def test_loud_audio_is_clipped_not_wrapped(tmp_path):
    loud = np.array([[2.0, -3.0, 0.5]], dtype=np.float32)
    back, _ = read_audio(write_audio(tmp_path / "loud.wav", loud, 8000, 16))
    assert back[0, 0] == pytest.approx(1.0, abs=1e-4) and back[0, 1] == pytest.approx(-1.0, abs=1e-4)


def test_no_temporary_files_are_left_behind(tmp_path):
    write_audio(tmp_path / "a.wav", np.zeros((1, 10), np.float32), 8000)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]


def test_writing_into_a_file_path_fails_clearly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AudioError, match="cannot write"):
        write_audio(blocker / "a.wav", np.zeros((1, 10), np.float32), 8000)


def test_prepare_recording_resamples_converts_and_pads():
    mono = np.ones((1, 16000), np.float32) * 0.25
    prepared, report = prepare_recording(mono, 16000, 48000, 2, 96000)
    assert prepared.shape == (2, 96000)
    assert report.resampled_from == 16000 and report.channels_from == 1 and report.padded
    assert np.allclose(prepared[:, 1000:40000], 0.25, atol=1e-3)
    assert np.all(prepared[:, 50000:] == 0)
    assert "resampled from 16000 Hz" in report.describe()


def test_unreadable_and_empty_files(tmp_path):
    (tmp_path / "text.wav").write_text("hello")
    with pytest.raises(AudioError, match="not a readable audio file"):
        read_audio(tmp_path / "text.wav")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 2)), 44100)
    with pytest.raises(AudioError, match="empty"):
        read_audio(tmp_path / "empty.wav")
