"""One vocabulary for a take, shared by every front-end: what may be asked for (`Request`), what a
take was made with (`TakeParams`), the limits, the defaults, and one validator.

Nothing here imports torch or needs a model, so the browser, OSC, MIDI, the CLI and presets refuse
a bad value where it was given, before any model loads. Only what depends on the model (its longest
take, its samplers, its default steps and cfg) waits for the engine, which checks it with the same
`check_parameter`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import RequestError

if TYPE_CHECKING:
    import numpy as np

MAX_VARIATIONS = 16
MAX_STEPS = 500
MAX_SEED = 2**63 - 1
MAX_CFG = 30.0
MAX_PROMPT_CHARS = 1000
MIN_SECONDS = 0.05  # shorter is a click, not a take (and 1e-300 s would be a file of no samples)
# Steps of a request that names none, by sampler, where the model's config names no default_steps
DEFAULT_STEPS = {"pingpong": 8, "euler": 50, "onestep": 1, "mar": 8}
DEFAULT_DIVERSITY = 1.0  # independent takes
DEFAULT_STRENGTH = 0.6  # restyling a recording: its shape survives, its sound does not
VARY_STRENGTH = 0.35  # "vary this": new takes close to the one they start from
InitAudio = str | Path | tuple["np.ndarray", int]


@dataclass(frozen=True)
class Request:
    """What a front-end asks for. None means "the model's default"."""

    prompt: str
    negative_prompt: str = ""
    seconds: float | None = None
    steps: int | None = None
    cfg: float | None = None
    seed: int | None = None  # None or -1: a random seed, reported in the result
    variations: int = 1
    diversity: float = DEFAULT_DIVERSITY
    # One seed per take, overriding variations; by default seed, seed + 1, …
    take_seeds: tuple[int, ...] | None = None
    init_audio: InitAudio | None = None
    strength: float = DEFAULT_STRENGTH  # init noise level: 0 keeps the recording, 1 ignores it
    sampler: str | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Request:
        """The request that regenerates exactly the take these parameters describe."""
        known = {f.name for f in dataclasses.fields(TakeParams)}
        unknown = set(params) - known
        if unknown:
            raise RequestError(f"unknown take parameters: {sorted(unknown)}")
        try:
            p = TakeParams(**params)
        except TypeError as exc:
            raise RequestError(f"incomplete take parameters: {exc}") from None
        return cls(
            prompt=p.prompt,
            negative_prompt=p.negative_prompt,
            seconds=p.seconds,
            steps=p.steps,
            cfg=p.cfg,
            seed=p.seed,
            variations=1,
            diversity=p.diversity,
            take_seeds=(p.take_seed,),
            init_audio=p.init_audio,
            strength=p.strength if p.strength is not None else DEFAULT_STRENGTH,
            sampler=p.sampler,
        )


@dataclass(frozen=True)
class TakeParams:
    """Everything that determines one take; `Request.from_params` turns it back into a request."""

    prompt: str
    negative_prompt: str
    seconds: float
    steps: int
    cfg: float
    sampler: str
    seed: int
    take_seed: int
    take_index: int
    variations: int
    diversity: float
    init_audio: str | None
    strength: float | None
    model: str
    sample_rate: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def finite_number(label: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"{label} must be a finite number, got {value!r}")
    return float(value)


def whole_number(label: str, value: Any) -> int:
    """`value` as an int; a float is taken only when it is whole (a slider's 8.0), never rounded."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != math.floor(value):
        raise RequestError(f"{label} must be a whole number, got {value!r}")
    return int(value)


def check_parameter(
    name: str, value: Any, *, max_seconds: float | None = None, label: str | None = None
) -> Any:
    """`value` for the request parameter `name`, checked against the limits and converted (8.0 steps
    become 8); RequestError says what was wrong and what is allowed. `max_seconds` is the model's
    longest take, where a model is known; `label` names the value in the message where the user
    knows it by another name (a preset file's key)."""
    label = label or name
    if name in ("prompt", "negative_prompt"):
        if not isinstance(value, str):
            raise RequestError(f"{label} must be text, got {type(value).__name__}")
        if len(value) > MAX_PROMPT_CHARS:
            raise RequestError(f"{label} is {len(value)} characters; the limit is {MAX_PROMPT_CHARS}")
        return value
    if name == "seconds":
        seconds = finite_number(label, value)
        shortest = f"(the shortest take is {MIN_SECONDS:g} s)"
        if max_seconds is None and seconds < MIN_SECONDS:
            raise RequestError(
                f"{label} must be more than 0, got {value} {shortest}", "give a length in seconds, e.g. 2"
            )
        if max_seconds is None:
            return seconds
        # A limit is shown to 2 decimals (4.18 for 4.1796 s); that shown value is accepted too, as
        # the model's longest take, so a user who types what the message says is not refused.
        shown = math.ceil(max_seconds * 100 - 1e-6) / 100
        if not MIN_SECONDS <= seconds <= shown + 1e-9:
            raise RequestError(
                f"{label} must be more than 0 and at most {shown:.2f} for this model, got {value} "
                + shortest,
                "ask for a shorter take, or use a model made for longer audio"
                if seconds > shown
                else f"give a length in seconds, e.g. {min(2.0, shown):g}",
            )
        return min(seconds, max_seconds)
    if name in _WHOLE_RANGES:
        number, (low, high, described) = whole_number(label, value), _WHOLE_RANGES[name]
        if not low <= number <= high:
            raise RequestError(f"{label} must be from {low} to {high}{described}, got {value}")
        return number
    if name in _RANGES:
        number, (low, high, low_open, hint) = finite_number(label, value), _RANGES[name]
        if number > high or number < low or (low_open and number == low):
            bound = f"more than {low:g} and at most {high:g}" if low_open else f"from {low:g} to {high:g}"
            raise RequestError(f"{label} must be {bound}, got {value}", hint)
        return number
    raise RequestError(f"unknown request parameter '{name}'", f"use any of {', '.join(PARAMETERS)}")


# (low, high, what the range means)
_WHOLE_RANGES = {
    "steps": (1, MAX_STEPS, ""),
    "variations": (1, MAX_VARIATIONS, ""),
    "seed": (-1, MAX_SEED, " (-1 for a random one)"),
}
# (low, high, whether low itself is refused, a hint)
_RANGES = {
    "cfg": (0.0, MAX_CFG, False, "1 turns guidance off; 3–7 is usual"),
    "diversity": (0.0, 1.0, False, "0 gives identical takes, 1 independent ones"),
    "strength": (0.0, 1.0, True, "low keeps more of the recording, 1 keeps almost none of it"),
}
PARAMETERS = ("prompt", "negative_prompt", "seconds", *_WHOLE_RANGES, *_RANGES)


def check_request(request: Request, max_seconds: float | None = None) -> Request:
    """The request with every value it names checked and converted; None stays "the default"."""
    checked = {
        name: check_parameter(name, getattr(request, name), max_seconds=max_seconds)
        for name in PARAMETERS
        if getattr(request, name) is not None
    }
    if request.take_seeds is not None:
        seeds = tuple(request.take_seeds)
        if not 1 <= len(seeds) <= MAX_VARIATIONS:
            raise RequestError(f"take_seeds must hold 1 to {MAX_VARIATIONS} seeds, got {len(seeds)}")
        checked["take_seeds"] = tuple(check_parameter("seed", s, label="a take seed") for s in seeds)
        if min(checked["take_seeds"]) < 0:
            raise RequestError(f"take seeds must be from 0 to {MAX_SEED}, got {request.take_seeds}")
    return dataclasses.replace(request, **checked)
