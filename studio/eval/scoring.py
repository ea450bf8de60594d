"""Scores of generated takes against the held-out reference: category accuracy and FAD per sampler
setting, the round-trip ceilings, and diversity (CCDS) against the diversity knob."""

from __future__ import annotations

import itertools
import statistics
from typing import Any

import numpy as np

from studio.engine import Engine
from studio.eval.clap import ClapModel
from studio.eval.embeddings import AisfxEmbedder
from studio.eval.metrics import (
    accuracy_summary,
    ccds,
    frechet_distance,
    leave_one_out_accuracy,
    nearest_centroid,
    needs_shrinkage,
)
from studio.eval.takes import Generator, Reference, SamplerSetting, Takes, flatten
from studio.eval.vae import autoencoder_round_trips


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
    clips, label_list = flatten(takes)
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
            clips, labels = flatten(generator.run(setting, knob))
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
