"""Paired embeddings: loading real feature files, synthetic data with a
realistic modality gap, and the mixed-modality split used by the demo and the
evaluation harness.

A *paired* array has shape ``(2, N, D)``: row ``i`` of ``[0]`` (e.g. an image)
matches row ``i`` of ``[1]`` (e.g. its caption), as in the feature files of
Liang et al., "Mind the Gap" (NeurIPS 2022).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SimstdError
from .validation import as_embeddings, load_npy


def load_pairs(path: str | Path, second: str | Path | None = None) -> np.ndarray:
    """Load a ``(2, N, D)`` ``.npy`` file, or two aligned ``(N, D)`` files."""
    if second is not None:
        a, b = load_npy(path), load_npy(second)
        if a.ndim != 2 or a.shape != b.shape:
            raise SimstdError(
                f"{path} {a.shape} and {second} {b.shape} must be aligned (N, D) arrays, row i paired with row i"
            )
        arr = np.stack([a, b])
    else:
        arr = load_npy(path)
    if arr.ndim != 3 or arr.shape[0] != 2 or arr.shape[1] < 2:
        raise SimstdError(
            f"{path} has shape {arr.shape}; paired embeddings must have shape (2, N, D) with N >= 2, "
            "[0] one modality and [1] the other, row i paired"
        )
    return np.stack([as_embeddings(arr[0], f"{path}[0]"), as_embeddings(arr[1], f"{path}[1]")])


def synthetic_pairs(
    n: int = 1000,
    dim: int = 512,
    *,
    n_topics: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """Paired embeddings with CLIP's modality gap, from a seeded generator.

    Each modality is a cone around its own offset direction; the two offsets
    are correlated; a shared semantic vector (topic plus item detail) ties a
    pair together. The constants reproduce what CLIP ViT-B/16 shows on COCO:
    mean cosine about 0.52 within a modality, 0.16 across modalities and 0.31
    for a matching pair, so raw cosine ranks every same-modality item above
    almost every cross-modal one. :func:`topical_pairs` also returns the
    topics (and can add subtopics).
    """
    return topical_pairs(n, dim, n_topics=n_topics, seed=seed).pairs


@dataclass
class TopicalPairs:
    """Synthetic pairs with their topic and subtopic labels (``subtopic`` is unique across topics)."""

    pairs: np.ndarray
    topic: np.ndarray
    subtopic: np.ndarray


def topical_pairs(
    n: int = 1000,
    dim: int = 512,
    *,
    n_topics: int = 20,
    n_subtopics: int = 0,
    seed: int = 0,
) -> TopicalPairs:
    """:func:`synthetic_pairs` with labels; ``n_subtopics`` > 0 splits every topic into subtopics.

    With subtopics the topic's share of the semantic vector is split in half
    between the topic direction and a subtopic direction, so pairs of one
    subtopic are closer than pairs of one topic (the mean cosines stay those
    of CLIP). ``n_subtopics=0`` gives exactly :func:`synthetic_pairs`' arrays;
    its ``subtopic`` labels then equal the topics. The universal protocol uses
    "same subtopic" as relevance, in either modality.
    """
    if n_subtopics < 0 or n_topics < 1:
        raise SimstdError(f"need n_topics >= 1 and n_subtopics >= 0, got {n_topics} and {n_subtopics}")
    rng = np.random.default_rng(seed)
    unit = lambda *shape: rng.standard_normal((*shape, dim)) / np.sqrt(dim)  # noqa: E731  ~unit norm
    # Shares of the squared norm (they sum to 1), solved so that the mean
    # cosines match CLIP: same modality 0.52, across 0.16, matching pair 0.31,
    # with a within-modality spread (style clusters) near CLIP's 0.1.
    gap, topic_share, detail, style, noise = 0.489, 0.12, 0.036, 0.25, 0.105
    n_styles = 10
    offsets = unit(2)
    offsets /= np.linalg.norm(offsets, axis=1, keepdims=True)
    # Correlated offsets: unpaired cross-modal cosine ~ gap * cross = 0.16.
    cross = 0.315
    offsets[1] = cross * offsets[0] + np.sqrt(1 - cross**2) * _orthogonal(offsets[1], offsets[0])
    topics = unit(n_topics)
    topic = rng.integers(0, n_topics, size=n)
    semantic = np.sqrt(topic_share) * topics[topic] + np.sqrt(detail) * unit(n)
    subtopic = topic.copy()
    if n_subtopics:
        # A separate stream, so the arrays without subtopics stay exactly those of synthetic_pairs.
        sub_rng = np.random.default_rng([seed, 1])
        sub_dirs = sub_rng.standard_normal((n_topics * n_subtopics, dim)) / np.sqrt(dim)
        subtopic = topic * n_subtopics + sub_rng.integers(0, n_subtopics, size=n)
        semantic += np.sqrt(topic_share / 2) * sub_dirs[subtopic] - (1 - np.sqrt(0.5)) * np.sqrt(topic_share) * \
            topics[topic]
    out = np.empty((2, n, dim), dtype=np.float32)
    for m in range(2):
        styles = unit(n_styles)[rng.integers(0, n_styles, size=n)]
        x = np.sqrt(gap) * offsets[m] + semantic + np.sqrt(style) * styles + np.sqrt(noise) * unit(n)
        out[m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return TopicalPairs(out, topic, subtopic)


def _orthogonal(v: np.ndarray, to: np.ndarray) -> np.ndarray:
    v = v - (v @ to) * to
    return v / np.linalg.norm(v)


@dataclass
class MixedSplit:
    """The mixed-modality protocol on paired embeddings.

    The pairs are split into halves A and B; the corpus holds modality 0 of A
    (ids ``0..len(A)-1``) and modality 1 of B (the ids after); the queries are
    modality 1 of A, whose gold is its partner in A, and modality 0 of B, whose
    gold is its partner in B. Every gold lies in the other modality while half
    the corpus shares the query's modality.
    """

    corpus: dict[str, np.ndarray]
    queries: dict[str, np.ndarray]
    gold: dict[str, np.ndarray]
    rows_a: np.ndarray
    rows_b: np.ndarray


def mixed_split(pairs: np.ndarray, modalities: tuple[str, str] = ("image", "text"), seed: int = 0) -> MixedSplit:
    """Split ``(2, N, D)`` pairs into the mixed protocol (see :class:`MixedSplit`)."""
    m0, m1 = modalities
    n = pairs.shape[1]
    perm = np.random.default_rng(seed).permutation(n)
    a, b = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
    corpus = {m0: pairs[0][a], m1: pairs[1][b]}
    queries = {m1: pairs[1][a], m0: pairs[0][b]}
    gold = {m1: np.arange(len(a)), m0: len(a) + np.arange(len(b))}
    return MixedSplit(corpus, queries, gold, a, b)
