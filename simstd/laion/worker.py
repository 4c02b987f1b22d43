"""The map-reduce of the fit from files, run on one machine or handed to a distributor.

A :class:`Runner` takes the pieces (row ranges of the ``.npy`` files) and the
pseudo queries and returns every query block's reduced top-k per target
modality. :class:`LocalRunner` maps the pieces one after the other in this
process; :class:`simstd.spark.SparkRunner` runs the very same worker,
:func:`partial_topk`, once per Spark partition, the shape of clip-retrieval's
sequential and pyspark distributors.
"""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterator, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from .ivf import partial_topk_ivf
from .reader import EmbeddingFiles, Piece
from .topk import Partial, PseudoQueries, Tops, merge_partial, partial_topk_exhaustive

#: How each pseudo query's top-k is found (see :func:`simstd.laion.fit_embeddings`).
SEARCHES = ("exact", "bfloat16", "ivf")


def partial_topk(piece: Piece, items: np.ndarray, queries: PseudoQueries, k: int,
                 search: str = "exact") -> Iterator[tuple[tuple[str, int, str], Partial]]:
    """The map step: every query block's top-``k`` among ``items`` (the rows of ``piece``).

    Yields ``((query modality, block, target modality), (scores, bound))`` as
    :func:`simstd.laion.topk.partial_topk_exhaustive` does; with ``search="ivf"``
    only the lists each query probes are scored (:mod:`simstd.laion.ivf`).
    """
    if search != "ivf":
        yield from partial_topk_exhaustive(piece, items, queries, k, bfloat16=search == "bfloat16")
        return
    tops = partial_topk_ivf(piece, items, queries.rows, queries.vectors, queries.probes, k)
    for qm, b in queries.keys():
        best = tops[qm][b * queries.block : (b + 1) * queries.block]
        yield (qm, b, piece.modality), (best, np.full(len(best), -np.inf, dtype=np.float32))


#: A map step: ``work(piece, items, shared)`` yields ``(key, value)`` pairs for the
#: piece's rows ``items`` (float32 unit rows) and what every task shares.
Work = Callable[[Piece, np.ndarray, Any], Iterator[tuple[Any, Any]]]
#: A reduce step: two values of one key as one.
Merge = Callable[[Any, Any], Any]


def topk_work(piece: Piece, items: np.ndarray, queries: PseudoQueries, k: int,
              search: str = "exact") -> Iterator[tuple[tuple[str, int, str], Partial]]:
    """:func:`partial_topk` as a :data:`Work` (``shared`` = the pseudo queries)."""
    return partial_topk(piece, items, queries, k, search)


class Runner(Protocol):
    """Runs the passes of the fit: every piece mapped by one worker, reduced per key."""

    def map_pieces(self, files: EmbeddingFiles, pieces: list[Piece], shared: Any, work: Work,
                   merge: Merge | None = None) -> dict:
        """``{key: value}`` of ``work`` over every piece, values of one key reduced by ``merge``
        (``None``: keys are unique to a piece, collected as they are)."""
        ...

    def run(self, files: EmbeddingFiles, pieces: list[Piece], queries: PseudoQueries, k: int,
            search: str = "exact") -> Tops:
        """One pass of the paper's fit: every query block's top-k per target modality."""
        ...

    def facts(self) -> dict:
        """What the report should say about where the fit ran (engine, jobs, ...)."""
        ...


class LocalRunner:
    """Maps the pieces one after the other in this process, ``threads`` BLAS threads (None: all)."""

    engine = "local"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def map_pieces(self, files: EmbeddingFiles, pieces: list[Piece], shared: Any, work: Work,
                   merge: Merge | None = None) -> dict:
        acc: dict = {}
        with threadpool_limits(self.threads):
            for piece in pieces:
                for key, value in work(piece, files.read(piece), shared):
                    acc[key] = value if merge is None or key not in acc else merge(acc[key], value)
        return acc

    def run(self, files: EmbeddingFiles, pieces: list[Piece], queries: PseudoQueries, k: int,
            search: str = "exact") -> Tops:
        return self.map_pieces(files, pieces, queries, partial(topk_work, k=k, search=search),
                               partial(merge_partial, k=k))

    def facts(self) -> dict:
        return {}
