"""Build a captioned corpus: plan every clip, render the plan (in parallel), write the manifest.

Planning is cheap and happens in one process: it scans the Debian packages, decides which real clips
and augmentations fit the budget, designs every synthetic clip and writes its captions. Rendering is
the slow part and runs in worker processes; each clip's random numbers come from (seed, clip id), so
the number of workers never changes a byte of the result.

Budget: about half of `hours` goes to real recordings (each file once, then augmented copies; a
balanced subset across categories when there is more than half), the rest to GM renders and
procedural sounds, spread so every category ends up with about the same total time.
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
    split_for,
    stable_hash,
    write_manifest,
    write_text_atomic,
)

BUILDER_VERSION = "1.0"
GM, PROCEDURAL = GENERATED_SOURCES
ALL_SOURCES = (*DEBIAN_SOURCES, *GENERATED_SOURCES)
SOURCE_GROUPS = {"all": ALL_SOURCES, "debian": DEBIAN_SOURCES, "generated": GENERATED_SOURCES}
PROCEDURAL_LICENCE = "MIT"  # made by this project's code

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


def plan_real(files: list[debian.RealFile], budget: float, sample_rate: int, seed: int) -> list[Task]:
    """Every recording once (or a balanced subset when over budget), then augmented copies in rounds
    until the budget is spent or each has MAX_REAL_AUGMENTS copies."""
    originals = [
        _real_task(f, i, start, length, sample_rate, seed)
        for f in files
        for i, (start, length) in enumerate(_segments(f))
    ]
    if sum(t.clip.seconds for t in originals) > budget:
        return sorted(_balanced(originals, budget, seed), key=lambda t: t.clip.id)
    tasks, total = list(originals), sum(t.clip.seconds for t in originals)
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
            tasks.append(replace(task, clip=replace(task.clip, seconds=seconds)))
            total += seconds
    return tasks


# ---------------------------------------------------------------- planning: generated sounds


def water_fill(have: dict[str | None, float], budget: float) -> dict[str | None, float]:
    """Seconds to add per category so that the emptiest categories are topped up to a common level."""
    if budget <= 0 or not have:
        return dict.fromkeys(have, 0.0)
    levels = sorted(have.values())
    level = 0.0
    for i in range(len(levels)):
        below = levels[: i + 1]
        level = (budget + sum(below)) / len(below)
        if i + 1 == len(levels) or level <= levels[i + 1]:
            break
    return {c: max(0.0, level - s) for c, s in have.items()}


def _generated_task(generator: str, category: str | None, index: int, sample_rate: int, seed: int,
                    fonts: list[midi_render.SoundFont], engine: str | None) -> Task:  # fmt: skip
    source_file = f"{generator}/{category or 'other'}/{index:05d}"
    rng = _rng(seed, source_file)
    aug = augment.choose(category, rng, GENERATED_AUGMENTS) if rng.random() < GENERATED_AUGMENT_P else None
    if generator == PROCEDURAL:
        recipe = synth.design(category, rng)
        tags = ("procedural", recipe.kind)
        clip = _clip(source_file, PROCEDURAL, source_file, category, PROCEDURAL_LICENCE, recipe.description,
                     aug, tags, recipe.seconds, sample_rate, seed)  # fmt: skip
        return Task(clip, aug, recipe=recipe)
    font = fonts[0] if len(fonts) == 1 or rng.random() < 0.7 else fonts[1 + int(rng.integers(len(fonts) - 1))]
    piece = midi_render.compose(category, rng)
    clip = _clip(source_file, GM, source_file, category, font.licence, piece.description, aug,
                 (*piece.tags, font.name), piece.seconds, sample_rate, seed)  # fmt: skip
    return Task(clip, aug, midi=piece.midi, font=font.path, engine=engine)


def plan_generated(
    generators: dict[str, tuple[str | None, ...]],
    have: dict[str | None, float],
    budget: float,
    sample_rate: int,
    seed: int,
    fonts: list[midi_render.SoundFont],
    engine: str | None,
) -> list[Task]:
    """Generated clips that even out the categories; every (generator, category) gets at least one
    clip in each split, so the held-out splits cover every category the generators can make."""
    categories = list(dict.fromkeys(c for cats in generators.values() for c in cats))
    wanted = water_fill({c: have.get(c, 0.0) for c in categories}, budget)
    tasks = []
    for generator, cats in generators.items():
        for category in cats:
            share = wanted[category] / sum(category in g for g in generators.values())
            index, total, made = 0, 0.0, 0
            while made < len(SPLITS) or total < share:
                source_file = f"{generator}/{category or 'other'}/{index:05d}"
                index += 1
                if made < len(SPLITS) and split_for(source_file) != SPLITS[made]:
                    continue  # the first clips are picked so each split gets one
                task = _generated_task(generator, category, index - 1, sample_rate, seed, fonts, engine)
                tasks.append(task)
                total += task.clip.seconds
                made += 1
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


def _check_debian(packages: list[str], root: Path) -> None:
    missing = [p for p in packages if not debian.installed(root, p)]
    if missing:
        raise CorpusError(
            f"Debian package(s) not installed: {', '.join(missing)}",
            f"studio data setup (or sudo apt-get install -y {' '.join(missing)}), "
            "or leave them out of --sources",
        )


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
) -> dict[str, Any]:
    """Build a corpus of about `hours` into `out` and return its summary (also written as corpus.json).

    Same seed, sources and installed packages give a byte-identical manifest and identical audio,
    whatever `workers` is. `debian_root` is where the packages' files are looked for (tests point it
    at a fake tree). `licences` keeps only clips under those licences ("permissive", "any", or a list
    of SPDX ids): recordings and soundfonts outside it are not used at all.
    """
    if not 0 < hours <= 1000:
        raise CorpusError(f"--hours must be above 0 and at most 1000, got {hours}", "e.g. --hours 1")
    if not 8000 <= sample_rate <= 192000:
        raise CorpusError(f"sample rate {sample_rate} Hz is out of range", "use 44100 (or 16000-192000)")
    if workers < 1:
        raise CorpusError(f"--workers must be at least 1, got {workers}", "e.g. --workers 2")
    chosen = parse_sources(sources)
    root, out = Path(debian_root), Path(out)
    packages = [s for s in chosen if s in debian.DEBIAN_PACKAGES]
    _check_debian(packages, root)
    allowed = parse_licences(licences)
    fonts, engine = midi_render.check_gm_available() if GM in chosen else ([], None)
    if allowed is not None:
        fonts = [f for f in fonts if f.licence in allowed]
        if GM in chosen and not fonts:
            raise CorpusError(
                f"no GM soundfont here is under {', '.join(sorted(allowed))}",
                "install fluid-soundfont-gm (MIT), or leave gm-render out of --sources",
            )

    budget = hours * 3600
    files, skipped = debian.scan(packages, root)
    if allowed is not None:
        files = [f for f in files if f.licence in allowed]
    real = plan_real(files, budget * REAL_SHARE, sample_rate, seed) if files else []
    have: dict[str | None, float] = defaultdict(float)
    for task in real:
        have[task.clip.category] += task.clip.seconds
    generators = {
        g: cats
        for g, cats in ((GM, midi_render.GM_CATEGORIES), (PROCEDURAL, synth.PROCEDURAL_CATEGORIES))
        if g in chosen
    }
    left = budget - sum(t.clip.seconds for t in real)
    tasks = real + plan_generated(generators, have, left, sample_rate, seed, fonts, engine)

    _prepare(out)
    clips: list[Clip] = []
    for result in _render_all(tasks, out, seed, workers, progress):
        if isinstance(result, Clip):
            clips.append(result)
        else:
            skipped.append(result)
    write_manifest(out, clips)
    summary = summarise(
        clips,
        seed=seed,
        sample_rate=sample_rate,
        requested_hours=hours,
        sources=list(chosen),
        licences=sorted(allowed) if allowed is not None else "any",
        renderer=engine,
        soundfonts=[{"name": f.name, "path": f.path, "licence": f.licence} for f in fonts],
        debian_packages=debian.package_versions(root, packages),
        skipped=skipped,
    )
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return summary
