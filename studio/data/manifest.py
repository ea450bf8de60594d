"""The corpus manifest: one JSON object per clip in `manifest.jsonl`, the category list and the split rule.

Training, evaluation and metrics code read corpora only through this module, so the record fields
below are a contract: add fields only with a builder version bump, never rename them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from studio.errors import StudioError

MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "corpus.json"
AUDIO_DIR = "audio"

CATEGORIES = (
    "kick",
    "snare",
    "hi-hat",
    "clap",
    "cymbal",
    "bass",
    "piano",
    "strings",
    "pad",
    "bell",
    "pluck",
    "organ",
    "guitar",
    "brass",
    "riser",
    "impact",
    "explosion",
    "footsteps",
    "rain",
    "wind",
    "ui-blip",
    "drum-loop",
)
# The prompt categories the evaluation scores; the builder makes sure each has clips in every split.
CORE_CATEGORIES = (
    "kick",
    "snare",
    "hi-hat",
    "bass",
    "piano",
    "strings",
    "pad",
    "bell",
    "rain",
    "footsteps",
    "explosion",
    "riser",
)
# Values of the `source` field: the Debian packages read, then the generators.
DEBIAN_SOURCES = (
    "sonic-pi-samples",
    "lmms-common",
    "hydrogen-drumkits",
    "hydrogen-drumkits-effects",
    "ufoai-sound",
    "sound-theme-freedesktop",
    "freedoom",
)
GENERATED_SOURCES = ("gm-render", "procedural", "gm-notes", "bpm-loops")
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


class CorpusError(StudioError):
    """A corpus could not be built or read."""


# A category named as a focus without a weight gets this much: a corpus build grows it to this many
# times the time of the others, a training run draws its clips this many times as often.
FOCUS_WEIGHT = 4.0


def parse_focus(focus: str | Iterable[str]) -> dict[str | None, float]:
    """Category weights from a comma list of categories, each optionally "=weight" (FOCUS_WEIGHT when
    not given); "other" names the clips of no category (None)."""
    names = [p.strip() for p in focus.split(",")] if isinstance(focus, str) else list(focus)
    weights: dict[str | None, float] = {}
    for item in filter(None, names):
        name, _, weight = (part.strip() for part in item.partition("="))
        if name != "other" and name not in CATEGORIES:
            raise CorpusError(
                f"unknown focus category '{name}'", f"use any of {', '.join(CATEGORIES)} or other"
            )
        try:
            value = float(weight or FOCUS_WEIGHT)
        except ValueError:
            value = math.nan  # refused below, with the same message as a weight out of range
        if not 0 < value <= 100:
            raise CorpusError(f"focus weight '{weight}' of {name} is not a number in (0, 100]", "e.g. rain=4")
        weights[None if name == "other" else name] = value
    return weights


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that is the same in every process and Python version (unlike hash())."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def split_for(source_file: str) -> str:
    """The split of every clip made from `source_file`: a stable hash, so all augmentations and
    segments of one origin land together and no test material leaks into training."""
    u = stable_hash("split", source_file) / 2**64
    edge = 0.0
    for split, fraction in zip(SPLITS, SPLIT_FRACTIONS, strict=True):
        edge += fraction
        if u < edge:
            return split
    return SPLITS[-1]


# A hand-made corpus needs only these; everything else a builder records is optional.
REQUIRED_FIELDS = ("id", "path", "caption", "split")


@dataclass(frozen=True, kw_only=True)
class Clip:
    """One manifest record; `path` is relative to the corpus folder (`file` is the absolute one)."""

    id: str
    path: str
    caption: str
    captions: tuple[str, ...] = ()  # every phrasing, `caption` first; one is drawn per training use
    category: str | None = None
    source: str = ""
    source_file: str = ""
    licence: str = ""
    split: str
    seconds: float = 0.0
    sample_rate: int = 0
    augment: dict[str, Any] | None = None
    tags: tuple[str, ...] = ()
    folder: Path | None = field(default=None, compare=False, repr=False)  # set by read_manifest

    def __post_init__(self) -> None:
        phrasings = tuple(dict.fromkeys(c for c in (self.caption, *self.captions) if c.strip()))
        object.__setattr__(self, "captions", phrasings)

    @property
    def file(self) -> Path:
        return Path(self.folder or ".") / self.path

    def to_dict(self) -> dict[str, Any]:
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "folder"}
        record["captions"] = list(self.captions)
        record["tags"] = list(self.tags)
        return record

    @classmethod
    def from_dict(cls, record: Any, folder: Path | None = None) -> Clip:
        """A record checked field by field; ValueError says which field is wrong."""
        if not isinstance(record, dict):
            raise ValueError("should be a JSON object")
        for name in REQUIRED_FIELDS:
            if not isinstance(record.get(name), str) or not record[name].strip():
                raise ValueError(f"field '{name}' is missing or not text")
        if record["split"] not in SPLITS:
            raise ValueError(f"split '{record['split']}' is not one of {', '.join(SPLITS)}")
        for name in ("captions", "tags"):
            value = record.get(name) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"field '{name}' should be a list of text")
        seconds = record.get("seconds", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("field 'seconds' should be a number of seconds")
        known = {f.name for f in fields(cls)} - {"folder"}
        values = {name: value for name, value in record.items() if name in known and value is not None}
        values["captions"] = tuple(record.get("captions") or ())
        values["tags"] = tuple(record.get("tags") or ())
        return cls(**values, folder=folder)


def write_manifest(folder: Path, clips: Iterable[Clip]) -> Path:
    """Write manifest.jsonl atomically, so a reader never sees a half-written corpus."""
    path = Path(folder) / MANIFEST_NAME
    lines = [json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in clips]
    write_text_atomic(path, "".join(lines))
    return path


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise CorpusError(
            f"cannot write {path}: {exc.strerror or exc}", "check the folder is writable"
        ) from exc


def read_manifest(folder: str | Path, split: str | None = None) -> list[Clip]:
    """The clips of a corpus folder, in manifest order; with `split`, only that split's.

    Errors name the line that was wrong and how to mend it.
    """
    if split is not None and split not in SPLITS:
        raise CorpusError(f"unknown split '{split}'", f"use one of {', '.join(SPLITS)}")
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise CorpusError(
            f"{folder}: no {MANIFEST_NAME} (not a corpus folder)",
            "pass --corpus a folder made by `studio data build --hours 1 --out DIR` (eval also reads "
            "STUDIO_CORPUS_DIR), or write manifest.jsonl yourself (fields: docs/data.md)",
        )
    clips, seen = [], set()
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{where}: not valid JSON ({exc})", "one JSON object per line") from None
            try:
                clip = Clip.from_dict(record, folder)
            except (ValueError, TypeError) as exc:
                raise CorpusError(
                    f"{where}: not a manifest record ({exc})",
                    "fix the line (fields: docs/data.md) or rebuild with `studio data build`",
                ) from None
            if clip.id in seen:
                raise CorpusError(f"{where}: clip id '{clip.id}' appears twice", "give every clip its own id")
            seen.add(clip.id)
            if split is None or clip.split == split:
                clips.append(clip)
    return clips
