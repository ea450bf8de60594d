"""Evaluation metrics as pure functions on embedding arrays ([items, dim] float arrays).

Definitions, with the reasons behind each choice, are in docs/eval.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.linalg import eigh


def ledoit_wolf_covariance(x: np.ndarray) -> np.ndarray:
    """Ledoit–Wolf shrinkage of the (1/n) sample covariance towards a scaled identity.

    With fewer samples than dimensions the sample covariance is singular and its eigenvalues are
    badly spread; the shrinkage intensity is estimated from the data (Ledoit & Wolf 2004, the same
    estimator as sklearn.covariance.ledoit_wolf), so large sets are barely shrunk and tiny sets
    become almost isotropic.
    """
    x = np.asarray(x, dtype=np.float64)
    n, p = x.shape
    centred = x - x.mean(axis=0)
    sample = centred.T @ centred / n
    mu = np.trace(sample) / p
    delta = np.sum((sample - mu * np.eye(p)) ** 2) / p
    squared = centred**2
    beta = (np.sum(squared.T @ squared) / n - np.sum(sample**2)) / (p * n)
    shrinkage = 0.0 if delta == 0 else min(beta, delta) / delta
    return (1 - shrinkage) * sample + shrinkage * mu * np.eye(p)


def needs_shrinkage(n_a: int, n_b: int, dim: int) -> bool:
    """The sample covariance of n <= dim points is singular: shrink it then."""
    return min(n_a, n_b) <= dim


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray, shrink: bool | None = None) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (the FAD formula):

        ‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^½)

    Tr((Σa Σb)^½) is computed as Tr((Σa^½ Σb Σa^½)^½), which has the same eigenvalues but is
    symmetric, so an eigendecomposition gives it without the complex round-off that sqrtm of the
    non-symmetric product leaves. `shrink` None: Ledoit–Wolf covariances when either set has no
    more points than dimensions, unbiased sample covariances otherwise.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two [items, dim] sets of one dim, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("a covariance needs at least two embeddings per set")
    if shrink is None:
        shrink = needs_shrinkage(len(a), len(b), a.shape[1])
    cov_a, cov_b = (
        (ledoit_wolf_covariance(a), ledoit_wolf_covariance(b))
        if shrink
        else (np.cov(a, rowvar=False), np.cov(b, rowvar=False))
    )
    root_a = _psd_sqrt(cov_a)
    cross = eigh(root_a @ cov_b @ root_a, eigvals_only=True)
    trace_cross = np.sqrt(np.clip(cross, 0, None)).sum()
    mean_term = np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2)
    return float(max(mean_term + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_cross, 0.0))


def gaussian_frechet_distance(
    mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """The closed form for two known Gaussians (what frechet_distance estimates from samples)."""
    root_a = _psd_sqrt(np.asarray(cov_a, dtype=np.float64))
    cross = eigh(root_a @ cov_b @ root_a, eigvals_only=True)
    mean_term = np.sum((np.asarray(mean_a) - np.asarray(mean_b)) ** 2)
    return float(mean_term + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(np.clip(cross, 0, None)).sum())


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)


def centroids(embeddings: np.ndarray, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Sorted label names and, per label, the mean of its unit-normalised embeddings."""
    names = sorted(set(labels))
    unit = normalise(embeddings)
    index = np.array([names.index(label) for label in labels])
    return names, np.stack([unit[index == i].mean(axis=0) for i in range(len(names))])


def nearest_centroid(
    reference: np.ndarray, reference_labels: Sequence[str], queries: np.ndarray
) -> list[str]:
    """Each query's label: the category whose reference centroid is closest in cosine similarity.

    Cosine rather than Euclidean, so a take that is quieter or louder than the reference clips is
    judged by what it sounds like rather than by its level.
    """
    names, centres = centroids(reference, reference_labels)
    scores = normalise(queries) @ normalise(centres).T
    return [names[i] for i in scores.argmax(axis=1)]


def centroid_accuracy(
    reference: np.ndarray, reference_labels: Sequence[str], queries: np.ndarray, query_labels: Sequence[str]
) -> float:
    """Top-1 accuracy of nearest-centroid classification of the queries."""
    predicted = nearest_centroid(reference, reference_labels, queries)
    return float(np.mean([p == q for p, q in zip(predicted, query_labels, strict=True)]))


def ccds(embeddings: np.ndarray) -> float:
    """Mean pairwise cosine distance, 1 − cos, over all pairs of the takes of one prompt (ARC's CCDS)."""
    unit = normalise(embeddings)
    n = len(unit)
    if n < 2:
        raise ValueError("CCDS needs at least two takes")
    upper = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - (unit @ unit.T)[upper]))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n, dim] x [m, dim] -> [n, m] cosine similarities."""
    return normalise(a) @ normalise(b).T


def recall_at_k(similarity: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Fraction of query rows with a relevant column among their k most similar columns.

    `relevant` [queries, keys] is boolean: np.eye(n) when each query has exactly one match; more
    than one True where several keys are equally right (two clips with the same caption).
    """
    similarity, relevant = np.asarray(similarity), np.asarray(relevant, dtype=bool)
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.take_along_axis(relevant, top, axis=1).any(axis=1)))


def leave_one_out_predictions(
    embeddings: np.ndarray, labels: Sequence[str], queries: np.ndarray | None = None
) -> list[str]:
    """Each item's nearest category centroid, the centroids built without that item.

    With `queries`, row i (a changed copy of item i, e.g. its autoencoder round trip) is classified
    in place of item i, still against centroids built without item i.
    """
    labels = list(labels)
    queries = embeddings if queries is None else np.asarray(queries)
    predicted = []
    for i in range(len(labels)):
        rest = [j for j in range(len(labels)) if j != i]
        predicted += nearest_centroid(embeddings[rest], [labels[j] for j in rest], queries[i : i + 1])
    return predicted


def leave_one_out_accuracy(
    embeddings: np.ndarray, labels: Sequence[str], queries: np.ndarray | None = None
) -> float:
    """Share of `leave_one_out_predictions` that are right: how well the embedding separates the
    categories of real clips, the ceiling a generated take can reach."""
    predicted = leave_one_out_predictions(embeddings, labels, queries)
    return float(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))


def accuracy_summary(labels: list[str], predicted: list[str]) -> dict[str, Any]:
    """Top-1 accuracy, chance, per-category accuracy and confusion counts (true -> assigned)."""
    pairs = list(zip(labels, predicted, strict=True))
    categories = list(dict.fromkeys(labels))
    confusion = {c: dict(Counter(p for t, p in pairs if t == c)) for c in categories}
    counts = Counter(labels)
    return {
        "top1": float(np.mean([t == p for t, p in pairs])),
        "chance": 1 / len(categories),
        "per_category": {c: confusion[c].get(c, 0) / counts[c] for c in categories},
        "confusion": confusion,
    }
