"""Reading a corpus folder (`studio data build`'s output) for evaluation: manifest.jsonl + audio files.

Evaluation reads the manifest itself rather than through the builder's package, so it depends only
on the file format (docs/data.md), and it only ever takes reference clips from the held-out "test"
split: the model never trained on them.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from studio.data.manifest import CORE_CATEGORIES  # the builder guarantees these in every split
from studio.errors import StudioError

MANIFEST = "manifest.jsonl"
DEFAULT_CORPUS = Path("corpus")
HELD_OUT = "test"
# What the model is asked for per category: the plain name of the sound, as a user would type it.
CATEGORY_PROMPTS = {
    "kick": "kick drum",
    "snare": "snare drum",
    "hi-hat": "hi-hat",
    "clap": "hand clap",
    "cymbal": "cymbal crash",
    "bass": "bass note",
    "piano": "piano note",
    "strings": "string ensemble",
    "pad": "synth pad",
    "bell": "bell",
    "pluck": "plucked synth note",
    "organ": "organ chord",
    "guitar": "guitar strum",
    "brass": "brass section",
    "riser": "riser",
    "impact": "impact hit",
    "explosion": "explosion",
    "footsteps": "footsteps",
    "rain": "rain",
    "wind": "wind",
    "ui-blip": "ui blip",
    "drum-loop": "drum loop",
}


class CorpusError(StudioError):
    """The corpus folder is missing, unreadable, or lacks the clips an evaluation needs."""


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path  # absolute
    caption: str
    captions: tuple[str, ...]
    category: str | None
    split: str
    seconds: float


def default_corpus_dir() -> Path:
    return Path(os.environ.get("STUDIO_CORPUS_DIR", DEFAULT_CORPUS))


def read_clips(folder: Path, split: str | None = None) -> list[Clip]:
    """The manifest's clips, in manifest order, optionally of one split."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise CorpusError(
            f"no corpus at {folder}: {MANIFEST} is missing",
            "build one with `studio data build --hours 1 --out corpus/`, then pass --corpus corpus/ "
            "(or set STUDIO_CORPUS_DIR)",
        )
    clips = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            clip = Clip(
                id=str(row["id"]),
                path=folder / row["path"],
                caption=str(row["caption"]),
                captions=tuple(row.get("captions") or [row["caption"]]),
                category=row.get("category"),
                split=str(row["split"]),
                seconds=float(row["seconds"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CorpusError(
                f"{manifest}:{number}: not a manifest row ({exc})",
                "rebuild the corpus with `studio data build`",
            ) from None
        if split is None or clip.split == split:
            clips.append(clip)
    return clips


def by_category(clips: list[Clip]) -> dict[str, list[Clip]]:
    groups: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        if clip.category is not None:
            groups[clip.category].append(clip)
    return dict(groups)


def held_out_by_category(folder: Path, categories: tuple[str, ...] | None) -> dict[str, list[Clip]]:
    """Test-split clips per category; every named category must have some.

    categories None: every category that has test clips, in CORE_CATEGORIES order first.
    """
    groups = by_category(read_clips(folder, HELD_OUT))
    if categories is None:
        order = [c for c in CORE_CATEGORIES if c in groups] + sorted(set(groups) - set(CORE_CATEGORIES))
        categories = tuple(order)
    missing = [c for c in categories if c not in groups]
    if missing:
        raise CorpusError(
            f"{folder}: no held-out ('{HELD_OUT}' split) clips for {', '.join(missing)}",
            "build the corpus with the sources that make these categories (see docs/data.md), "
            "or evaluate fewer categories with --categories",
        )
    if len(categories) < 2:
        raise CorpusError(
            f"{folder}: held-out clips cover {len(categories)} categor{'y' if categories else 'ies'}; "
            "category metrics need at least two",
            "build a larger corpus with `studio data build`",
        )
    return {c: groups[c] for c in categories}
