"""OSC control surface: drive the studio from Max, Ableton, Bitwig, Reaper or TouchOSC over UDP.

The namespace is documented in docs/osc.md. Every packet is answered: a reply, or `/studio/error`
with what was wrong, so a patch never waits on silence; nothing a packet holds can crash the server.

One thread receives and handles packets in arrival order (a fader move sent before a trigger is
applied before it), and no handler waits for the model: generation is queued on the engine and
its replies are sent from the saver thread when the takes are on disk. python-osc parses and
builds the messages; its servers are not used because a control surface needs a size limit, an
answer to malformed packets and ordered handling, which its dispatcher does not give.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from studio.bridges.session import Session, Ticket
from studio.errors import StudioError
from studio.service import Saved

log = logging.getLogger("studio.osc")

MAX_PACKET = 8192  # bytes; a prompt is at most 1000 characters, so real messages are far below
PREFIX = "/studio/"
NOT_A_REQUEST = 0  # the request id of errors about messages that never became a request

Address = tuple[str, int]


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str  # "s" text, "i" whole number, "f" number, "v" number or text
    required: bool = True


class OscArgError(StudioError):
    """A message's arguments do not fit its address."""


def _coerce(arg: Arg, value: Any) -> Any:
    """OSC type tags as controllers really send them: TouchOSC sends floats for everything."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if arg.kind == "s" and isinstance(value, str):
        return value
    if arg.kind == "f" and number:
        return float(value)
    if arg.kind == "i" and number and float(value).is_integer():
        return int(value)
    if arg.kind == "v" and (number or isinstance(value, str | bool)):
        return value
    wanted = {"s": "text", "i": "a whole number", "f": "a number", "v": "a number or text"}[arg.kind]
    raise OscArgError(f"{arg.name} must be {wanted}, got {value!r}")


def parse_args(address: str, spec: Sequence[Arg], values: Sequence[Any]) -> dict[str, Any]:
    """Match a message's arguments to its address's spec, or say exactly what is wrong."""
    usage = " ".join(f"{a.kind}:{a.name}" if a.required else f"[{a.kind}:{a.name}]" for a in spec)
    if len(values) > len(spec):
        raise OscArgError(
            f"{address} takes at most {len(spec)} argument(s), got {len(values)}", f"{address} {usage}"
        )
    missing = [a.name for a in spec[len(values) :] if a.required]
    if missing:
        raise OscArgError(f"{address} is missing {', '.join(missing)}", f"{address} {usage}")
    try:
        return {a.name: _coerce(a, v) for a, v in zip(spec, values, strict=False)}
    except OscArgError as exc:
        raise OscArgError(exc.message, f"{address} {usage}") from None


def is_release(values: Sequence[Any]) -> bool:
    """A button's release (a lone 0): TouchOSC and Max buttons send 1 on press and 0 on release."""
    return len(values) == 1 and not isinstance(values[0], str) and values[0] in (0, False)


class OscServer:
    """UDP OSC server bound to one address. Replies go to the sender's port and to its host at
    the listen port + 1 (the AbletonOSC habit, so oscsend/oscdump and Max's udpsend/udpreceive
    pairs hear them), or only to `reply_port` when one is given."""

    def __init__(
        self,
        session: Session,
        host: str = "127.0.0.1",
        port: int = 9000,
        reply_port: int | None = None,
    ):
        self.session = session
        self.reply_port = reply_port
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart without "in use"
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise StudioError(
                f"cannot listen for OSC on {host}:{port}: {exc.strerror or exc}",
                "another program (a DAW's own OSC?) uses that port: pick another with --osc-port",
            ) from exc
        self._sock.settimeout(0.2)  # how quickly close() is noticed
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="studio-osc", daemon=True)
        generate_args = (
            Arg("prompt", "s", False),
            Arg("seconds", "f", False),
            Arg("variations", "i", False),
            Arg("seed", "i", False),
        )
        # address -> (handler, arguments, whether a lone number is a button press/release)
        self.routes: dict[str, tuple[Callable[..., None], tuple[Arg, ...], bool]] = {
            "/studio/generate": (self._generate, generate_args, True),
            "/studio/param": (self._param, (Arg("name", "s"), Arg("value", "v")), False),
            "/studio/preset": (self._preset, (Arg("name", "s"),), False),
            "/studio/init": (self._init, (Arg("path", "s"),), False),
            "/studio/vary": (self._vary, (Arg("take", "i"),), False),
            "/studio/play": (self._play, (Arg("take", "i"), Arg("gain", "f", False)), False),
            "/studio/stop": (self._stop, (), True),
            "/studio/status": (self._status, (), True),
            "/studio/ping": (self._ping, (), True),
        }

    @property
    def address(self) -> Address:
        return self._sock.getsockname()[:2]

    def start(self) -> OscServer:
        self._thread.start()
        host, port = self.address
        log.info("OSC listening on %s:%d", host, port)
        return self

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> OscServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the receive loop -------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                data, sender = self._sock.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:  # e.g. an ICMP "port unreachable" from an earlier reply, on some systems
                if self._closed.is_set():
                    return
                continue
            try:
                self.handle_packet(data, sender[:2])
            except Exception:  # a handler bug must not take the control surface down
                log.exception("OSC packet from %s failed", sender)
                self.send(sender[:2], "/studio/error", NOT_A_REQUEST, "internal error; see the studio's log")

    def handle_packet(self, data: bytes, sender: Address) -> None:
        if len(data) > MAX_PACKET:
            self._error(
                sender, NOT_A_REQUEST, f"packet of {len(data)} bytes is over the {MAX_PACKET}-byte limit"
            )
            return
        try:
            messages = [timed.message for timed in OscPacket(data).messages]
        except Exception as exc:  # random bytes reach parser corners that raise more than ParseError
            self._error(sender, NOT_A_REQUEST, f"malformed OSC packet ({type(exc).__name__}: {exc})"[:300])
            return
        if not messages:  # a bundle of nothing, or of elements that are not OSC messages
            self._error(sender, NOT_A_REQUEST, "OSC bundle holds no message Studio can read")
            return
        for message in messages:  # bundles run at once, in order: timetags are not scheduled
            self.handle_message(message.address, list(message.params), sender)

    def handle_message(self, address: str, values: list[Any], sender: Address) -> None:
        route = self.routes.get(address)
        if route is None:
            known = ", ".join(self.routes)
            self._error(sender, NOT_A_REQUEST, f"unknown address {address[:100]}", f"Studio answers {known}")
            return
        handler, spec, button = route
        if button and len(values) == 1 and not isinstance(values[0], str):
            if is_release(values):
                return
            values = []  # a press: the action with its defaults (the live prompt, for generate)
        try:
            handler(sender, **parse_args(address, spec, values))
        except StudioError as exc:
            self._error(sender, NOT_A_REQUEST, exc.message, exc.hint)

    # -- replies ----------------------------------------------------------------------------------

    def send(self, to: Address, address: str, *args: Any) -> None:
        builder = OscMessageBuilder(address)
        for value in args:
            builder.add_arg(value)
        if self.reply_port:
            destinations = [(to[0], self.reply_port)]
        else:
            destinations = list(dict.fromkeys([to, (to[0], self.address[1] + 1)]))
        dgram = builder.build().dgram
        for destination in destinations:
            try:
                self._sock.sendto(dgram, destination)
            except OSError as exc:  # a controller that went away must not stop replies to the others
                log.warning("cannot send %s to %s: %s", address, destination, exc)

    def _error(self, to: Address, request_id: int, message: str, hint: str | None = None) -> None:
        text = f"{message} — how to fix: {hint}" if hint else message
        self.send(to, "/studio/error", request_id, text)

    # -- handlers ---------------------------------------------------------------------------------

    def _generate(
        self,
        sender: Address,
        prompt: str | None = None,
        seconds: float | None = None,
        variations: int | None = None,
        seed: int | None = None,
    ) -> None:
        self._track(sender, self.session.generate(prompt, seconds, variations, seed))

    def _vary(self, sender: Address, take: int) -> None:
        self._track(sender, self.session.vary(take))

    def _track(self, sender: Address, ticket: Ticket) -> None:
        self.send(sender, "/studio/queued", ticket.request_id, ticket.request.prompt[:200])
        ticket.future.add_done_callback(lambda done: self._report(sender, ticket, done))

    def _report(self, sender: Address, ticket: Ticket, done: Future[Saved]) -> None:
        exc = done.exception()
        if exc is not None:
            if isinstance(exc, StudioError):
                self._error(sender, ticket.request_id, exc.message, exc.hint)
            else:
                self._error(sender, ticket.request_id, f"generation failed: {exc}")
            return
        result, records = done.result()
        paths = ticket.handoff or [record.path for record in records]
        for take, path in enumerate(paths):
            self.send(sender, "/studio/ready", ticket.request_id, take, str(path))
        self.send(sender, "/studio/done", ticket.request_id, len(paths), float(result.elapsed_s))

    def _param(self, sender: Address, name: str, value: Any) -> None:
        stored = self.session.set_param(name, value)
        self.send(sender, "/studio/param", name, stored if stored is not None else "")

    def _preset(self, sender: Address, name: str) -> None:
        preset = self.session.apply_preset(name)
        self.send(sender, "/studio/preset", preset.name, preset.prompt)

    def _init(self, sender: Address, path: str) -> None:
        self.send(sender, "/studio/init", self.session.set_init(path) or "")

    def _play(self, sender: Address, take: int, gain: float = 1.0) -> None:
        if not 0 <= gain <= 4:
            raise OscArgError(f"gain must be from 0 to 4, got {gain}")
        self.session.play(take, gain)
        self.send(sender, "/studio/playing", take)

    def _stop(self, sender: Address) -> None:
        self.session.stop()
        self.send(sender, "/studio/stopped")

    def _status(self, sender: Address) -> None:
        self.send(sender, "/studio/status", *[item for pair in self.session.status() for item in pair])

    def _ping(self, sender: Address) -> None:
        self.send(sender, "/studio/pong")
