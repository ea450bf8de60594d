"""The corpus manifest: one JSON object per clip in `manifest.jsonl`, the category list and the split rule.

Training, evaluation and metrics code read corpora only through this module, so the record fields
below are a contract: add fields only with a builder version bump, never rename them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
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
# Values of the `source` field: the Debian packages read, then the two generators.
DEBIAN_SOURCES = (
    "sonic-pi-samples",
    "lmms-common",
    "hydrogen-drumkits",
    "hydrogen-drumkits-effects",
    "ufoai-sound",
    "sound-theme-freedesktop",
)
GENERATED_SOURCES = ("gm-render", "procedural")
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


class CorpusError(StudioError):
    """A corpus could not be built or read."""


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


@dataclass(frozen=True)
class Clip:
    """One manifest record; `path` is relative to the corpus folder."""

    id: str
    path: str
    caption: str
    captions: tuple[str, ...]
    category: str | None
    source: str
    source_file: str
    licence: str
    split: str
    seconds: float
    sample_rate: int
    augment: dict[str, Any] | None
    tags: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["captions"] = list(self.captions)
        record["tags"] = list(self.tags)
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Clip:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in record]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        values = {n: record[n] for n in names}
        values["captions"] = tuple(values["captions"])
        values["tags"] = tuple(values["tags"])
        return cls(**values)


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
    """The clips of a corpus folder, in manifest order; with `split`, only that split's."""
    if split is not None and split not in SPLITS:
        raise CorpusError(f"unknown split '{split}'", f"use one of {', '.join(SPLITS)}")
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise CorpusError(f"{path}: no corpus manifest", "build one: studio data build --hours 1 --out DIR")
    clips = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                clip = Clip.from_dict(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise CorpusError(
                    f"{path}:{line_no}: not a manifest record ({exc})",
                    "rebuild the corpus with studio data build",
                ) from exc
            if split is None or clip.split == split:
                clips.append(clip)
    return clips
