"""Embedding files as a :class:`~simstd.engines.base.Searchable`, for the hubness fit from files.

The corrected method (``method="hubness"``, :mod:`simstd.hubness`) needs more
than the paper's per-pair moments: a term per item against a bank of each
modality, every pseudo query's raw top-``MINING_WIDTH`` candidates (with
their ids, to look up their terms) and a sample of cosines for the tail
scale. Rather than write that fit a second time, :class:`FileStore` gives the
files the four calls every store answers, and ``Standardizer.fit(store,
terms=...)`` runs the very code it runs on an index:

- ids follow the files' order, modality after modality (``image`` then
  ``text`` for a clip-retrieval folder): the ids ``simstd build --from`` gives
  the same items, so the terms and the draws are those of the index fit;
- ``reconstruct`` reads just the rows asked for (pseudo queries, banks, the
  tail sample), never a whole file;
- ``search_modality`` is one pass of the runner over the modality's pieces:
  each task finds every query's top-k among its piece's rows by the kernel an
  index's ``Flat`` shard uses (``faiss.knn``), the reduce keeps the top-k of
  the partial top-ks (exact, as in :mod:`simstd.laion.topk`);
- the terms are one more pass (:func:`file_terms`): every task measures its
  own rows against the broadcast banks with :func:`simstd.hubness.item_terms`,
  the function :func:`simstd.hubness.compute_terms` calls on an index.

So the result equals ``Standardizer(method="hubness").fit(index)`` on an index
of the same vectors, whatever the pieces and wherever they run (locally or on
Spark), up to float32 rounding.
"""
from __future__ import annotations

from typing import Iterator

import faiss
import numpy as np

from .. import hubness
from ..errors import SimstdError
from .reader import PIECE_ROWS, EmbeddingFiles, Piece
from .worker import Runner


def knn_work(piece: Piece, items: np.ndarray, shared: tuple[np.ndarray, int, int]
             ) -> Iterator[tuple[str, tuple[np.ndarray, np.ndarray]]]:
    """Map step of a search: the queries' top-``k`` ``(D, global ids)`` among one piece's rows."""
    queries, first_id, k = shared
    width = min(k, len(items))
    D, I = faiss.knn(queries, items, width, metric=faiss.METRIC_INNER_PRODUCT)
    I = np.where(I >= 0, I + (first_id + piece.offset), -1)
    yield "knn", (D, I)


def merge_knn(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Reduce step of a search: the top-``k`` of two partial top-ks, ties by id (a Flat index's order)."""
    D, I = np.hstack([a[0], b[0]]), np.hstack([a[1], b[1]])
    D = np.where(I >= 0, D, -np.inf)
    order = np.lexsort((np.where(I >= 0, I, np.iinfo(np.int64).max), -D), axis=1)[:, :k]
    return np.take_along_axis(D, order, axis=1), np.take_along_axis(I, order, axis=1)


def terms_work(piece: Piece, items: np.ndarray, shared: dict) -> Iterator[tuple[tuple[str, int], np.ndarray]]:
    """Map step of the terms: ``rho`` of one piece's rows against every column's bank ``(rows, M)``."""
    first = shared["first_ids"][piece.modality] + piece.offset
    self_ids = np.arange(first, first + len(items), dtype=np.int64)
    out = np.empty((len(items), len(shared["columns"])), dtype=np.float32)
    for j, a in enumerate(shared["columns"]):
        ids, vectors, k = shared["banks"][a]
        out[:, j] = hubness.item_terms(items, vectors, k, self_ids=self_ids, bank_ids=ids)
    yield (piece.modality, piece.offset), out


class FileStore:
    """The items of embedding files, searched by a :class:`~simstd.laion.worker.Runner`.

    Ids are ``0..n-1`` in the files' order, modality after modality. Every
    ``search_modality`` call is one pass (one Spark job on a
    :class:`~simstd.spark.SparkRunner`) over that modality's pieces.
    """

    def __init__(self, files: EmbeddingFiles, runner: Runner, piece_rows: int = PIECE_ROWS) -> None:
        self.files, self.runner = files, runner
        self.pieces = files.pieces(piece_rows)
        self.first_ids: dict[str, int] = {}
        start = 0
        for m in files.modalities:
            self.first_ids[m] = start
            start += files.count(m)
        self.ntotal = start
        self.passes = 0

    @property
    def dim(self) -> int:
        return self.files.dim

    @property
    def modalities(self) -> list[str]:
        return self.files.modalities

    def ids(self, modality: str) -> np.ndarray:
        self._check(modality)
        return np.arange(self.first_ids[modality], self.first_ids[modality] + self.files.count(modality),
                         dtype=np.int64)

    def _check(self, modality: str) -> None:
        if modality not in self.first_ids:
            raise SimstdError(f"unknown modality {modality!r}; the files hold {self.modalities}")

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.ntotal):
            raise SimstdError(f"ids must lie in 0..{self.ntotal - 1}")
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for m, first in self.first_ids.items():
            mine = np.flatnonzero((ids >= first) & (ids < first + self.files.count(m)))
            if len(mine):
                order = np.argsort(ids[mine], kind="stable")  # the reader wants ascending rows
                out[mine[order]] = self.files.take(m, ids[mine][order] - first)
        return out

    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._check(modality)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(int(k), self.files.count(modality))
        pieces = [p for p in self.pieces if p.modality == modality]
        found = self.runner.map_pieces(self.files, pieces, (queries, self.first_ids[modality], k), knn_work,
                                       _Merge(k))
        self.passes += 1
        return found["knn"]


class _Merge:
    """``merge_knn`` with its ``k`` (a small picklable object, shipped to Spark's reduce)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
        return merge_knn(a, b, self.k)


def file_terms(store: FileStore, columns: list[str], banks: dict[str, hubness.Bank], seed: int) -> np.ndarray:
    """Every item's terms ``(n, len(columns))`` (row = id), one pass over the pieces with the
    banks broadcast: what :func:`simstd.hubness.compute_terms` computes on an index of these files."""
    shared = {"columns": list(columns), "first_ids": dict(store.first_ids), "banks": {}}
    for a in columns:
        ids = banks[a].ids(store.ids(a), seed)
        shared["banks"][a] = (ids, store.reconstruct(ids), banks[a].k)
    found = store.runner.map_pieces(store.files, store.pieces, shared, terms_work)
    store.passes += 1
    terms = np.empty((store.ntotal, len(columns)), dtype=np.float32)
    for (m, offset), block in found.items():
        start = store.first_ids[m] + offset
        terms[start : start + len(block)] = block
    return terms
