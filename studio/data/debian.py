"""Real labelled sounds from Debian packages: find the files, label them from their names, folders and
drumkit.xml, and look up each file's licence in the package's machine-readable copyright file.

Nothing here decodes whole files except `read_real_audio`; scanning reads headers only (ufoai's sounds
sit inside a zip archive, whose members are read to learn their length).
"""

from __future__ import annotations

import fnmatch
import io
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

from studio.data.captions import Description
from studio.data.manifest import DEBIAN_SOURCES

SONIC_PI = "sonic-pi-samples"
LMMS = "lmms-common"
HYDROGEN = "hydrogen-drumkits"
HYDROGEN_EFFECTS = "hydrogen-drumkits-effects"
UFOAI = "ufoai-sound"
FREEDESKTOP = "sound-theme-freedesktop"
FREEDOOM = "freedoom"
DEBIAN_PACKAGES = DEBIAN_SOURCES

# Where each package puts its sounds, relative to the file system root.
PACKAGE_PATHS = {
    SONIC_PI: "usr/share/sonic-pi/samples",
    LMMS: "usr/share/lmms/samples",
    HYDROGEN: "usr/share/hydrogen/data/drumkits",
    HYDROGEN_EFFECTS: "usr/share/hydrogen/data/drumkits",
    UFOAI: "usr/share/games/ufoai/base/0snd.pk3",
    FREEDESKTOP: "usr/share/sounds/freedesktop/stereo",
    FREEDOOM: "usr/share/games/doom/freedoom2.wad",  # freedoom1.wad's sounds are a subset of these
}
# Both hydrogen packages install into one folder; -effects ships exactly these kits.
EFFECTS_KITS = frozenset({"belofilms_GuitarStrums"})
# Licence when the copyright file is absent or names no stanza for a file.
DEFAULT_LICENCES = {
    SONIC_PI: "CC0-1.0",  # the samples' README: all from freesound.org under CC0
    LMMS: "GPL-2.0-or-later",
    HYDROGEN: "NOASSERTION",
    HYDROGEN_EFFECTS: "NOASSERTION",
    UFOAI: "GPL-2.0-or-later",
    FREEDESKTOP: "NOASSERTION",
    FREEDOOM: "BSD-3-Clause",
}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff")
LMMS_SKIP = ("shapes", "waveforms", "drumsynth")  # single-cycle waves and synth patches, not recordings
MIN_SECONDS = 0.05

SPDX = {
    "cc0": "CC0-1.0",
    "gpl-2+": "GPL-2.0-or-later",
    "gpl-2": "GPL-2.0-only",
    # the exception only adds rights, so plain GPL-2.0-or-later is the safe summary
    "gpl-2+ with composition exception": "GPL-2.0-or-later",
    "gpl-3+": "GPL-3.0-or-later",
    "cc-by-3.0": "CC-BY-3.0",
    "cc-by-sa-3.0": "CC-BY-SA-3.0",
    "cc-by-sa-3.0-us": "CC-BY-SA-3.0-US",
    "cc-by-sa-4.0": "CC-BY-SA-4.0",
    "public-domain": "LicenseRef-public-domain",
    "mit": "MIT",
    "expat": "MIT",
    "freedoom-license": "BSD-3-Clause",  # the text of Debian's stanza is the 3-clause BSD licence
}


@dataclass(frozen=True)
class RealFile:
    """One labelled recording from a Debian package.

    source_file is the file's path on a Debian system (with ":member" inside an archive), the same on
    every machine, so it names the split group; `path` is where it is on this machine.
    """

    source: str
    source_file: str
    path: Path
    member: str | None
    category: str | None
    description: Description
    licence: str
    tags: tuple[str, ...]
    seconds: float


# ---------------------------------------------------------------- labels from words

CATEGORY_RULES: list[tuple[str | None, str]] = [
    # first match wins: "bass drum" is a kick before it is a bass, "ride bell" a cymbal before a bell
    ("hi-hat", r"\b(hi-hats?|hihats?|hats?)\b"),
    ("kick", r"\b(kicks?|bass drums?|bassdrums?|bd)\b"),
    ("snare", r"\b(snares?)\b"),
    ("clap", r"\b(hand ?claps?|claps?)\b"),
    ("cymbal", r"\b(crash|ride|splash|china|cymbals?|paiste|sabian|zildjian)\b"),
    ("explosion", r"\b(explosions?|explode|detonat\w*)\b"),
    ("footsteps", r"\b(footsteps?)\b"),
    ("rain", r"\brain\b"),
    ("bell", r"\b(bells?|chimes?|glockenspiel|celesta)\b"),
    ("wind", r"\b(wind|breeze)\b"),
    ("piano", r"\b(pianos?|rhodes)\b"),
    ("organ", r"\borgans?\b"),
    ("strings", r"\b(strings?|violins?|viola|cello)\b"),
    ("pad", r"\b(pads?|drone)\b"),
    ("guitar", r"\b(guitars?|strums?)\b"),
    ("brass", r"\b(trumpets?|trombones?|brass|horns?|tuba)\b"),
    ("pluck", r"\b(plucks?|pizzicato|harp)\b"),
    (None, r"\b(djembe|congas?|bongos?|cajon|tabla|toms?)\b"),  # hand drums' "bass" strokes are not basses
    ("bass", r"\b(bass|basses|bassline)\b"),
    ("impact", r"\b(impacts?|boom)\b"),
    ("riser", r"\b(risers?|uplifters?)\b"),
    ("ui-blip", r"\b(blips?|beeps?|bleeps?)\b"),
]
_RULES = [(category, re.compile(pattern)) for category, pattern in CATEGORY_RULES]

# Abbreviations and spellings in file and instrument names, said the way a prompt would say them.
WORDS = {
    "bd": "bass drum",
    "sn": "snare",
    "hh": "hi-hat",
    "hihat": "hi-hat",
    "ohh": "open hi-hat",
    "oh": "open",
    "op": "open",
    "cl": "closed",
    "pd": "pedal",
    "bassdrum": "bass drum",
    "elec": "electronic",
    "ambi": "ambient",
    "guit": "guitar",
    "perc": "percussion",
    "woosh": "whoosh",
    "exp": "explosion",
    "e": "electric",
    "hiphop": "hip hop",
    "nz": "noisy",
    "dist": "distorted",
    "hi": "high",
    "lo": "low",
    "mid": "mid",
    "arcticwind": "arctic wind",
    "em9": "E minor ninth",
    "civfem": "female civilian",
    "civmale": "male civilian",
    "waterfontain": "water fountain",
    "cineboom": "cinematic boom",
    "misc": "",
    "mehackit": "",
    "bassslap": "slap bass",
    "atm": "atmosphere",
    "abnd": "abandoned",
    "bodyimpact": "body impact",
    "alienmachinery": "alien machinery",
    "airlaser": "air laser",
    "humanflyby": "human craft fly-by",
    "alienflyby": "alien craft fly-by",
    "newmission": "new mission alert",
    "taserdouble": "taser double",
}
DRUM_MACHINES = ("808", "909", "606", "303")
CATEGORY_NOUNS = {
    "kick": ("kick drum", "bass drum"),
    "snare": ("snare drum",),
    "hi-hat": ("hi-hat",),
    "clap": ("clap",),
    "cymbal": ("cymbal",),
    "bass": ("bass",),
    "piano": ("piano",),
    "strings": ("strings",),
    "pad": ("pad",),
    "bell": ("bell",),
    "pluck": ("pluck",),
    "organ": ("organ",),
    "guitar": ("guitar",),
    "brass": ("brass",),
    "riser": ("riser",),
    "impact": ("impact",),
    "explosion": ("explosion",),
    "footsteps": ("footsteps",),
    "rain": ("rain",),
    "wind": ("wind",),
    "ui-blip": ("interface sound",),
    "drum-loop": ("drum loop",),
}


def name_words(name: str) -> list[str]:
    """Words of a file or instrument name: split on separators and digits, abbreviations spelled out."""
    words = []
    name = re.sub(r"\bhi[\s_-]?hat", "hihat", name, flags=re.IGNORECASE)
    for token in re.split(r"[^A-Za-z0-9#]+", name):
        if token.lower() in WORDS:
            words.extend(WORDS[token.lower()].split())
            continue
        token = re.sub(r"([a-z])([A-Z])", r"\1 \2", token)  # camelCase
        for w in re.split(r"\s+|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])", token):
            lower = w.lower()
            if (
                not lower
                or lower in ("wav", "flac", "ogg")
                or (lower.isdigit() and lower not in DRUM_MACHINES)
            ):
                continue  # take numbers ("kick03") say nothing about the sound
            words.extend(WORDS.get(lower, lower).split())
    return words


def classify(text: str) -> str | None:
    """The category a name or phrase belongs to, or None."""
    text = text.lower()
    for category, pattern in _RULES:
        if pattern.search(text):
            return category
    return None


def _describe(
    subject: str,
    category: str | None,
    *details: str,
    qualities: tuple[str, ...] = (),
    root: int | None = None,
) -> Description:
    subject = " ".join(subject.split()) or "sound"
    nouns = CATEGORY_NOUNS.get(category or "", ())
    synonyms = tuple(n for n in nouns if n != subject) or (f"{subject} sound",)
    return Description(
        subject,
        qualities,
        tuple(d for d in details if d),
        harmony=None if root is None else "in {root}",
        root=root,
        synonyms=synonyms,
    )


def _noun_last(words: list[str], nouns: tuple[str, ...]) -> list[str]:
    """Move a leading noun after its modifiers: ["kick", "hard"] -> ["hard", "kick"]."""
    if len(words) > 1 and words[0] in nouns:
        return [*words[1:], words[0]]
    return words


# ---------------------------------------------------------------- licences


def parse_dep5(text: str) -> list[tuple[tuple[str, ...], str]]:
    """(file patterns, licence short name) of each Files stanza of a Debian copyright file."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and current:
                fields[current] += "\n" + line.strip()
            elif ":" in line:
                current, _, value = line.partition(":")
                current = current.strip().lower()
                fields[current] = value.strip()
        if "files" in fields and "license" in fields:
            patterns = tuple(fields["files"].split())
            stanzas.append((patterns, fields["license"].splitlines()[0].strip()))
    return stanzas


def spdx(name: str) -> str:
    return SPDX.get(name.strip().lower(), name.strip())


class Licences:
    """Per-file licences of one package, from /usr/share/doc/<package>/copyright."""

    def __init__(self, root: Path, package: str):
        path = root / "usr/share/doc" / package / "copyright"
        try:
            self.stanzas = parse_dep5(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            self.stanzas = []
        self.default = DEFAULT_LICENCES[package]

    def lookup(self, key: str, catch_all: bool = True) -> str | None:
        """The licence of the last stanza matching `key` (DEP-5 order); without `catch_all`, a bare
        "Files: *" stanza (usually the program's code, not its data) does not count."""
        found = None
        for patterns, licence in self.stanzas:
            if any(fnmatch.fnmatchcase(key, p) for p in patterns if catch_all or p != "*"):
                found = licence
        return None if found is None else spdx(found)

    def __call__(self, key: str, catch_all: bool = True) -> str:
        return self.lookup(key, catch_all) or self.default


def licence_from_text(text: str) -> str | None:
    """SPDX id from a free-text licence note such as drumkit.xml's <license>."""
    t = text.lower()
    if "creative commons 0" in t or "cc0" in t:
        return "CC0-1.0"
    if re.search(r"share ?alike 3\.0", t):
        return "CC-BY-SA-3.0-US" if "united states" in t else "CC-BY-SA-3.0"
    if re.search(r"(cc-by|attribution)\b.*3\.0", t) or "licenses/by/3.0" in t:
        return "CC-BY-3.0"
    if re.search(r"gpl version 2|gpl-?2", t):
        return "GPL-2.0-only"
    return None


# ---------------------------------------------------------------- package scanners


def _audio_seconds(path: Path | io.BytesIO) -> float | None:
    try:
        return float(sf.info(path).duration)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _origin(root: Path, path: Path) -> str:
    return "/" + path.relative_to(root).as_posix()


SONIC_PI_NOUNS = ("bass drum", "snare", "guitar", "tabla", "bass", "vinyl", "percussion", "loop", "drum")
SONIC_PI_DRUMS = {
    "drum_bass": "bass drum",
    "drum_heavy_kick": "heavy kick drum",
    "drum_cymbal_closed": "closed hi-hat",
    "drum_cymbal_open": "open hi-hat",
    "drum_cymbal_pedal": "pedal hi-hat",
    "drum_cymbal": "crash cymbal",
    "drum_splash": "splash cymbal",
    "drum_snare": "snare",
    "drum_roll": "snare drum roll",
    "drum_cowbell": "cowbell",
    "drum_tom": "tom",
}
SONIC_PI_LOOPS = {"amen", "amen_full", "breakbeat", "compus", "mika", "perc1", "perc2", "safari", "tabla",
                  "garzul", "mehackit1", "mehackit2"}  # fmt: skip


PITCH_CLASSES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def _sonic_pi(stem: str) -> tuple[str | None, Description]:
    prefix, _, rest = stem.partition("_")
    words = name_words(rest)
    root = PITCH_CLASSES.get(words.pop()) if words and words[-1] in PITCH_CLASSES else None  # "bass_hard_c"
    if prefix == "loop":
        category = "drum-loop" if rest in SONIC_PI_LOOPS else None
        return category, _describe(" ".join([*words, "loop"]), category, root=root)
    for key, noun in SONIC_PI_DRUMS.items():
        if stem.startswith(key):
            subject = " ".join([*name_words(stem[len(key) :]), noun])
            return classify(subject), _describe(subject, classify(subject))
    head = WORDS.get(prefix, prefix)
    subject = " ".join([*words, head] if head in SONIC_PI_NOUNS else [head, *words])
    category = classify(subject)
    if prefix == "elec" and category is None and set(words) & {"beep", "ping", "plip", "tick", "twip", "pop"}:
        category = "ui-blip"
    return category, _describe(subject, category, root=root)


LMMS_FOLDERS = {
    # folder: (category when the name says nothing, noun added to the subject)
    "basses": ("bass", "bass"),
    "bassloops": ("bass", "bass loop"),
    "beats": ("drum-loop", "drum loop"),
    "stringsnpads": ("pad", ""),
    "drums": (None, ""),
    "instruments": (None, ""),
    "effects": (None, ""),
    "misc": (None, ""),
    "latin": (None, ""),
}
DRUM_NOUNS = ("kick", "snare", "hi-hat", "bass drum", "tom", "crash", "ride", "clap", "shaker", "rim",
              "clave")  # fmt: skip
INSTRUMENT_NOUNS = (*DRUM_NOUNS, "bass", "synth", "violin", "strings", "guitar", "organ", "piano")


def _lmms(rel: Path) -> tuple[str | None, Description]:
    folder = rel.parts[0] if len(rel.parts) > 1 else ""
    default, noun = LMMS_FOLDERS.get(folder, (None, ""))
    words = _noun_last(name_words(rel.stem), INSTRUMENT_NOUNS)
    subject = " ".join(words)
    if noun and not {noun.split()[-1], "beat", "loop"} & set(words):
        subject = f"{subject} {noun}"
    category = default if folder in ("basses", "bassloops", "beats") else classify(subject) or default
    return category, _describe(subject, category)


def _strum(name: str) -> tuple[int | None, str, str]:
    """A belofilms guitar-strum instrument name ("Gminor   / F2") as (root, chord, stroke)."""
    match = re.search(r"([A-G])([#b]?)\s*(major|minor|min|maj)?(7b5|7)?", name)
    if not match:
        return None, "chord", ""
    letter, accidental, quality, extension = match.groups()
    root = (PITCH_CLASSES[letter.lower()] + {"#": 1, "b": -1}.get(accidental, 0)) % 12
    quality = {"min": "minor", "maj": "major"}.get(quality or "", quality or "major")
    chord = (
        f"{quality} {'seventh flat five ' if extension == '7b5' else 'seventh ' if extension else ''}chord"
    )
    stroke = "down strum" if "\\" in name else "up strum" if "/" in name else ""
    return root, chord, stroke


def _kit_instruments(kit: Path) -> tuple[dict[str, tuple[str, float | None]], str | None, str]:
    """{sample file: (instrument name, layer velocity)} from a kit's drumkit.xml, its licence note and
    its display name."""
    try:
        tree = ET.parse(kit / "drumkit.xml").getroot()
    except (OSError, ET.ParseError):
        return {}, None, kit.name
    ns = tree.tag[: tree.tag.index("}") + 1] if tree.tag.startswith("{") else ""
    files: dict[str, tuple[str, float | None]] = {}
    for inst in tree.iter(f"{ns}instrument"):
        name = (inst.findtext(f"{ns}name") or "").strip()
        layers = inst.findall(f"{ns}layer") or [inst]  # old kits put one <filename> on the instrument
        for layer in layers:
            filename = (layer.findtext(f"{ns}filename") or "").strip()
            if not filename:
                continue
            low, high = layer.findtext(f"{ns}min"), layer.findtext(f"{ns}max")
            velocity = (float(low) + float(high)) / 2 if low and high and len(layers) > 1 else None
            files[filename] = (name, velocity)
    return files, tree.findtext(f"{ns}license"), (tree.findtext(f"{ns}name") or kit.name).strip()


def _hydrogen_instrument(name: str, filename: str) -> list[str]:
    name = re.sub(r"^[a-g]#?\d\s*-\s*", "", name, flags=re.IGNORECASE)  # rumpf: "c3 - bass drum 1"
    name = re.sub(r"\(.*?\)|^sample:", "", name, flags=re.IGNORECASE)
    words = name_words(name)
    if not words or words == ["none"]:
        words = name_words(Path(filename).stem)  # unnamed instruments: the file name is all there is
    if set(words) <= {"beats", "sample", "none", "fx"}:
        words = ["percussion", "hit"]  # rumpf's "beats_08-37.flac" names a numbered one-shot
    return words


def _hydrogen_kit(
    kit: Path, package: str, licences: Licences
) -> list[tuple[Path, str | None, Description, str]]:
    instruments, licence_note, kit_name = _kit_instruments(kit)
    licence = (
        licences.lookup(f"drumkits/{kit.name}.h2drumkit")
        or licence_from_text(licence_note or "")
        or licences.default
    )
    # "The Black Pearl 1.0" -> "The Black Pearl kit", "ColomboAcousticDrumkit" -> "Colombo Acoustic kit"
    clean_kit = re.sub(r"([a-z])([A-Z])", r"\1 \2", kit_name.replace("_", " "))
    clean_kit = re.sub(r"\s*(\bv\.?\s*)?\d+(\.\d+)*$", "", clean_kit).strip()
    clean_kit = re.sub(r"\s*\b(drum ?kit|kit)$", "", clean_kit, flags=re.IGNORECASE).strip() or kit.name
    clean_kit = f"{clean_kit} kit"
    out = []
    for path in _audio_files(kit):
        name, velocity = instruments.get(path.name, ("", None))
        if package == HYDROGEN_EFFECTS:
            root_pc, chord, stroke = _strum(name)
            desc = Description(
                "acoustic guitar strum",
                (),
                (stroke,) if stroke else (),
                harmony=f"{{root}} {chord}",
                root=root_pc,
                synonyms=("guitar chord", "strummed acoustic guitar"),
            )
            out.append((path, "guitar", desc, licence))
            continue
        words = _noun_last(_hydrogen_instrument(name, path.name), DRUM_NOUNS)
        subject = " ".join(words)
        category = classify(subject)
        quality = (
            () if velocity is None else ("soft",) if velocity < 0.34 else ("hard",) if velocity > 0.67 else ()
        )
        out.append((path, category, _describe(subject, category, clean_kit, qualities=quality), licence))
    return out


UFOAI_SURFACES = {"carpet", "dirt", "grass", "gravel", "linoleum", "metal", "sand", "snow", "stone", "tile",
                  "wood"}  # fmt: skip
UFOAI_NAMES = {
    "footsteps/crouch": (None, "crouching movement"),
    "footsteps/stand": (None, "standing up movement"),
    "footsteps/hitground": (None, "body hitting the ground"),
    "footsteps/splash": ("footsteps", "footsteps splashing through water"),
    "footsteps/water": ("footsteps", "wading through water"),
    "ambience/wind_turbine": (None, "wind turbine hum"),
    "ambience/thunder": (None, "thunder rumble"),
}


def _ufoai(member: str) -> tuple[str | None, Description]:
    folder, _, name = member.removeprefix("sound/").rpartition("/")
    folder, stem = folder.split("/")[0], Path(name).stem
    words = name_words(stem)
    for key, (category, subject) in UFOAI_NAMES.items():
        if f"{folder}/{stem}".startswith(key):
            return category, _describe(subject, category)
    if folder == "footsteps" and words and words[0] in UFOAI_SURFACES:
        return "footsteps", _describe(f"footsteps on {words[0]}", "footsteps")
    if folder == "ui":
        return "ui-blip", _describe(" ".join([*words, "interface sound"]), "ui-blip")
    if folder in ("soldiers", "civilians", "aliens"):
        who = {"soldiers": "soldier", "civilians": "civilian", "aliens": "alien creature"}[folder]
        voice = re.match(r"(civ)?(female|fem|male)?(death|hurt|scream|die)", stem)  # "civfemdeath01a"
        if voice:
            gender = {"fem": "female", None: ""}.get(voice[2], voice[2])
            cry = {"death": "death scream", "die": "death cry", "hurt": "pain grunt", "scream": "scream"}[
                voice[3]
            ]
            return None, _describe(f"{gender} {who} {cry}", None)
        return None, _describe(" ".join([who, *words]), None)
    if folder == "weapons" and words[:1] == ["bullet"]:
        shots = re.search(r"(\d+)x", stem)
        detail = f"{shots[1]} shots" if shots and shots[1] != "1" else "single shot"
        return None, _describe(" ".join([*(w for w in words[1:] if w != "x"), "gunfire"]), None, detail)
    material = re.match(r"break(\w+?)\d*$", stem)  # "breakglass03"
    if material:
        return None, _describe(f"{material[1]} breaking", None)
    subject = " ".join(_noun_last(words, ("explosion", "reload", "impact")))
    return classify(subject), _describe(subject, classify(subject))


FREEDESKTOP_UI = ("dialog", "message", "window", "complete", "device", "power", "network", "service",
                  "audio-volume", "trash", "suspend")  # fmt: skip


def _freedesktop(stem: str) -> tuple[str | None, Description]:
    words = " ".join(name_words(stem))
    if stem == "bell":
        return "bell", _describe("desktop bell", "bell")
    if stem.startswith(FREEDESKTOP_UI):
        return "ui-blip", _describe(f"{words} notification sound", "ui-blip")
    if stem.startswith("audio-channel"):
        return None, _describe(f"voice saying {words.removeprefix('audio channel ')}", None)
    return None, _describe(f"{words} sound", None)


FREEDOOM_SOUNDS = {  # lump: (category, subject); the rest are monster voices, named by their suffix
    "DSRXPLOD": ("explosion", "rocket explosion"),
    "DSBAREXP": ("explosion", "barrel explosion"),
    "DSFIRXPL": ("explosion", "fireball explosion"),
    "DSPUNCH": ("impact", "punch impact"),
    "DSSKEPCH": ("impact", "heavy punch impact"),
    "DSMETAL": ("impact", "metal clang"),
    "DSHOOF": ("impact", "heavy stomp"),
    "DSTINK": ("impact", "small metal tink"),
    "DSPISTOL": (None, "pistol shot"),
    "DSSHOTGN": (None, "shotgun blast"),
    "DSDSHTGN": (None, "double-barrelled shotgun blast"),
    "DSSGCOCK": (None, "shotgun pump reload"),
    "DSDBOPN": (None, "shotgun breech opening"),
    "DSDBCLS": (None, "shotgun breech closing"),
    "DSDBLOAD": (None, "shells loading"),
    "DSPLASMA": (None, "plasma gun shot"),
    "DSRLAUNC": (None, "rocket launch"),
    "DSBFG": (None, "energy cannon charging and firing"),
    "DSFIRSHT": (None, "fireball whoosh"),
    "DSSAWUP": (None, "chainsaw starting"),
    "DSSAWIDL": (None, "chainsaw idling"),
    "DSSAWFUL": (None, "chainsaw revving"),
    "DSSAWHIT": (None, "chainsaw cutting"),
    "DSSKESWG": (None, "swing whoosh"),
    "DSCLAW": (None, "claw swipe"),
    "DSDOROPN": (None, "sliding door opening"),
    "DSDORCLS": (None, "sliding door closing"),
    "DSBDOPN": (None, "fast door opening"),
    "DSBDCLS": (None, "fast door closing"),
    "DSPSTART": (None, "lift starting"),
    "DSPSTOP": (None, "lift stopping"),
    "DSSTNMOV": (None, "stone grinding"),
    "DSSWTCHN": (None, "switch clicking on"),
    "DSSWTCHX": (None, "switch clicking off"),
    "DSTELEPT": (None, "teleport whoosh"),
    "DSITMBK": (None, "item respawn shimmer"),
    "DSSLOP": (None, "gore splatter"),
    "DSITEMUP": ("ui-blip", "item pickup blip"),
    "DSWPNUP": ("ui-blip", "weapon pickup sound"),
    "DSGETPOW": ("ui-blip", "power-up pickup chime"),
    "DSRADIO": ("ui-blip", "radio beep"),
    "DSOOF": (None, "grunt"),
    "DSNOWAY": (None, "grunt"),
    "DSPLPAIN": (None, "player pain grunt"),
    "DSPLDETH": (None, "player death scream"),
    "DSPDIEHI": (None, "player death scream"),
}
FREEDOOM_VOICES = (("SIT", "monster growl"), ("ACT", "monster snarl"), ("ATK", "monster attack roar"),
                   ("DTH", "monster death cry"), ("PAIN", "monster pain howl"), ("PN", "monster pain howl"),
                   ("DT", "monster death cry"))  # fmt: skip


def _freedoom(lump: str) -> tuple[str | None, Description] | None:
    """The label of a Freedoom sound lump; None for the few that are neither listed nor a voice."""
    if lump in FREEDOOM_SOUNDS:
        category, subject = FREEDOOM_SOUNDS[lump]
        return category, _describe(subject, category, "retro game sound")
    stem = lump.rstrip("0123456789")  # DSPOSIT1, DSPOSIT2: variants of one cry
    voice = next((name for suffix, name in FREEDOOM_VOICES if stem.endswith(suffix)), None)
    return None if voice is None else (None, _describe(voice, None, "retro game sound"))


@cache
def _wad_sounds(path: Path) -> dict[str, bytes]:
    """The sound lumps ("DS…") of a Doom WAD file by name."""
    data = path.read_bytes()
    count, table = struct.unpack_from("<ii", data, 4)
    lumps = {}
    for i in range(count):
        start, size, raw = struct.unpack_from("<ii8s", data, table + 16 * i)
        name = raw.rstrip(b"\0").decode("ascii", "replace")
        if name.startswith("DS") and size > 8:
            lumps[name] = data[start : start + size]
    return lumps


def _doom_wav(path: Path, lump: str) -> io.BytesIO:
    """A Doom sound lump as WAV: its header is (format 3, rate, length) and 16 pad bytes sit at each end
    of its 8-bit unsigned samples."""
    data = _wad_sounds(path)[lump]
    _, rate, length = struct.unpack_from("<HHI", data)
    samples = np.frombuffer(data, np.uint8, count=max(length - 32, 0), offset=8 + 16)
    out = io.BytesIO()
    sf.write(out, (samples.astype(np.float32) - 128) / 128, rate, format="WAV", subtype="PCM_16")
    out.seek(0)
    return out


# ---------------------------------------------------------------- scanning


def package_path(root: Path, package: str) -> Path:
    return Path(root) / PACKAGE_PATHS[package]


def installed(root: Path, package: str) -> bool:
    """Whether a package's sounds are on this machine (by its files, so fake trees in tests count)."""
    path = package_path(root, package)
    if package in (HYDROGEN, HYDROGEN_EFFECTS):
        return bool(_kits(path, package))
    return path.exists()


def _kits(folder: Path, package: str) -> list[Path]:
    if not folder.is_dir():
        return []
    kits = sorted(p.parent for p in folder.glob("*/drumkit.xml"))
    return [k for k in kits if (k.name in EFFECTS_KITS) == (package == HYDROGEN_EFFECTS)]


Entry = tuple[Path, str | None, str | None, Description, str]  # path, archive member, category, …, licence


def _entries(root: Path, package: str) -> list[Entry]:
    folder = package_path(root, package)
    licences = Licences(root, package)
    if package == SONIC_PI:
        # "Files: *" there is the program's MIT licence; the samples README puts every sample under CC0
        return [
            (p, None, *_sonic_pi(p.stem), licences(f"etc/samples/{p.name}", catch_all=False))
            for p in _audio_files(folder)
        ]
    if package == LMMS:
        entries: list[Entry] = []
        for path in _audio_files(folder):
            rel = path.relative_to(folder)
            if rel.parts[0] not in LMMS_SKIP:
                entries.append((path, None, *_lmms(rel), licences(f"data/samples/{rel.as_posix()}")))
        return entries
    if package in (HYDROGEN, HYDROGEN_EFFECTS):
        return [
            (path, None, category, desc, licence)
            for kit in _kits(folder, package)
            for path, category, desc, licence in _hydrogen_kit(kit, package, licences)
        ]
    if package == UFOAI:
        with zipfile.ZipFile(folder) as archive:
            members = sorted(m for m in archive.namelist() if m.lower().endswith(AUDIO_SUFFIXES))
        return [(folder, m, *_ufoai(m), licences(f"base/{m}")) for m in members]
    if package == FREEDOOM:
        labels = {lump: _freedoom(lump) for lump in sorted(_wad_sounds(folder))}
        return [(folder, lump, *label, licences(folder.name)) for lump, label in labels.items() if label]
    return [(p, None, *_freedesktop(p.stem), licences(f"stereo/{p.name}")) for p in _audio_files(folder)]


def scan(packages: list[str] | tuple[str, ...], root: Path = Path("/")) -> tuple[list[RealFile], list[dict]]:
    """The labelled files of `packages` under `root`, sorted by origin, and the files left out (with
    why: unreadable, too short)."""
    root = Path(root)
    found: list[RealFile] = []
    skipped: list[dict] = []
    for package in packages:
        archive = None
        if package == UFOAI and package_path(root, package).is_file():
            archive = zipfile.ZipFile(package_path(root, package))
        try:
            for path, member, category, desc, licence in _entries(root, package):
                origin = _origin(root, path) + (f":{member}" if member else "")
                data = _member(path, member, archive) if member else path
                seconds = _audio_seconds(data)
                if seconds is None or seconds < MIN_SECONDS:
                    reason = "unreadable by libsndfile" if seconds is None else "too short"
                    skipped.append({"source_file": origin, "reason": reason})
                    continue
                tags = (package, "recording", *((category,) if category else ()))
                found.append(RealFile(package, origin, path, member, category, desc, licence, tags, seconds))
        finally:
            if archive is not None:
                archive.close()
    found.sort(key=lambda f: (f.source, f.source_file))
    return found, skipped


def _member(path: Path, member: str, archive: zipfile.ZipFile | None = None) -> io.BytesIO:
    """A sound inside an archive (ufoai's zip, Freedoom's WAD) as a file soundfile can read."""
    if path.suffix.lower() == ".wad":
        return _doom_wav(path, member)
    if archive is not None:
        return io.BytesIO(archive.read(member))
    with zipfile.ZipFile(path) as opened:
        return io.BytesIO(opened.read(member))


def read_real_audio(
    file: RealFile, start_s: float = 0.0, seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode a real file (or a stretch of it) as float32 [channels, frames] and its sample rate."""
    handle = file.path if file.member is None else _member(file.path, file.member)
    with sf.SoundFile(handle) as snd:
        rate = snd.samplerate
        snd.seek(min(round(start_s * rate), max(snd.frames - 1, 0)))
        frames = -1 if seconds is None else round(seconds * rate)
        data = snd.read(frames, dtype="float32", always_2d=True)
    return data.T.copy(), rate


def package_versions(root: Path, packages: list[str] | tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions from dpkg's status file (None where dpkg does not know the package), so a
    corpus records which package versions it was built from."""
    try:
        text = (Path(root) / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    versions: dict[str, str | None] = dict.fromkeys(packages)
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[:1] != " ")
        if fields.get("Package") in versions and fields.get("Status", "").endswith(" installed"):
            versions[fields["Package"]] = fields.get("Version")
    return versions
