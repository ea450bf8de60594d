"""The evaluation's view of a corpus (`studio data build`'s output): held-out clips per category.

Reference clips only ever come from the held-out "test" split: the model never trained on them.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from studio.data.manifest import CORE_CATEGORIES, Clip, CorpusError, read_manifest

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


def default_corpus_dir() -> Path:
    return Path(os.environ.get("STUDIO_CORPUS_DIR", DEFAULT_CORPUS))


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
    groups = by_category(read_manifest(folder, HELD_OUT))
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
