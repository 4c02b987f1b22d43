"""Exact brute-force search over in-memory arrays.

The reference engine: :class:`ArraySearcher` wraps embeddings plus one
modality label per row (ids are row numbers) and answers
:class:`~simstd.engines.base.Searchable` calls by one matrix product per query
chunk. Used to fit on arrays, in tests, and as the congruence reference that
the FAISS index and the vector-database adapters are compared against.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import SimstdError
from ..validation import as_embeddings, check_label

#: Elements of one query-chunk score matrix: bounds memory for large corpora.
CHUNK_ELEMENTS = 8_000_000


class ArraySearcher:
    """Embeddings ``(n, dim)`` with a modality label per row; ids are row numbers."""

    def __init__(self, embeddings: np.ndarray, modalities: Sequence[str]) -> None:
        self.vectors = as_embeddings(embeddings, "embeddings")
        if isinstance(modalities, str):
            raise SimstdError("pass one modality label per row of embeddings, not a single label")
        labels = np.asarray(modalities, dtype=object)
        if labels.shape != (len(self.vectors),):
            raise SimstdError(
                f"got {labels.size} modality labels for {len(self.vectors)} rows; pass one label per row"
            )
        self.labels = labels
        self._rows = {check_label(str(m)): np.flatnonzero(labels == m) for m in dict.fromkeys(labels.tolist())}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def modalities(self) -> list[str]:
        return list(self._rows)

    def ids(self, modality: str) -> np.ndarray:
        return self._rows[self._check(modality)].astype(np.int64)

    def modality_of(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.vectors)):
            raise SimstdError(f"ids must lie in 0..{len(self.vectors) - 1}")
        return self.labels[ids]

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        self.modality_of(ids)
        return self.vectors[ids]

    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows[self._check(modality)]
        queries = as_embeddings(queries, "queries", self.dim)
        k = min(int(k), len(rows))
        items = self.vectors[rows]
        D = np.empty((len(queries), k), dtype=np.float32)
        I = np.empty((len(queries), k), dtype=np.int64)
        step = max(1, CHUNK_ELEMENTS // max(len(rows), 1))
        for start in range(0, len(queries), step):
            S = queries[start : start + step] @ items.T
            top = np.argpartition(-S, k - 1, axis=1)[:, :k] if k < S.shape[1] else np.argsort(-S, axis=1)
            part = np.take_along_axis(S, top, axis=1)
            # Descending score, ties by id (FAISS's Flat order).
            order = np.lexsort((top, -part), axis=1) if part.size else top
            D[start : start + step] = np.take_along_axis(part, order, axis=1)
            I[start : start + step] = rows[np.take_along_axis(top, order, axis=1)]
        return D, I

    def _check(self, modality: str) -> str:
        if modality not in self._rows:
            raise SimstdError(f"unknown modality {modality!r}; the arrays hold {self.modalities}")
        return modality
