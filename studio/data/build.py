"""Build a captioned corpus: plan every clip, render the plan (in parallel), write the manifest.

Planning is cheap and happens in one process: it scans the Debian packages, decides which real clips
and augmentations fit the budget, designs every synthetic clip and writes its captions. Rendering is
the slow part and runs in worker processes; each clip's random numbers come from (seed, clip id), so
the number of workers never changes a byte of the result.

Budget: about half of `hours` goes to real recordings (each file once, then augmented copies; a
balanced subset across categories when there is more than half), the rest to the generators (GM
renders, GM single notes, procedural sounds, drum loops at known tempi), spread so every category ends
up with about the same total time, or FOCUS_WEIGHT times that for the categories named as a focus.

`extend_corpus` grows an earlier corpus the same way: its clips stay as they are (same ids, splits and
audio files) and count as material the categories already have; new clips take ids after the old ones.
"""

from __future__ import annotations

import heapq
import json
import math
import multiprocessing
import re
import shutil
import sys
import threading
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from studio.audio import convert_channels, resample
from studio.data import augment, debian, midi_render, synth
from studio.data.captions import Description, captions
from studio.data.manifest import (
    AUDIO_DIR,
    CATEGORIES,
    CORE_CATEGORIES,
    DEBIAN_SOURCES,
    GENERATED_SOURCES,
    MANIFEST_NAME,
    SPLITS,
    SUMMARY_NAME,
    Clip,
    CorpusError,
    parse_focus,
    read_manifest,
    split_for,
    stable_hash,
    write_manifest,
    write_text_atomic,
)

BUILDER_VERSION = "1.1"
GM, PROCEDURAL, GM_NOTES, BPM_LOOPS = GENERATED_SOURCES
ALL_SOURCES = (*DEBIAN_SOURCES, *GENERATED_SOURCES)
SOURCE_GROUPS = {"all": ALL_SOURCES, "debian": DEBIAN_SOURCES, "generated": GENERATED_SOURCES}
GENERATOR_CATEGORIES: dict[str, tuple[str | None, ...]] = {
    GM: midi_render.GM_CATEGORIES,
    PROCEDURAL: synth.PROCEDURAL_CATEGORIES,
    GM_NOTES: midi_render.NOTE_CATEGORIES,
    BPM_LOOPS: ("drum-loop",),
}
PROCEDURAL_LICENCE = "MIT"  # made by this project's code
BPM_RANGE = (70, 160)  # bpm-loops spread their tempi evenly over this
LOOP_GM_SHARE = 0.5  # of bpm-loops played on a GM kit (when a font is here); the rest are synthesised

REAL_SHARE = 0.5
MAX_REAL_AUGMENTS = 3
SEGMENT_S = 8.0  # long recordings (ambiences) are cut into segments this long …
MAX_SEGMENTS = 4  # … at most this many per file, so one file cannot crowd out the rest
MIN_CLIP_S, MAX_CLIP_S = 0.25, 12.0
GENERATED_AUGMENT_P = 0.35
GENERATED_AUGMENTS = ("filter", "reverb", "gain")  # pitch and tempo are already drawn freely
PEAK = 10 ** (-1 / 20)  # -1 dBFS
SILENCE = 1e-4  # peak below this: nothing to hear, the clip is dropped
TRIM_DB = -60.0


@dataclass(frozen=True)
class Task:
    """One clip to make: where it comes from, what it is, and what the worker needs to render it."""

    clip: Clip  # seconds is the planned length until rendered
    augment: dict[str, Any] | None = None
    real: debian.RealFile | None = None
    segment: int = 0
    start_s: float = 0.0
    length_s: float | None = None
    recipe: synth.Recipe | None = None
    midi: bytes | None = None
    font: str | None = None
    engine: str | None = None


def parse_sources(sources: str | Iterable[str]) -> tuple[str, ...]:
    """Source names from "all", "debian", "generated" or a comma list of package/generator names."""
    names = sources.split(",") if isinstance(sources, str) else list(sources)
    out: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        if name not in SOURCE_GROUPS and name not in ALL_SOURCES:
            raise CorpusError(
                f"unknown source '{name}'", f"use all, debian, generated or any of {', '.join(ALL_SOURCES)}"
            )
        out += [s for s in SOURCE_GROUPS.get(name, (name,)) if s not in out]
    if not out:
        raise CorpusError("no sources given", "e.g. --sources all, or --sources procedural,gm-render")
    return tuple(s for s in ALL_SOURCES if s in out)


# Licences that let trained weights ship without share-alike or copyleft terms (CC-BY asks only for
# credit, which the model card gives).
PERMISSIVE_LICENCES = frozenset({"CC0-1.0", "MIT", "CC-BY-3.0", "CC-BY-4.0", "BSD-3-Clause", "Apache-2.0"})


def parse_licences(licences: str | Iterable[str]) -> frozenset[str] | None:
    """None for "any"; else the SPDX ids allowed ("permissive" names PERMISSIVE_LICENCES)."""
    names = [p.strip() for p in licences.split(",")] if isinstance(licences, str) else list(licences)
    if names == ["any"]:
        return None
    allowed: set[str] = set()
    for name in filter(None, names):
        allowed |= PERMISSIVE_LICENCES if name == "permissive" else {name}
    if not allowed:
        raise CorpusError("--licences is empty", 'use "any", "permissive" or SPDX ids such as CC0-1.0,MIT')
    return frozenset(allowed)


def _rng(seed: int, key: str, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stable_hash(key), stream])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "clip"


def _clip(
    clip_id: str,
    source: str,
    source_file: str,
    category: str | None,
    licence: str,
    desc: Description,
    aug: dict[str, Any] | None,
    tags: tuple[str, ...],
    seconds: float,
    sample_rate: int,
    seed: int,
) -> Clip:
    texts = captions(augment.describe(desc, aug), _rng(seed, clip_id, 1))
    return Clip(
        id=clip_id,
        path=f"{AUDIO_DIR}/{clip_id}.flac",
        caption=texts[0],
        captions=tuple(texts),
        category=category,
        source=source,
        source_file=source_file,
        licence=licence,
        split=split_for(source_file),
        seconds=seconds,
        sample_rate=sample_rate,
        augment=aug,
        tags=tuple(dict.fromkeys((*tags, *augment.tags(aug)))),
    )


# ---------------------------------------------------------------- planning: real recordings


def _segments(file: debian.RealFile) -> list[tuple[float, float | None]]:
    """(start, length) of the pieces a recording is cut into; length None means the whole file."""
    if file.seconds <= MAX_CLIP_S:
        return [(0.0, None)]
    count = min(MAX_SEGMENTS, math.ceil(file.seconds / SEGMENT_S))
    gap = (file.seconds - SEGMENT_S) / max(count - 1, 1)
    return [(round(i * gap, 3), SEGMENT_S) for i in range(count)]


def _real_task(file: debian.RealFile, segment: int, start: float, length: float | None, sample_rate: int,
               seed: int, aug: dict[str, Any] | None = None, copy: int = 0) -> Task:  # fmt: skip
    parent, stem = Path(file.source_file.replace(":", "/")).parent.name, Path(file.source_file).stem
    clip_id = f"{file.source}/{_slug(parent)}-{_slug(stem)}-{stable_hash(file.source_file) % 16**6:06x}"
    clip_id += f"-s{segment}" if length is not None else ""
    clip_id += f"-aug{copy}" if copy else ""
    seconds = length if length is not None else min(file.seconds, MAX_CLIP_S)
    clip = _clip(clip_id, file.source, file.source_file, file.category, file.licence, file.description, aug,
                 file.tags, seconds, sample_rate, seed)  # fmt: skip
    return Task(clip, aug, real=file, segment=segment, start_s=start, length_s=length)


def _balanced(tasks: list[Task], budget: float, seed: int) -> list[Task]:
    """Up to `budget` seconds of `tasks` in the order picked: always from the category with the least
    time so far, in a seed-dependent order inside each category."""
    groups: dict[str, list[Task]] = defaultdict(list)
    for task in tasks:
        groups[str(task.clip.category)].append(task)
    for members in groups.values():
        members.sort(key=lambda t: stable_hash(seed, "pick", t.clip.id))
    heap = [(0.0, name) for name in sorted(groups)]
    chosen, total = [], 0.0
    while heap and total < budget:
        used, name = heapq.heappop(heap)
        task = groups[name].pop()
        chosen.append(task)
        total += task.clip.seconds
        if groups[name]:
            heapq.heappush(heap, (used + task.clip.seconds, name))
    return chosen


def plan_real(
    files: list[debian.RealFile],
    budget: float,
    sample_rate: int,
    seed: int,
    have: frozenset[str] = frozenset(),
) -> list[Task]:
    """Every recording once (or a balanced subset when over budget), then augmented copies in rounds
    until the budget is spent or each has MAX_REAL_AUGMENTS copies. Clips whose ids are in `have` (an
    earlier corpus's) are already made: they are neither planned again nor counted."""
    originals = [
        _real_task(f, i, start, length, sample_rate, seed)
        for f in files
        for i, (start, length) in enumerate(_segments(f))
    ]
    new = [t for t in originals if t.clip.id not in have]
    if sum(t.clip.seconds for t in new) > budget:
        return sorted(_balanced(new, budget, seed), key=lambda t: t.clip.id)
    tasks, total = list(new), sum(t.clip.seconds for t in new)
    order = _balanced(originals, math.inf, seed)  # augment evenly across categories
    for copy in range(1, MAX_REAL_AUGMENTS + 1):
        for base in order:
            if total >= budget:
                return tasks
            assert base.real is not None
            aug = augment.choose(base.clip.category, _rng(seed, f"{base.clip.id}-aug{copy}", 2))
            factor = 2 ** (-aug.get("pitch_semitones", 0) / 12) / aug.get("stretch", 1.0)
            seconds = min(base.clip.seconds * factor + aug.get("reverb", {}).get("decay_s", 0.0), MAX_CLIP_S)
            task = _real_task(
                base.real, base.segment, base.start_s, base.length_s, sample_rate, seed, aug, copy
            )
            if task.clip.id not in have:
                tasks.append(replace(task, clip=replace(task.clip, seconds=seconds)))
                total += seconds
    return tasks


# ---------------------------------------------------------------- planning: generated sounds


def water_fill(
    have: dict[str | None, float], budget: float, weights: dict[str | None, float] | None = None
) -> dict[str | None, float]:
    """Seconds to add per category so that the emptiest categories are topped up to a common level,
    each to that level times its weight (1 unless `weights` says otherwise)."""
    weight = {c: (weights or {}).get(c, 1.0) for c in have}
    if budget <= 0 or not have:
        return dict.fromkeys(have, 0.0)
    # Fill in order of level reached per unit weight; stop where the next category is already above it.
    order = sorted(have, key=lambda c: have[c] / weight[c])
    level = 0.0
    for i in range(len(order)):
        below = order[: i + 1]
        level = (budget + sum(have[c] for c in below)) / sum(weight[c] for c in below)
        if i + 1 == len(order) or level <= have[order[i + 1]] / weight[order[i + 1]]:
            break
    return {c: max(0.0, level * weight[c] - s) for c, s in have.items()}


def loop_bpm(index: int) -> int:
    """The tempo of the index-th bpm-loops clip: a golden-ratio sequence over BPM_RANGE, so the tempi of
    any run of indices (a first build, or an extension's) are spread evenly over it."""
    low, high = BPM_RANGE
    return low + round((high - low) * ((index * (math.sqrt(5) - 1) / 2) % 1.0))


def _design_bpm_loop(
    index: int, rng: np.random.Generator, gm: bool
) -> midi_render.Composition | synth.Recipe:
    """A loop at `loop_bpm(index)`, of a genre at home near that tempo, 2 to 8 bars (at most ~10 s)."""
    bpm = loop_bpm(index)
    grooves: dict[str, dict[str, Any]] = midi_render.GROOVES if gm else synth.GROOVES
    near = [g for g, v in grooves.items() if v["bpm"][0] - 15 <= bpm <= v["bpm"][1] + 15] or list(grooves)
    genre = near[int(rng.integers(len(near)))]
    bars = int(rng.integers(2, max(2, min(8, int(10.5 * bpm / 240))) + 1))
    made = (
        midi_render.compose_groove(rng, genre, bpm, bars) if gm else synth.design_loop(rng, genre, bpm, bars)
    )
    if rng.random() < 0.3:  # the plain prompt: "drum loop at 117 BPM"
        made = replace(made, description=replace(made.description, style=None))
    return made


def _design(
    generator: str, category: str | None, index: int, rng: np.random.Generator, fonts_available: bool
) -> midi_render.Composition | synth.Recipe:
    """What the index-th clip of a generator will be: a loop, a synthesis recipe, or a GM piece or
    note (a loop is played on a GM kit only where a font is there to play it)."""
    if generator == BPM_LOOPS:
        return _design_bpm_loop(index, rng, gm=fonts_available and rng.random() < LOOP_GM_SHARE)
    if generator == PROCEDURAL:
        return synth.design(category, rng)
    return (midi_render.compose_note if generator == GM_NOTES else midi_render.compose)(category, rng)


def _generated_task(generator: str, category: str | None, index: int, sample_rate: int, seed: int,
                    fonts: list[tuple[midi_render.SoundFont, str]]) -> Task:  # fmt: skip
    source_file = f"{generator}/{category or 'other'}/{index:05d}"
    rng = _rng(seed, source_file)
    aug = augment.choose(category, rng, GENERATED_AUGMENTS) if rng.random() < GENERATED_AUGMENT_P else None
    made = _design(generator, category, index, rng, fonts_available=bool(fonts))
    extra = ("bpm loop",) if generator == BPM_LOOPS else ()
    if isinstance(made, synth.Recipe):
        clip = _clip(source_file, generator, source_file, category, PROCEDURAL_LICENCE, made.description, aug,
                     ("procedural", made.kind, *extra), made.seconds, sample_rate, seed)  # fmt: skip
        return Task(clip, aug, recipe=made)
    font, engine = (
        fonts[0] if len(fonts) == 1 or rng.random() < 0.7 else fonts[1 + int(rng.integers(len(fonts) - 1))]
    )
    clip = _clip(source_file, generator, source_file, category, font.licence, made.description, aug,
                 (*made.tags, *extra, font.name), made.seconds, sample_rate, seed)  # fmt: skip
    return Task(clip, aug, midi=made.midi, font=font.path, engine=engine)


def designed_caption(category: str | None, rng: np.random.Generator) -> tuple[str, float] | None:
    """A caption and length for a sound of `category` that one of the generators could make, designed
    afresh and never rendered: prompts for training that reads no audio (caption-only distillation).
    None where no generator makes the category (real recordings only)."""
    generators = [g for g, categories in GENERATOR_CATEGORIES.items() if category in categories]
    if not generators:
        return None
    generator = generators[int(rng.integers(len(generators)))]
    made = _design(generator, category, int(rng.integers(1 << 16)), rng, fonts_available=True)
    texts = captions(made.description, rng)
    return texts[int(rng.integers(len(texts)))], made.seconds


def plan_generated(
    generators: dict[str, tuple[str | None, ...]],
    have: dict[str | None, float],
    budget: float,
    sample_rate: int,
    seed: int,
    fonts: list[tuple[midi_render.SoundFont, str]],
    weights: dict[str | None, float] | None = None,
    base: Iterable[Clip] = (),
) -> list[Task]:
    """Generated clips that even out the categories (in proportion to `weights`); every (generator,
    category) ends with at least one clip in each split, so the held-out splits cover every category the
    generators can make. Clips of an earlier corpus (`base`) keep their ids: new ones are numbered on."""
    categories = list(dict.fromkeys(c for cats in generators.values() for c in cats))
    wanted = water_fill({c: have.get(c, 0.0) for c in categories}, budget, weights)
    earlier: dict[str, list[Clip]] = defaultdict(list)
    for clip in base:
        earlier[clip.id.rsplit("/", 1)[0]].append(clip)
    tasks = []
    for generator, cats in generators.items():
        for category in cats:
            share = wanted[category] / sum(category in g for g in generators.values())
            family = earlier[f"{generator}/{category or 'other'}"]
            index = 1 + max((int(c.id.rsplit("/", 1)[1]) for c in family), default=-1)
            missing = [s for s in SPLITS if s not in {c.split for c in family}]
            total = 0.0
            while missing or total < share:
                source_file = f"{generator}/{category or 'other'}/{index:05d}"
                index += 1
                if missing and split_for(source_file) != missing[0]:
                    continue  # the first clips are picked so each split gets one
                task = _generated_task(generator, category, index - 1, sample_rate, seed, fonts)
                tasks.append(task)
                total += task.clip.seconds
                missing = missing[1:]
    return tasks


# ---------------------------------------------------------------- rendering (worker side)


def _fit(audio: np.ndarray, sr: int, gain_db: float) -> np.ndarray | None:
    """Normalise, trim silence, bound the length, then apply gain; None for a silent clip."""
    audio = np.nan_to_num(np.asarray(audio, dtype=np.float64))
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak < SILENCE:
        return None
    audio = audio / peak * PEAK
    loud = np.flatnonzero(np.abs(audio).max(axis=0) > 10 ** (TRIM_DB / 20))
    pad = round(0.01 * sr)
    audio = audio[:, max(loud[0] - pad, 0) : loud[-1] + pad + 1]
    limit = round(MAX_CLIP_S * sr)
    if audio.shape[1] > limit:
        fade = round(0.05 * sr)
        audio = audio[:, :limit]
        audio[:, -fade:] *= np.linspace(1, 0, fade)
    if audio.shape[1] < round(MIN_CLIP_S * sr):
        audio = np.pad(audio, ((0, 0), (0, round(MIN_CLIP_S * sr) - audio.shape[1])))
    return (audio * 10 ** (gain_db / 20)).astype(np.float32)


def _source_audio(task: Task, sr: int, rng: np.random.Generator) -> np.ndarray:
    if task.real is not None:
        audio, rate = debian.read_real_audio(task.real, task.start_s, task.length_s)
        return resample(convert_channels(audio, 2), rate, sr)
    if task.recipe is not None:
        return synth.render(task.recipe, sr, rng)
    return midi_render.render_midi(task.midi, task.font, sr, task.engine)  # type: ignore[arg-type]


def render_task(task: Task, out: Path, seed: int) -> Clip | dict[str, str]:
    """Make one clip's FLAC; the finished manifest record, or why it was dropped."""
    sr = task.clip.sample_rate
    rng = _rng(seed, task.clip.id, 3)
    try:
        audio = _source_audio(task, sr, rng)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        return {"source_file": task.clip.source_file, "reason": f"cannot decode: {exc}"}
    audio = augment.apply(audio, sr, task.augment, rng)
    fitted = _fit(audio, sr, (task.augment or {}).get("gain_db", 0.0))
    if fitted is None:
        return {"source_file": task.clip.source_file, "reason": "silent"}
    path = out / task.clip.path
    path.parent.mkdir(parents=True, exist_ok=True)
    # Quantise here rather than in libsndfile so the bytes do not depend on its rounding.
    pcm = np.round(np.clip(fitted, -1.0, 1.0) * 32767).astype(np.int16)
    sf.write(str(path), pcm.T, sr, format="FLAC", subtype="PCM_16")
    return replace(task.clip, seconds=round(fitted.shape[1] / sr, 4))


def _start_method() -> str:
    # fork is near free (the renderers are already imported) but only safe while no other thread
    # runs: a child could inherit a lock some thread holds. Otherwise spawn, which re-imports.
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


def _render_all(tasks: list[Task], out: Path, seed: int, workers: int, progress: bool) -> list[Clip | dict]:
    work = partial(render_task, out=out, seed=seed)
    with ExitStack() as stack:
        if workers > 1:
            context = multiprocessing.get_context(_start_method())
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=context))
            results: Iterable[Clip | dict] = pool.map(work, tasks, chunksize=4)  # workers start here
        else:
            results = map(work, tasks)
        if progress:  # after the workers started: tqdm runs a monitor thread
            from tqdm import tqdm

            results = tqdm(results, total=len(tasks), unit="clip", desc="building corpus")
        return list(results)


# ---------------------------------------------------------------- the whole build


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out} is a file", "give --out a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / SUMMARY_NAME).is_file():
            raise CorpusError(
                f"{out} is not empty and holds no corpus", "use a new or empty folder for --out"
            )
        shutil.rmtree(out / AUDIO_DIR, ignore_errors=True)  # a rebuild replaces the old corpus
        (out / MANIFEST_NAME).unlink(missing_ok=True)
        (out / SUMMARY_NAME).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _hours(clips: Iterable[Clip], key: Any) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for c in clips:
        totals[key(c)] += c.seconds / 3600
    return {k: round(v, 4) for k, v in sorted(totals.items())}


def summarise(clips: list[Clip], **info: Any) -> dict[str, Any]:
    """corpus.json: what the corpus holds, per source, split and category."""
    by_category: dict[str, dict[str, int]] = {}
    for name in (*CATEGORIES, None):
        counts = {s: sum(1 for c in clips if c.category == name and c.split == s) for s in SPLITS}
        by_category[name or "none"] = {**counts, "total": sum(counts.values())}
    missing = [[c, s] for c in CORE_CATEGORIES for s in SPLITS if by_category[c][s] == 0]
    return {
        "builder_version": BUILDER_VERSION,
        **info,
        "clips": len(clips),
        "hours": {
            "total": round(sum(c.seconds for c in clips) / 3600, 4),
            "by_source": _hours(clips, lambda c: c.source),
            "by_split": _hours(clips, lambda c: c.split),
            "by_source_split": {
                src: _hours([c for c in clips if c.source == src], lambda c: c.split)
                for src in sorted({c.source for c in clips})
            },
        },
        "counts": {
            "by_split": {s: sum(1 for c in clips if c.split == s) for s in SPLITS},
            "by_category": by_category,
            "by_source": {
                s: sum(1 for c in clips if c.source == s) for s in sorted({c.source for c in clips})
            },
            "by_licence": {
                lic: sum(1 for c in clips if c.licence == lic) for lic in sorted({c.licence for c in clips})
            },
            "augmented": sum(1 for c in clips if c.augment),
        },
        "core_categories_missing": missing,
    }


# What corpus.json says about how a corpus was first built; an extension keeps these as they were.
BUILD_FACTS = ("builder_version", "seed", "sample_rate", "requested_hours", "sources", "licences", "focus",
               "renderer")  # fmt: skip


def _check_debian(packages: list[str], root: Path) -> None:
    missing = [p for p in packages if not debian.installed(root, p)]
    if missing:
        raise CorpusError(
            f"Debian package(s) not installed: {', '.join(missing)}",
            f"studio data setup (or sudo apt-get install -y {' '.join(missing)}), "
            "or leave them out of --sources",
        )


def _fonts(
    chosen: tuple[str, ...], allowed: frozenset[str] | None
) -> list[tuple[midi_render.SoundFont, str]]:
    """The (soundfont, renderer) pairs the chosen generators may use: required by the GM generators,
    taken when there by bpm-loops (which synthesises its loops without them)."""
    if GM not in chosen and GM_NOTES not in chosen:
        fonts = midi_render.playable_soundfonts() if BPM_LOOPS in chosen else []
    else:
        fonts = midi_render.check_gm_available()
    if allowed is None:
        return fonts
    kept = [(f, e) for f, e in fonts if f.licence in allowed]
    if (GM in chosen or GM_NOTES in chosen) and not kept:
        raise CorpusError(
            f"no GM soundfont here is under {', '.join(sorted(allowed))}",
            "install fluid-soundfont-gm (MIT), or leave gm-render and gm-notes out of --sources",
        )
    return kept


@dataclass(frozen=True)
class _Plan:
    tasks: list[Task]
    skipped: list[dict]
    fonts: list[tuple[midi_render.SoundFont, str]]
    packages: list[str]


def _plan(
    budget: float,
    chosen: tuple[str, ...],
    root: Path,
    allowed: frozenset[str] | None,
    sample_rate: int,
    seed: int,
    focus: dict[str | None, float],
    base: list[Clip],
) -> _Plan:
    """Every clip to add to `base` (empty for a new corpus) for about `budget` more seconds."""
    packages = [s for s in chosen if s in debian.DEBIAN_PACKAGES]
    _check_debian(packages, root)
    fonts = _fonts(chosen, allowed)
    files, skipped = debian.scan(packages, root)
    if allowed is not None:
        files = [f for f in files if f.licence in allowed]
    have_ids = frozenset(c.id for c in base)
    real = plan_real(files, budget * REAL_SHARE, sample_rate, seed, have_ids) if files else []
    have: dict[str | None, float] = defaultdict(float)
    for clip in [*base, *(t.clip for t in real)]:
        have[clip.category] += clip.seconds
    generators = {g: GENERATOR_CATEGORIES[g] for g in GENERATED_SOURCES if g in chosen}
    left = budget - sum(t.clip.seconds for t in real)
    tasks = real + plan_generated(generators, have, left, sample_rate, seed, fonts, focus, base)
    clash = have_ids & {t.clip.id for t in tasks}
    assert not clash, f"planned over existing clips: {sorted(clash)[:3]}"
    return _Plan(tasks, skipped, fonts, packages)


def _render(plan: _Plan, out: Path, seed: int, workers: int, progress: bool) -> tuple[list[Clip], list[dict]]:
    clips: list[Clip] = []
    skipped = list(plan.skipped)
    for result in _render_all(plan.tasks, out, seed, workers, progress):
        if isinstance(result, Clip):
            clips.append(result)
        else:
            skipped.append(result)
    return clips, skipped


def _font_records(fonts: list[tuple[midi_render.SoundFont, str]]) -> list[dict[str, str]]:
    return [{"name": f.name, "path": f.path, "licence": f.licence, "renderer": e} for f, e in fonts]


def _check_common(hours: float, workers: int) -> None:
    if not 0 < hours <= 1000:
        raise CorpusError(f"--hours must be above 0 and at most 1000, got {hours}", "e.g. --hours 1")
    if workers < 1:
        raise CorpusError(f"--workers must be at least 1, got {workers}", "e.g. --workers 2")


def build_corpus(
    out: str | Path,
    hours: float,
    seed: int = 0,
    sources: str | Iterable[str] = "all",
    sample_rate: int = 44100,
    workers: int = 1,
    debian_root: str | Path = "/",
    progress: bool = False,
    licences: str | Iterable[str] = "any",
    focus: str | Iterable[str] = (),
) -> dict[str, Any]:
    """Build a corpus of about `hours` into `out` and return its summary (also written as corpus.json).

    Same seed, sources and installed packages give a byte-identical manifest and identical audio,
    whatever `workers` is. `debian_root` is where the packages' files are looked for (tests point it
    at a fake tree). `licences` keeps only clips under those licences ("permissive", "any", or a list
    of SPDX ids): recordings and soundfonts outside it are not used at all. `focus` names categories
    (or "other"), each optionally "=weight", that end with FOCUS_WEIGHT (or that weight) times the time
    of the rest.
    """
    _check_common(hours, workers)
    if not 8000 <= sample_rate <= 192000:
        raise CorpusError(f"sample rate {sample_rate} Hz is out of range", "use 44100 (or 16000-192000)")
    chosen, allowed, wanted = parse_sources(sources), parse_licences(licences), parse_focus(focus)
    out = Path(out)
    plan = _plan(hours * 3600, chosen, Path(debian_root), allowed, sample_rate, seed, wanted, [])
    _prepare(out)
    clips, skipped = _render(plan, out, seed, workers, progress)
    write_manifest(out, clips)
    summary = summarise(
        clips,
        seed=seed,
        sample_rate=sample_rate,
        requested_hours=hours,
        sources=list(chosen),
        licences=sorted(allowed) if allowed is not None else "any",
        focus={c or "other": w for c, w in wanted.items()},
        renderer=plan.fonts[0][1] if plan.fonts else None,
        soundfonts=_font_records(plan.fonts),
        debian_packages=debian.package_versions(Path(debian_root), plan.packages),
        skipped=skipped,
    )
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return summary


def extend_corpus(
    folder: str | Path,
    hours: float,
    seed: int | None = None,
    sources: str | Iterable[str] = "all",
    workers: int = 1,
    debian_root: str | Path = "/",
    progress: bool = False,
    licences: str | Iterable[str] | None = None,
    focus: str | Iterable[str] = (),
) -> dict[str, Any]:
    """Grow the corpus in `folder` to about `hours` in all, leaving every clip it holds as it is.

    The old manifest lines stay first and unchanged and no old audio file is written; new clips are
    planned as in `build_corpus` with the old ones counted as what each category already has, take
    ids numbered after the old ones, and are split by the same rule. The corpus's sample rate and
    licence filter hold for the new clips (`licences` may only narrow the filter); `seed` defaults to
    the corpus's. corpus.json describes the whole corpus and lists each extension under "extensions",
    with `clips_before`: the manifest's first that many lines are the corpus as it was.
    """
    _check_common(hours, workers)
    folder = Path(folder)
    try:
        old = json.loads((folder / SUMMARY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorpusError(
            f"{folder} holds no readable {SUMMARY_NAME} ({exc})",
            "extend a folder made by `studio data build`",
        ) from None
    base = read_manifest(folder)
    had = sum(c.seconds for c in base)
    if hours * 3600 <= had:
        raise CorpusError(
            f"{folder} already holds {had / 3600:.2f} h; --hours is the size to grow it to",
            f"e.g. --hours {math.ceil(had / 3600 * 2)}",
        )
    corpus_allowed = parse_licences(old.get("licences", "any"))
    allowed = corpus_allowed if licences is None else parse_licences(licences)
    if corpus_allowed is not None and (allowed is None or not allowed <= corpus_allowed):
        raise CorpusError(
            f"{folder} keeps only {', '.join(sorted(corpus_allowed))}; --licences may not widen that",
            "leave --licences out to use the corpus's own filter",
        )
    seed = old.get("seed", 0) if seed is None else seed
    chosen, wanted, sample_rate = parse_sources(sources), parse_focus(focus), int(old["sample_rate"])
    plan = _plan(hours * 3600 - had, chosen, Path(debian_root), allowed, sample_rate, seed, wanted, base)
    clips, skipped = _render(plan, folder, seed, workers, progress)
    old_lines = (folder / MANIFEST_NAME).read_text(encoding="utf-8")
    new_lines = "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in clips)
    write_text_atomic(
        folder / MANIFEST_NAME, old_lines + ("\n" if old_lines and old_lines[-1] != "\n" else "") + new_lines
    )
    fonts = old.get("soundfonts", [])
    fonts += [f for f in _font_records(plan.fonts) if f["path"] not in {g["path"] for g in fonts}]
    extension = {
        "builder_version": BUILDER_VERSION,
        "seed": seed,
        "requested_hours": hours,
        "sources": list(chosen),
        "focus": {c or "other": w for c, w in wanted.items()},
        "clips_before": len(base),
        "clips_added": len(clips),
        "hours_added": round(sum(c.seconds for c in clips) / 3600, 4),
    }
    info = {k: v for k, v in old.items() if k in BUILD_FACTS}
    summary = summarise(
        [*base, *clips],
        **{
            **info,
            "soundfonts": fonts,
            "debian_packages": {
                **old.get("debian_packages", {}),
                **debian.package_versions(Path(debian_root), plan.packages),
            },
            "skipped": old.get("skipped", []) + [s for s in skipped if s not in old.get("skipped", [])],
            "extensions": [*old.get("extensions", []), extension],
        },
    )
    write_text_atomic(folder / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return summary
