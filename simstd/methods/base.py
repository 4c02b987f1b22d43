"""The interface every evaluation method shares: :class:`ScoreMethod`.

A method is a small fitted object: ``fit`` sees the indexed items (and, for
the methods that need them, a query log or gold pairs) and checks them once;
``transform`` turns the raw cosine matrix of queries of one modality into
scores comparable across target modalities. The families live beside this
module (:mod:`.baselines`, :mod:`.standardization`, :mod:`.rescore`,
:mod:`.hubness`) and :mod:`.registry` builds them by name; this module
implements no paper's method, so it cites none.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import SimstdError
from ..validation import as_embeddings, check_is_fitted, check_label, validate_params


class ScoreMethod:
    """Base class: turns raw cosine scores into scores comparable across modalities."""

    #: short name used by the CLI and the reports
    name = "base"
    #: ``fit`` needs a query log (``queries`` and ``query_modalities``)
    needs_log = False
    #: ``fit`` needs gold pairs (``positives``): an oracle, not label-free
    needs_labels = False
    #: each (query, target modality) gets ``a * s + b`` with ``a > 0``
    modality_affine = False
    #: ``{parameter: [allowed constraints]}`` (simstd.validation.validate_params);
    #: subclasses add theirs, merged along the MRO.
    _parameter_constraints: dict = {}

    def _check_params(self, **params: object) -> None:
        table: dict = {}
        for cls in reversed(type(self).__mro__):
            table.update(cls.__dict__.get("_parameter_constraints", {}))
        validate_params(self, {name: table[name] for name in params}, params)

    # ------------------------------------------------------------- fitting
    def fit(
        self,
        corpus: np.ndarray,
        corpus_modalities: Sequence[str],
        *,
        queries: np.ndarray | None = None,
        query_modalities: Sequence[str] | str | None = None,
        positives: np.ndarray | None = None,
    ) -> "ScoreMethod":
        """Fit on the indexed items (``corpus``, one modality label per row).

        ``queries``/``query_modalities`` is a query log (unlabeled); with
        ``positives`` (``(P, 2)`` rows of ``queries`` and corpus ids), gold pairs.
        """
        X = as_embeddings(corpus, "corpus")
        labels = np.asarray(corpus_modalities, dtype=object)
        if labels.shape != (len(X),):
            raise SimstdError(f"got {labels.size} corpus modality labels for {len(X)} rows; pass one per row")
        for m in set(labels.tolist()):
            check_label(m)
        self.corpus_ = X.astype(np.float64)
        self.corpus_modalities_ = labels.astype(str)
        self.modalities_ = sorted(set(self.corpus_modalities_.tolist()))
        self.columns_ = {m: np.flatnonzero(self.corpus_modalities_ == m) for m in self.modalities_}
        log = None
        if queries is not None:
            Q = as_embeddings(queries, "query log", X.shape[1]).astype(np.float64)
            if query_modalities is None:
                raise SimstdError("pass the modality of the query log (query_modalities)")
            qm = (
                np.full(len(Q), check_label(query_modalities), dtype=object)
                if isinstance(query_modalities, str)
                else np.asarray(query_modalities, dtype=object)
            )
            if qm.shape != (len(Q),):
                raise SimstdError(f"got {qm.size} query modalities for {len(Q)} queries; pass one per query")
            log = (Q, qm.astype(str))
        elif self.needs_log:
            raise SimstdError(
                f"method {self.name!r} needs a query log: pass queries= and query_modalities= "
                "(unlabeled past queries, not the queries you evaluate)"
            )
        if self.needs_labels and positives is None:
            raise SimstdError(f"method {self.name!r} uses gold pairs: pass positives= (an (P, 2) array)")
        self._fit(log, positives)
        return self

    def _fit(self, log: tuple[np.ndarray, np.ndarray] | None, positives: np.ndarray | None) -> None:
        pass

    # ------------------------------------------------------------- scoring
    def scores(self, queries: np.ndarray, query_modality: str) -> np.ndarray:
        """``(n_queries, n_corpus)`` scores of queries of one modality against every indexed item."""
        Q = self._queries(queries)
        return self.transform(Q @ self.corpus_.T, Q, query_modality)

    def transform(self, raw: np.ndarray, queries: np.ndarray, query_modality: str) -> np.ndarray:
        """The method's scores given the raw cosine matrix ``raw = queries @ corpus.T``."""
        raise NotImplementedError

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return as_embeddings(queries, "queries", self.corpus_.shape[1]).astype(np.float64)

    def _check_fitted(self) -> None:
        check_is_fitted(self, "corpus_", f"call fit(corpus, corpus_modalities) first (method {self.name!r})")

    def _need_modality(self, modality: str, where: dict, what: str) -> None:
        if modality not in where:
            raise SimstdError(
                f"method {self.name!r} has no {what} for modality {modality!r} (it knows {sorted(where)}); "
                "fit it on a corpus or query log that contains that modality"
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
