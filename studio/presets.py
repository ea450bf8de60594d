"""Presets: named prompts with their settings, shipped with Studio or saved by the user.

A preset is one flat TOML file whose keys are the `Preset` fields. Shipped presets live in the
repository's `presets/` folder; user presets in `$STUDIO_PRESETS_DIR` or the user data folder, and a
user preset replaces a shipped one of the same name (names match case-insensitively), so a user can
retune "808 kick" without losing the pad it sits on. `midi_note` makes the presets a pad bank: a
MIDI note triggers the preset that claims it, user presets first.

Reading presets never imports torch (the limits are `studio.request`'s), so a MIDI or OSC front-end
can list its pads before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import studio
from studio.errors import RequestError, StudioError
from studio.request import DEFAULT_DIVERSITY, DEFAULT_STRENGTH, Request, check_parameter


class PresetError(StudioError):
    """A preset file is malformed, a preset is invalid, or a named preset does not exist."""


@dataclass(frozen=True)
class Preset:
    """A named prompt with the settings that make it sound right. None means "the model's default"."""

    name: str
    prompt: str
    negative_prompt: str = ""
    seconds: float | None = None
    steps: int | None = None
    cfg: float | None = None
    variations: int = 1
    diversity: float = DEFAULT_DIVERSITY
    strength: float = DEFAULT_STRENGTH
    seed: int | None = None
    description: str = ""
    midi_note: int | None = None  # pad bank: the MIDI note (0-127) that triggers it
    tags: tuple[str, ...] = ()
    source: str = "shipped"  # "shipped" | "user"; set by the loader, never stored in the file

    def request(self, **overrides: Any) -> Request:
        """The generation request this preset stands for; overrides (prompt, seed, init_audio, …) win."""
        known = {f.name for f in dataclasses.fields(Request)}
        unknown = set(overrides) - known
        if unknown:
            raise RequestError(
                f"unknown request fields: {sorted(unknown)}", f"use any of {', '.join(sorted(known))}"
            )
        values = {key: getattr(self, key) for key in REQUEST_KEYS}
        return Request(**{**values, **overrides})

    def to_toml(self) -> str:
        """The preset as a flat TOML file that `load_presets` reads back to an equal preset."""
        lines = []
        for key in PRESET_KEYS:
            value = getattr(self, key)
            if value is None or (key == "tags" and not value):
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"


# Keys a preset file may hold: every Preset field but where it came from.
PRESET_KEYS = tuple(f.name for f in fields(Preset) if f.name != "source")
# The Request fields a preset fills in; the rest (take_seeds, init_audio, sampler) come as overrides.
REQUEST_KEYS = tuple(k for k in PRESET_KEYS if k not in ("name", "description", "midi_note", "tags"))


def shipped_presets_dir() -> Path:
    """The presets that come with Studio: the repository's `presets/`, inside the package once installed."""
    return studio.shipped_dir("presets")


def user_presets_dir() -> Path:
    """Where the user's presets live: $STUDIO_PRESETS_DIR, else the user data folder."""
    if "STUDIO_PRESETS_DIR" in os.environ:
        return Path(os.environ["STUDIO_PRESETS_DIR"])
    from platformdirs import user_data_path

    return user_data_path("studio") / "presets"


def load_presets(user_dir: Path | None = None) -> dict[str, Preset]:
    """Shipped and user presets by name, ordered by name; a user preset replaces a shipped one.

    Any malformed file raises PresetError naming the file, rather than silently losing a pad.
    """
    merged: dict[str, Preset] = {}
    for source, folder in (("shipped", shipped_presets_dir()), ("user", _user_dir(user_dir))):
        for preset in _read_folder(folder, source).values():
            merged[preset.name.casefold()] = preset
    ordered = sorted(merged.values(), key=lambda p: p.name.casefold())
    return {preset.name: preset for preset in ordered}


def find_preset(name: str, user_dir: Path | None = None) -> Preset:
    """The preset with this name, in any letter case."""
    presets = load_presets(user_dir)
    for preset in presets.values():
        if preset.name.casefold() == name.strip().casefold():
            return preset
    raise PresetError(f"no preset named '{name}'", f"use one of: {', '.join(presets)}")


def save_user_preset(preset: Preset, user_dir: Path | None = None) -> Path:
    """Validate and write a user preset atomically; returns its file.

    It replaces the user preset of the same name (in whichever file that one lives) and refuses to
    take a MIDI note that another user preset plays, so the pad bank stays unambiguous.
    """
    preset = dataclasses.replace(preset, source="user")
    folder = _user_dir(user_dir)
    existing = _read_folder(folder, "user")
    path = next((p for p, old in existing.items() if old.name.casefold() == preset.name.casefold()), None)
    if path is None:
        path = folder / f"{_slug(preset.name)}.toml"
        if path in existing:
            raise PresetError(
                f"{path} already holds the preset '{existing[path].name}'",
                "give the new preset a name that differs by more than punctuation",
            )
    for other_path, other in existing.items():
        if other_path != path and preset.midi_note is not None and other.midi_note == preset.midi_note:
            raise PresetError(
                f"MIDI note {preset.midi_note} is already played by the user preset '{other.name}'",
                "pick another midi_note, or leave it empty",
            )
    text = preset.to_toml()
    _parse(text, path, "user")  # what is written must load back
    _write_atomic(path, text)
    return path


def preset_for_note(note: int, user_dir: Path | None = None) -> Preset | None:
    """The preset a MIDI note triggers: a user preset on that note before a shipped one."""
    matches = [p for p in load_presets(user_dir).values() if p.midi_note == note]
    matches.sort(key=lambda p: p.source != "user")
    return matches[0] if matches else None


# -- reading ----------------------------------------------------------------------------------------


def _user_dir(user_dir: Path | None) -> Path:
    return Path(user_dir) if user_dir is not None else user_presets_dir()


def _read_folder(folder: Path, source: str) -> dict[Path, Preset]:
    """Every *.toml preset in a folder (none if the folder does not exist), checked for clashes."""
    if not folder.is_dir():
        return {}
    presets: dict[Path, Preset] = {}
    by_name: dict[str, Path] = {}
    by_note: dict[int, Path] = {}
    for path in sorted(folder.glob("*.toml")):
        preset = _parse(_read_text(path), path, source)
        clash = by_name.get(preset.name.casefold())
        if clash is not None:
            raise PresetError(
                f"{path}: the preset name '{preset.name}' is also used by {clash}", "rename one of them"
            )
        note_clash = by_note.get(preset.midi_note) if preset.midi_note is not None else None
        if note_clash is not None:
            raise PresetError(
                f"{path}: MIDI note {preset.midi_note} is also played by {note_clash}",
                "give one of them another midi_note",
            )
        by_name[preset.name.casefold()] = path
        if preset.midi_note is not None:
            by_note[preset.midi_note] = path
        presets[path] = preset
    return presets


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: cannot read the preset ({exc})", "check the file is UTF-8 text") from exc


def _parse(text: str, path: Path, source: str) -> Preset:
    """One preset from TOML text; every problem is reported with the file it came from."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(
            f"{path}: not valid TOML ({exc})", "fix the line named, or delete the file"
        ) from exc
    try:
        return _validate(data, source)
    except PresetError as exc:
        raise PresetError(f"{path}: {exc.message}", exc.hint) from None


def _validate(data: dict[str, Any], source: str) -> Preset:
    """A Preset from TOML values, or PresetError saying which key is wrong and why."""
    unknown = sorted(set(data) - set(PRESET_KEYS))
    if unknown:
        raise PresetError(f"unknown keys {unknown}", f"use only {', '.join(PRESET_KEYS)}")
    for key in ("name", "prompt"):
        if key not in data:
            raise PresetError(f"'{key}' is missing", f'add a line like {key} = "…"')
    values: dict[str, Any] = {"source": source}
    for key, value in data.items():
        values[key] = _check(key, value)
    return Preset(**values)


def _check(key: str, value: Any) -> Any:
    """One value, type- and range-checked, converted to the field's Python type."""
    if key in ("name", "prompt"):
        if not isinstance(value, str) or not value.strip():
            raise PresetError(f"'{key}' must be non-empty text, got {value!r}")
        value = value.strip()
    if key in ("name", "description"):
        return _expect(key, value, str, "text")
    if key == "tags":
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise PresetError(
                f"'tags' must be a list of text, got {value!r}", 'e.g. tags = ["drums", "kick"]'
            )
        return tuple(value)
    if key == "midi_note":
        note = _expect(key, value, int, "a whole number")
        if not 0 <= note <= 127:
            raise PresetError(f"'{key}' must be from 0 to 127, got {note}")
        return note
    try:
        return check_parameter(key, value, label=f"'{key}'")
    except RequestError as exc:
        raise PresetError(exc.message, exc.hint) from None


def _expect(key: str, value: Any, kind: type, described: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PresetError(f"'{key}' must be {described}, got {value!r}")
    return value


# -- writing ----------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    """A TOML literal for the flat values a preset holds: text, numbers, booleans, lists of them.

    Wrong types are written as they are, so that validating the written text names the bad key.
    """
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, float):
        return repr(value)  # always has a '.', an exponent, or is inf/nan: reads back as a float
    if isinstance(value, int):
        return str(value)
    raise PresetError(f"a preset cannot hold {value!r}", "use text, numbers, or a list of text for tags")


def _toml_string(text: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _slug(name: str) -> str:
    slug = re.sub(r"[^\w]+", "-", name.casefold()).strip("-_")
    if not slug:
        raise PresetError(f"cannot make a file name from the preset name {name!r}", "use letters or digits")
    return slug


def _write_atomic(path: Path, text: str) -> None:
    """Temp file + rename in the same folder, so a reader never sees half a preset."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise PresetError(
            f"cannot write {path}: {exc.strerror or exc}", "check the folder is writable (STUDIO_PRESETS_DIR)"
        ) from exc
