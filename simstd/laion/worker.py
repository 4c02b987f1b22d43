"""The map-reduce of the fit from files, run on one machine or handed to a distributor.

A :class:`Runner` takes the pieces (row ranges of the ``.npy`` files) and the
pseudo queries and returns every query block's reduced top-k per target
modality. :class:`LocalRunner` maps the pieces one after the other in this
process; :class:`simstd.spark.SparkRunner` runs the very same worker,
:func:`partial_topk`, once per Spark partition, the shape of clip-retrieval's
sequential and pyspark distributors.
"""
from __future__ import annotations

from typing import Iterator, Protocol

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


class Runner(Protocol):
    """Runs one pass of the map-reduce: every piece mapped, reduced per (query block, target modality)."""

    def run(self, files: EmbeddingFiles, pieces: list[Piece], queries: PseudoQueries, k: int,
            search: str = "exact") -> Tops: ...

    def facts(self) -> dict:
        """What the report should say about where the fit ran (engine, jobs, ...)."""
        ...


class LocalRunner:
    """Maps the pieces one after the other in this process, ``threads`` BLAS threads (None: all)."""

    engine = "local"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, files: EmbeddingFiles, pieces: list[Piece], queries: PseudoQueries, k: int,
            search: str = "exact") -> Tops:
        acc: Tops = {}
        with threadpool_limits(self.threads):
            for piece in pieces:
                items = files.read(piece)
                for key, part in partial_topk(piece, items, queries, k, search):
                    acc[key] = part if key not in acc else merge_partial(acc[key], part, k)
        return acc

    def facts(self) -> dict:
        return {}
