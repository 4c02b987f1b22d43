"""The contract between simstd's statistics and any vector store.

A :class:`Searchable` can list and fetch the items of each modality and search
one modality by cosine similarity. That is all mining, the standardizer and
the uncertainty model use, so they fit on a FAISS :class:`~simstd.MixedIndex`,
on plain arrays (:class:`~simstd.engines.numpy.ArraySearcher`) or on a vector
database adapter alike, and never import the index. Like scikit-hubness's
kNN-graph contract, backends and statistics share only this data contract.

Results follow FAISS: ``(D, I)`` with ``D`` the cosines ``(n_queries, k')``
in descending order and ``I`` the items' ids, where ``k' = min(k, count)``.
Ids are int64 (``-1`` marks a missing hit) or, for engines with string/UUID
ids, an object array (``None`` marks a missing hit).
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, Protocol, runtime_checkable

import numpy as np

from ..errors import SimstdError

REQUIRED = ("dim", "modalities", "ids", "reconstruct", "search_modality")


@runtime_checkable
class Searchable(Protocol):
    """Anything simstd can fit on: items of several modalities, searchable per modality."""

    @property
    def dim(self) -> int:
        """Vector dimension."""

    @property
    def modalities(self) -> list[str]:
        """Modality labels of the stored items."""

    def ids(self, modality: str) -> np.ndarray:
        """Ids of the stored items of one modality (1-D)."""

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of ``ids`` (any modalities) as ``(n, dim)`` float32 unit rows."""

    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw cosine top-k ``(D, I)`` among the items of one modality."""


def check_searchable(obj: object) -> Searchable:
    """Return ``obj`` if it satisfies :class:`Searchable`, else raise naming what it lacks."""
    missing = [name for name in REQUIRED if not hasattr(obj, name)]
    if missing:
        raise SimstdError(
            f"cannot fit on a {type(obj).__name__}: it lacks {', '.join(missing)} of the Searchable protocol "
            "(simstd.engines.base.Searchable); pass a MixedIndex, an engine adapter from simstd.engines, "
            "or embeddings with one modality label per row"
        )
    return obj  # type: ignore[return-value]


def count(searchable: Searchable, modality: str | None = None) -> int:
    """Number of items of one modality (all modalities when ``modality`` is None)."""
    labels = searchable.modalities if modality is None else [modality]
    return int(sum(len(searchable.ids(m)) for m in labels))


def search_session(searchable: Searchable) -> ContextManager[None]:
    """The engine's context for many exhaustive-quality searches (e.g. a wider HNSW
    beam while mining), if it defines one through ``mining_session()``."""
    session = getattr(searchable, "mining_session", None)
    return session() if callable(session) else contextlib.nullcontext()


def missing_mask(I: np.ndarray) -> np.ndarray:
    """True where ``I`` marks a missing hit (``-1`` or ``None``)."""
    if I.dtype == object:
        return np.equal(I, None)
    return I < 0


def drop_self(D: np.ndarray, I: np.ndarray, self_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own id from its row of a ``k + 1`` search.

    The one self-exclusion rule (as scikit-learn's ``kneighbors(X=None)``):
    drop the query's own id where it was retrieved, else the last column, so
    every row keeps ``k`` hits. Exact duplicates of the query stay (they are
    other items).
    """
    keep = I != np.asarray(self_ids)[:, None]
    keep[keep.all(axis=1), -1] = False
    shape = (len(D), D.shape[1] - 1)
    return D[keep].reshape(shape), I[keep].reshape(shape)
