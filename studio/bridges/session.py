"""The live session that OSC and MIDI drive: what the next trigger generates, the last takes, playback.

A control surface is stateful: a fader sets the diversity, a pad fires a preset, a button plays take 2.
`Session` keeps that state for every remote front-end at once (one instrument, many controllers),
turns triggers into engine requests through the shared `Studio`, hands finished takes to the DAW
(absolute path, a copy in the watched export folder, MIDI out notes) and plays them on request.
"""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.audio import audio_seconds
from studio.errors import RequestError, StudioError
from studio.library import TakeRecord
from studio.presets import Preset, find_preset, preset_for_note
from studio.request import (
    DEFAULT_DIVERSITY,
    DEFAULT_STRENGTH,
    VARY_STRENGTH,
    Request,
    check_parameter,
    finite_number,
    whole_number,
)
from studio.service import ModelInfo, Result, Saved, Studio

if TYPE_CHECKING:
    from studio.bridges.midi import MidiBridge
    from studio.bridges.playback import Player

log = logging.getLogger("studio.session")

OSC_MAX_INT = 2**31 - 1  # OSC ints are int32: every seed a remote controller may send or receive
PARAM_NAMES = (
    "prompt",
    "negative",
    "seconds",
    "steps",
    "cfg",
    "diversity",
    "strength",
    "variations",
    "seed",
    "autoplay",
    "model",
)


@dataclass
class LiveParams:
    """What the next trigger generates. None means "the preset's or the model's own value"."""

    prompt: str = ""
    negative: str = ""
    seconds: float | None = None
    steps: int | None = None
    cfg: float | None = None
    diversity: float | None = None
    strength: float | None = None
    variations: int | None = None
    seed: int | None = None
    init: str | None = None
    autoplay: bool = False  # OSC triggers hand files over; MIDI pads always play


@dataclass
class SessionTake:
    """A take the session can play or vary: its library record and its audio in memory."""

    record: TakeRecord
    audio: np.ndarray
    sample_rate: int


@dataclass
class Ticket:
    """One accepted trigger: its id (echoed in every reply about it) and its saved result."""

    request_id: int
    request: Request
    future: Future[Saved]
    handoff: list[Path] = field(default_factory=list)  # filled before the future's callbacks run


class Session:
    """Shared live state behind OSC and MIDI."""

    def __init__(
        self,
        studio: Studio,
        allowed_dirs: list[Path] | None = None,
        handoff: bool = True,
        player: Player | None = None,
        playback_off: str = "playback is off: start the studio with --play",
    ):
        self.studio = studio
        self.params = LiveParams()
        self.handoff = handoff
        self.player = player
        self.playback_off = playback_off
        self.midi: MidiBridge | None = None
        self.midi_off = "MIDI is off: start the studio with --midi"
        roots = [studio.library.root, studio.export_dir, *(allowed_dirs or [])]
        self.allowed_dirs = [Path(p).expanduser().resolve() for p in roots]
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending = 0
        self._last: list[SessionTake] = []
        self._notes: dict[int, int] = {}  # id(request) -> the MIDI note that triggered it
        studio.listeners.append(self._announce_to_midi)
        studio.model_listeners.append(self._follow_model)

    # -- triggers ---------------------------------------------------------------------------------

    def generate(
        self,
        prompt: str | None = None,
        seconds: float | None = None,
        variations: int | None = None,
        seed: int | None = None,
    ) -> Ticket:
        """A take (or several) from the live parameters; arguments override them for this one."""
        p = self.params
        text = p.prompt if prompt is None else prompt
        check_parameter("prompt", text)
        if seed is not None:
            _check_live("seed", seed, self.max_seconds)  # a seed a controller can be told back
        request = Request(
            prompt=text,
            negative_prompt=p.negative,
            seconds=p.seconds if seconds is None else seconds,
            steps=p.steps,
            cfg=p.cfg,
            seed=p.seed if seed is None else seed,
            variations=(p.variations or 1) if variations is None else variations,
            diversity=DEFAULT_DIVERSITY if p.diversity is None else p.diversity,
            init_audio=p.init,
            strength=DEFAULT_STRENGTH if p.strength is None else p.strength,
        )
        return self._submit(request, autoplay=p.autoplay)

    def vary(self, take: int) -> Ticket:
        """New takes around one of the last takes: its settings, re-noised from its own audio."""
        source = self._take(take)
        p = self.params
        with self._lock:
            shown = len(self._last)
        request = self.studio.vary(
            source.record.id,
            variations=p.variations or shown,  # as many new takes as the controller had, by default
            strength=VARY_STRENGTH if p.strength is None else p.strength,
        )
        return self._submit(request, autoplay=p.autoplay)

    def trigger_preset(self, preset: Preset, velocity: int = 127, note: int | None = None) -> Ticket:
        """A pad: the preset's sound, with whatever the live controls have changed since."""
        p = self.params
        overrides: dict[str, Any] = {"init_audio": p.init}
        for name in ("seconds", "steps", "cfg", "diversity", "strength"):
            if getattr(p, name) is not None:
                overrides[name] = getattr(p, name)
        if overrides.get("seconds") is not None:
            overrides["seconds"] = min(overrides["seconds"], self.max_seconds)
        request = preset.request(**overrides)
        return self._submit(request, autoplay=True, gain=velocity / 127, note=note)

    def trigger_note(self, note: int, velocity: int) -> None:
        """MIDI note-on: the preset of the pad bank on that note."""
        preset = preset_for_note(note, self.studio.presets_dir)
        if preset is None:
            log.warning("MIDI note %d has no preset: set `midi_note = %d` in a preset to use it", note, note)
            return
        ticket = self.trigger_preset(preset, velocity, note)
        ticket.future.add_done_callback(_log_failure)

    def play(self, take: int, gain: float = 1.0, note: int | None = None) -> int:
        """Play one of the last takes on the local output; overlapping plays mix."""
        if self.player is None:
            raise StudioError(self.playback_off)
        source = self._take(take)
        note = 60 + take if note is None else note
        midi = self.midi
        return self.player.play(
            source.audio,
            source.sample_rate,
            gain,
            on_start=(lambda: midi.voice_started(note, round(gain * 127))) if midi else None,
            on_end=(lambda: midi.voice_ended(note)) if midi else None,
        )

    def stop(self) -> None:
        if self.player is not None:
            self.player.stop()

    # -- parameters -------------------------------------------------------------------------------

    def set_param(self, name: str, value: Any) -> Any:
        """Validate and set one live parameter; returns the value as stored."""
        if name not in PARAM_NAMES:
            raise RequestError(f"unknown parameter '{name}'", f"use one of {', '.join(PARAM_NAMES)}")
        if name == "model":
            return self.switch_model(value)
        if name in ("prompt", "negative"):
            check_parameter("prompt" if name == "prompt" else "negative_prompt", value, label=name)
            setattr(self.params, name, value)
            return value
        if name == "autoplay":
            self.params.autoplay = bool(finite_number(name, value))
            return int(self.params.autoplay)
        checked = _check_live(name, value, self.max_seconds)
        setattr(self.params, name, None if name == "seed" and checked == -1 else checked)
        return checked

    def apply_preset(self, name: str) -> Preset:
        """Load a preset into the live parameters (its prompt becomes the prompt)."""
        preset = find_preset(name, self.studio.presets_dir)
        p = self.params
        p.prompt, p.negative = preset.prompt, preset.negative_prompt
        p.seconds = None if preset.seconds is None else min(preset.seconds, self.max_seconds)
        p.steps, p.cfg, p.seed = preset.steps, preset.cfg, preset.seed
        p.variations, p.diversity, p.strength = preset.variations, preset.diversity, preset.strength
        return preset

    def set_init(self, path: str) -> str | None:
        """The recording to restyle; an empty path clears it. Only files in allowed folders."""
        if not path:
            self.params.init = None
            return None
        resolved = Path(path).expanduser().resolve()
        if not any(resolved.is_relative_to(root) for root in self.allowed_dirs):
            raise RequestError(
                f"{resolved} is outside the folders remote control may read",
                "move the recording into the library or export folder, or start the studio with "
                "--allow-dir FOLDER",
            )
        audio_seconds(resolved)  # a missing or non-audio file fails now, not at the next trigger
        self.params.init = str(resolved)
        return self.params.init

    def switch_model(self, name: str) -> str:
        return self.studio.switch_model(name).name  # which checks it is a known model's name

    @property
    def max_seconds(self) -> float:
        return self.studio.model.max_seconds

    def status(self) -> list[tuple[str, Any]]:
        """Key/value pairs of everything a controller may want to show."""
        model, p = self.studio.model, self.params
        with self._lock:
            pending, last = self._pending, len(self._last)
        return [
            ("model", model.name),
            ("device", model.device),
            ("pending", pending),
            ("takes", last),
            ("prompt", p.prompt),
            ("negative", p.negative),
            ("seconds", float(p.seconds if p.seconds is not None else model.max_seconds)),
            ("steps", p.steps or model.default_steps),
            ("cfg", model.guidance(p.cfg)),
            ("diversity", float(p.diversity if p.diversity is not None else DEFAULT_DIVERSITY)),
            ("strength", float(p.strength if p.strength is not None else DEFAULT_STRENGTH)),
            ("variations", int(p.variations or 1)),
            ("seed", -1 if p.seed is None else int(p.seed)),
            ("init", p.init or ""),
            ("autoplay", int(p.autoplay)),
            ("export_dir", str(self.studio.export_dir)),
            ("playback", "on" if self.player is not None else self.playback_off),
            ("midi", "on" if self.midi is not None else self.midi_off),
        ]

    def close(self) -> None:
        """Stop hearing about takes; the studio itself stays open for its other front-ends."""
        if self._announce_to_midi in self.studio.listeners:
            self.studio.listeners.remove(self._announce_to_midi)
        if self._follow_model in self.studio.model_listeners:
            self.studio.model_listeners.remove(self._follow_model)

    # -- internals --------------------------------------------------------------------------------

    def _submit(self, request: Request, autoplay: bool, gain: float = 1.0, note: int | None = None) -> Ticket:
        future = self.studio.submit(request)
        ticket = Ticket(next(self._ids), request, Future())
        with self._lock:
            self._pending += 1
            if note is not None:
                self._notes[id(request)] = note
        future.add_done_callback(lambda done: self._finish(ticket, done, autoplay, gain, note))
        return ticket

    def _finish(
        self, ticket: Ticket, done: Future[Saved], autoplay: bool, gain: float, note: int | None
    ) -> None:
        """Runs on the saver thread: remember the takes, hand them over, then resolve the ticket."""
        with self._lock:
            self._pending -= 1
            self._notes.pop(id(ticket.request), None)
        try:
            result, records = done.result()
            takes = [
                SessionTake(record, take.audio, take.sample_rate)
                for record, take in zip(records, result.takes, strict=True)
            ]
            with self._lock:
                self._last = takes
            if self.handoff:
                ticket.handoff = self._hand_off_all(takes)
        except BaseException as exc:
            ticket.future.set_exception(exc)
            return
        ticket.future.set_result((result, records))
        if autoplay and self.player is not None and takes:
            try:
                self.play(0, gain, note)
            except StudioError as exc:
                log.warning("cannot play the take: %s", exc)

    def _hand_off_all(self, takes: list[SessionTake]) -> list[Path]:
        """Copies in the export folder: DAWs watch it, and a DAW project that uses the files keeps
        working when the takes are deleted from the library. The takes are saved already: if the
        copies cannot be written (a full disk), the library's own files are handed over instead."""
        copies: list[Path] = []
        try:
            for take in takes:
                copies.append(self.studio.export(take.record, take.audio, take.sample_rate))
        except StudioError as exc:
            log.warning("takes handed over from the library, not the export folder: %s", exc)
            for copy in copies:
                copy.unlink(missing_ok=True)
            return [take.record.path for take in takes]
        return copies

    def _follow_model(self, model: ModelInfo) -> None:
        """Another model is loaded (by any front-end): the live length and the seconds knob follow it."""
        p = self.params
        if p.seconds is not None and p.seconds > model.max_seconds:
            p.seconds = model.max_seconds
        if self.midi is not None:
            self.midi.follow_model(model.max_seconds)

    def _take(self, index: int) -> SessionTake:
        with self._lock:
            takes = list(self._last)
        if not takes:
            raise RequestError("there are no takes yet", "generate first")
        if not isinstance(index, int) or not 0 <= index < len(takes):
            raise RequestError(f"take must be from 0 to {len(takes) - 1}, got {index}")
        return takes[index]

    def _announce_to_midi(self, request: Request, result: Result, records: list[TakeRecord]) -> None:
        """Every take from any front-end sends a MIDI out trigger: the pad's note, else 60 + take."""
        midi = self.midi
        if midi is None:
            return
        with self._lock:
            note = self._notes.get(id(request))
        for i, _ in enumerate(records):
            midi.take_ready(note if note is not None else 60 + i)


def _log_failure(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("pad trigger failed: %s", exc)


def _check_live(name: str, value: Any, max_seconds: float) -> float | int:
    """The request limits, checked when a control moves rather than at the next trigger. A seed must
    also fit OSC's int32, so that every controller can send it and be told it."""
    if name == "seed":
        seed = whole_number(name, value)
        if not -1 <= seed <= OSC_MAX_INT:
            raise RequestError(f"seed must be from -1 to {OSC_MAX_INT}, got {value}", "-1 picks a random one")
        return seed
    return check_parameter(name, value, max_seconds=max_seconds)
