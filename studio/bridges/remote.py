"""Start and stop the DAW front-ends together: OSC server, MIDI ports, local playback.

OSC is what the user asked for by giving a port, so failing to bind it is an error. MIDI and
playback depend on the machine (a sequencer, a sound card): when they cannot start, the rest keeps
working and the reason is printed, and `/studio/status` repeats it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from studio.bridges.session import Session
from studio.errors import StudioError
from studio.service import Studio

log = logging.getLogger("studio.bridges")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class BridgeOptions:
    osc_port: int | None = None  # None: no OSC server
    osc_host: str = "127.0.0.1"
    osc_reply_port: int | None = None  # None: reply to the sender's own port
    allow_dirs: list[Path] = field(default_factory=list)  # besides the library and export folders
    midi: bool = False
    midi_in: str | None = None  # an existing port instead of the virtual "Studio In"
    midi_out: str | None = None
    midi_channel: int | None = None  # 1-16; None listens on every channel
    midi_cc: str | None = None  # e.g. "diversity=1,strength=71,seconds=74"
    play: bool = False  # MIDI pads play their takes, so --midi turns playback on too
    audio_device: str | None = None
    audio_latency: str = "low"

    @property
    def wanted(self) -> bool:
        return self.osc_port is not None or self.midi_on or self.play

    @property
    def midi_on(self) -> bool:
        return self.midi or self.midi_in is not None or self.midi_out is not None


class Bridges:
    """The running front-ends around one session; `notes` says what runs and what is off, and why."""

    def __init__(self, studio: Studio, options: BridgeOptions):
        from studio.bridges.midi import MidiBridge, MidiUnavailable, default_cc_map, open_ports, parse_cc_map
        from studio.bridges.osc import OscServer
        from studio.bridges.playback import PlaybackError, Player

        self.notes: list[str] = []
        self.session = Session(studio, options.allow_dirs)
        self.osc: OscServer | None = None
        self.midi: MidiBridge | None = None
        self.player: Player | None = None
        try:
            if options.play or options.midi_on:
                player = Player(
                    studio.model.sample_rate,
                    studio.model.channels,
                    _device(options.audio_device),
                    _latency(options.audio_latency),
                )
                try:
                    player.start()
                    self.player = self.session.player = player
                    self.notes.append(f"playback on {options.audio_device or 'the default output'}")
                except PlaybackError as exc:
                    self.session.playback_off = _off("playback", exc)
                    self.notes.append(self.session.playback_off)
            if options.midi_on:
                max_seconds = studio.model.max_seconds
                cc_map = parse_cc_map(options.midi_cc, max_seconds) if options.midi_cc else None
                channel = _midi_channel(options.midi_channel)
                try:
                    virtual = options.midi_in is None and options.midi_out is None
                    inport, outport = open_ports(options.midi_in, options.midi_out, virtual=virtual)
                except MidiUnavailable as exc:
                    self.session.midi_off = _off("MIDI", exc)
                    self.notes.append(self.session.midi_off)
                else:
                    self.midi = MidiBridge(
                        self.session, inport, outport, cc_map or default_cc_map(max_seconds), channel
                    )
                    self.session.midi = self.midi
                    self.midi.start()
                    names = ", ".join(getattr(p, "name", "?") for p in (inport, outport) if p is not None)
                    self.notes.append(f"MIDI on: {names}")
            if options.osc_port is not None:
                self.osc = OscServer(self.session, options.osc_host, options.osc_port, options.osc_reply_port)
                self.osc.start()
                host, port = self.osc.address
                replies = (
                    f"port {options.osc_reply_port}"
                    if options.osc_reply_port
                    else f"the sender's port and port {port + 1}"
                )
                self.notes.append(f"OSC on udp://{host}:{port} (replies to {replies})")
                if options.osc_host not in LOOPBACK:
                    self.notes.append(
                        "warning: OSC has no password; anyone who can reach this address can trigger takes"
                    )
        except BaseException:
            self.close()
            raise
        self.notes.append(f"takes are handed to DAWs in {studio.export_dir}")

    def close(self) -> None:
        for part in (self.osc, self.midi, self.player):
            if part is not None:
                part.close()
        self.osc = self.midi = self.player = None
        self.session.close()


def _off(what: str, exc: StudioError) -> str:
    """One line for the console and /studio/status: what is off, why, and how to turn it on."""
    message = exc.message if exc.message.startswith(f"{what} is off") else f"{what} is off: {exc.message}"
    return f"{message} — how to fix: {exc.hint}" if exc.hint else message


def _device(name: str | None) -> str | int | None:
    return int(name) if name is not None and name.isdigit() else name


def _latency(value: str) -> str | float:
    if value in ("low", "high"):
        return value
    try:
        return float(value)
    except ValueError:
        raise StudioError(
            f"audio latency must be low, high or seconds, got {value!r}", "e.g. --audio-latency 0.01"
        ) from None


def _midi_channel(channel: int | None) -> int | None:
    if channel is None:
        return None
    if not 1 <= channel <= 16:
        raise StudioError(f"MIDI channel must be 1-16, got {channel}", "e.g. --midi-channel 10 for drums")
    return channel - 1
