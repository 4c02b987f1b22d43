"""Inverted-file candidates for the fit from files: the same top-k, a few percent of the products.

An exact fit scores every pseudo query against every item: ``2 * dim *
queries * items`` floating-point operations, bound by the machine's matrix
multiply. Here each target modality's items are grouped by their nearest of
``nlist`` k-means centroids (spherical, trained on a seeded sample of rows,
FAISS's ``Kmeans``), each pseudo query probes its ``nprobe`` nearest lists,
and each list is scored as one matrix product between the queries that probe
it and the list's items (BLAS-friendly blocks, as FAISS's IVF search is not
for many queries). Scores are exact float32 cosines; what can be lost is a
true top-k neighbour in an unprobed list. The fit measures that on a seeded
check sample of pseudo queries scored by brute force and reports it
(:attr:`simstd.laion.FitReport.extra`, ``"ivf_recall"`` and the resulting
error in units of each pair's std), and warns below ``MIN_RECALL``.
"""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from ..errors import SimstdError
from .reader import EmbeddingFiles, Piece
from .topk import merge_topk, top_scores

#: Training rows per centroid (FAISS asks for at least 39).
TRAIN_PER_LIST = 40
KMEANS_ITERATIONS = 10
#: A check recall below this is reported with a warning naming the fix.
MIN_RECALL = 0.99


@dataclass
class Probes:
    """Per target modality: centroids; per (query modality, target modality): each query's probed lists."""

    centroids: dict[str, np.ndarray]
    lists: dict[tuple[str, str], np.ndarray]  # (Q, nprobe) list numbers

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.centroids.values()) + sum(x.nbytes for x in self.lists.values())


def default_nlist(n: int) -> int:
    """About sqrt(n) lists, a power of two, at most n / TRAIN_PER_LIST."""
    return int(max(1, min(2 ** round(np.log2(max(np.sqrt(n), 1))), n // TRAIN_PER_LIST)))


def train_centroids(files: EmbeddingFiles, nlist: int | None, seed: int) -> dict[str, np.ndarray]:
    """Per target modality, ``nlist`` spherical k-means centroids of a seeded sample of its rows."""
    rng = np.random.default_rng([seed, 1])  # a stream of its own: the pseudo-query draw stays unchanged
    centroids = {}
    for tm in files.modalities:
        n = files.count(tm)
        lists_n = default_nlist(n) if nlist is None else int(nlist)
        if lists_n < 1 or lists_n * TRAIN_PER_LIST > n and nlist is not None and lists_n > 1:
            raise SimstdError(f"nlist={nlist} needs {TRAIN_PER_LIST * lists_n} {tm} rows to train; the files hold {n}: "
                              f"use nlist <= {max(1, n // TRAIN_PER_LIST)}")
        rows = np.sort(rng.choice(n, size=min(n, lists_n * TRAIN_PER_LIST), replace=False))
        x = files.take(tm, rows)
        km = faiss.Kmeans(files.dim, lists_n, niter=KMEANS_ITERATIONS, spherical=True, seed=int(seed) + 1,
                          verbose=False)
        km.train(x)
        centroids[tm] = np.ascontiguousarray(km.centroids, dtype=np.float32)
    return centroids


def probe(centroids: dict[str, np.ndarray], vectors: dict[str, np.ndarray], nprobe: int) -> Probes:
    """Each pseudo query's ``nprobe`` nearest lists in every target modality."""
    lists = {}
    for qm, q in vectors.items():
        for tm, c in centroids.items():
            p = min(int(nprobe), len(c))
            S = q @ c.T
            lists[(qm, tm)] = np.argpartition(-S, p - 1, axis=1)[:, :p].astype(np.int32) if p < len(c) \
                else np.tile(np.arange(len(c), dtype=np.int32), (len(q), 1))
    return Probes(centroids, lists)


def partial_topk_ivf(piece: Piece, items: np.ndarray, rows_by_modality: dict[str, np.ndarray],
                     vectors: dict[str, np.ndarray], probes: Probes, k: int) -> dict[str, np.ndarray]:
    """Each pseudo query's top-k among the items of ``piece`` in the lists it probes.

    Returns ``{query modality: (Q, k)}`` scores (descending, ``-inf`` padded);
    a query's own row is masked as in the exact search.
    """
    tm = piece.modality
    c = probes.centroids[tm]
    assign = np.argmax(items @ c.T, axis=1)  # each item's list (nearest centroid by cosine)
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(len(c) + 1))
    item_rows = piece.offset + np.arange(len(items))
    out = {}
    for qm, q in vectors.items():
        best = np.full((len(q), k), -np.inf, dtype=np.float32)
        probed = probes.lists[(qm, tm)]
        flat = probed.ravel()
        qorder = np.argsort(flat, kind="stable")
        qbounds = np.searchsorted(flat[qorder], np.arange(len(c) + 1))
        qidx = qorder // probed.shape[1]  # query of each (query, probe) entry, grouped by list
        own_rows = rows_by_modality[qm]
        for lst in np.flatnonzero((bounds[1:] > bounds[:-1]) & (qbounds[1:] > qbounds[:-1])):
            members = order[bounds[lst] : bounds[lst + 1]]
            qi = qidx[qbounds[lst] : qbounds[lst + 1]]
            S = q[qi] @ items[members].T
            if qm == tm:  # mask each query's own row
                pos = np.searchsorted(item_rows[members], own_rows[qi])
                pos = np.minimum(pos, len(members) - 1)
                hit = item_rows[members][pos] == own_rows[qi]
                S[np.flatnonzero(hit), pos[hit]] = -np.inf
            best[qi] = merge_topk(best[qi], top_scores(S, min(k, len(members))), k)
        out[qm] = best
    return out
