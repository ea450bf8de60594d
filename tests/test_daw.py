"""The DAW bridge as a whole: MIDI pads that play, OSC next to the browser, `studio osc` as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from fakes import LoopbackPort, install_fake_sounddevice
from gradio_client import Client
from test_app import free_port
from test_osc import Controller

from studio.app import serve
from studio.bridges.midi import MidiBridge, default_cc_map
from studio.bridges.playback import Player
from studio.bridges.remote import BridgeOptions, Bridges
from studio.bridges.session import Session
from studio.service import open_studio
from tests.tiny import make_model_folder, tiny_config


@pytest.fixture(scope="module")
def studio(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("daw")
    studio = open_studio(str(tiny_model_dir), library_dir=root / "library", export_dir=root / "exports")
    yield studio
    studio.close()


def out_messages(port: LoopbackPort, count: int, timeout: float = 60) -> list[mido.Message]:
    deadline, got = time.monotonic() + timeout, []
    while len(got) < count and time.monotonic() < deadline:
        msg = port.poll()
        if msg is None:
            time.sleep(0.01)
        else:
            got.append(msg)
    assert len(got) == count, got
    return got


def test_a_midi_pad_generates_its_preset_plays_it_at_velocity_and_tells_the_daw(studio, monkeypatch):
    fake = install_fake_sounddevice(monkeypatch, rate=44100)
    session = Session(studio)
    player = Player(44100)
    player.start()
    session.player = player
    inport, outport = LoopbackPort("Studio In"), LoopbackPort("Studio Out")
    bridge = MidiBridge(session, inport, outport, default_cc_map(session.max_seconds))
    session.midi = bridge
    bridge.start()
    try:
        inport.send(mido.Message("control_change", control=74, value=0))  # seconds knob to 0.1 s
        inport.send(mido.Message("control_change", control=1, value=0))  # diversity knob to 0
        inport.send(mido.Message("note_on", note=60, velocity=64))  # the 808 kick pad
        ready_on, ready_off, started = out_messages(outport, 3)
        assert (ready_on.type, ready_on.note, ready_on.channel, ready_on.velocity) == ("note_on", 60, 0, 127)
        assert (ready_off.type, ready_off.note, ready_off.channel) == ("note_off", 60, 0)
        assert (started.type, started.note, started.channel, started.velocity) == ("note_on", 60, 1, 64)

        take = studio.library.search("808 kick")[0]
        assert take.params["seconds"] == pytest.approx(0.1) and take.params["diversity"] == 0
        audio, _ = sf.read(take.path, always_2d=True, dtype="float32")
        stream = fake.streams[0]
        played = stream.pull(len(audio) + 512)  # the buffer the sound card would play
        expected = np.clip(audio * 64 / 127, -1, 1)
        np.testing.assert_allclose(played[: len(audio)], expected, atol=2e-4)  # 24-bit file vs memory
        assert not played[len(audio) :].any()
        (ended,) = out_messages(outport, 1)
        assert (ended.type, ended.note, ended.channel) == ("note_off", 60, 1)

        # A second pad while the first still plays: both sound, summed.
        inport.send(mido.Message("note_on", note=60, velocity=127))
        inport.send(mido.Message("note_on", note=60, velocity=127))
        out_messages(outport, 6)  # two takes ready, two voices started
        second, first = (
            sf.read(t.path, always_2d=True, dtype="float32")[0] for t in studio.library.search("808")[:2]
        )
        played = stream.pull(len(first))
        np.testing.assert_allclose(played, np.clip(first + second, -1, 1), atol=4e-4)
    finally:
        bridge.close()
        player.close()
        session.close()


def test_a_model_switch_moves_the_seconds_knob_and_the_live_length_with_it(tmp_path, monkeypatch):
    models = tmp_path / "user-models"
    make_model_folder(models / "tiny-short", tiny_config(sample_size=32768))  # 0.74 s
    make_model_folder(models / "tiny-long", tiny_config(sample_size=131072))  # 2.97 s
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(models))
    studio = open_studio("tiny-short", library_dir=tmp_path / "library")
    session = Session(studio)
    inport = LoopbackPort("Studio In")
    session.midi = bridge = MidiBridge(session, inport, None, default_cc_map(session.max_seconds))
    knob_up = mido.Message("control_change", control=74, value=127)  # the seconds knob, all the way
    try:
        bridge.handle(knob_up)
        assert session.params.seconds == pytest.approx(32768 / 44100)
        session.set_param("model", "tiny-long")  # as OSC's /studio/param model tiny-long does
        bridge.handle(knob_up)
        assert session.params.seconds == pytest.approx(131072 / 44100)
        session.set_param("model", "tiny-short")  # 2.97 s is more than this model can make
        assert session.params.seconds == pytest.approx(32768 / 44100)
        assert dict(session.status())["seconds"] == pytest.approx(32768 / 44100)
    finally:
        bridge.close()
        session.close()
        studio.close()


def test_osc_takes_share_the_browsers_library_and_midi_says_why_it_is_off(studio, tmp_path):
    options = BridgeOptions(osc_port=0, midi=True, play=True)
    bridges = Bridges(studio, options)
    app, url = serve(studio, port=free_port(), block=False)
    client = Controller(bridges.osc.address)
    try:
        notes = " | ".join(bridges.notes)
        if not Path("/dev/snd/seq").exists():
            assert "MIDI is off: /dev/snd/seq is missing" in notes and "modprobe snd-seq" in notes
        assert "playback is off" in notes or "playback on" in notes
        client.send("/studio/status")
        status = client.wait("/studio/status")[0]
        pairs = dict(zip(status[::2], status[1::2], strict=True))
        if bridges.midi is None:
            assert pairs["midi"].startswith("MIDI is off")

        client.send("/studio/generate", "shared library thunder", 0.5, 2)
        ready = client.wait("/studio/ready", 2)
        rows = Client(url, verbose=False).predict("shared library thunder", False, "", api_name="/search")[0]
        assert len(rows["data"]) == 2  # the browser's library lists what OSC made
        assert {Path(path).parent for _, _, path in ready} == {studio.export_dir}
    finally:
        client.close()
        app.close()
        bridges.close()


def test_studio_osc_runs_as_a_process_and_stops_on_ctrl_c(tiny_model_dir, tmp_path):
    port = free_port()
    env = {**os.environ, "STUDIO_LIBRARY_DIR": str(tmp_path / "library"), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "studio",
            "osc",
            "--port",
            str(port),
            "--model",
            str(tiny_model_dir),
            "--midi",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "Ctrl+C" in line:
                break
        assert any(f"OSC on udp://127.0.0.1:{port}" in line for line in lines), lines
        client = Controller(("127.0.0.1", port))
        try:
            client.send("/studio/generate", "process kick", 0.25)
            (_, _, path) = client.wait("/studio/ready")[0]
            assert Path(path).is_file() and Path(path).is_relative_to(tmp_path / "library")
        finally:
            client.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize(
    ("how", "exit_code"),
    [("SIGINT to a background job", 130), ("SIGTERM from a service manager", 143)],
)
def test_studio_osc_stops_cleanly_however_it_is_stopped(tiny_model_dir, tmp_path, how, exit_code):
    """A shell's background job starts with SIGINT ignored; systemd stops a service with SIGTERM.
    Either way the library closes as on Ctrl+C: SQLite folds its -wal file back in and removes it."""
    library = tmp_path / "library"
    env = {**os.environ, "STUDIO_LIBRARY_DIR": str(library), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "studio", "osc", "--port", str(free_port()), "--model", str(tiny_model_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `studio osc &` gets it
    )
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl+C" in line:
                break
        assert (library / "library.sqlite3-wal").exists(), lines
        process.send_signal(signal.SIGTERM if "SIGTERM" in how else signal.SIGINT)
        assert process.wait(timeout=30) == exit_code
        assert not (library / "library.sqlite3-wal").exists()
    finally:
        if process.poll() is None:
            process.kill()
