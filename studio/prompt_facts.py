"""Facts a prompt states in numbers: the note it names ("bass note A1") and its tempo ("120 BPM").

The model reads them as numbers (studio/models/conditioners.py), not only as words: a text
encoder gives "C#3" and "D3" nearly the same vector, while a note number lets a model that
learned C3 and E3 find D3 between them. The eval reads them to score what a take was asked for.
"""

from __future__ import annotations

import re

LETTER_SEMITONES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
ACCIDENTALS = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1, "sharp": 1, "flat": -1}
LOWEST_NOTE, HIGHEST_NOTE = 0, 127
LOWEST_BPM, HIGHEST_BPM = 20.0, 400.0

# A scientific pitch name: a letter, an optional accidental and an octave from -1 to 9, standing
# alone ("C#3", "Bb1", "c4", "F sharp 2"). A bare letter ("E major chord") names a pitch class, not a
# note, and the octave must follow the name directly, so "a 4 second hit" is not A4.
_NOTE = re.compile(r"(?<![\w#♯♭])([a-g])(#|♯|♭|b|\ssharp\s?|\sflat\s?)?(-1|[0-9])(?![\w.])", re.IGNORECASE)
_BPM = re.compile(r"(?<![\w.])(\d{2,3}(?:\.\d+)?)\s?(?:bpm|beats per minute)\b", re.IGNORECASE)
# The same facts with the words that only introduce them ("playing C4", "at 120 BPM"), for removal.
_STATED_NOTE = re.compile(r"(?:\s+playing)?\s*" + _NOTE.pattern, re.IGNORECASE)
_STATED_BPM = re.compile(r"(?:\s+at)?\s*" + _BPM.pattern, re.IGNORECASE)


def note_in(prompt: str) -> int | None:
    """The MIDI note a prompt names ("piano note C4" -> 60), or None. The first name counts."""
    for match in _NOTE.finditer(prompt):
        letter, accidental, octave = match.groups()
        midi = 12 * (int(octave) + 1) + LETTER_SEMITONES[letter.lower()]
        midi += ACCIDENTALS[(accidental or "").strip().lower()]
        if LOWEST_NOTE <= midi <= HIGHEST_NOTE:
            return midi
    return None


def bpm_in(prompt: str) -> float | None:
    """The tempo a prompt names ("drum loop at 120 BPM" -> 120.0), or None."""
    match = _BPM.search(prompt)
    if match is None:
        return None
    bpm = float(match.group(1))
    return bpm if LOWEST_BPM <= bpm <= HIGHEST_BPM else None


def without_facts(prompt: str) -> str:
    """The prompt with its note and tempo taken out ("a string ensemble note playing E4 at 95 BPM,
    soft" -> "a string ensemble note, soft"): what a user who names neither types."""
    text = _STATED_BPM.sub("", _STATED_NOTE.sub("", prompt))
    text = re.sub(r"\s*,(\s*,)+", ",", text)  # a fact that stood between two commas
    text = re.sub(r"\s+,", ",", re.sub(r"\s{2,}", " ", text))
    return text.strip(" ,")


def note_frequency(midi: float) -> float:
    """Equal temperament at A4 = 440 Hz."""
    return 440.0 * 2.0 ** ((midi - 69) / 12)
