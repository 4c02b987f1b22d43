"""Score post-processing methods for mixed-modality retrieval, behind one interface.

Every method is a small fitted object (:class:`ScoreMethod`)::

    method = make_method("simstd-index").fit(corpus, corpus_modalities)
    Z = method.scores(queries, "text")        # (n_queries, n_corpus), comparable across modalities

``fit`` sees the indexed items and, for methods that need them, a *query log*
(``queries``/``query_modalities``: unlabeled past queries, never the queries
being evaluated) or gold pairs (``positives``, only the labeled oracle).
``transform(raw, queries, query_modality)`` is the same as ``scores`` when the
raw cosine matrix is already at hand (the evaluation computes it once).

Names understood by :func:`make_method`: the bases in :data:`BASES` and
``WRAPPER+BASE`` for the re-scoring methods in :data:`WRAPPERS` applied on top
of a base's scores (``nnn`` alone means ``nnn+raw``), e.g. ``csls+simstd-index``.

Methods marked ``modality_affine`` map every score of a query to
``a * s + b`` with ``a > 0`` depending only on the query and the target
modality, so they never reorder items of one modality: on a one-modality
search they return exactly the raw ranking.

One module per family, each naming its papers: the interface (:mod:`.base`),
the baselines (:mod:`.baselines`), the twins of the library's standardizer
(:mod:`.standardization`), the re-scoring wrappers (:mod:`.rescore`), the
``hubness`` twin (:mod:`.hubness`) and the names (:mod:`.registry`).
"""
from __future__ import annotations

from .base import ScoreMethod
from .baselines import MeanCentering, PairZScore, PerQueryZ, Raw
from .hubness import HubnessCorrection, hubness_name
from .registry import BASES, DEFAULT_METHODS, DESCRIPTIONS, WRAPPERS, make_method, method_names
from .rescore import CSLS, NNN, QBNorm, QueryShift
from .standardization import LibraryHubness, PseudoStandardization

__all__ = [
    "BASES",
    "CSLS",
    "DEFAULT_METHODS",
    "DESCRIPTIONS",
    "NNN",
    "WRAPPERS",
    "HubnessCorrection",
    "LibraryHubness",
    "MeanCentering",
    "PairZScore",
    "PerQueryZ",
    "PseudoStandardization",
    "QBNorm",
    "QueryShift",
    "Raw",
    "ScoreMethod",
    "hubness_name",
    "make_method",
    "method_names",
]
