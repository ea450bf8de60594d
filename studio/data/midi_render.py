"""General MIDI renders: compose short pieces with mido (notes, chords, arpeggios, melodies, bass lines,
drum hits and grooves at known tempo), then render them with a GM soundfont.

Rendering prefers tinysoundfont in-process (fast, and one loaded font serves every clip a worker
renders) and falls back to the fluidsynth command line. Both are deterministic: tinysoundfont has no
random parts and is fully reset between clips; fluidsynth runs with reverb, chorus and dither off.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import mido
import numpy as np
import soundfile as sf

from studio.data.captions import Description
from studio.data.manifest import CorpusError

ENGINES = ("tinysoundfont", "fluidsynth")  # preferred first
# Debian's GM fonts, best first, with their licences (Debian copyright files: MIT and GPL-2) and the
# renderers that play them right: tinysoundfont gets MuseScore General's piano wrong (louder when
# played softer, silent after half a second), fluidsynth plays it as MuseScore does.
KNOWN_SOUNDFONTS = (
    ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "FluidR3 GM", "MIT", ENGINES),
    ("/usr/share/sounds/sf2/MuseScore_General_Full.sf2", "MuseScore General", "MIT", ("fluidsynth",)),
    ("/usr/share/sounds/sf2/TimGM6mb.sf2", "TimGM6mb", "GPL-2.0-only", ENGINES),
)
SOUNDFONT_ENV = "STUDIO_SOUNDFONT"  # extra fonts, os.pathsep-separated; licence unknown to us
TICKS = 480
DRUM_CHANNEL = 9
TAIL_S = 1.5  # rendered after the last note so releases ring out; silence is trimmed later
FLUSH_FRAMES = 4410  # after a reset tinysoundfont fades voices out quickly; render them away unheard


@dataclass(frozen=True)
class SoundFont:
    path: str
    name: str
    licence: str
    engines: tuple[str, ...] = ENGINES  # the renderers that play it right, preferred first


def find_soundfonts() -> list[SoundFont]:
    """The GM soundfonts on this machine: $STUDIO_SOUNDFONT first, then Debian's."""
    fonts = [
        SoundFont(p, Path(p).stem, "NOASSERTION")
        for p in os.environ.get(SOUNDFONT_ENV, "").split(os.pathsep)
        if p and Path(p).is_file()
    ]
    fonts += [SoundFont(p, name, lic, eng) for p, name, lic, eng in KNOWN_SOUNDFONTS if Path(p).is_file()]
    return fonts


def installed_engines() -> tuple[str, ...]:
    """The renderers installed here, preferred first."""
    found = {"tinysoundfont": find_spec("tinysoundfont"), "fluidsynth": shutil.which("fluidsynth")}
    return tuple(e for e in ENGINES if found[e] is not None)


def renderer() -> str | None:
    """ "tinysoundfont", "fluidsynth" or None, the first that is installed."""
    return next(iter(installed_engines()), None)


def playable_soundfonts() -> list[tuple[SoundFont, str]]:
    """Each soundfont here that an installed renderer plays right, with that renderer."""
    engines = installed_engines()
    pairs = [(font, next((e for e in font.engines if e in engines), None)) for font in find_soundfonts()]
    return [(font, engine) for font, engine in pairs if engine is not None]


def check_gm_available() -> list[tuple[SoundFont, str]]:
    """`playable_soundfonts()`, or an error that says what to install."""
    if not find_soundfonts():
        raise CorpusError(
            "gm-render needs a General MIDI soundfont and none was found",
            "sudo apt-get install fluid-soundfont-gm timgm6mb-soundfont (or `studio data setup`), set "
            f"{SOUNDFONT_ENV}=/path/to/font.sf2, or leave gm-render out of --sources",
        )
    fonts = playable_soundfonts()
    if not fonts:
        raise CorpusError(
            "gm-render needs a soundfont renderer and neither tinysoundfont nor fluidsynth is installed",
            "pip install --no-deps tinysoundfont (or sudo apt-get install fluidsynth)",
        )
    return fonts


# ---------------------------------------------------------------- instruments

# program, GM name as a caption says it, category, lowest and highest note, what it plays
INSTRUMENTS: tuple[tuple[int, str, str | None, int, int, tuple[str, ...]], ...] = (
    (0, "acoustic grand piano", "piano", 36, 84, ("note", "chord", "arpeggio", "melody")),
    (1, "bright acoustic piano", "piano", 40, 84, ("note", "chord", "melody")),
    (2, "electric grand piano", "piano", 40, 80, ("note", "chord", "arpeggio")),
    (3, "honky-tonk piano", "piano", 40, 80, ("chord", "melody")),
    (4, "electric piano", "piano", 40, 80, ("note", "chord", "arpeggio", "melody")),
    (5, "FM electric piano", "piano", 40, 84, ("note", "chord", "arpeggio")),
    (16, "drawbar organ", "organ", 40, 80, ("chord", "melody")),
    (17, "percussive organ", "organ", 40, 80, ("chord", "melody")),
    (18, "rock organ", "organ", 40, 80, ("chord", "melody")),
    (19, "church organ", "organ", 36, 80, ("chord", "note")),
    (24, "nylon string guitar", "guitar", 40, 76, ("strum", "arpeggio", "note")),
    (25, "steel string acoustic guitar", "guitar", 40, 76, ("strum", "arpeggio", "note")),
    (26, "jazz electric guitar", "guitar", 40, 76, ("strum", "melody")),
    (27, "clean electric guitar", "guitar", 40, 76, ("strum", "arpeggio")),
    (29, "overdriven guitar", "guitar", 40, 72, ("strum", "note")),
    (30, "distortion guitar", "guitar", 40, 72, ("strum", "note")),
    (32, "acoustic bass", "bass", 28, 50, ("note", "bassline")),
    (33, "fingered electric bass", "bass", 28, 52, ("note", "bassline")),
    (34, "picked electric bass", "bass", 28, 52, ("note", "bassline")),
    (35, "fretless bass", "bass", 28, 52, ("note", "bassline")),
    (36, "slap bass", "bass", 28, 52, ("bassline",)),
    (38, "synth bass", "bass", 28, 52, ("note", "bassline")),
    (39, "analog synth bass", "bass", 28, 52, ("note", "bassline")),
    (40, "violin", "strings", 55, 88, ("note", "melody")),
    (41, "viola", "strings", 48, 76, ("note", "melody")),
    (42, "cello", "strings", 36, 64, ("note", "melody")),
    (43, "contrabass", "strings", 28, 50, ("note",)),
    (44, "tremolo strings", "strings", 43, 79, ("chord", "note")),
    (45, "pizzicato strings", "strings", 43, 79, ("arpeggio", "melody")),
    (48, "string ensemble", "strings", 43, 79, ("chord", "note", "melody")),
    (49, "slow string ensemble", "strings", 43, 79, ("chord",)),
    (50, "synth strings", "strings", 43, 79, ("chord",)),
    (56, "trumpet", "brass", 55, 82, ("note", "melody")),
    (57, "trombone", "brass", 40, 70, ("note", "melody")),
    (58, "tuba", "brass", 28, 55, ("note",)),
    (60, "french horn", "brass", 41, 72, ("note", "melody")),
    (61, "brass section", "brass", 48, 76, ("chord", "note")),
    (62, "synth brass", "brass", 48, 76, ("chord",)),
    (88, "new age pad", "pad", 48, 72, ("pad",)),
    (89, "warm pad", "pad", 48, 72, ("pad",)),
    (90, "polysynth pad", "pad", 48, 72, ("pad",)),
    (91, "choir pad", "pad", 48, 72, ("pad",)),
    (92, "bowed pad", "pad", 48, 72, ("pad",)),
    (93, "metallic pad", "pad", 48, 72, ("pad",)),
    (94, "halo pad", "pad", 48, 72, ("pad",)),
    (95, "sweep pad", "pad", 48, 72, ("pad",)),
    (8, "celesta", "bell", 60, 96, ("note", "melody")),
    (9, "glockenspiel", "bell", 72, 96, ("note", "melody", "arpeggio")),
    (10, "music box", "bell", 60, 96, ("melody", "arpeggio")),
    (14, "tubular bells", "bell", 60, 77, ("note",)),
    (112, "tinkle bell", "bell", 72, 96, ("note",)),
    (46, "orchestral harp", "pluck", 36, 90, ("arpeggio", "note")),
    (105, "banjo", "pluck", 48, 76, ("arpeggio", "melody")),
    (107, "koto", "pluck", 48, 84, ("note", "melody")),
    (104, "sitar", "pluck", 48, 76, ("note", "melody")),
    (15, "dulcimer", "pluck", 48, 84, ("arpeggio", "note")),
    (52, "choir aahs", None, 48, 76, ("chord", "note")),
    (73, "flute", None, 60, 91, ("note", "melody")),
    (71, "clarinet", None, 50, 84, ("melody",)),
    (68, "oboe", None, 58, 87, ("melody",)),
    (65, "alto sax", None, 49, 80, ("note", "melody")),
    (80, "square lead", None, 48, 84, ("melody",)),
    (81, "sawtooth lead", None, 48, 84, ("melody",)),
    (11, "vibraphone", None, 53, 89, ("note", "melody", "arpeggio")),
    (12, "marimba", None, 45, 96, ("note", "melody")),
    (21, "accordion", None, 53, 89, ("chord", "melody")),
)
# One-note clips (`compose_note`): program, name as captions say it, category, lowest and highest note it
# plays well, and the plain name of such a note ("bass note"). The GM piano, chromatic percussion, bass,
# string, lead and pad programs whose note sounds at its key: not fifths lead (two pitches), tinkle bell
# (no clear one) or agogo (FluidR3 and MuseScore General play it an octave above its key).
NOTE_PROGRAMS: tuple[tuple[int, str, str | None, int, int, str], ...] = (
    (0, "grand piano", "piano", 21, 108, "piano note"),
    (1, "bright grand piano", "piano", 21, 108, "piano note"),
    (2, "electric grand piano", "piano", 28, 103, "piano note"),
    (3, "honky-tonk piano", "piano", 21, 108, "piano note"),
    (4, "electric piano", "piano", 28, 103, "electric piano note"),
    (5, "FM electric piano", "piano", 28, 103, "electric piano note"),
    (6, "harpsichord", None, 29, 89, "harpsichord note"),
    (7, "clavinet", None, 29, 88, "clavinet note"),
    (8, "celesta", "bell", 60, 108, "bell note"),
    (9, "glockenspiel", "bell", 79, 108, "bell note"),
    (10, "music box", "bell", 60, 96, "bell note"),
    (11, "vibraphone", "bell", 53, 89, "vibraphone bell note"),
    (12, "marimba", None, 45, 96, "mallet note"),
    (13, "xylophone", None, 65, 108, "mallet note"),
    (14, "tubular bell", "bell", 60, 77, "bell note"),
    (15, "dulcimer", "pluck", 48, 84, "plucked note"),
    (114, "steel drum", None, 52, 88, "steel pan note"),
    (32, "acoustic bass", "bass", 28, 55, "bass note"),
    (33, "fingered electric bass", "bass", 28, 60, "bass note"),
    (34, "picked electric bass", "bass", 28, 60, "bass note"),
    (35, "fretless bass", "bass", 28, 60, "bass note"),
    (36, "slap bass", "bass", 28, 60, "bass note"),
    (37, "funk slap bass", "bass", 28, 60, "bass note"),
    (38, "synth bass", "bass", 24, 60, "synth bass note"),
    (39, "analog synth bass", "bass", 24, 60, "synth bass note"),
    (48, "string ensemble", "strings", 28, 96, "string note"),
    (49, "slow string ensemble", "strings", 28, 96, "string note"),
    (50, "synth strings", "strings", 36, 96, "string note"),
    (51, "analog synth strings", "strings", 36, 96, "string note"),
    (80, "square lead", None, 48, 96, "synth lead note"),
    (81, "sawtooth lead", None, 48, 96, "synth lead note"),
    (82, "calliope lead", None, 48, 96, "synth lead note"),
    (83, "chiff lead", None, 48, 96, "synth lead note"),
    (84, "charang lead", None, 48, 96, "synth lead note"),
    (85, "voice lead", None, 48, 84, "synth lead note"),
    (88, "new age synth pad", "pad", 36, 84, "synth pad note"),
    (89, "warm synth pad", "pad", 36, 84, "synth pad note"),
    (90, "polysynth pad", "pad", 36, 84, "synth pad note"),
    (91, "choir pad", "pad", 36, 84, "synth pad note"),
    (92, "bowed pad", "pad", 36, 84, "synth pad note"),
    (93, "metallic pad", "pad", 36, 84, "synth pad note"),
    (94, "halo pad", "pad", 36, 84, "synth pad note"),
    (95, "sweep pad", "pad", 36, 84, "synth pad note"),
)
NOTE_CATEGORIES: tuple[str | None, ...] = tuple(dict.fromkeys(p[2] for p in NOTE_PROGRAMS))
KITS = ((0, None), (8, "room"), (16, "power"), (24, "electronic"), (25, "808"), (32, "jazz"), (40, "brush"))
DRUM_HITS = {
    "kick": ((35, "kick drum"), (36, "kick")),
    "snare": ((38, "snare"), (40, "electric snare")),
    "clap": ((39, "hand clap"),),
    "hi-hat": ((42, "closed hi-hat"), (44, "pedal hi-hat"), (46, "open hi-hat")),
    "cymbal": ((49, "crash cymbal"), (57, "crash cymbal"), (51, "ride cymbal"), (53, "ride bell"),
               (52, "china cymbal"), (55, "splash cymbal")),
}  # fmt: skip
CHORDS = {
    "major chord": (0, 4, 7),
    "minor chord": (0, 3, 7),
    "major seventh chord": (0, 4, 7, 11),
    "minor seventh chord": (0, 3, 7, 10),
    "dominant seventh chord": (0, 4, 7, 10),
    "sus4 chord": (0, 5, 7),
}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}

# 16 steps a bar; x accent, o normal, g ghost note. Keys are GM drum notes.
GROOVES: dict[str, dict[str, Any]] = {
    "rock": {"bpm": (90, 140), "kits": (0, 16, 8), "swing": 0.5,
             "parts": {36: "x.......x.o.....", 38: "....x.......x...", 42: "o.o.o.o.o.o.o.o."}},
    "funk": {"bpm": (95, 115), "kits": (0, 8), "swing": 0.5,
             "parts": {36: "x..o..x...o..o..", 38: "....x..g.g..x..g", 42: "oooooooooooooooo"}},
    "latin funk": {"bpm": (100, 120), "kits": (0, 8), "swing": 0.5, "extra": "congas and cowbell",
                   "parts": {36: "x..o..x...x.....", 38: "....x..g....x.g.", 42: "o.o.o.o.o.o.o.o.",
                             56: "x.o.x.o.x.o.x.o.", 63: "..o...o...o.o...", 64: "o.....o.o......."}},
    "bossa nova": {"bpm": (120, 140), "kits": (32, 40), "swing": 0.5, "extra": "rim clicks",
                   "parts": {36: "x..ox..ox..ox..o", 37: "x..x..x...x..x..", 42: "gggggggggggggggg"}},
    "hip hop": {"bpm": (80, 96), "kits": (0, 25), "swing": 0.62,
                "parts": {36: "x......o.ox.....", 38: "....x.......x...", 42: "o.o.o.o.o.o.o.o."}},
    "disco": {"bpm": (115, 124), "kits": (0, 24), "swing": 0.5,
              "parts": {36: "x...x...x...x...", 38: "....x.......x...", 46: "..o...o...o...o.",
                        42: "o...o...o...o..."}},
    "reggae one drop": {"bpm": (70, 85), "kits": (0, 8), "swing": 0.6,
                        "parts": {36: "........x.......", 37: "........x.......", 42: "o.o.o.o.o.o.o.o."}},
    "jazz swing": {"bpm": (120, 180), "kits": (32, 40), "swing": 0.66,
                   "parts": {51: "x...x.ox..x.x.ox", 44: "....x.......x...", 36: "g.......g......."}},
    "shuffle": {"bpm": (90, 120), "kits": (0, 8), "swing": 0.66,
                "parts": {36: "x.....o.x.....o.", 38: "....x.......x...", 42: "o.o.o.o.o.o.o.o."}},
    "house": {"bpm": (120, 128), "kits": (24, 25), "swing": 0.5,
              "parts": {36: "x...x...x...x...", 39: "....x.......x...", 46: "..o...o...o...o.",
                        42: "o.o.o.o.o.o.o.o."}},
    "pop": {"bpm": (95, 125), "kits": (0, 16), "swing": 0.5,
            "parts": {36: "x.......x.x.....", 38: "....x.......x...", 42: "o.o.o.o.o.o.o.o."}},
    "trap": {"bpm": (130, 150), "kits": (25,), "swing": 0.5,
             "parts": {36: "x.....x...x.....", 38: "........x.......", 42: "o.o.ooo.o.o.oooo"}},
}  # fmt: skip
VELOCITY = {"x": 112, "o": 88, "g": 45}


@dataclass(frozen=True)
class Composition:
    """A short piece as a Standard MIDI File and what it will sound like."""

    category: str | None
    midi: bytes
    seconds: float
    description: Description
    tags: tuple[str, ...]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _pick(rng: np.random.Generator, options: Any) -> Any:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _dynamics(velocity: int) -> tuple[str, ...]:
    return ("soft",) if velocity < 60 else ("loud",) if velocity > 105 else ()


def to_midi(notes: list[tuple[float, int, float, int, int]], programs: dict[int, int], bpm: float) -> bytes:
    """A one-track SMF: notes as (start s, pitch, length s, velocity, channel), programs per channel."""
    beats_per_s = bpm / 60

    def tick(seconds: float) -> int:
        return round(seconds * beats_per_s * TICKS)

    events: list[tuple[int, int, mido.Message]] = []
    for start, pitch, length, velocity, channel in notes:
        events.append(
            (tick(start), 1, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity))
        )
        end = max(tick(start + length), tick(start) + 1)
        events.append((end, 0, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1], e[2].channel, e[2].note))  # note-offs first at a shared tick
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0)])
    for channel, program in sorted(programs.items()):
        track.append(mido.Message("program_change", channel=channel, program=program, time=0))
    now = 0
    for at, _, message in events:
        track.append(message.copy(time=at - now))
        now = at
    track.append(mido.MetaMessage("end_of_track", time=tick(TAIL_S)))
    song = mido.MidiFile(ticks_per_beat=TICKS)
    song.tracks.append(track)
    buffer = io.BytesIO()
    song.save(file=buffer)
    return buffer.getvalue()


def _one_note(category: str | None, program: int, pitch: int, length: float, velocity: int,
              desc: Description, tags: tuple[str, ...]) -> Composition:  # fmt: skip
    """A single note; `desc` gets the note, loudness and length, so the caption names what is heard."""
    details = ("long sustain",) if length > 1.6 else ("short note",) if length < 0.5 else ()
    desc = replace(desc, note=pitch).with_qualities(*_dynamics(velocity)).with_details(*details)
    notes = [(0.0, pitch, length, velocity, 0)]
    return Composition(category, to_midi(notes, {0: program}, 120), length + TAIL_S, desc, tags)


def compose_note(category: str | None, rng: np.random.Generator) -> Composition:
    """One note of a NOTE_PROGRAMS program of `category`, anywhere in its range, at any loudness and
    length ("soft grand piano note F#3, long sustain")."""
    program, name, _, low, high, noun = _pick(rng, [p for p in NOTE_PROGRAMS if p[2] == category])
    pitch = int(rng.integers(low, high + 1))
    velocity = int(rng.integers(25, 128))
    length = _u(rng, 1.5, 6.0) if category == "pad" else float(np.exp(rng.uniform(np.log(0.25), np.log(3.0))))
    desc = Description(f"{name} note", synonyms=(noun, name))
    return _one_note(category, program, pitch, length, velocity, desc, ("gm", name, "note"))


def _compose_tonal(category: str | None, rng: np.random.Generator) -> Composition:
    program, name, _, low, high, kinds = _pick(rng, [i for i in INSTRUMENTS if i[2] == category])
    kind = _pick(rng, kinds)
    velocity = int(rng.integers(50, 120))
    bpm = _u(rng, 80, 140)
    beat = 60 / bpm
    root = int(rng.integers(0, 12))
    chord_name = _pick(rng, CHORDS)
    tags = ("gm", name, kind)
    if kind == "note":
        pitch = int(rng.integers(low, high + 1))
        desc = Description(name, synonyms=(f"{name} note",))
        return _one_note(category, program, pitch, _u(rng, 0.3, 2.5), velocity, desc, tags)
    base = low + (root - low) % 12 + (12 if high - low > 30 else 0)
    chord = [base + i for i in CHORDS[chord_name] if base + i <= high] or [base]
    if kind in ("chord", "strum", "pad"):
        length = _u(rng, 3.0, 7.0) if kind == "pad" else _u(rng, 1.0, 3.5)
        spread = _u(rng, 0.01, 0.03) if kind == "strum" else 0.0  # a strum hits strings one after another
        notes = [(i * spread, p, length, velocity, 0) for i, p in enumerate(chord)]
        details = ("strummed",) if kind == "strum" else ("sustained",) if kind == "pad" else ()
        desc = Description(name, _dynamics(velocity), details, harmony=f"{{root}} {chord_name}", root=root,
                           synonyms=(f"{name} chord",))  # fmt: skip
        return Composition(category, to_midi(notes, {0: program}, 120), length + TAIL_S, desc, tags)
    step = beat / 2 if kind != "arpeggio" else beat / 4
    count = 8 if kind == "melody" else 12
    if kind == "arpeggio":
        pattern = _pick(rng, ["up", "down", "up and down"])
        ladder = [*chord, chord[0] + 12]
        order = ladder if pattern == "up" else ladder[::-1] if pattern == "down" else ladder + ladder[-2:0:-1]
        pitches = [order[i % len(order)] for i in range(count)]
        harmony = "{root} " + chord_name.replace(" chord", " arpeggio")
        details: tuple[str, ...] = (f"{pattern} pattern",)
        subject = name
    elif kind == "bassline":
        mode = _pick(rng, SCALES)
        scale = SCALES[mode]
        pitches = [base + (0 if rng.random() < 0.5 else scale[int(rng.integers(0, 7))]) for _ in range(count)]
        harmony, details, subject = f"in {{root}} {mode}", (), f"{name} line"
    else:
        mode = _pick(rng, SCALES)
        scale = SCALES[mode]
        degree, pitches = 0, []
        for _ in range(count):  # a random walk on the scale stays tuneful
            degree = int(np.clip(degree + rng.integers(-2, 3), -3, 9))
            octave, index = divmod(degree, 7)
            pitches.append(min(base + 12 * octave + scale[index], high))
        harmony, details, subject = f"in {{root}} {mode}", (), f"{name} melody"
    gate = _u(rng, 0.5, 0.95)
    notes = [
        (i * step, p, step * gate, max(30, velocity - int(rng.integers(0, 15))), 0)
        for i, p in enumerate(pitches)
    ]
    desc = Description(subject, _dynamics(velocity), details, harmony=harmony, root=root, bpm=bpm,
                       synonyms=(f"{name} phrase",))  # fmt: skip
    return Composition(category, to_midi(notes, {0: program}, bpm), count * step + TAIL_S, desc, tags)


def _compose_hit(category: str, rng: np.random.Generator) -> Composition:
    kit, kit_name = _pick(rng, KITS)
    note, name = _pick(rng, DRUM_HITS[category])
    velocity = int(rng.integers(50, 127))
    if kit_name == "808":
        desc = Description(name, _dynamics(velocity), style="808", synonyms=(f"TR-808 {name}",))
    else:
        details = (f"{kit_name} kit",) if kit_name else ()
        desc = Description(name, _dynamics(velocity), details, synonyms=(f"{name} hit",))
    notes = [(0.0, note, 0.2, velocity, DRUM_CHANNEL)]
    tags = ("gm", "drum kit", kit_name or "standard kit")
    return Composition(category, to_midi(notes, {DRUM_CHANNEL: kit}, 120), 0.2 + TAIL_S, desc, tags)


def compose_groove(
    rng: np.random.Generator, genre: str | None = None, bpm: float | None = None, bars: int | None = None
) -> Composition:
    """A GROOVES pattern on a GM kit; `genre`, `bpm` and `bars` are drawn when not given."""
    genre = genre or _pick(rng, GROOVES)
    groove = GROOVES[genre]
    bpm = bpm or _u(rng, *groove["bpm"])
    kit = _pick(rng, groove["kits"])
    step = 60 / bpm / 4
    bars = bars or max(1, min(4, int(7.0 // (16 * step))))
    humanise = genre not in ("house", "trap")  # programmed genres stay on the grid
    notes = []
    for bar in range(bars):
        for drum, pattern in groove["parts"].items():
            for i, c in enumerate(pattern):
                if c == ".":
                    continue
                at = (bar * 16 + i) * step + (groove["swing"] - 0.5) * 2 * step * (i % 2)
                jitter = float(rng.normal(0, 0.004)) if humanise else 0.0
                velocity = int(np.clip(VELOCITY[c] + (rng.integers(-8, 9) if humanise else 0), 1, 127))
                notes.append((max(0.0, at + jitter), drum, step * 0.9, velocity, DRUM_CHANNEL))
    kit_name = dict(KITS)[kit]
    details = tuple(d for d in (groove.get("extra"), f"{kit_name} kit" if kit_name else None) if d)
    desc = Description("drum loop", (), details, style=genre, bpm=bpm, synonyms=("drum beat", "drum groove"))
    tags = ("gm", "drum kit", genre)
    midi = to_midi(notes, {DRUM_CHANNEL: kit}, bpm)
    return Composition("drum-loop", midi, bars * 16 * step + TAIL_S, desc, tags)


GM_CATEGORIES: tuple[str | None, ...] = (
    *dict.fromkeys(i[2] for i in INSTRUMENTS),
    *DRUM_HITS,
    "drum-loop",
)


def compose(category: str | None, rng: np.random.Generator) -> Composition:
    """A short GM piece of `category` (None: instruments outside the category list)."""
    if category == "drum-loop":
        return compose_groove(rng)
    if category in DRUM_HITS:
        return _compose_hit(category, rng)
    return _compose_tonal(category, rng)


# ---------------------------------------------------------------- rendering

_SYNTHS: dict[tuple[str, int], Any] = {}  # one loaded font per worker process: loading takes seconds


def _tinysoundfont(font: str, rate: int) -> tuple[Any, int]:
    if (font, rate) not in _SYNTHS:
        import tinysoundfont

        synth = tinysoundfont.Synth(samplerate=rate)
        _SYNTHS[(font, rate)] = (synth, synth.sfload(font))
    return _SYNTHS[(font, rate)]


def _render_tinysoundfont(midi: bytes, font: str, rate: int) -> np.ndarray:
    synth, sfid = _tinysoundfont(font, rate)
    synth.soundfonts[sfid].reset()  # no state leaks from the clip before: results must not depend on order
    synth.generate(FLUSH_FRAMES)
    synth.program_select(DRUM_CHANNEL, sfid, 128, 0, True)
    blocks, done, now = [], 0, 0.0
    for message in mido.MidiFile(file=io.BytesIO(midi)):
        now += message.time
        target = round(now * rate)
        if target > done:
            blocks.append(np.frombuffer(synth.generate(target - done), dtype=np.float32).copy())
            done = target
        if message.type == "program_change":
            drums = message.channel == DRUM_CHANNEL
            synth.program_select(message.channel, sfid, 128 if drums else 0, message.program, drums)
        elif message.type == "note_on" and message.velocity > 0:
            synth.noteon(message.channel, message.note, message.velocity)
        elif message.type in ("note_on", "note_off"):
            synth.noteoff(message.channel, message.note)
    audio = np.concatenate(blocks) if blocks else np.zeros(2, dtype=np.float32)
    return audio.reshape(-1, 2).T.copy()


def _render_fluidsynth(midi: bytes, font: str, rate: int) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="studio-gm-") as tmp:
        song, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
        song.write_bytes(midi)
        cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r", str(rate),
               "-O", "float", "-T", "wav", "-F", str(wav), font, str(song)]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not wav.is_file():
            raise CorpusError(
                f"fluidsynth could not render a MIDI clip: {result.stderr.strip()[:200]}",
                "pip install --no-deps tinysoundfont to render in-process instead",
            )
        data, _ = sf.read(str(wav), dtype="float32", always_2d=True)
    return data.T.copy()


def render_midi(midi: bytes, font: str, rate: int, engine: str = "tinysoundfont") -> np.ndarray:
    """Stereo float32 [2, frames] of a Standard MIDI File played through `font`."""
    if engine == "tinysoundfont":
        return _render_tinysoundfont(midi, font, rate)
    return _render_fluidsynth(midi, font, rate)
