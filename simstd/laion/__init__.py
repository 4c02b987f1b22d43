"""The LAION-scale path: clip-retrieval / autofaiss folders in, fits from files.

:mod:`~simstd.laion.reader` reads the clip-retrieval layout shard by shard,
:mod:`~simstd.laion.fit` fits a standardizer from the files without an index
(locally or on Spark, :mod:`simstd.spark.fit`), :mod:`~simstd.laion.build`
imports a folder into a :class:`~simstd.MixedIndex`, adopting autofaiss's
per-modality indexes as shards.
"""
from __future__ import annotations

from .fit import FitReport, fit_embeddings
from .reader import ClipRetrievalFolder, EmbeddingFiles

__all__ = ["ClipRetrievalFolder", "EmbeddingFiles", "FitReport", "fit_embeddings"]
