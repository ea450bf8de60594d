"""Local playback: the mixer's arithmetic, and the player's errors and stream without a sound card."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from fakes import install_fake_sounddevice

from studio.bridges.playback import Mixer, PlaybackError, Player, output_devices


def ramp(start: float, frames: int, channels: int = 2) -> np.ndarray:
    """Distinct values per frame and channel, so a wrong offset or a swapped channel shows."""
    row = start + 0.01 * np.arange(frames, dtype=np.float32)
    return np.stack([row * (1 if c % 2 == 0 else -1) for c in range(channels)]).astype(np.float32)


def test_overlapping_voices_sum_sample_for_sample():
    mixer = Mixer(8000)
    a, b = ramp(0.1, 12), ramp(0.3, 4)
    mixer.add(a)
    np.testing.assert_array_equal(mixer.render(4), a[:, :4].T)
    mixer.add(b)  # starts mid-way through a: both play in the next buffer
    both = mixer.render(4)
    assert both.dtype == np.float32 and both.shape == (4, 2)
    np.testing.assert_array_equal(both, a[:, 4:8].T + b.T)
    np.testing.assert_array_equal(mixer.render(4), a[:, 8:12].T)  # b ended; a was not cut off


def test_gain_scales_a_voice():
    mixer = Mixer(8000)
    mixer.add(ramp(0.2, 6), gain=0.5)
    np.testing.assert_array_equal(mixer.render(6), 0.5 * ramp(0.2, 6).T)


def test_a_finished_voice_is_removed_and_reported_once():
    mixer = Mixer(8000)
    ended = []
    mixer.add(ramp(0.1, 5), on_end=lambda: ended.append("a"))
    mixer.render(4)
    assert mixer.active() == 1 and mixer.pop_finished() == []
    tail = mixer.render(4)
    np.testing.assert_array_equal(tail[1:], 0)  # silence after the voice's last frame
    assert mixer.active() == 0
    callbacks = mixer.pop_finished()
    assert len(callbacks) == 1
    callbacks[0]()
    assert ended == ["a"] and mixer.pop_finished() == []


def test_stop_one_voice_or_all_and_each_on_end_fires_once():
    mixer = Mixer(8000)
    ended = []
    first = mixer.add(ramp(0.1, 100), on_end=lambda: ended.append(1))
    mixer.add(ramp(0.1, 100), on_end=lambda: ended.append(2))
    mixer.add(ramp(0.1, 100), on_end=lambda: ended.append(3))
    mixer.stop(first)
    mixer.stop(first)  # already gone: no second callback
    assert mixer.active() == 2
    mixer.stop(None)
    assert mixer.active() == 0
    np.testing.assert_array_equal(mixer.render(8), 0)
    for callback in mixer.pop_finished():
        callback()
    assert sorted(ended) == [1, 2, 3] and mixer.pop_finished() == []


def test_mono_voices_play_on_both_channels_of_a_stereo_mixer():
    mixer = Mixer(8000, channels=2)
    mono = ramp(0.1, 4, channels=1)
    mixer.add(mono)
    mixer.add(mono[0])  # a bare [frames] array is mono too
    out = mixer.render(4)
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    np.testing.assert_array_equal(out[:, 0], 2 * mono[0])


def test_the_sum_is_clipped_to_full_scale():
    mixer = Mixer(8000, channels=1)
    loud = np.array([[0.8, -0.8, 0.3]], dtype=np.float32)
    mixer.add(loud)
    mixer.add(loud)
    np.testing.assert_allclose(mixer.render(3)[:, 0], [1.0, -1.0, 0.6], rtol=1e-6)


def test_start_without_an_output_device_says_so():
    try:
        devices = output_devices()
    except PlaybackError:
        devices = []
    if devices:
        pytest.skip(f"this machine has output devices: {devices}")
    with pytest.raises(PlaybackError) as caught:
        Player(44100).start()
    assert "no audio output device" in caught.value.message and "studio devices" in caught.value.hint


def test_an_unknown_device_is_named_with_the_reason():
    with pytest.raises(PlaybackError) as caught:
        Player(44100, device="no such device 1234").start()
    assert "no such device 1234" in caught.value.message and caught.value.hint


class _NoPortAudio:
    """An import hook that fails the way sounddevice does when libportaudio is missing."""

    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return None


def test_missing_portaudio_says_how_to_install_it(monkeypatch):
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoPortAudio(), *sys.meta_path])
    for attempt in (Player(44100).start, output_devices):
        with pytest.raises(PlaybackError) as caught:
            attempt()
        assert "PortAudio library is missing" in caught.value.message
        assert "libportaudio2" in caught.value.hint and "brew install portaudio" in caught.value.hint


def test_missing_sounddevice_package_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # makes `import sounddevice` raise ImportError
    with pytest.raises(PlaybackError, match="sounddevice package is missing"):
        Player(44100).start()


def test_latency_must_be_low_high_or_seconds():
    Player(44100, latency=0.005)
    with pytest.raises(PlaybackError, match="latency"):
        Player(44100, latency="fast")


def test_play_before_start_is_an_error():
    with pytest.raises(PlaybackError, match="not started"):
        Player(44100).play(np.zeros((2, 10), np.float32), 44100)


@pytest.fixture
def fake_sounddevice(monkeypatch):
    return install_fake_sounddevice(monkeypatch)


def test_player_resamples_mixes_and_runs_callbacks_off_the_audio_thread(fake_sounddevice):
    player = Player(44100, latency="low")
    player.start()
    stream = fake_sounddevice.streams[0]
    assert player.sample_rate == 48000 and stream.samplerate == 48000 and stream.latency == "low"
    assert output_devices() == ["Fake Out"]

    started, ended = threading.Event(), threading.Event()
    ended_on = []

    def on_end():
        ended_on.append(threading.current_thread().name)
        ended.set()

    tone = np.full(441, 0.25, dtype=np.float32)  # 10 ms of mono at 44.1 kHz
    player.play(tone, 44100, gain=2.0, on_start=started.set, on_end=on_end)
    assert started.is_set()
    out = stream.pull(480)  # 10 ms at 48 kHz: the whole voice, resampled
    np.testing.assert_allclose(out[100:380], 0.5, atol=0.02)  # gain 2, both channels, edges aside
    np.testing.assert_array_equal(out[:, 0], out[:, 1])
    assert ended.wait(2) and ended_on == ["studio-playback-notify"]

    def broken():
        raise RuntimeError("a bad callback")

    again = threading.Event()
    player.play(tone, 48000, on_end=broken)
    player.play(tone, 48000, on_end=again.set)
    stream.pull(480)
    assert again.wait(2)  # the failing callback was logged, the notifier lives on

    closed = threading.Event()
    player.play(np.zeros(48000 * 10, np.float32), 48000, on_end=closed.set)
    player.close()
    assert stream.closed and closed.is_set()  # close ends the voice and runs its on_end first
