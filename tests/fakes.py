"""Stand-ins for what this machine lacks: a sound card (a fake `sounddevice`) and MIDI ports."""

from __future__ import annotations

import sys
import types

import numpy as np
from mido.ports import BaseIOPort


class LoopbackPort(BaseIOPort):
    """What is sent on it can be received from it: BaseInput.receive() pops `_messages`."""

    def _send(self, msg):
        self._messages.append(msg)


class FakeStream:
    def __init__(self, samplerate, channels, dtype, device, latency, callback):
        self.samplerate, self.channels, self.latency, self.callback = samplerate, channels, latency, callback
        self.closed = False

    def start(self):
        pass

    def close(self):
        self.closed = True

    def pull(self, frames: int) -> np.ndarray:
        """What PortAudio would do: hand the callback a buffer to fill."""
        outdata = np.full((frames, self.channels), np.nan, dtype=np.float32)
        self.callback(outdata, frames, None, None)
        return outdata


def install_fake_sounddevice(monkeypatch, rate: int = 48000) -> types.ModuleType:
    """A device that plays one sample rate only (48 kHz by default, so a 44.1 kHz player resamples)."""
    module = types.ModuleType("sounddevice")
    module.PortAudioError = type("PortAudioError", (Exception,), {})
    info = {"name": "Fake Out", "max_output_channels": 2, "default_samplerate": float(rate)}
    module.query_devices = lambda device=None, kind=None: info if kind else [info]

    def check_output_settings(device=None, channels=None, samplerate=None):
        if samplerate != rate:
            raise module.PortAudioError("Invalid sample rate")

    module.check_output_settings = check_output_settings
    module.streams = []
    module.OutputStream = lambda **kw: module.streams.append(FakeStream(**kw)) or module.streams[-1]
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    return module
