"""MIDI in and out: pads trigger presets, knobs turn parameters, and the DAW hears takes arrive.

In (every channel, or only the one `channel` names):
- note on: the preset whose `midi_note` (presets/*.toml) is that note is generated and played, at a
  gain set by the velocity. Note off, and note on with velocity 0 (which means note off), are
  ignored: a take plays to its end, like a one-shot sampler pad.
- control change, by default (`default_cc_map`; `parse_cc_map` reads a user map such as
  "diversity=1,strength=71,seconds=74"):
  CC 1 (mod wheel) → diversity 0..1 · CC 71 → strength 0.01..1 · CC 74 → seconds 0.1..the model's
  longest take. cfg (1..10) and steps (1..16) can be mapped too.

Out, in the 1-based channel numbers a DAW shows (mido counts from 0):
- channel 1: when a pad's take is ready, a short note (on at velocity 127, then off) on the pad's
  note, a trigger a DAW can record.
- channel 2: note on with the pad's velocity when a take starts playing, note off when it ends.

Virtual ports ("Studio In", "Studio Out") need the ALSA sequencer (Linux) or CoreMIDI (macOS);
Windows has none, so there a loopMIDI port is opened by name instead.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import mido
from mido.backends.rtmidi_utils import expand_alsa_port_name

from studio.errors import StudioError

log = logging.getLogger(__name__)

VIRTUAL_IN = "Studio In"
VIRTUAL_OUT = "Studio Out"
ALSA_SEQUENCER = Path("/dev/snd/seq")
POLL_INTERVAL_S = 0.001  # the in-port's poll period: 1 ms of jitter is far below a take's generation time
KEEP_WORKING = "OSC and the browser keep working"

# param: (low, high) that CC 0..127 spans; seconds' high is the model's longest take.
CC_RANGES: dict[str, tuple[float, float]] = {
    "diversity": (0.0, 1.0),
    "strength": (0.01, 1.0),
    "cfg": (1.0, 10.0),
    "steps": (1.0, 16.0),
}
SECONDS_LOW = 0.1


class MidiUnavailable(StudioError):
    """MIDI cannot start: no sequencer, no virtual ports, python-rtmidi missing, or no such port."""


class MidiMappingError(StudioError):
    """A CC map given by the user is malformed."""


@dataclass(frozen=True)
class CCMapping:
    cc: int
    param: str
    low: float
    high: float

    def value(self, cc_value: int) -> float:
        """CC 0 → low, 127 → high, linear between (steps are rounded when applied)."""
        return self.low + (self.high - self.low) * min(max(cc_value, 0), 127) / 127


def _mapping(param: str, cc: int, max_seconds: float) -> CCMapping:
    low, high = (SECONDS_LOW, max_seconds) if param == "seconds" else CC_RANGES[param]
    return CCMapping(cc, param, low, high)


def default_cc_map(max_seconds: float) -> tuple[CCMapping, ...]:
    """Mod wheel → diversity, CC 71 (resonance on most controllers) → strength, CC 74 (cutoff) → seconds."""
    pairs = (("diversity", 1), ("strength", 71), ("seconds", 74))
    return tuple(_mapping(param, cc, max_seconds) for param, cc in pairs)


def parse_cc_map(text: str, max_seconds: float) -> tuple[CCMapping, ...]:
    """A map written as "param=cc,param=cc", e.g. "diversity=1,strength=71,seconds=74"."""
    params = (*CC_RANGES, "seconds")
    hint = f'write param=cc pairs, e.g. "diversity=1,seconds=74"; params: {", ".join(params)}'
    mappings: list[CCMapping] = []
    for pair in (p.strip() for p in text.split(",")):
        param, sep, cc_text = (s.strip() for s in pair.partition("="))
        if not sep or not param or not cc_text:
            raise MidiMappingError(f"CC map entry {pair!r} is not param=cc", hint)
        if param not in params:
            raise MidiMappingError(f"CC map: unknown param {param!r}", hint)
        if not cc_text.isdigit() or int(cc_text) > 127:
            raise MidiMappingError(f"CC map: {param}={cc_text}: a CC number is 0..127", hint)
        cc = int(cc_text)
        if any(m.param == param for m in mappings):
            raise MidiMappingError(f"CC map: {param} is mapped twice", hint)
        if any(m.cc == cc for m in mappings):
            raise MidiMappingError(f"CC map: CC {cc} is mapped twice", hint)
        mappings.append(_mapping(param, cc, max_seconds))
    return tuple(mappings)


def midi_off_reason(exc: Exception, platform: str, has_sequencer: bool) -> MidiUnavailable:
    """Why the MIDI backend failed, in the user's words, from the exception it raised."""
    if isinstance(exc, ImportError):
        return MidiUnavailable(
            "MIDI is off: the python-rtmidi package is missing",
            f"pip install python-rtmidi, or run without --midi; {KEEP_WORKING}",
        )
    if platform.startswith("linux") and not has_sequencer:
        return MidiUnavailable(
            f"MIDI is off: {ALSA_SEQUENCER} is missing: the snd-seq kernel module is not loaded, "
            "or this is a container without sound devices",
            f"load it with `sudo modprobe snd-seq`, or run without --midi; {KEEP_WORKING}",
        )
    if platform.startswith("linux") and "ALSA" in str(exc):
        return MidiUnavailable(
            f"MIDI is off: the ALSA sequencer refused Studio ({exc})",
            f"join the `audio` group to open {ALSA_SEQUENCER}, or run without --midi; {KEEP_WORKING}",
        )
    return MidiUnavailable(f"MIDI is off: {exc}", f"run without --midi; {KEEP_WORKING}")


@contextmanager
def _backend() -> Iterator[None]:
    # rtmidi's failures arrive as ImportError (no python-rtmidi), rtmidi.SystemError (an OSError: no
    # ALSA sequencer), RuntimeError (unsupported operation) or mido's OSError.
    try:
        yield
    except (ImportError, OSError, RuntimeError) as exc:
        raise midi_off_reason(exc, sys.platform, ALSA_SEQUENCER.exists()) from exc


def port_names() -> tuple[list[str], list[str]]:
    """The MIDI input and output ports that exist now."""
    with _backend():
        return mido.get_input_names(), mido.get_output_names()


def _existing(name: str, names: list[str], kind: str) -> str:
    # ALSA names carry client and port numbers ("loopMIDI:Port 1 128:0"); mido accepts the short name.
    full = expand_alsa_port_name(names, name)
    if full in names:
        return full
    listed = f"existing {kind} ports: {', '.join(names)}" if names else f"there are no MIDI {kind} ports"
    raise MidiUnavailable(f"there is no MIDI {kind} port named {name!r}", listed)


def open_ports(in_name: str | None, out_name: str | None, virtual: bool = True) -> tuple[Any, Any]:
    """(input, output) ports: new virtual ones, or the named existing ones (None: that side stays closed).

    Virtual ports are named `in_name`/`out_name`, "Studio In"/"Studio Out" when those are None.
    """
    if virtual and sys.platform == "win32":
        raise MidiUnavailable(
            "MIDI is off: Windows has no virtual MIDI ports",
            "install loopMIDI, create a port, and pass --midi-in/--midi-out with its name",
        )
    with ExitStack() as opened, _backend():
        if virtual:
            inport = opened.enter_context(mido.open_input(in_name or VIRTUAL_IN, virtual=True))
            outport = opened.enter_context(mido.open_output(out_name or VIRTUAL_OUT, virtual=True))
        else:
            ins, outs = port_names() if in_name or out_name else ([], [])
            inport = outport = None
            if in_name:
                inport = opened.enter_context(mido.open_input(_existing(in_name, ins, "input")))
            if out_name:
                outport = opened.enter_context(mido.open_output(_existing(out_name, outs, "output")))
        opened.pop_all()  # success: the caller owns the ports now
    return inport, outport


class MidiController(Protocol):
    """What the MIDI bridge drives: the instrument behind it."""

    def trigger_note(self, note: int, velocity: int) -> None: ...

    def set_param(self, name: str, value: float) -> None: ...


def _clamp(value: int, low: int, high: int) -> int:
    return min(max(int(value), low), high)


class MidiBridge:
    """Reads the in-port on a thread and drives the controller; reports takes on the out-port."""

    def __init__(
        self,
        controller: MidiController,
        inport: Any,
        outport: Any,
        cc_map: tuple[CCMapping, ...],
        channel: int | None = None,
        ready_channel: int = 0,
        play_channel: int = 1,
    ):
        self.controller = controller
        self.inport = inport
        self.outport = outport
        self.channel = channel
        self.ready_channel = ready_channel
        self.play_channel = play_channel
        self._cc = {m.cc: m for m in cc_map}
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None

    def handle(self, msg: mido.Message) -> None:
        """One incoming message; the controller's failures are logged so one bad pad cannot stop MIDI."""
        if self.channel is not None and getattr(msg, "channel", None) != self.channel:
            return
        try:
            if msg.type == "note_on" and msg.velocity > 0:
                self.controller.trigger_note(msg.note, msg.velocity)
            elif msg.type == "control_change" and msg.control in self._cc:
                mapping = self._cc[msg.control]
                value = mapping.value(msg.value)
                self.controller.set_param(mapping.param, round(value) if mapping.param == "steps" else value)
        except Exception:
            log.exception("MIDI %s failed", msg)

    def follow_model(self, max_seconds: float) -> None:
        """A knob mapped to seconds spans the loaded model's lengths: rescaled when it changes."""
        self._cc = {
            cc: dataclasses.replace(m, high=max_seconds) if m.param == "seconds" else m
            for cc, m in self._cc.items()
        }

    def start(self) -> None:
        if self.inport is None or self._reader is not None:
            return
        self._stop.clear()
        self._reader = threading.Thread(target=self._read, name="studio-midi-in", daemon=True)
        self._reader.start()

    def close(self) -> None:
        """Stop reading, then close both ports (close() is not thread-safe, so the reader stops first)."""
        self._stop.set()
        if self._reader is not None:
            self._reader.join()
            self._reader = None
        if self.inport is not None:
            self.inport.close()
        with self._send_lock:
            if self.outport is not None:
                self.outport.close()

    def take_ready(self, note: int) -> None:
        """A short note on the ready channel: a trigger the DAW can record where the take arrived."""
        self._send("note_on", note, 127, self.ready_channel)
        self._send("note_off", note, 0, self.ready_channel)

    def voice_started(self, note: int, velocity: int) -> None:
        # Velocity stays 1..127: a note on at velocity 0 would read as a note off.
        self._send("note_on", note, _clamp(velocity, 1, 127), self.play_channel)

    def voice_ended(self, note: int) -> None:
        self._send("note_off", note, 0, self.play_channel)

    def _read(self) -> None:
        # Polling, not `for msg in inport`: mido's rtmidi input blocks on a queue that closing the port
        # never wakes, so a blocking reader could not be joined.
        while not self._stop.is_set():
            msg = self.inport.poll()
            if msg is None:
                self._stop.wait(POLL_INTERVAL_S)
            else:
                self.handle(msg)

    def _send(self, kind: str, note: int, velocity: int, channel: int) -> None:
        if self.outport is None:
            return
        msg = mido.Message(kind, note=_clamp(note, 0, 127), velocity=velocity, channel=channel)
        with self._send_lock:
            try:
                self.outport.send(msg)
            except (OSError, ValueError) as exc:  # ValueError: the port was closed
                log.warning("MIDI out: %s not sent: %s", msg, exc)
