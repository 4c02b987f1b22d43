"""Spark distributors: simstd's workers run per partition (pyspark imported lazily).

``fit_embeddings(folder, runner=SparkRunner("local[2]"))`` runs the fit from
files on Spark (:mod:`simstd.spark.fit`).
"""
from __future__ import annotations

from .fit import SparkRunner

__all__ = ["SparkRunner"]
