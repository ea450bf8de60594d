"""The training corpus: real Debian recordings, General MIDI renders and procedural sounds, captioned,
split by source file and listed in a manifest (see docs/data.md).

Readers need only `read_manifest`, `Clip` and the category constants; `build_corpus` is imported on
first use, so reading a corpus does not load the renderers.
"""

from typing import Any

from studio.data.manifest import (
    CATEGORIES,
    CORE_CATEGORIES,
    SPLITS,
    Clip,
    CorpusError,
    read_manifest,
    split_for,
)

__all__ = [
    "CATEGORIES",
    "CORE_CATEGORIES",
    "SPLITS",
    "Clip",
    "CorpusError",
    "build_corpus",
    "read_manifest",
    "split_for",
]


def __getattr__(name: str) -> Any:
    if name == "build_corpus":
        from studio.data.build import build_corpus

        return build_corpus
    raise AttributeError(f"module 'studio.data' has no attribute '{name}'")
