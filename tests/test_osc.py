"""The OSC control surface over real UDP sockets on loopback, as a Max patch or TouchOSC would use it."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from studio.bridges.osc import MAX_PACKET, OscServer
from studio.bridges.session import Session
from studio.service import open_studio

ASSETS = Path(__file__).resolve().parents[1] / "assets"


class Controller:
    """A UDP peer that sends OSC and collects every reply on a background thread."""

    def __init__(self, server: tuple[str, int]):
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.replies: list[tuple[str, list]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            message = OscMessage(data)
            with self._lock:
                self.replies.append((message.address, list(message.params)))

    def send(self, address: str, *args) -> None:
        builder = OscMessageBuilder(address)
        for value in args:
            builder.add_arg(value)
        self.send_raw(builder.build().dgram)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def received(self, address: str | None = None) -> list[list]:
        with self._lock:
            return [params for a, params in self.replies if address is None or a == address]

    def wait(self, address: str, count: int = 1, timeout: float = 60) -> list[list]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.received(address)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"got {len(self.received(address))} {address} of {count}: {self.replies[-5:]}")

    def clear(self) -> None:
        with self._lock:
            self.replies.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def studio(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("osc")
    studio = open_studio(str(tiny_model_dir), library_dir=root / "library", export_dir=root / "exports")
    yield studio
    studio.close()


@pytest.fixture()
def surface(studio, tmp_path):
    session = Session(studio, allowed_dirs=[tmp_path / "allowed"])
    with OscServer(session, port=0) as server:
        client = Controller(server.address)
        yield session, server, client
        client.close()
    session.close()


def test_generate_replies_with_every_take_as_a_wav_of_the_asked_length(surface, studio):
    _, _, client = surface
    client.send("/studio/generate", "dusty vinyl kick", 0.5, 3, 1234)
    queued = client.wait("/studio/queued")[0]
    request_id = queued[0]
    assert request_id >= 1 and queued[1] == "dusty vinyl kick"
    ready = client.wait("/studio/ready", 3)
    assert sorted(take for _, take, _ in ready) == [0, 1, 2]
    assert {rid for rid, _, _ in ready} == {request_id}
    for _, _, path in ready:
        path = Path(path)
        assert path.is_absolute() and path.parent == studio.export_dir  # the folder a DAW watches
        info = sf.info(path)
        assert (info.format, info.subtype) == ("WAV", "PCM_24")
        assert info.frames == round(0.5 * info.samplerate) and info.channels == 2
    done = client.wait("/studio/done")[0]
    assert done[:2] == [request_id, 3] and done[2] > 0
    records = studio.library.search("dusty vinyl kick")
    assert len(records) == 3 and all(r.params["seed"] == 1234 for r in records)


def test_parameters_and_presets_change_the_next_generate(surface, studio):
    session, _, client = surface
    for name, value in (("seconds", 0.25), ("variations", 2), ("diversity", 0.0), ("seed", 77), ("steps", 2)):
        client.send("/studio/param", name, value)
    echoed = client.wait("/studio/param", 5)
    assert echoed[0] == ["seconds", 0.25] and echoed[-1] == ["steps", 2]
    client.send("/studio/param", "variations", 2.0)  # TouchOSC sends floats for whole numbers too
    client.wait("/studio/param", 6)
    client.send("/studio/generate", "glass bell")
    ready = client.wait("/studio/ready", 2)
    frames = {sf.info(path).frames for _, _, path in ready}
    assert frames == {round(0.25 * 44100)}
    first, second = (sf.read(path)[0] for _, _, path in sorted(ready, key=lambda r: r[1]))
    assert (first == second).all()  # diversity 0: identical takes
    params = studio.library.search("glass bell")[0].params
    assert (params["seed"], params["steps"], params["diversity"]) == (77, 2, 0.0)

    client.clear()
    client.send("/studio/preset", "808 kick")
    name, prompt = client.wait("/studio/preset")[0]
    assert name == "808 kick" and "808" in prompt
    client.send("/studio/generate", 1.0)  # a TouchOSC button press: the live (preset's) prompt
    client.send("/studio/generate", 0.0)  # its release does nothing
    client.wait("/studio/done")
    time.sleep(0.3)
    assert len(client.received("/studio/queued")) == 1
    take = studio.library.search(prompt)[0]
    assert take.params["prompt"] == prompt
    assert take.params["seconds"] == pytest.approx(min(1.5, session.max_seconds))


def test_status_ping_and_buttons(surface, studio):
    _, _, client = surface
    client.send("/studio/param", "prompt", "rain on a tin roof")
    client.send("/studio/status")
    status = client.wait("/studio/status")[0]
    pairs = dict(zip(status[::2], status[1::2], strict=True))
    assert pairs["model"] == studio.host.engine.model_name
    assert pairs["prompt"] == "rain on a tin roof"
    engine = studio.host.engine
    assert pairs["steps"] == engine.default_steps(engine.default_sampler)  # what the next take will use
    assert pairs["playback"].startswith("playback is off")
    client.send("/studio/ping", 0.0)  # a button release
    client.send("/studio/ping", 1.0)
    client.send("/studio/ping")
    client.wait("/studio/pong", 2)
    time.sleep(0.2)
    assert len(client.received("/studio/pong")) == 2


def test_bad_messages_get_an_error_and_change_nothing(surface, studio, tmp_path):
    session, _, client = surface
    before = dict(vars(session.params))
    outside = tmp_path / "outside.wav"
    shutil.copy(ASSETS / "drum-loop-120bpm.wav", outside)
    bad = [
        ("/studio/nonsense", ()),
        ("/other/app", (1,)),
        ("/studio/vary", ("first",)),
        ("/studio/param", ("seconds", 1e9)),
        ("/studio/param", ("cfg", "loud")),
        ("/studio/param", ("volume", 3)),
        ("/studio/param", ("model", "/etc/passwd")),
        ("/studio/param", ("model", "no-such-model")),
        ("/studio/preset", ("no such preset",)),
        ("/studio/init", (str(outside),)),
        ("/studio/init", ("/etc/passwd",)),
        ("/studio/init", ("../../../../etc/shadow",)),
        ("/studio/generate", ("", 1.0)),
        ("/studio/generate", ("kick", -3.0)),
        ("/studio/generate", ("kick", 0.5, 99)),
        ("/studio/generate", ("kick", 0.5, 1, 2, 3)),
        ("/studio/play", (0,)),
        ("/studio/param", ("prompt", "x" * 2000)),
    ]
    for address, args in bad:
        client.send(address, *args)
    errors = client.wait("/studio/error", len(bad))
    time.sleep(0.3)
    assert len(client.received("/studio/error")) == len(bad)
    assert not client.received("/studio/queued")
    texts = [text for _, text in errors]
    assert "unknown address /studio/nonsense" in texts[0]
    assert "take must be a whole number" in texts[2]
    assert "outside the folders remote control may read" in texts[9]
    assert "playback is off" in texts[16]
    assert all(request_id == 0 for request_id, _ in errors)
    assert dict(vars(session.params)) == before

    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(ASSETS / "drum-loop-120bpm.wav", allowed / "loop.wav")
    client.send("/studio/init", str(allowed / "loop.wav"))
    assert client.wait("/studio/init")[0] == [str((allowed / "loop.wav").resolve())]
    client.send("/studio/generate", "tabla groove", 1.0)
    client.wait("/studio/ready")
    restyled = studio.library.search("tabla groove")[0]
    assert restyled.params["init_audio"] == str((allowed / "loop.wav").resolve())


def test_vary_restyles_a_take_of_the_last_request(surface, studio):
    _, _, client = surface
    client.send("/studio/generate", "warm analog pad", 0.5, 2)
    client.wait("/studio/done")
    client.send("/studio/vary", 1)
    ready = client.wait("/studio/ready", 4)  # as many takes as the request it varies
    client.wait("/studio/done", 2)
    varied = studio.library.search("warm analog pad")[:2]
    sources = studio.library.search("warm analog pad")[2:]
    for record in varied:
        assert record.params["init_audio"] == str(sources[0].path)  # newest first: take 1 is [0]
        assert record.params["strength"] == pytest.approx(0.35)
    assert len({path for _, _, path in ready}) == 4


def test_load_five_clients_twenty_generates_each(surface, studio):
    _, server, _ = surface
    clients = [Controller(server.address) for _ in range(5)]
    batches_before = len(studio.host.engine.batch_log)
    try:
        barrier = threading.Barrier(len(clients))

        def flood(client: Controller, n: int) -> None:
            barrier.wait()
            for i in range(20):
                client.send("/studio/generate", f"client {n} hit {i}", 0.2, 1, n * 100 + i)

        threads = [threading.Thread(target=flood, args=(c, n)) for n, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answers = []
        for client in clients:
            ready = client.wait("/studio/ready", 20, timeout=120)
            time.sleep(0.1)
            assert len(client.received("/studio/ready")) == 20  # none duplicated
            assert not client.received("/studio/error")
            answers += [request_id for request_id, _, _ in ready]
        assert len(set(answers)) == 100  # none lost, each request answered once
    finally:
        for client in clients:
            client.close()
    batches = list(studio.host.engine.batch_log)[batches_before:]
    assert sum(takes for _, takes in batches) == 100
    assert max(requests for requests, _ in batches) > 1, batches  # the engine batched them
    assert len(batches) < 100


def test_fuzz_never_crashes_and_every_bad_message_is_answered(surface):
    _, server, client = surface
    rng = random.Random(0)
    valid = []
    for address, args in (
        ("/studio/param", ("seconds", 0.5)),
        ("/studio/status", ()),
        ("/studio/preset", ("808 kick",)),
        ("/studio/ping", ()),
    ):
        builder = OscMessageBuilder(address)
        for value in args:
            builder.add_arg(value)
        valid.append(builder.build().dgram)

    def garbage() -> bytes:
        kind = rng.randrange(4)
        if kind == 0:
            return rng.randbytes(rng.randrange(1, 300))
        if kind == 1:
            packet = rng.choice(valid)
            return packet[: rng.randrange(1, len(packet))]
        if kind == 2:
            return b"/studio/\x00\x00\x00\x00" + rng.randbytes(rng.randrange(0, 64))
        return b"#bundle\x00" + rng.randbytes(rng.randrange(0, 64))

    for chunk in range(10):  # paced so the loopback buffers never drop a datagram
        for _ in range(150):
            client.send_raw(garbage())
        client.send_raw(b"x" * (MAX_PACKET + 1 + chunk * 1000))  # oversized
        time.sleep(0.05)
    bad_messages = []
    addresses = ["/studio/generate", "/studio/param", "/studio/vary", "/studio/play", "/studio/init", "/nope"]
    for _ in range(500):
        address = rng.choice(addresses)
        values = [rng.random() * 1e6, -rng.randrange(1 << 30), "", True, b"\x00\x01"]
        args = [rng.choice(values) for _ in range(5)]
        bad_messages.append((address, args))
    bad_messages.append(("/studio/param", ["prompt", "y" * 5000]))
    client.send("/studio/ping")  # handled in order: once it is answered, so is every packet before it
    client.wait("/studio/pong", timeout=120)
    assert server._thread.is_alive()
    client.clear()
    for i, (address, args) in enumerate(bad_messages):
        client.send(address, *args)
        if i % 100 == 99:
            time.sleep(0.05)
    errors = client.wait("/studio/error", len(bad_messages), timeout=60)
    time.sleep(0.3)
    assert len(client.received("/studio/error")) == len(bad_messages) == len(errors)
    client.send("/studio/ping")
    client.wait("/studio/pong")
    assert server._thread.is_alive()


def _port_pair() -> int:
    """A UDP port P on loopback with P + 1 free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as after:
                after.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no pair of free UDP ports")


def test_liblo_tools_hear_the_replies_on_the_port_after_the_studios(studio):
    if shutil.which("oscsend") is None or shutil.which("oscdump") is None:
        if os.environ.get("CI"):
            pytest.fail("liblo-tools is missing: .ci/run installs it (apt-get install liblo-tools)")
        pytest.skip("liblo-tools is not installed (apt-get install liblo-tools)")
    port = _port_pair()
    session = Session(studio)
    dump = subprocess.Popen(["oscdump", "-L", str(port + 1)], stdout=subprocess.PIPE, text=True)
    try:
        with OscServer(session, port=port):
            time.sleep(0.3)  # oscdump binds its port
            subprocess.run(["oscsend", "localhost", str(port), "/studio/ping"], check=True, timeout=10)
            subprocess.run(["oscsend", "localhost", str(port), "/studio/nope"], check=True, timeout=10)
            lines = [dump.stdout.readline() for _ in range(2)]
    finally:
        dump.kill()
        dump.wait()
        session.close()
    assert " /studio/pong " in lines[0]  # oscdump writes a timetag first
    assert " /studio/error " in lines[1] and "unknown address /studio/nope" in lines[1]


def test_a_bundle_of_nothing_gets_an_error(surface):
    _, _, client = surface
    client.send_raw(b"#bundle\x00" + bytes(8))  # a header and a timetag, no elements
    client.send_raw(b"#bundle\x00" + bytes(8) + b"\x00\x00\x00\x08" + b"garbage!")
    errors = client.wait("/studio/error", 2, timeout=10)
    assert all("bundle holds no message" in text for _, text in errors)


def test_a_seed_beyond_what_osc_carries_is_refused_with_the_documented_range(surface):
    _, _, client = surface
    client.send("/studio/generate", "x", 0.5, 1, -5)
    (error,) = client.wait("/studio/error")
    assert "seed must be from -1 to 2147483647" in error[1]
