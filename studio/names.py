"""How takes are named on disk and in the library, the same everywhere."""

from __future__ import annotations

import re


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-") or "take"


def take_stem(prompt: str, seed: int, take_index: int) -> str:
    """e.g. "punchy-808-kick_7_2" for the second take of seed 7."""
    return f"{slug(prompt)}_{seed}_{take_index + 1}"
