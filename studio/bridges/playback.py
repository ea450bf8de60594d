"""Low-latency local playback: takes start the moment they are triggered and overlap freely.

sounddevice's `play()` stops whatever played before, so an instrument needs one persistent
`OutputStream` whose callback mixes every sounding voice (see docs "MIDI and audio"). The `Mixer` is
that mix, pure numpy so it can be tested without a sound card; the `Player` owns the stream.

Callbacks (`on_end`) never run on the audio thread: a late callback there would cause dropouts, so
the mixer only queues them and a notifier thread runs them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from studio.audio import convert_channels, resample
from studio.errors import StudioError

log = logging.getLogger(__name__)

NOTIFY_INTERVAL_S = 0.01  # how often finished voices' callbacks run: well under a musical 16th note
DEVICES_HINT = "`studio devices` lists the output devices"


class PlaybackError(StudioError):
    """Local playback cannot start: PortAudio, the sounddevice package or the output device is missing."""


@dataclass
class _Voice:
    audio: np.ndarray  # float32 [channels, frames] at the mixer's rate
    gain: float
    on_end: Callable[[], None] | None
    position: int = 0


class Mixer:
    """Sums any number of voices into one buffer; any thread may add or stop voices while it renders."""

    def __init__(self, sample_rate: int, channels: int = 2):
        self.sample_rate = sample_rate
        self.channels = channels
        self._voices: dict[int, _Voice] = {}
        self._finished: list[Callable[[], None]] = []
        self._next_id = 0
        self._lock = threading.Lock()

    def add(self, audio: np.ndarray, gain: float = 1.0, on_end: Callable[[], None] | None = None) -> int:
        """Start a voice now; `audio` is [channels, frames] (or [frames] for mono) at the mixer's rate."""
        audio = convert_channels(np.atleast_2d(np.asarray(audio, dtype=np.float32)), self.channels)
        voice = _Voice(np.ascontiguousarray(audio), float(gain), on_end)
        with self._lock:
            self._next_id += 1
            self._voices[self._next_id] = voice
            return self._next_id

    def stop(self, voice: int | None = None) -> None:
        """Silence one voice, or every voice when `voice` is None; a voice already gone is ignored."""
        with self._lock:
            ids = list(self._voices) if voice is None else [voice] if voice in self._voices else []
            for key in ids:
                self._retire(key)

    def render(self, frames: int) -> np.ndarray:
        """The next `frames` of the mix, float32 [frames, channels] as PortAudio wants it."""
        out = np.zeros((frames, self.channels), dtype=np.float32)
        with self._lock:
            for key, voice in list(self._voices.items()):
                chunk = voice.audio[:, voice.position : voice.position + frames]
                out[: chunk.shape[1]] += chunk.T * voice.gain
                voice.position += chunk.shape[1]
                if voice.position >= voice.audio.shape[1]:
                    self._retire(key)
        # A hard clip, not a limiter: a limiter needs look-ahead (latency) and state, and a sum past
        # full scale is rare (two loud takes at once); clipping keeps it from wrapping or from
        # reaching the device out of range, where drivers differ in what they do with it.
        return np.clip(out, -1.0, 1.0, out=out)

    def active(self) -> int:
        with self._lock:
            return len(self._voices)

    def pop_finished(self) -> list[Callable[[], None]]:
        """The `on_end` callbacks of voices that ended or were stopped since the last call, each once."""
        with self._lock:
            finished, self._finished = self._finished, []
        return finished

    def _retire(self, key: int) -> None:
        # Caller holds the lock.
        voice = self._voices.pop(key)
        if voice.on_end is not None:
            self._finished.append(voice.on_end)


def _run_callback(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("a playback callback failed")


def _import_sounddevice() -> ModuleType:
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError("PortAudio library not found")
        raise PlaybackError(
            "playback is off: the PortAudio library is missing",
            "install it: sudo apt-get install libportaudio2 (Debian/Ubuntu), brew install portaudio (macOS)",
        ) from exc
    except ImportError as exc:
        raise PlaybackError(
            "playback is off: the sounddevice package is missing", "pip install sounddevice"
        ) from exc
    return sounddevice


def _output_names(sd: ModuleType) -> list[str]:
    return [d["name"] for d in sd.query_devices() if d["max_output_channels"] > 0]


def output_devices() -> list[str]:
    """Names of the devices that can play audio."""
    return _output_names(_import_sounddevice())


def _device_hint(sd: ModuleType) -> str:
    names = _output_names(sd)
    if not names:
        return f"connect or enable a sound card or headphones; {DEVICES_HINT}"
    return f"pick one of: {', '.join(names)} ({DEVICES_HINT})"


def _open_failure(sd: ModuleType, device: str | int | None, reason: Exception) -> PlaybackError:
    which = "the default output device" if device is None else f"output device {device!r}"
    if device is None and not _output_names(sd):
        return PlaybackError("no audio output device found", _device_hint(sd))
    return PlaybackError(f"cannot play on {which}: {reason}", _device_hint(sd))


class Player:
    """One always-open output stream; `play` starts a voice on it without interrupting the others."""

    def __init__(
        self,
        sample_rate: int,
        channels: int = 2,
        device: str | int | None = None,
        latency: str | float = "low",
    ):
        seconds = isinstance(latency, int | float) and latency > 0
        if not (seconds or latency in ("low", "high")):
            raise PlaybackError(
                f"latency {latency!r} is not 'low', 'high' or a number of seconds", "use latency='low'"
            )
        self.sample_rate = sample_rate  # the rate in use: the device's own when it refuses the asked one
        self.channels = channels
        self.device = device
        self.latency = latency
        self._mixer: Mixer | None = None
        self._stream: Any = None
        self._closing = threading.Event()
        self._notifier: threading.Thread | None = None

    def start(self) -> None:
        """Open the device and start the stream (silence until the first `play`); again is a no-op."""
        if self._stream is not None:
            return
        sd = _import_sounddevice()
        try:
            info = sd.query_devices(self.device, "output")
            self.sample_rate = self._supported_rate(sd, info)
            self._mixer = Mixer(self.sample_rate, self.channels)
            self._stream = sd.OutputStream(
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="float32",
                device=self.device,
                latency=self.latency,
                callback=self._fill,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            raise _open_failure(sd, self.device, exc) from exc
        self._closing.clear()
        self._notifier = threading.Thread(target=self._notify, name="studio-playback-notify", daemon=True)
        self._notifier.start()

    def play(
        self,
        audio: np.ndarray,
        rate: int,
        gain: float = 1.0,
        on_start: Callable[[], None] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> int:
        """Start `audio` ([channels, frames] or [frames], any rate) now; returns its voice id for `stop`."""
        if self._mixer is None:
            raise PlaybackError("playback is not started", "call Player.start() before play()")
        audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
        voice = self._mixer.add(resample(audio, rate, self.sample_rate), gain, on_end)
        if on_start is not None:
            _run_callback(on_start)
        return voice

    def stop(self, voice: int | None = None) -> None:
        """Stop one voice, or all of them; their `on_end` still runs."""
        if self._mixer is not None:
            self._mixer.stop(voice)

    def close(self) -> None:
        """Stop every voice, close the stream, and run the last `on_end` callbacks before returning."""
        self.stop()
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._closing.set()
        if self._notifier is not None:
            self._notifier.join()
            self._notifier = None
        self._mixer = None

    def _supported_rate(self, sd: ModuleType, info: dict[str, Any]) -> int:
        try:
            sd.check_output_settings(self.device, channels=self.channels, samplerate=self.sample_rate)
        except sd.PortAudioError:
            fallback = int(info["default_samplerate"])
            log.info("%s refuses %d Hz; playing at its %d Hz", info["name"], self.sample_rate, fallback)
            return fallback
        return self.sample_rate

    def _fill(self, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        # The audio thread: no allocation beyond the mix, no locks held long, no user callbacks.
        assert self._mixer is not None
        outdata[:] = self._mixer.render(frames)

    def _notify(self) -> None:
        assert self._mixer is not None
        while True:
            closing = self._closing.wait(NOTIFY_INTERVAL_S)
            for callback in self._mixer.pop_finished():
                _run_callback(callback)
            if closing:
                return
