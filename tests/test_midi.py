"""MIDI: CC maps, the bridge's in/out mapping through a real (in-process) mido port, and port errors."""

from __future__ import annotations

import queue
import sys
import time
from pathlib import Path

import mido
import pytest
from fakes import LoopbackPort

from studio.bridges import midi
from studio.bridges.midi import (
    CCMapping,
    MidiBridge,
    MidiMappingError,
    MidiUnavailable,
    default_cc_map,
    midi_off_reason,
    open_ports,
    parse_cc_map,
)

MARKER = 127  # a note sent last: once the controller sees it, every message before it was handled
TIMEOUT_S = 2.0


class Controller:
    def __init__(self, fail_on: int | None = None):
        self.calls: queue.Queue = queue.Queue()
        self.fail_on = fail_on

    def trigger_note(self, note: int, velocity: int) -> None:
        if note == self.fail_on:
            raise RuntimeError("a bad pad")
        self.calls.put(("note", note, velocity))

    def set_param(self, name: str, value: float) -> None:
        self.calls.put(("param", name, value))


@pytest.fixture
def rig():
    controller, inport, outport = Controller(), LoopbackPort("in"), LoopbackPort("out")
    bridge = MidiBridge(controller, inport, outport, default_cc_map(10.0))
    bridge.start()
    yield controller, inport, outport, bridge
    bridge.close()


def handled(controller: Controller, inport, *messages: mido.Message, channel: int = 0) -> list[tuple]:
    """Send `messages` through the port the bridge's thread reads, and what the controller got from them."""
    for msg in (*messages, mido.Message("note_on", note=MARKER, velocity=1, channel=channel)):
        inport.send(msg)
    calls = []
    while (call := controller.calls.get(timeout=TIMEOUT_S)) != ("note", MARKER, 1):
        calls.append(call)
    return calls


def test_note_on_triggers_and_releases_are_ignored(rig):
    controller, inport, _, _ = rig
    assert handled(
        controller,
        inport,
        mido.Message("note_on", note=60, velocity=64),
        mido.Message("note_on", note=61, velocity=0),
        mido.Message("note_off", note=60),
        mido.Message("program_change", program=3),
    ) == [("note", 60, 64)]


def test_mapped_ccs_set_params_and_unmapped_ones_are_ignored(rig):
    controller, inport, _, _ = rig
    calls = handled(
        controller,
        inport,
        mido.Message("control_change", control=1, value=127),
        mido.Message("control_change", control=74, value=0),
        mido.Message("control_change", control=71, value=0),
        mido.Message("control_change", control=7, value=100),
    )
    assert calls == [("param", "diversity", 1.0), ("param", "seconds", 0.1), ("param", "strength", 0.01)]


def test_channel_filter():
    controller, inport = Controller(), LoopbackPort("in")
    bridge = MidiBridge(controller, inport, None, default_cc_map(10.0), channel=9)
    bridge.start()
    try:
        calls = handled(
            controller,
            inport,
            mido.Message("note_on", note=36, velocity=100, channel=9),
            mido.Message("note_on", note=38, velocity=100, channel=0),
            channel=9,
        )
        assert calls == [("note", 36, 100)]
    finally:
        bridge.close()


def test_a_controller_that_raises_does_not_stop_the_reader():
    controller, inport = Controller(fail_on=13), LoopbackPort("in")
    bridge = MidiBridge(controller, inport, None, ())
    bridge.start()
    try:
        calls = handled(
            controller,
            inport,
            mido.Message("note_on", note=13, velocity=100),
            mido.Message("note_on", note=14, velocity=90),
        )
        assert calls == [("note", 14, 90)]
    finally:
        bridge.close()


def test_close_stops_the_reader_and_closes_both_ports(rig):
    _, inport, outport, bridge = rig
    bridge.close()
    assert bridge._reader is None and inport.closed and outport.closed
    bridge.voice_ended(60)  # after close: logged, not raised


def test_out_messages(rig):
    _, _, outport, bridge = rig
    bridge.take_ready(60)
    bridge.voice_started(200, 0)
    bridge.voice_ended(-5)
    sent = [(m.type, m.note, m.velocity, m.channel) for m in outport.iter_pending()]
    assert sent == [
        ("note_on", 60, 127, 0),  # ready: user channel 1
        ("note_off", 60, 0, 0),
        ("note_on", 127, 1, 1),  # playing: user channel 2; note and velocity clamped
        ("note_off", 0, 0, 1),
    ]


def test_no_out_port_is_a_no_op():
    bridge = MidiBridge(Controller(), None, None, ())
    bridge.start()
    bridge.take_ready(60)
    bridge.voice_started(60, 100)
    bridge.close()


def test_cc_mapping_is_linear():
    mapping = CCMapping(74, "seconds", 0.1, 10.0)
    assert mapping.value(0) == 0.1 and mapping.value(127) == pytest.approx(10.0)
    assert mapping.value(64) == pytest.approx(0.1 + 9.9 * 64 / 127)


def test_parse_cc_map():
    assert parse_cc_map("diversity=1, strength=71,seconds=74", 10.0) == default_cc_map(10.0)
    cfg, steps = parse_cc_map("cfg=20,steps=21", 10.0)
    assert (cfg.cc, cfg.value(0), cfg.value(127)) == (20, 1.0, 10.0)
    assert (steps.cc, steps.value(0), steps.value(127)) == (21, 1.0, 16.0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is not param=cc"),
        ("diversity", "is not param=cc"),
        ("volume=7", "unknown param 'volume'"),
        ("diversity=128", "0..127"),
        ("diversity=-1", "0..127"),
        ("diversity=x", "0..127"),
        ("diversity=1,diversity=2", "diversity is mapped twice"),
        ("diversity=1,cfg=1", "CC 1 is mapped twice"),
    ],
)
def test_parse_cc_map_rejects(text, problem):
    with pytest.raises(MidiMappingError, match=problem) as caught:
        parse_cc_map(text, 10.0)
    assert "diversity=1" in caught.value.hint


def test_midi_off_reasons():
    missing = midi_off_reason(ModuleNotFoundError("No module named 'rtmidi'"), "linux", True)
    assert "python-rtmidi" in missing.message and "pip install python-rtmidi" in missing.hint
    alsa = OSError("MidiInAlsa::initialize: error creating ALSA sequencer client object.")
    no_seq = midi_off_reason(alsa, "linux", False)
    assert "/dev/snd/seq is missing" in no_seq.message and "modprobe snd-seq" in no_seq.hint
    assert "ALSA sequencer refused" in midi_off_reason(alsa, "linux", True).message
    assert "coremidi" in midi_off_reason(OSError("coremidi"), "darwin", False).message


def test_windows_has_no_virtual_ports(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(MidiUnavailable, match="Windows has no virtual MIDI ports") as caught:
        open_ports(None, None, virtual=True)
    assert "loopMIDI" in caught.value.hint


@pytest.mark.skipif(sys.platform != "linux" or Path("/dev/snd/seq").exists(), reason="needs no ALSA seq")
def test_without_an_alsa_sequencer_midi_says_why():
    for attempt in (lambda: open_ports(None, None, virtual=True), midi.port_names):
        with pytest.raises(MidiUnavailable) as caught:
            attempt()
        assert "/dev/snd/seq" in caught.value.message and "modprobe" in caught.value.hint


def test_named_ports_resolve_alsa_short_names_or_list_the_existing_ones(monkeypatch):
    monkeypatch.setattr(midi, "port_names", lambda: (["loopMIDI:Port 1 128:0"], ["Synth"]))
    opened = []
    monkeypatch.setattr(mido, "open_input", lambda name: opened.append(name) or LoopbackPort(name))
    monkeypatch.setattr(mido, "open_output", lambda name: opened.append(name) or LoopbackPort(name))
    inport, outport = open_ports("Port 1", "Synth", virtual=False)
    assert opened == ["loopMIDI:Port 1 128:0", "Synth"] and not inport.closed and not outport.closed
    assert open_ports(None, None, virtual=False) == (None, None)
    with pytest.raises(MidiUnavailable, match="no MIDI input port named 'Nope'") as caught:
        open_ports("Nope", None, virtual=False)
    assert "loopMIDI:Port 1 128:0" in caught.value.hint


def test_the_first_port_is_closed_when_the_second_fails(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    inport = LoopbackPort("Studio In")
    monkeypatch.setattr(mido, "open_input", lambda name, virtual: inport)

    def refuse(name, virtual):
        raise OSError("MidiOutAlsa::initialize: error creating ALSA sequencer client object.")

    monkeypatch.setattr(mido, "open_output", refuse)
    with pytest.raises(MidiUnavailable):
        open_ports(None, None, virtual=True)
    assert inport.closed


def receive(port, timeout: float = TIMEOUT_S) -> mido.Message:
    deadline = time.monotonic() + timeout
    while (msg := port.poll()) is None:
        assert time.monotonic() < deadline, "no MIDI message arrived"
        time.sleep(0.001)
    return msg


def test_real_alsa_virtual_ports():
    try:
        inport, outport = open_ports(None, None, virtual=True)
    except MidiUnavailable as exc:
        pytest.skip(f"real ALSA virtual ports not available: {exc}")
    controller = Controller()
    bridge = MidiBridge(controller, inport, outport, default_cc_map(10.0))
    bridge.start()
    try:
        with mido.open_output("Studio In") as daw_out, mido.open_input("Studio Out") as daw_in:
            daw_out.send(mido.Message("note_on", note=60, velocity=64))
            assert controller.calls.get(timeout=TIMEOUT_S) == ("note", 60, 64)
            bridge.take_ready(61)
            msg = receive(daw_in)
            assert (msg.type, msg.note, msg.velocity, msg.channel) == ("note_on", 61, 127, 0)
    finally:
        bridge.close()
