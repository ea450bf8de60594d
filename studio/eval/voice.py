"""`studio eval voice`: what a musician hears first, before any embedding has a say.

Takes are made the way a musician asks for them: through the engine, at the model's own sampler,
steps and guidance, and at the length a prompt without one gets (the model's full length). They are
measured for variety between takes, following a note named in the prompt, following a tempo named
in the prompt, the decay of one-shot drums, and DC and rumble (sound.py holds the math;
docs/eval.md defines every number and its target). `voice_report` is also part of `studio eval`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from studio.audio import load_audio
from studio.data.captions import note_name
from studio.data.manifest import Clip
from studio.engine import Engine
from studio.errors import AudioError
from studio.eval import sound
from studio.eval.corpus import CATEGORY_PROMPTS
from studio.eval.report import number
from studio.eval.takes import Generator, Takes, default_setting
from studio.loops import estimate_bpm
from studio.prompt_facts import bpm_in, note_frequency

Say = Callable[[str], None]
# Held-out clips and their audio, per category, as `held_out_audio` reads them
Recordings = dict[str, list[tuple[Clip, np.ndarray]]]

VARIETY_CATEGORIES = ("hi-hat", "bell", "pad", "rain")  # short hits, rings, sustains and noise
# Per instrument category: what its prompt calls it, as the corpus's note captions do ("piano note
# F1", "string ensemble note C6"), and a register (MIDI notes, inclusive) inside theirs.
PITCH_INSTRUMENTS = {
    "piano": ("piano note", (36, 84)),
    "bass": ("bass note", (28, 52)),
    "bell": ("bell note", (60, 96)),
    "strings": ("string ensemble note", (40, 79)),
}
TEMPO_RANGE = (90, 140)  # BPM
# The corpus says "a trap drum loop at 130 BPM"; the number first is a phrasing it never uses.
TEMPO_PHRASINGS = ("drum loop at {bpm} BPM", "{bpm} BPM drum loop")
TEMPO_CATEGORY = "drum-loop"
DECAY_CATEGORIES = ("kick", "hi-hat", "snare")
NOTES, QUICK_NOTES = 4, 1  # per instrument
TEMPOS, QUICK_TEMPOS = 3, 1  # per phrasing
PITCH_TOLERANCE_CENTS = 50.0
TARGETS = {
    "variety_max": 0.3,
    "pitch_share": 0.75,
    "tempo_share": 0.75,
    "decay_db": 30.0,
    "dc_offset_dbfs_max": -50.0,
    "low_band_excess_db_max": 0.0,
}


@dataclass(frozen=True)
class VoicePlan:
    """How many takes and prompts, from which seed; the prompts themselves follow from these."""

    takes: int  # per prompt
    seed: int  # anchor seed of the first prompt of each measure, and the draw of notes and tempos
    cfg: float | None = None  # None: the model's default_cfg
    notes: int = NOTES  # per instrument
    tempos: int = TEMPOS  # per phrasing

    @classmethod
    def for_run(cls, takes: int, seed: int, cfg: float | None, quick: bool) -> VoicePlan:
        """The plan of a full run, or of a quick one (one note per instrument, one tempo)."""
        return cls(takes, seed, cfg, QUICK_NOTES if quick else NOTES, QUICK_TEMPOS if quick else TEMPOS)


def spread(rng: np.random.Generator, low: int, high: int, count: int) -> list[int]:
    """`count` whole numbers from `low` to `high` (inclusive), one drawn uniformly from each of
    `count` equal slices of that range, so together they cover it."""
    edges = np.linspace(low, high + 1, count + 1).astype(int)
    return [int(rng.integers(a, max(a + 1, b))) for a, b in itertools.pairwise(edges)]


def note_prompts(seed: int, per_instrument: int) -> dict[str, tuple[str, int]]:
    """Prompt -> (instrument category, MIDI note): per instrument, notes spread over its register,
    drawn from `seed` ("piano note C#3", "bell note G5")."""
    rng = np.random.default_rng([seed, 1])
    return {
        f"{name} {note_name(note)}": (category, note)
        for category, (name, (low, high)) in PITCH_INSTRUMENTS.items()
        for note in spread(rng, low, high, per_instrument)
    }


def tempo_prompts(seed: int, count: int) -> dict[str, tuple[str, int]]:
    """Prompt -> (phrasing, BPM): `count` tempos spread over TEMPO_RANGE, drawn from `seed`, each in
    every phrasing of TEMPO_PHRASINGS."""
    bpms = spread(np.random.default_rng([seed, 2]), *TEMPO_RANGE, count)
    return {phrasing.format(bpm=bpm): (phrasing, bpm) for phrasing in TEMPO_PHRASINGS for bpm in bpms}


def take_tempo(audio: np.ndarray, rate: int) -> float | None:
    """The take's tempo as the studio's loop tools estimate it (loops.estimate_bpm: every onset
    votes on a beat and its eighths and sixteenths); None where it finds no beat."""
    try:
        return estimate_bpm(audio, rate)
    except AudioError:
        return None


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def variety(takes: dict[str, Takes], prompts: dict[str, str]) -> dict[str, Any]:
    """Per prompt, the mean |correlation| between its takes (sound.mean_abs_correlation); their mean."""
    per_prompt = {
        category: {"prompt": prompts[category], "mean_abs_correlation": sound.mean_abs_correlation(t.audio)}
        for category, t in takes.items()
    }
    return {
        "target_max": TARGETS["variety_max"],
        "per_prompt": per_prompt,
        "mean": float(np.mean([p["mean_abs_correlation"] for p in per_prompt.values()])),
    }


def identical_at_zero(takes: Takes, prompt: str) -> dict[str, Any]:
    """The largest sample difference between any take of a diversity-0 batch and its first take."""
    first = takes.audio[0]
    return {
        "prompt": prompt,
        "takes": len(takes.audio),
        "max_abs_difference": float(max(np.abs(a - first).max() for a in takes.audio)),
    }


def pitch(takes: dict[str, Takes], targets: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """Each take's median f0 against its prompt's note (`targets`: prompt -> (instrument, MIDI)): right
    within PITCH_TOLERANCE_CENTS of the note's pitch class in any octave; the share right, overall
    and per instrument, the right ones in another octave and the takes with no voiced frame."""
    rows = []
    for prompt, t in takes.items():
        category, note = targets[prompt]
        for index, audio in enumerate(t.audio):
            f0, voiced = sound.median_f0(audio, t.rate, note_frequency(note))
            cents, octaves = (None, None) if f0 is None else sound.pitch_class_error(f0, note_frequency(note))
            rows.append(
                {
                    "prompt": prompt,
                    "instrument": category,
                    "note": note_name(note),
                    "take": index,
                    "f0_hz": f0,
                    "voiced_share": voiced,
                    "cents": cents,
                    "octaves": octaves,
                    "right": cents is not None and abs(cents) <= PITCH_TOLERANCE_CENTS,
                }
            )
    return {
        "tolerance_cents": PITCH_TOLERANCE_CENTS,
        "target_share": TARGETS["pitch_share"],
        "share": _share([r["right"] for r in rows]),
        "takes": len(rows),
        "octave_errors": sum(r["right"] and r["octaves"] != 0 for r in rows),
        "unvoiced": sum(r["f0_hz"] is None for r in rows),
        "per_instrument": {
            c: _share([r["right"] for r in rows if r["instrument"] == c])
            for c in dict.fromkeys(r["instrument"] for r in rows)
        },
        "per_take": rows,
    }


def tempo(takes: dict[str, Takes], targets: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """Each take's tempo against its prompt's BPM (`targets`: prompt -> (phrasing, BPM)), as
    sound.tempo_relation has it; the share right, overall and per phrasing, and the other relations
    counted. Also how each take's onsets sit on the prompt's sixteenth grid (sound.grid_lock), and
    the median over takes of how far they sit on its lines: a loop can be on tempo and still off the
    beat a DAW's bar starts on."""
    rows = []
    for prompt, t in takes.items():
        phrasing, bpm = targets[prompt]
        for index, audio in enumerate(t.audio):
            estimated = take_tempo(audio, t.rate)
            lock = sound.grid_lock(audio, t.rate, bpm)  # a take starts on a downbeat
            rows.append(
                {
                    "prompt": prompt,
                    "phrasing": phrasing,
                    "bpm": bpm,
                    "take": index,
                    "estimated_bpm": estimated,
                    "relation": sound.tempo_relation(estimated, bpm),
                    "grid_lock": None if lock is None else lock[0],
                    "grid_offset": None if lock is None else lock[1],
                }
            )
    # lock · cos(offset): 1 when every onset falls on a line of the grid, 0 with no preference
    on_grid = [
        r["grid_lock"] * np.cos(2 * np.pi * r["grid_offset"]) for r in rows if r["grid_lock"] is not None
    ]
    return {
        "tolerance": sound.TEMPO_TOLERANCE,
        "target_share": TARGETS["tempo_share"],
        "share": _share([r["relation"] == "right" for r in rows]),
        "takes": len(rows),
        **{k: sum(r["relation"] == k for r in rows) for k in ("half-time", "double-time", "none")},
        "on_grid_median": float(np.median(on_grid)) if on_grid else None,
        "per_phrasing": {
            p: _share([r["relation"] == "right" for r in rows if r["phrasing"] == p])
            for p in dict.fromkeys(r["phrasing"] for r in rows)
        },
        "per_take": rows,
    }


def tempo_reference(recordings: Recordings, rate: int) -> dict[str, Any] | None:
    """The tempo measure on recordings (`held_out_audio`): the held-out drum loops whose caption
    states a tempo in TEMPO_RANGE, against that tempo. What real loops score says how far the
    measure itself can be trusted at a take's length; None without such clips."""
    relations = []
    for clip, audio in recordings.get(TEMPO_CATEGORY, []):
        bpm = next((b for caption in clip.captions if (b := bpm_in(caption)) is not None), None)
        if bpm is None or not TEMPO_RANGE[0] <= bpm <= TEMPO_RANGE[1]:
            continue
        relations.append(sound.tempo_relation(take_tempo(audio, rate), bpm))
    if not relations:
        return None
    return {
        "clips": len(relations),
        "share": _share([r == "right" for r in relations]),
        **{k: relations.count(k) for k in ("half-time", "double-time", "none")},
    }


def decay(takes: dict[str, Takes], prompts: dict[str, str]) -> dict[str, Any]:
    """Each take's sound.decay_db per prompt, and the share of takes that reach TARGETS["decay_db"]."""
    per_prompt = {}
    for category, t in takes.items():
        values = [sound.decay_db(audio, t.rate) for audio in t.audio]
        passed = [v >= TARGETS["decay_db"] for v in values]
        per_prompt[category] = {"prompt": prompts[category], "decay_db": values, "share": _share(passed)}
    return {
        "target_db": TARGETS["decay_db"],
        "seconds": next(iter(takes.values())).seconds,
        "share": _share([v >= TARGETS["decay_db"] for p in per_prompt.values() for v in p["decay_db"]]),
        "per_prompt": per_prompt,
    }


def held_out_audio(engine: Engine, held_out: dict[str, list[Clip]], categories: set[str]) -> Recordings:
    """The held-out clips of `categories`, each read once as a take is heard: at the model's rate and
    channels, from its start, at most the model's length."""
    c = engine.config
    return {
        category: [
            (clip, load_audio(clip.file, c.sample_rate, c.audio_channels, c.max_seconds))
            for clip in held_out[category]
        ]
        for category in sorted(categories & set(held_out))
    }


def low_band_references(recordings: Recordings, rate: int) -> dict[str, dict[str, float]]:
    """Per category of `recordings` (`held_out_audio`): the median of their `low_band_share_db` and
    how many clips that is."""
    out = {}
    for category, clips in recordings.items():
        shares = [sound.low_band_share_db(audio, rate) for _, audio in clips]
        out[category] = {"share_db": float(np.median(shares)), "clips": len(shares)}
    return out


def clean(
    takes: list[tuple[str, np.ndarray, int]], references: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """DC of every take, and its low-band share against its category's held-out clips where there
    are any (`references`, from `low_band_references`). `takes`: (category, audio, rate)."""
    dc: dict[str, list[float]] = {}
    excess: dict[str, list[float]] = {}
    for category, audio, rate in takes:
        dc.setdefault(category, []).append(sound.dc_offset_dbfs(audio))
        if category in references:
            share = sound.low_band_share_db(audio, rate) - references[category]["share_db"]
            excess.setdefault(category, []).append(share)
    every_dc = [v for values in dc.values() for v in values]
    pooled = [v for values in excess.values() for v in values]
    return {
        "takes": len(takes),
        "dc_offset_dbfs": {
            "target_max": TARGETS["dc_offset_dbfs_max"],
            "max": max(every_dc),
            "median": float(np.median(every_dc)),
            "share_below_target": _share([v < TARGETS["dc_offset_dbfs_max"] for v in every_dc]),
            "per_category_max": {c: max(v) for c, v in dc.items()},
        },
        "low_band_excess_db": {
            "target_max": TARGETS["low_band_excess_db_max"],
            "takes": len(pooled),
            "median": float(np.median(pooled)) if pooled else None,
            "max": max(pooled, default=None),
            "per_category": {c: float(np.median(v)) for c, v in excess.items()},
            "references": references,
        },
    }


def voice_report(
    engine: Engine, plan: VoicePlan, held_out: dict[str, list[Clip]], say: Say = lambda _: None
) -> dict[str, Any]:
    """Every voice measure for the engine's model. `held_out`: the corpus's held-out clips per
    category, the reference for the low band (categories without any are left out of it)."""
    setting, cfg = default_setting(engine), engine.config.guidance(plan.cfg)
    seconds = engine.config.max_seconds  # what a request that names no length gets
    measured = {*VARIETY_CATEGORIES, *PITCH_INSTRUMENTS, TEMPO_CATEGORY, *DECAY_CATEGORIES}
    say("reading the held-out clips the low band and tempo are measured against")
    recordings = held_out_audio(engine, held_out, measured)
    references = low_band_references(recordings, engine.config.sample_rate)

    def generate(prompts: dict[str, str], diversity: float = 1.0) -> dict[str, Takes]:
        say(f"{plan.takes} takes x {len(prompts)} prompts at diversity {diversity:g}, {setting.label}")
        lengths = dict.fromkeys(prompts, seconds)
        return Generator(engine, prompts, lengths, plan.takes, plan.seed, cfg).run(setting, diversity)

    variety_prompts = {c: CATEGORY_PROMPTS[c] for c in VARIETY_CATEGORIES}
    decay_prompts = {c: CATEGORY_PROMPTS[c] for c in DECAY_CATEGORIES}
    notes, tempos = note_prompts(plan.seed, plan.notes), tempo_prompts(plan.seed, plan.tempos)
    first = VARIETY_CATEGORIES[0]
    made = {
        "variety": generate(variety_prompts),
        "identical": generate({first: variety_prompts[first]}, 0.0),
        "pitch": generate({p: p for p in notes}),
        "tempo": generate({p: p for p in tempos}),
        "decay": generate(decay_prompts),
    }
    say("measuring pitch, tempo, decay, DC and the low band")
    # variety, diversity-0 and decay takes are keyed by their category, pitch and tempo takes by prompt
    category = {p: c for p, (c, _) in notes.items()} | dict.fromkeys(tempos, TEMPO_CATEGORY)
    every = [
        (category.get(key, key), audio, t.rate)
        for takes in made.values()
        for key, t in takes.items()
        for audio in t.audio
    ]
    return {
        "settings": {
            "takes_per_prompt": plan.takes,
            "seed": plan.seed,
            "cfg": cfg,
            "sampler": setting.label,
            "seconds": seconds,
        },
        "variety": {
            **variety(made["variety"], variety_prompts),
            "diversity_0": identical_at_zero(made["identical"][first], variety_prompts[first]),
        },
        "pitch": pitch(made["pitch"], notes),
        "tempo": tempo(made["tempo"], tempos)
        | {"held_out": tempo_reference(recordings, engine.config.sample_rate)},
        "decay": decay(made["decay"], decay_prompts),
        "clean": clean(every, references),
    }


def voice_sections(voice: dict[str, Any], heading: str = "##") -> list[str]:
    """Markdown lines of the voice measures: a summary against the targets, then the detail of
    each, under `heading`-level headings (voice.md's own; a level down inside eval.md)."""
    v, p, t, d, c = (voice[k] for k in ("variety", "pitch", "tempo", "decay", "clean"))
    dc, low = c["dc_offset_dbfs"], c["low_band_excess_db"]
    right = [r for r in p["per_take"] if r["right"]]
    decays = [x for prompt in d["per_prompt"].values() for x in prompt["decay_db"]]
    return [
        "| measure | value | target |",
        "| --- | --- | --- |",
        f"| variety: mean \\|correlation\\| between takes at diversity 1 | {number(v['mean'])} | "
        f"≤ {v['target_max']:g} |",
        f"| diversity 0: largest sample difference between takes ({v['diversity_0']['prompt']}) | "
        f"{v['diversity_0']['max_abs_difference']:g} | 0 |",
        f"| pitch: takes on the note's pitch class (±{p['tolerance_cents']:g} cents) | "
        f"{number(p['share'], 2)} ({len(right)} of {p['takes']}; {p['octave_errors']} of them in another "
        f"octave; {p['unvoiced']} unvoiced) | ≥ {p['target_share']:g} |",
        f"| tempo: takes within ±{t['tolerance'] * 100:g}% of the BPM asked for | {number(t['share'], 2)} "
        f"({t['half-time']} half-time, {t['double-time']} double-time, {t['none']} with no beat; "
        f"onsets on the grid {number(t['on_grid_median'], 2)}){held_out_tempo(t)} | "
        f"≥ {t['target_share']:g} |",
        f"| decay of one-shots asked for without a length ({d['seconds']:.2f} s) | "
        f"{number(d['share'], 2)} of takes pass (median {number(float(np.median(decays)), 1)} dB) | "
        f"every take ≥ {d['target_db']:g} dB |",
        f"| DC offset, worst take | {number(dc['max'], 1)} dBFS (median {number(dc['median'], 1)}) | "
        f"below {dc['target_max']:g} dBFS |",
        f"| share of power below {sound.LOW_BAND_HZ:g} Hz against the held-out clips (median / worst) | "
        f"{number(low['median'], 1, True)} / {number(low['max'], 1, True)} dB | ≤ {low['target_max']:g} dB |",
        "",
        f"{heading} Variety",
        "",
        "| prompt | mean \\|correlation\\| |",
        "| --- | --- |",
        *(f"| {x['prompt']} | {number(x['mean_abs_correlation'])} |" for x in v["per_prompt"].values()),
        "",
        f"{heading} Pitch",
        "",
        "| instrument | share on the pitch class |",
        "| --- | --- |",
        *(f"| {name} | {number(share, 2)} |" for name, share in p["per_instrument"].items()),
        "",
        "| prompt | take | f0 Hz | voiced | cents | octaves | right |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['prompt']} | {r['take']} | {number(r['f0_hz'], 1)} | {number(r['voiced_share'], 2)} | "
            f"{number(r['cents'], 0, True)} | {number(r['octaves'], 0, True)} | "
            f"{'yes' if r['right'] else 'no'} |"
            for r in p["per_take"]
        ),
        "",
        f"{heading} Tempo",
        "",
        "| phrasing | share right |",
        "| --- | --- |",
        *(f"| {phrasing} | {number(share, 2)} |" for phrasing, share in t["per_phrasing"].items()),
        "",
        "Onsets on the sixteenth-note grid of the tempo asked for, a take starting on a downbeat: lock 1 "
        "when every onset falls at one place in its sixteenth, near 0 when anywhere; offset that place, "
        "in sixteenths from the grid line. On the grid (lock × cos of the offset; 1 all on the lines, 0 "
        f"no preference), median of the takes: {number(t['on_grid_median'], 2)}.",
        "",
        "| prompt | take | estimated BPM | | grid lock | offset |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['prompt']} | {r['take']} | {number(r['estimated_bpm'], 1)} | {r['relation']} | "
            f"{number(r['grid_lock'], 2)} | {number(r['grid_offset'], 2, True)} |"
            for r in t["per_take"]
        ),
        "",
        f"{heading} Decay",
        "",
        f"| prompt | decay per take, dB | share ≥ {d['target_db']:g} dB |",
        "| --- | --- | --- |",
        *(
            f"| {x['prompt']} | {', '.join(number(y, 1) for y in x['decay_db'])} | {number(x['share'], 2)} |"
            for x in d["per_prompt"].values()
        ),
        "",
        f"{heading} DC and low band, per category",
        "",
        "| category | worst DC dBFS | held-out clips | low-band excess dB (median) |",
        "| --- | --- | --- | --- |",
        *(
            f"| {category} | {number(worst, 1)} | {low['references'].get(category, {}).get('clips', 0)} | "
            f"{number(low['per_category'].get(category), 1, True)} |"
            for category, worst in dc["per_category_max"].items()
        ),
        "",
    ]


def held_out_tempo(t: dict[str, Any]) -> str:
    """The summary's note of what held-out loops score on the same measure (older reports lack it)."""
    ref = t.get("held_out")
    if not ref:
        return ""
    return (
        f"; held-out loops at their stated tempo: {number(ref['share'], 2)} of {ref['clips']}, "
        f"{ref['half-time']} half-time, {ref['double-time']} double-time"
    )


def voice_markdown(report: dict[str, Any]) -> str:
    """voice.md: what was run, then `voice_sections`."""
    s = report["settings"]
    return "\n".join(
        [
            f"# What a musician hears first: {report['model']}",
            "",
            f"{report['date']} on {report['device']} ({report['dtype']}, {report['torch_threads']} torch "
            f"threads). {s['takes_per_prompt']} takes per prompt, seed {s['seed']}, {s['sampler']}, cfg "
            f"{s['cfg']:g}, {s['seconds']:.2f} s (the length a prompt without one gets); held-out clips "
            f"from `{report['corpus']['path']}`. Definitions and targets: docs/eval.md.",
            "",
            *voice_sections(report),
        ]
    )
