"""Mining the positive pairs whose scores a :class:`~simstd.Standardizer` fits.

Pseudo positives (Yamashita, Shirafuji and Saito, 2025): for every pseudo
query and every target modality, the top-``k`` cosine neighbours among the
items of that modality. Pseudo queries are a query log given by the user or,
when there is none, a seeded sample of the indexed items themselves; an item
is never its own pseudo positive.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Sequence

import faiss
import numpy as np

from .errors import SimstdError
from .validation import as_embeddings, check_label

if TYPE_CHECKING:  # pragma: no cover
    from .index import MixedIndex

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]

#: HNSW beam width while mining. Pseudo queries of the other modality lie far
#: from a shard's graph and a narrow beam misses their true top-1, biasing the
#: fit: on 30k+30k CLIP-like vectors (HNSW16, 2000 queries) efSearch 16 gave
#: std 1.6-2.4x the exact fit's and means off by up to 1.4 std; 256 is within
#: 0.01 std. (At 1M, efSearch 128 had std off by 205%: docs/performance.md.)
MINING_EF_SEARCH = 256


def mine_pseudo_positives(
    index: "MixedIndex",
    queries: np.ndarray | None = None,
    query_modalities: Sequence[str] | str | None = None,
    *,
    k: int = 1,
    sample: int | None = 10_000,
    seed: int = 0,
) -> Pairs:
    """Return ``(query_modality, target_modality, score)`` arrays, one entry per pseudo pair.

    ``sample`` caps the number of pseudo queries per query modality (drawn
    without replacement with ``seed``); ``None`` uses them all.
    """
    if index.ntotal == 0:
        raise SimstdError("the index is empty: add vectors before fitting")
    rng = np.random.default_rng(seed)
    out_q, out_t, out_s = [], [], []
    with _wide_hnsw_beam(index):
        for qm, vectors, self_ids in _pseudo_queries(index, queries, query_modalities, sample, rng):
            for tm in index.modalities:
                exclude = self_ids is not None and tm == qm
                D, I = index.search_modality(vectors, tm, k + 1 if exclude else k)
                D = np.where(I >= 0, D, np.nan)  # -1: fewer results than asked
                if exclude:
                    D = _drop_self(D, I, self_ids)
                D = D[:, :k]
                D = D[np.isfinite(D)]
                out_q.append(np.full(D.size, qm, dtype=object))
                out_t.append(np.full(D.size, tm, dtype=object))
                out_s.append(D.astype(np.float64))
    return np.concatenate(out_q), np.concatenate(out_t), np.concatenate(out_s)


@contextlib.contextmanager
def _wide_hnsw_beam(index: "MixedIndex") -> Iterator[None]:
    """Raise every HNSW shard's efSearch to MINING_EF_SEARCH, then restore it."""
    saved = []
    for shard in index.shards.values():
        inner = faiss.downcast_index(shard.index)
        if isinstance(inner, faiss.IndexHNSW) and inner.hnsw.efSearch < MINING_EF_SEARCH:
            saved.append((inner, inner.hnsw.efSearch))
            inner.hnsw.efSearch = MINING_EF_SEARCH
    try:
        yield
    finally:
        for inner, ef in saved:
            inner.hnsw.efSearch = ef


def _pseudo_queries(index, queries, query_modalities, sample, rng):
    """Yield ``(modality, vectors, ids or None)`` per query modality."""
    if queries is None:
        if query_modalities is not None:
            raise SimstdError("query_modalities was given without queries; pass the query vectors too")
        for m in index.modalities:
            ids = index._ids[m]
            if sample is not None and sample < len(ids):
                ids = np.sort(rng.choice(ids, size=sample, replace=False))
            yield m, index.reconstruct(ids), ids
        return
    queries = as_embeddings(queries, "pseudo queries", index.dim)
    if query_modalities is None:
        raise SimstdError("pass the modality of the pseudo queries (e.g. query_modalities='text')")
    if isinstance(query_modalities, str):
        labels = np.full(len(queries), check_label(query_modalities), dtype=object)
    else:
        labels = np.asarray(query_modalities, dtype=object)
        if labels.shape != (len(queries),):
            raise SimstdError(f"got {labels.size} query modalities for {len(queries)} queries; pass one per query")
    for m in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == m)
        if sample is not None and sample < len(rows):
            rows = np.sort(rng.choice(rows, size=sample, replace=False))
        yield check_label(str(m)), queries[rows], None


def _drop_self(D: np.ndarray, I: np.ndarray, self_ids: np.ndarray) -> np.ndarray:
    """Remove each query's own id from its row (or the last column if absent)."""
    keep = I != self_ids[:, None]
    keep[keep.all(axis=1), -1] = False
    return D[keep].reshape(len(D), D.shape[1] - 1)


def labeled_pair_scores(
    index: "MixedIndex",
    positives: np.ndarray,
    queries: np.ndarray | None = None,
    query_modalities: Sequence[str] | str | None = None,
) -> Pairs:
    """Scores of gold pairs ``(query, target id)``; queries are rows of
    ``queries`` or, without them, ids of the index."""
    pos = np.asarray(positives)
    if pos.ndim != 2 or pos.shape[1] != 2 or not np.issubdtype(pos.dtype, np.integer) or len(pos) == 0:
        raise SimstdError("positives must be a non-empty (P, 2) integer array of (query, target id) pairs")
    targets = index.reconstruct(pos[:, 1])
    t_labels = index.modality_of(pos[:, 1])
    if queries is None:
        q = index.reconstruct(pos[:, 0])
        q_labels = index.modality_of(pos[:, 0])
    else:
        queries = as_embeddings(queries, "queries", index.dim)
        if pos[:, 0].min() < 0 or pos[:, 0].max() >= len(queries):
            raise SimstdError(f"positives refer to query rows outside 0..{len(queries) - 1}")
        q = queries[pos[:, 0]]
        if query_modalities is None:
            raise SimstdError("pass the modality of the queries (query_modalities)")
        q_labels = (
            np.full(len(pos), query_modalities, dtype=object)
            if isinstance(query_modalities, str)
            else np.asarray(query_modalities, dtype=object)[pos[:, 0]]
        )
    scores = np.einsum("ij,ij->i", q.astype(np.float64), targets.astype(np.float64))
    return q_labels, t_labels, scores
