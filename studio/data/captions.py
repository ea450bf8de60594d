"""Captions from facts: a clip is described by a `Description` (what it is, its pitch, tempo, character)
and captions are rendered from it in several phrasings.

Keeping facts rather than strings lets augmentation edit what changed (a loop stretched by 1.1 plays
at 126 BPM, not 115; a bell pitched up 2 semitones rings at D6, not C6) and re-render every phrasing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MIN_CAPTIONS, MAX_CAPTIONS = 2, 5


def note_name(midi: int) -> str:
    """Scientific pitch name of a MIDI note: 60 -> "C4"."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def pitch_class_name(pc: int) -> str:
    return NOTE_NAMES[pc % 12]


@dataclass(frozen=True)
class Description:
    """What a clip sounds like.

    subject:   the thing heard, noun last ("808 kick", "grand piano", "drum loop").
    qualities: adjectives put before the subject ("punchy", "warm").
    details:   phrases after a comma ("long tail", "with hall reverb").
    style:     a genre or origin before the subject ("latin funk", "TR-808").
    note:      one MIDI pitch, said as "C4".
    harmony:   a pitch phrase with a "{root}" slot ("{root} minor chord", "in {root} minor"); `root` is
               its pitch class. Kept apart from `note` so transposition moves both.
    bpm:       tempo, said as "115 BPM".
    synonyms:  other names for the subject, used in the alternative phrasings ("bass drum" for kick).
    """

    subject: str
    qualities: tuple[str, ...] = ()
    details: tuple[str, ...] = ()
    style: str | None = None
    note: int | None = None
    harmony: str | None = None
    root: int | None = None
    bpm: float | None = None
    synonyms: tuple[str, ...] = ()

    def transposed(self, semitones: int) -> Description:
        return replace(
            self,
            note=None if self.note is None else self.note + semitones,
            root=None if self.root is None else (self.root + semitones) % 12,
        )

    def tempo_scaled(self, factor: float) -> Description:
        return self if self.bpm is None else replace(self, bpm=self.bpm * factor)

    def with_details(self, *details: str) -> Description:
        return replace(self, details=self.details + tuple(d for d in details if d not in self.details))

    def without_qualities(self, *qualities: str) -> Description:
        return replace(self, qualities=tuple(q for q in self.qualities if q not in qualities))

    def with_qualities(self, *qualities: str) -> Description:
        new = tuple(q for q in qualities if q not in self.qualities)
        return replace(self, qualities=new + self.qualities)


def _join(*parts: str | None, sep: str = " ") -> str:
    return sep.join(p for p in parts if p)


def _harmony(desc: Description) -> str | None:
    if desc.harmony is None:
        return None
    return desc.harmony.format(root=pitch_class_name(desc.root or 0))


def _bpm(desc: Description) -> str | None:
    return None if desc.bpm is None else f"{round(desc.bpm)} BPM"


# Letters whose spoken name starts with a vowel sound: "an FM bell", "an A minor chord", "an 808".
_VOWEL_LETTERS = set("AEFHILMNORSX")


# Plural subjects take no article: "soft tremolo strings playing F4", not "a soft tremolo strings".
_PLURALS = {"strings", "bells", "footsteps", "steps", "chimes", "drums", "aahs", "hats"}


def _article(phrase: str) -> str:
    if _PLURALS & set(phrase.split()):
        return phrase
    word = phrase.split()[0] if phrase.split() else phrase
    if word[:1].isdigit():
        vowel = word.startswith(("8", "11", "18"))
    elif word.isupper() or re.fullmatch(r"[A-G][#b]?\d*", word):
        vowel = word[0] in _VOWEL_LETTERS  # acronyms and note names are spelled out
    else:
        vowel = word[:1].lower() in "aeiou" and not word.lower().startswith(("uni", "use", "one", "eu"))
    return f"{'an' if vowel else 'a'} {phrase}"


def _and_list(items: tuple[str, ...] | list[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def phrasings(desc: Description) -> list[str]:
    """Every phrasing of a description, the primary one first, duplicates removed."""
    note = note_name(desc.note) if desc.note is not None else None
    harmony, bpm = _harmony(desc), _bpm(desc)
    quals = desc.qualities[:2]
    alt = desc.synonyms[0] if desc.synonyms else desc.subject
    head = _join(*quals, desc.style, desc.subject, note, bpm)
    out = [
        # "punchy 808 kick, long tail" / "latin funk drum loop 115 BPM, C minor"
        _join(head, harmony, *desc.details, sep=", "),
        # the short prompt people type: "808 kick" / "latin funk drum loop, 115 BPM"
        _join(_join(desc.style, desc.subject, note), bpm, harmony, sep=", "),
        # "bass drum, punchy and deep, long tail"
        _join(
            _join(desc.style, alt, note), _and_list(desc.qualities), harmony, bpm, *desc.details[:1], sep=", "
        ),
        # "a punchy, deep TR-808 kick at 115 BPM with a long tail"
        _join(
            _article(_join(", ".join(quals), desc.style, desc.subject)),
            note and f"playing {note}",
            harmony and (harmony if harmony.startswith("in ") else f"playing {_article(harmony)}"),
            bpm and f"at {bpm}",
        )
        + (f", {_and_list(desc.details)}" if desc.details else ""),
        # details first: "long tail, 808 kick, punchy"
        _join(*desc.details[:1], _join(desc.style, alt, note), harmony, bpm, *quals[:1], sep=", "),
    ]
    seen: dict[str, None] = {}
    for text in out:
        text = " ".join(text.split())
        if text:
            seen.setdefault(text, None)
    return list(seen)


def captions(desc: Description, rng: np.random.Generator) -> list[str]:
    """The primary phrasing plus 1-4 others chosen by `rng` (2-5 in all when the facts allow)."""
    every = phrasings(desc)
    primary, others = every[0], every[1:]
    want = int(rng.integers(MIN_CAPTIONS, MAX_CAPTIONS + 1)) - 1
    picked = sorted(rng.choice(len(others), size=min(want, len(others)), replace=False).tolist())
    chosen = [primary, *(others[i] for i in picked)]
    if len(chosen) < MIN_CAPTIONS:
        # A bare subject ("rain") has one phrasing; a plain variant keeps the 2-caption promise.
        chosen.append(
            f"the sound of {primary}" if not primary.startswith("the ") else f"{primary}, recording"
        )
    return chosen
