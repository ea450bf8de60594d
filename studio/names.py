"""How takes are named on disk and in the library, the same everywhere."""

from __future__ import annotations

import re
from pathlib import Path


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-") or "take"


def take_stem(prompt: str, seed: int, take_index: int) -> str:
    """e.g. "punchy-808-kick_7_2" for the second take of seed 7."""
    return f"{slug(prompt)}_{seed}_{take_index + 1}"


def file_stem(name: str) -> str:
    """A take's library name as a file name: what a user typed, minus what a file system refuses."""
    return re.sub(r"[^\w\- .,()+]+", "-", name).strip(" .-")[:100] or "take"


def free_path(folder: Path, stem: str, suffix: str, siblings: tuple[str, ...] = ()) -> Path:
    """folder/stem+suffix, numbered "-2", "-3", … past any existing file (or sibling with those suffixes)."""
    path, n = folder / f"{stem}{suffix}", 2
    while path.exists() or any(path.with_suffix(s).exists() for s in siblings):
        path, n = folder / f"{stem}-{n}{suffix}", n + 1
    return path
