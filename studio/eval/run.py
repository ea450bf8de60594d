"""`studio eval`: generate takes for category prompts and score them against held-out clips.

Writes `<out>/<model>/eval.json`, `eval.md` and PNG plots (docs/eval.md says what every number
means). `studio eval adherence` runs only prompt-category accuracy and writes `adherence.json`.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.audio import read_audio
from studio.data.manifest import CORE_CATEGORIES, Clip, read_manifest
from studio.engine import Engine
from studio.errors import StudioError
from studio.eval.clap import ClapModel, retrieval_report
from studio.eval.corpus import CATEGORY_PROMPTS, HELD_OUT, held_out_by_category
from studio.eval.embeddings import AisfxEmbedder
from studio.eval.metrics import (
    accuracy_summary,
    ccds,
    frechet_distance,
    leave_one_out_accuracy,
    nearest_centroid,
    needs_shrinkage,
)
from studio.eval.vae import autoencoder_kind, autoencoder_round_trips, vae_markdown, vae_report
from studio.models.registry import model_label
from studio.request import Request

Say = Callable[[str], None]
DIVERSITIES = (0.0, 0.25, 0.5, 0.75, 1.0)
QUICK_DIVERSITIES = (0.0, 0.5, 1.0)
TAKES, QUICK_TAKES = 4, 2


@dataclass(frozen=True)
class SamplerSetting:
    sampler: str
    steps: int

    @property
    def label(self) -> str:
        return f"{self.sampler}-{self.steps}"


# Each model is swept over the settings of the samplers it runs: ping-pong and Euler for diffusion
# models, decoding iterations for MAR models.
SWEEP = (
    SamplerSetting("pingpong", 1),
    SamplerSetting("pingpong", 2),
    SamplerSetting("pingpong", 4),
    SamplerSetting("pingpong", 8),
    SamplerSetting("euler", 8),
    SamplerSetting("euler", 50),
    SamplerSetting("mar", 1),
    SamplerSetting("mar", 4),
    SamplerSetting("mar", 8),
    SamplerSetting("mar", 16),
)
# Every sampler, the fewest and the default steps: enough to run every code path.
QUICK_SWEEP = (
    SamplerSetting("pingpong", 1),
    SamplerSetting("pingpong", 8),
    SamplerSetting("euler", 8),
    SamplerSetting("mar", 1),
    SamplerSetting("mar", 8),
)


@dataclass(frozen=True)
class EvalConfig:
    model: str | None
    corpus: Path
    out: Path = Path("reports")
    clap: Path | None = None  # default: <corpus>/clap, where `studio train clap` puts it
    quick: bool = False
    device: str | None = None
    seed: int = 0
    cfg: float | None = None  # guidance of every take; None: the model's default_cfg (1 for ARC models)
    takes: int | None = None  # per prompt; default 4, quick 2
    # Default: the twelve core categories; quick: whichever categories have held-out clips.
    categories: tuple[str, ...] | None = None
    # Other phrasings of category prompts (category -> prompt); the rest keep CATEGORY_PROMPTS.
    prompts: dict[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None  # aisfx embeddings of corpus files; default: the user cache folder

    @property
    def take_count(self) -> int:
        return self.takes if self.takes is not None else (QUICK_TAKES if self.quick else TAKES)

    @property
    def sweep(self) -> tuple[SamplerSetting, ...]:
        return QUICK_SWEEP if self.quick else SWEEP

    @property
    def diversities(self) -> tuple[float, ...]:
        return QUICK_DIVERSITIES if self.quick else DIVERSITIES

    @property
    def wanted_categories(self) -> tuple[str, ...] | None:
        if self.categories is not None:
            return self.categories
        return None if self.quick else CORE_CATEGORIES


@dataclass
class EvalResult:
    folder: Path
    report: dict[str, Any]
    files: list[Path] = field(default_factory=list)


def default_clap_dir(corpus: Path) -> Path:
    return Path(corpus) / "clap"


def _user_cache() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path("studio") / "aisfx"


# -- held-out reference ----------------------------------------------------------------------------


@dataclass
class Reference:
    """The held-out clips of the evaluated categories, embedded once."""

    clips: list[Clip]  # category order then manifest order
    aisfx: np.ndarray  # [clips, 512]
    labels: list[str]

    @classmethod
    def build(cls, clips: dict[str, list[Clip]], embedder: AisfxEmbedder) -> Reference:
        ordered = [clip for group in clips.values() for clip in group]
        return cls(ordered, embedder.embed_files([c.file for c in ordered]), [c.category for c in ordered])

    def of(self, category: str) -> np.ndarray:
        return self.aisfx[np.array(self.labels) == category]


def ceilings(engine: Engine, reference: Reference, embedder: AisfxEmbedder) -> dict:
    """Category accuracy of the real held-out clips and of their VAE round trips (leave-one-out)."""
    rate = engine.config.sample_rate
    round_trips = embedder.embed(
        [(trip, rate) for _, trip in autoencoder_round_trips(engine, reference.clips)]
    )
    return {
        "held_out_leave_one_out": leave_one_out_accuracy(reference.aisfx, reference.labels),
        "vae_round_trip_leave_one_out": leave_one_out_accuracy(
            reference.aisfx, reference.labels, round_trips
        ),
    }


# -- generation ----------------------------------------------------------------------------------


@dataclass
class Takes:
    audio: list[np.ndarray]  # [channels, frames] per take
    rate: int
    elapsed_s: float  # the batch that made them
    seconds: float


class Generator:
    """Takes for every category prompt, one batch per prompt, with fixed per-prompt seeds so every
    sampler setting and diversity starts from the same noise."""

    def __init__(
        self,
        engine: Engine,
        prompts: dict[str, str],
        seconds: dict[str, float],
        takes: int,
        seed: int,
        cfg: float,
    ):
        self.engine, self.prompts, self.seconds, self.takes = engine, prompts, seconds, takes
        self.seed, self.cfg = seed, cfg

    def run(self, setting: SamplerSetting, diversity: float) -> dict[str, Takes]:
        out = {}
        for index, (category, prompt) in enumerate(self.prompts.items()):
            result = self.engine.generate(
                Request(
                    prompt,
                    seconds=self.seconds[category],
                    steps=setting.steps,
                    cfg=self.cfg,
                    sampler=setting.sampler,
                    seed=self.seed + 1000 * index,
                    variations=self.takes,
                    diversity=diversity,
                )
            )
            out[category] = Takes(
                [t.audio for t in result.takes],
                result.takes[0].sample_rate,
                result.elapsed_s,
                self.seconds[category],
            )
        return out


# -- scoring -------------------------------------------------------------------------------------


def _flatten(takes: dict[str, Takes]) -> tuple[list[tuple[np.ndarray, int]], list[str]]:
    clips = [(audio, t.rate) for t in takes.values() for audio in t.audio]
    labels = [category for category, t in takes.items() for _ in t.audio]
    return clips, labels


def _fad(takes: np.ndarray, reference: np.ndarray) -> float | None:
    """None where the held-out side has a single clip: a covariance needs two."""
    return frechet_distance(takes, reference) if len(reference) >= 2 and len(takes) >= 2 else None


def score_accuracy(embeddings: np.ndarray, labels: list[str], reference: Reference) -> dict[str, Any]:
    """Prompt-category accuracy: each take (aisfx embedding, prompt category) classified by its
    nearest held-out category centroid."""
    return accuracy_summary(labels, nearest_centroid(reference.aisfx, reference.labels, embeddings))


def score_setting(
    takes: dict[str, Takes],
    reference: Reference,
    embedder: AisfxEmbedder,
    clap: ClapModel,
    prompt_embeddings: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Every metric for one sampler setting's takes (at diversity 1), with per-category detail."""
    clips, label_list = _flatten(takes)
    labels = np.array(label_list)
    embeddings = embedder.embed(clips)
    clap_audio = clap.embed_audio(clips)
    adherence = np.array([clap_audio[i] @ prompt_embeddings[c] for i, c in enumerate(labels)])
    diversity = {c: ccds(clap_audio[labels == c]) for c in takes}
    elapsed = [t.elapsed_s for t in takes.values()]
    audio_seconds = sum(t.seconds * len(t.audio) for t in takes.values())
    return {
        "fad": {
            "overall": frechet_distance(embeddings, reference.aisfx),
            "per_category": {c: _fad(embeddings[labels == c], reference.of(c)) for c in takes},
            "covariance": _covariance_note(embeddings, reference),
        },
        "category_accuracy": score_accuracy(embeddings, label_list, reference),
        "adherence": {
            "mean": float(adherence.mean()),
            "per_category": {c: float(adherence[labels == c].mean()) for c in takes},
        },
        "ccds": {"mean": float(np.mean(list(diversity.values()))), "per_category": diversity},
        "latency": {
            "batch_size": len(labels) // len(takes),
            "batch_s": {"median": statistics.median(elapsed), "min": min(elapsed), "max": max(elapsed)},
            "per_take_s": sum(elapsed) / len(labels),
            "rtf": audio_seconds / sum(elapsed),
        },
    }


def _covariance_note(takes: np.ndarray, reference: Reference) -> str:
    shrunk = needs_shrinkage(len(takes), len(reference.aisfx), takes.shape[1])
    return "ledoit-wolf (fewer embeddings than dimensions)" if shrunk else "sample"


def diversity_curve(
    generator: Generator,
    setting: SamplerSetting,
    knobs: tuple[float, ...],
    clap: ClapModel,
    at_full: dict[str, float],
) -> dict[str, Any]:
    """CCDS (mean over prompts) at each diversity knob value. `at_full`: the per-prompt CCDS already
    measured at knob 1 with these seeds (the sweep's row for this setting), reused, not regenerated."""
    values, per_category = [], []
    for knob in knobs:
        if knob == 1.0:
            scores = at_full
        else:
            clips, labels = _flatten(generator.run(setting, knob))
            embeddings, labels_array = clap.embed_audio(clips), np.array(labels)
            scores = {c: ccds(embeddings[labels_array == c]) for c in generator.prompts}
        per_category.append(scores)
        values.append(float(np.mean(list(scores.values()))))
    rises = all(b >= a for a, b in itertools.pairwise(values)) and values[-1] > values[0]
    return {
        "setting": setting.label,
        "knob": list(knobs),
        "ccds": values,
        "per_category": per_category,
        "rises": rises,
    }


# -- orchestration -------------------------------------------------------------------------------


def _held_out(config: EvalConfig) -> dict[str, list[Clip]]:
    """The reference clips, checked before any model is loaded so a bad corpus fails at once."""
    if config.take_count < 2:
        raise StudioError("evaluation needs at least 2 takes per prompt", "use --takes 2 or more")
    held_out = held_out_by_category(config.corpus, config.wanted_categories)
    unknown = sorted(set(config.prompts) - set(held_out))
    if unknown:
        raise StudioError(
            f"--prompt names {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not "
            "among the categories evaluated",
            f"use one of {', '.join(held_out)}",
        )
    return held_out


def _generator(config: EvalConfig, engine: Engine, held_out: dict[str, list[Clip]]) -> Generator:
    prompts = {c: config.prompts.get(c, CATEGORY_PROMPTS.get(c, c)) for c in held_out}
    seconds = {
        c: min(engine.config.max_seconds, statistics.median(clip.seconds for clip in clips))
        for c, clips in held_out.items()
    }
    cfg = engine.config.guidance(config.cfg)
    return Generator(engine, prompts, seconds, config.take_count, config.seed, cfg)


def _main_setting(engine: Engine) -> SamplerSetting:
    return SamplerSetting(engine.default_sampler, engine.default_steps(engine.default_sampler))


def _header(
    config: EvalConfig, engine: Engine, generator: Generator, held_out: dict[str, list[Clip]]
) -> dict:
    return {
        "model": model_label(engine.model_name),
        "model_path": str(engine.model_path),
        "device": str(engine.device),
        "dtype": str(engine.dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),  # latencies depend on it (OMP_NUM_THREADS)
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": config.quick,
        "corpus": {
            "path": str(config.corpus),
            "split": HELD_OUT,
            "clips_per_category": {c: len(v) for c, v in held_out.items()},
        },
        "embedding": {
            "name": "aisfx",
            "version": importlib.metadata.version("aisfx"),
            "dim": 512,
            "front_end": "numpy reimplementation of its Essentia mel front-end (studio/eval/embeddings.py)",
        },
        "settings": {
            "takes_per_prompt": generator.takes,
            "seed": config.seed,
            "cfg": generator.cfg,
            "default_sampler": _main_setting(engine).label,
            "prompts": generator.prompts,
            "seconds": generator.seconds,
        },
    }


def _reference_adherence(
    clap: ClapModel, held_out: dict[str, list[Clip]], prompts: dict[str, np.ndarray]
) -> float:
    """Adherence of the real held-out clips to their category prompt: what real recordings score."""
    seconds = clap.config.clip_seconds + 0.1
    scores = []
    for category, clips in held_out.items():
        embeddings = clap.embed_audio([read_audio(c.file, max_seconds=seconds) for c in clips])
        scores.extend(embeddings @ prompts[category])
    return float(np.mean(scores))


def run_eval(config: EvalConfig, say: Say = lambda _: None) -> EvalResult:
    start = time.perf_counter()
    held_out = _held_out(config)
    clap = ClapModel.load(config.clap or default_clap_dir(config.corpus))
    embedder = AisfxEmbedder(cache_dir=config.cache_dir or _user_cache())
    with Engine(config.model, device=config.device) as engine:
        generator = _generator(config, engine, held_out)
        say(f"embedding {sum(len(v) for v in held_out.values())} held-out clips")
        reference = Reference.build(held_out, embedder)
        prompt_embeddings = dict(
            zip(generator.prompts, clap.embed_text(list(generator.prompts.values())), strict=True)
        )
        main = _main_setting(engine)
        settings = [s for s in config.sweep if s.sampler in engine.samplers]
        if main not in settings:
            settings.append(main)
        sweep = []
        for setting in settings:
            say(f"{setting.label}: {generator.takes} takes x {len(held_out)} prompts, generating and scoring")
            scores = score_setting(generator.run(setting, 1.0), reference, embedder, clap, prompt_embeddings)
            sweep.append({"sampler": setting.sampler, "steps": setting.steps, **scores})
        chosen = next(s for s in sweep if (s["sampler"], s["steps"]) == (main.sampler, main.steps))
        say(f"diversity curve at {main.label}: knob {', '.join(map(str, config.diversities))}")
        diversity = diversity_curve(generator, main, config.diversities, clap, chosen["ccds"]["per_category"])
        say("held-out clips through the VAE and back: the ceiling the generator works under")
        limits = ceilings(engine, reference, embedder)
        report = _header(config, engine, generator, held_out)
    say("scoring the contrastive model on the held-out split")
    report["fad"] = chosen["fad"]
    report["category_accuracy"] = {**chosen["category_accuracy"], **limits}
    report["adherence"] = {
        **chosen["adherence"],
        "held_out_clips": _reference_adherence(clap, held_out, prompt_embeddings),
    }
    report["ccds"] = chosen["ccds"]
    report["diversity"] = diversity
    report["clap"] = {
        "folder": str(config.clap or default_clap_dir(config.corpus)),
        "held_out": retrieval_report(clap, read_manifest(config.corpus, HELD_OUT)),
    }
    report["sweep"] = [_compact(s) for s in sweep]
    report["elapsed_s"] = time.perf_counter() - start
    folder = config.out / report["model"]
    files = write_report(report, folder)
    return EvalResult(folder, report, files)


def _compact(entry: dict[str, Any]) -> dict[str, Any]:
    """A sweep row: the headline numbers of each metric and the latency."""
    return {
        "sampler": entry["sampler"],
        "steps": entry["steps"],
        "fad": entry["fad"]["overall"],
        "category_accuracy": entry["category_accuracy"]["top1"],
        "adherence": entry["adherence"]["mean"],
        "ccds": entry["ccds"]["mean"],
        "latency": entry["latency"],
    }


def run_adherence(config: EvalConfig, say: Say = lambda _: None) -> EvalResult:
    """Only prompt-category accuracy, at the model's default sampler; writes adherence.json."""
    start = time.perf_counter()
    held_out = _held_out(config)
    embedder = AisfxEmbedder(cache_dir=config.cache_dir or _user_cache())
    with Engine(config.model, device=config.device) as engine:
        generator = _generator(config, engine, held_out)
        reference = Reference.build(held_out, embedder)
        main = _main_setting(engine)
        say(f"generating {generator.takes} takes x {len(held_out)} prompts at {main.label}")
        clips, labels = _flatten(generator.run(main, 1.0))
        accuracy = score_accuracy(embedder.embed(clips), labels, reference)
        limits = ceilings(engine, reference, embedder)
        report = _header(config, engine, generator, held_out)
    report["category_accuracy"] = {**accuracy, **limits}
    report["elapsed_s"] = time.perf_counter() - start
    folder = config.out / report["model"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "adherence.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return EvalResult(folder, report, [path])


def run_vae(config: EvalConfig, say: Say = lambda _: None) -> EvalResult:
    """Only the model's VAE (vae.py): its round trips of the held-out clips and of synthetic
    probes, scored for category, distance, pitch, tonal lines, DC and rumble, and its decode time;
    writes vae.json and vae.md. Minutes, no generation: a check before a DiT is trained over it."""
    start = time.perf_counter()
    held_out = _held_out(config)
    embedder = AisfxEmbedder(cache_dir=config.cache_dir or _user_cache())
    reference = Reference.build(held_out, embedder)
    with Engine(config.model, device=config.device) as engine:
        name, model_path, kind = (
            model_label(engine.model_name),
            engine.model_path,
            autoencoder_kind(engine.config),
        )
        measured = vae_report(engine, reference.clips, reference.aisfx, embedder.embed, say)
    report = {
        "model": name,
        "model_path": str(model_path),
        "autoencoder": kind,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "corpus": {
            "path": str(config.corpus),
            "split": HELD_OUT,
            "clips_per_category": {c: len(clips) for c, clips in held_out.items()},
        },
        **measured,
        "elapsed_s": time.perf_counter() - start,
    }
    folder = config.out / name
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "vae.json", folder / "vae.md"]
    files[0].write_text(json.dumps(report, indent=2) + "\n")
    files[1].write_text(vae_markdown(report))
    return EvalResult(folder, report, files)


# -- report files --------------------------------------------------------------------------------


def write_report(report: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "eval.json", folder / "eval.md"]
    files[0].write_text(json.dumps(report, indent=2) + "\n")
    files += _plots(report, folder)
    files[1].write_text(markdown(report, [p.name for p in files[2:]]))
    return files


def _num(value: float | None, digits: int = 3) -> str:
    # + 0.0 turns a rounded -0.0 (CCDS of identical takes, cosine round-off) into 0.0
    return "–" if value is None else f"{round(value, digits) + 0.0:.{digits}f}"


def markdown(report: dict[str, Any], images: list[str]) -> str:
    s, fad, acc, adh = report["settings"], report["fad"], report["category_accuracy"], report["adherence"]
    clap = report["clap"]["held_out"]
    lines = [
        f"# Evaluation: {report['model']}",
        "",
        f"{report['date']} on {report['device']} ({report['dtype']}, {report['torch_threads']} torch "
        f"threads){', quick' if report['quick'] else ''}. "
        f"{s['takes_per_prompt']} takes per prompt, seed {s['seed']}, cfg {s['cfg']}; held-out clips from "
        f"`{report['corpus']['path']}` (split `{report['corpus']['split']}`). Metrics: docs/eval.md.",
        "",
        f"## Summary ({s['default_sampler']})",
        "",
        "| metric | value | for comparison |",
        "| --- | --- | --- |",
        f"| FAD, aisfx (overall) | {_num(fad['overall'])} | lower is better; covariance "
        f"{fad['covariance']} |",
        f"| prompt-category accuracy (top-1) | {_num(acc['top1'])} | chance {_num(acc['chance'])}; "
        f"held-out clips, leave-one-out {_num(acc['held_out_leave_one_out'])}; their VAE round trips "
        f"{_num(acc['vae_round_trip_leave_one_out'])} |",
        f"| prompt adherence (CLAP cosine) | {_num(adh['mean'])} | held-out clips "
        f"{_num(adh['held_out_clips'])} |",
        f"| CCDS at diversity 1 | {_num(report['ccds']['mean'])} | 0 = identical takes |",
        f"| CLAP held-out text→audio R@1 / R@5 | {_num(clap['text_to_audio_r1'], 2)} / "
        f"{_num(clap['text_to_audio_r5'], 2)} | chance {_num(clap['chance_r1'])} / "
        f"{_num(clap['chance_r5'])} |",
        f"| CLAP held-out zero-shot category accuracy | {_num(clap['zero_shot_category_accuracy'], 2)} | "
        f"chance {_num(clap['chance_category'])} ({int(clap['categories'])} categories) |",
        "",
        "## Per category",
        "",
        "| category | prompt | seconds | held-out clips | FAD | accuracy | adherence | CCDS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, prompt in s["prompts"].items():
        lines.append(
            f"| {c} | {prompt} | {s['seconds'][c]:.2f} | {report['corpus']['clips_per_category'][c]} | "
            f"{_num(fad['per_category'][c])} | {_num(acc['per_category'][c], 2)} | "
            f"{_num(adh['per_category'][c])} | {_num(report['ccds']['per_category'][c])} |"
        )
    lines += [
        "",
        "## Sampler sweep",
        "",
        "| sampler | steps | FAD | accuracy | adherence | CCDS | batch s, median (min–max) | s/take | RTF |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["sweep"]:
        batch = row["latency"]["batch_s"]
        lines.append(
            f"| {row['sampler']} | {row['steps']} | {_num(row['fad'])} | "
            f"{_num(row['category_accuracy'], 2)} | {_num(row['adherence'])} | {_num(row['ccds'])} | "
            f"{batch['median']:.3f} "
            f"({batch['min']:.3f}–{batch['max']:.3f}) | {row['latency']['per_take_s']:.3f} | "
            f"{row['latency']['rtf']:.1f} |"
        )
    d = report["diversity"]
    lines += [
        "",
        f"## Diversity knob ({d['setting']})",
        "",
        "| diversity | CCDS |",
        "| --- | --- |",
        *(f"| {k} | {_num(v)} |" for k, v in zip(d["knob"], d["ccds"], strict=True)),
        "",
        f"CCDS {'rises' if d['rises'] else 'does NOT rise'} with the knob.",
        "",
        *(f"![{name}]({name})" for name in images),
        "",
    ]
    return "\n".join(lines)


def pyplot() -> Any:
    """matplotlib.pyplot drawing to files only, or an error saying how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise StudioError("the evaluation plots need matplotlib", "pip install matplotlib") from exc
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _plots(report: dict[str, Any], folder: Path) -> list[Path]:
    plt = pyplot()
    paths = []
    d = report["diversity"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(d["knob"], d["ccds"], marker="o")
    ax.set(xlabel="diversity knob", ylabel="CCDS (CLAP audio space)", title=f"Diversity ({d['setting']})")
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, folder / "diversity.png"))

    sweep = report["sweep"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    metrics = [
        ("fad", "FAD (lower is better)"),
        ("category_accuracy", "prompt-category accuracy"),
        ("adherence", "prompt adherence"),
        ("ccds", "CCDS at diversity 1"),
    ]
    for ax, (key, title) in zip(axes.flat, metrics, strict=True):
        x = [row["latency"]["per_take_s"] for row in sweep]
        ax.scatter(x, [row[key] for row in sweep])
        for row, xi in zip(sweep, x, strict=True):
            ax.annotate(f"{row['sampler']}-{row['steps']}", (xi, row[key]), fontsize=7)
        ax.set(xlabel="seconds per take", title=title)
        plain_log_axis(ax.xaxis)
        ax.grid(alpha=0.3)
    fig.suptitle("Sampler sweep")
    paths.append(save_figure(fig, folder / "sweep.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for sampler in dict.fromkeys(row["sampler"] for row in sweep):
        rows = [row for row in sweep if row["sampler"] == sampler]
        seconds = [r["latency"]["per_take_s"] for r in rows]
        ax.plot([r["steps"] for r in rows], seconds, marker="o", label=sampler)
    ax.set(xlabel="steps (MAR: decoding iterations)", ylabel="seconds per take")
    plain_log_axis(ax.xaxis, sorted({row["steps"] for row in sweep}))
    ax.set_title("Latency")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, folder / "latency.png"))

    categories = list(report["settings"]["prompts"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 0.6 * len(categories)), 6), sharex=True)
    top.bar(categories, [report["fad"]["per_category"][c] or 0 for c in categories])
    top.set(ylabel="FAD", title=f"Per category ({report['settings']['default_sampler']})")
    bottom.bar(categories, [report["category_accuracy"]["per_category"][c] for c in categories])
    bottom.axhline(report["category_accuracy"]["chance"], color="grey", linestyle="--", label="chance")
    bottom.set(ylabel="accuracy", ylim=(0, 1))
    bottom.legend()
    bottom.tick_params(axis="x", rotation=45)
    paths.append(save_figure(fig, folder / "categories.png"))
    return paths


def plain_log_axis(axis: Any, ticks: list[float] | None = None) -> None:
    """A log axis labelled 0.5, 1, 2 rather than 5×10⁻¹ (sweeps span a decade or two); `ticks`:
    label exactly these values and nothing else."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.axes.set(**{f"{axis.axis_name}scale": "log"})
    label = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(label)
    if ticks:
        axis.set_ticks(ticks)
        axis.set_minor_formatter(NullFormatter())
    else:
        axis.set_minor_formatter(label)
        axis.set_tick_params(which="minor", labelsize=7)


def save_figure(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
