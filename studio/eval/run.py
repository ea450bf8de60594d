"""`studio eval`: generate takes for category prompts and score them against held-out clips.

Writes `<out>/<model>/eval.json`, `eval.md` and PNG plots (docs/eval.md says what every number
means). `studio eval adherence` runs only prompt-category accuracy and writes `adherence.json`;
`studio eval vae` only the VAE (`vae.json`); `studio eval voice` only the voice measures
(`voice.json`).
"""

from __future__ import annotations

import importlib.metadata
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
from studio.eval.corpus import CATEGORY_PROMPTS, HELD_OUT, by_category, held_out_by_category
from studio.eval.embeddings import AisfxEmbedder
from studio.eval.report import write_report
from studio.eval.scoring import ceilings, diversity_curve, score_accuracy, score_setting
from studio.eval.takes import (
    QUICK_SWEEP,
    SWEEP,
    Generator,
    Reference,
    SamplerSetting,
    default_setting,
    flatten,
)
from studio.eval.vae import autoencoder_kind, vae_markdown, vae_report
from studio.eval.voice import VoicePlan, voice_markdown, voice_report, voice_sections
from studio.models.registry import model_label

Say = Callable[[str], None]
DIVERSITIES = (0.0, 0.25, 0.5, 0.75, 1.0)
QUICK_DIVERSITIES = (0.0, 0.5, 1.0)
TAKES, QUICK_TAKES = 4, 2


@dataclass(frozen=True)
class EvalConfig:
    model: str | None
    corpus: Path
    out: Path = Path("reports")
    clap: Path | None = None  # default: <corpus>/clap, where `studio train clap` puts it
    quick: bool = False
    device: str | None = None
    dtype: str | None = None  # the denoiser's; default: the device's (precision.pick_dtype)
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


def _check_takes(config: EvalConfig) -> None:
    if config.take_count < 2:
        raise StudioError("evaluation needs at least 2 takes per prompt", "use --takes 2 or more")


def _held_out(config: EvalConfig) -> dict[str, list[Clip]]:
    """The reference clips, checked before any model is loaded so a bad corpus fails at once."""
    _check_takes(config)
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


def _about(config: EvalConfig, engine: Engine) -> dict:
    """What every report says first: the model, where and how it ran, when."""
    return {
        "model": model_label(engine.model_name),
        "model_path": str(engine.model_path),
        "device": str(engine.device),
        "dtype": str(engine.dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),  # latencies depend on it (OMP_NUM_THREADS)
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": config.quick,
    }


def _header(
    config: EvalConfig, engine: Engine, generator: Generator, held_out: dict[str, list[Clip]]
) -> dict:
    return {
        **_about(config, engine),
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
            "default_sampler": default_setting(engine).label,
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
    with Engine(config.model, device=config.device, dtype=config.dtype) as engine:
        generator = _generator(config, engine, held_out)
        say(f"embedding {sum(len(v) for v in held_out.values())} held-out clips")
        reference = Reference.build(held_out, embedder)
        prompt_embeddings = dict(
            zip(generator.prompts, clap.embed_text(list(generator.prompts.values())), strict=True)
        )
        main = default_setting(engine)
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
        say("what a musician hears first: variety, pitch, tempo, decay, DC and rumble")
        voice = voice_report(engine, _voice_plan(config), _every_held_out(config.corpus), say)
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
    report["voice"] = voice
    report["elapsed_s"] = time.perf_counter() - start
    folder = config.out / report["model"]
    files = write_report(report, folder, voice_sections(voice, "###"))
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
    with Engine(config.model, device=config.device, dtype=config.dtype) as engine:
        generator = _generator(config, engine, held_out)
        reference = Reference.build(held_out, embedder)
        main = default_setting(engine)
        say(f"generating {generator.takes} takes x {len(held_out)} prompts at {main.label}")
        clips, labels = flatten(generator.run(main, 1.0))
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


def _voice_plan(config: EvalConfig) -> VoicePlan:
    return VoicePlan.for_run(config.take_count, config.seed, config.cfg, config.quick)


def _every_held_out(corpus: Path) -> dict[str, list[Clip]]:
    """The held-out clips of every category the corpus has them for."""
    return by_category(read_manifest(corpus, HELD_OUT))


def run_voice(config: EvalConfig, say: Say = lambda _: None) -> EvalResult:
    """Only what a musician hears first (voice.py): variety between takes, the note and the tempo a
    prompt names, the decay of one-shots, DC and rumble; writes voice.json and voice.md."""
    start = time.perf_counter()
    _check_takes(config)
    held_out = _every_held_out(config.corpus)
    with Engine(config.model, device=config.device, dtype=config.dtype) as engine:
        measured = voice_report(engine, _voice_plan(config), held_out, say)
        report = _about(config, engine)
    report["corpus"] = {"path": str(config.corpus), "split": HELD_OUT}
    report |= measured
    report["elapsed_s"] = time.perf_counter() - start
    folder = config.out / report["model"]
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "voice.json", folder / "voice.md"]
    files[0].write_text(json.dumps(report, indent=2) + "\n")
    files[1].write_text(voice_markdown(report))
    return EvalResult(folder, report, files)


def run_vae(config: EvalConfig, say: Say = lambda _: None) -> EvalResult:
    """Only the model's VAE (vae.py): its round trips of the held-out clips and of synthetic
    probes, scored for category, distance, pitch, tonal lines, DC and rumble, and its decode time;
    writes vae.json and vae.md. Minutes, no generation: a check before a DiT is trained over it."""
    start = time.perf_counter()
    held_out = _held_out(config)
    embedder = AisfxEmbedder(cache_dir=config.cache_dir or _user_cache())
    reference = Reference.build(held_out, embedder)
    with Engine(config.model, device=config.device, dtype=config.dtype) as engine:
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
