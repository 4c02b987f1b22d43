"""Spark distributors: simstd's workers run per partition (pyspark imported lazily)."""
