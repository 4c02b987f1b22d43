"""Similarity standardization per (query modality, target modality) pair.

Yamashita, Shirafuji and Saito, "Bridging the Modality Gap by Similarity
Standardization with Pseudo-Positive Samples" (2025): for every pair of query
modality ``q`` and target modality ``t`` the mean and standard deviation of the
scores of positive pairs (pseudo positives, or labeled pairs) put every
target modality on one scale, so that one merged ranking is meaningful.

:class:`Standardizer` (:mod:`.core`) holds what every method shares; each
method is a backend (:mod:`.method`): the paper's map (:mod:`.paper`) and the
hubness-corrected map with per-item terms (:mod:`.corrected`), picked by name
in :mod:`.registry`.
"""
from __future__ import annotations

from .core import DEFAULT_METHOD, MIN_PAIRS, MIN_STD, SOURCES, Standardizer
from .corrected import TERMS_SUFFIX, HubnessMethod, terms_path
from .io import FORMAT, FORMAT_VERSION
from .method import Method
from .paper import PaperMethod
from .registry import BACKENDS, METHODS, backend

__all__ = [
    "BACKENDS",
    "DEFAULT_METHOD",
    "FORMAT",
    "FORMAT_VERSION",
    "METHODS",
    "MIN_PAIRS",
    "MIN_STD",
    "SOURCES",
    "TERMS_SUFFIX",
    "HubnessMethod",
    "Method",
    "PaperMethod",
    "Standardizer",
    "backend",
    "terms_path",
]
