"""Baselines: raw cosine and the label-free score or embedding normalisations.

* :class:`Raw` (``raw``): cosine, no post-processing.
* :class:`MeanCentering` (``gr-clip``): GR-CLIP, Li, Zhang, Wang, Liang,
  Schmidt and Yeung-Levy, "Closing the Modality Gap for Mixed Modality
  Search" (arXiv:2507.19054, 2025).
* :class:`PairZScore` (``zscore-all``) and :class:`PerQueryZ`
  (``per-query``): the "z-score" of Montague and Aslam, "Relevance Score
  Normalization for Metasearch" (CIKM 2001), per modality pair and per query.
"""
from __future__ import annotations

import numpy as np

from ..errors import SimstdError
from .base import ScoreMethod


class Raw(ScoreMethod):
    """Raw cosine similarity, no post-processing (the baseline every VLM index uses)."""

    name = "raw"
    modality_affine = True

    def transform(self, raw, queries, query_modality):
        return np.asarray(raw, dtype=np.float64)


class MeanCentering(ScoreMethod):
    """GR-CLIP: remove each modality's mean embedding, renormalise, then cosine.

    Li, Zhang, Wang, Liang, Schmidt and Yeung-Levy, "Closing the Modality Gap
    for Mixed Modality Search" (arXiv:2507.19054, 2025). With ``mu_m`` the mean
    of the embeddings of modality ``m``, every vector ``x`` of modality ``m``
    becomes ``(x - mu_m) / ||x - mu_m||``. The means come from the indexed
    items (no labels); a query modality absent from the corpus takes its mean
    from the query log. Reorders items within a modality (not affine).
    """

    name = "gr-clip"

    def _fit(self, log, positives):
        self.means_ = {m: self.corpus_[c].mean(axis=0) for m, c in self.columns_.items()}
        if log is not None:
            for m in set(log[1].tolist()) - set(self.means_):
                self.means_[m] = log[0][log[1] == m].mean(axis=0)
        self.centred_ = self._centre(self.corpus_, self.corpus_modalities_)

    def _centre(self, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = X - np.stack([self.means_[m] for m in labels])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        if (norms == 0).any():
            raise SimstdError("a vector equals its modality's mean embedding; it has no direction after centring")
        return out / norms

    def scores(self, queries, query_modality):
        Q = self._queries(queries)
        return self.transform(None, Q, query_modality)

    def transform(self, raw, queries, query_modality):
        self._need_modality(query_modality, self.means_, "mean embedding")
        Q = np.asarray(queries, dtype=np.float64)
        return self._centre(Q, np.full(len(Q), query_modality)) @ self.centred_.T


class PairZScore(ScoreMethod):
    """z-score over *all* scores of each (query modality, target modality) pair.

    Classic score normalisation for merging ranked lists ("z-score" of
    Montague and Aslam, "Relevance Score Normalization for Metasearch", CIKM
    2001), applied per modality pair: ``z = (s - m_ab) / sd_ab`` where ``m_ab``
    and ``sd_ab`` are the mean and standard deviation of the cosine between
    every indexed item of modality ``a`` and every other indexed item of
    modality ``b``. Computed exactly from first and second moments:
    ``m_ab = mu_a . mu_b`` and ``E[s^2] = <M_a, M_b>`` with ``M = E[x x^T]``
    (self pairs removed when ``a == b``). Label-free.
    """

    name = "zscore-all"
    modality_affine = True

    def _fit(self, log, positives):
        mom = {}
        for m, c in self.columns_.items():
            X = self.corpus_[c]
            sq = np.einsum("ij,ij->i", X, X)
            mom[m] = (len(X), X.sum(axis=0), X.T @ X, sq.sum(), (sq**2).sum())
        self.stats_ = {}
        for a, (na, sa, Ma, sqa, sq2a) in mom.items():
            for b, (nb, sb, Mb, _, _) in mom.items():
                total, total2, pairs = sa @ sb, float(np.sum(Ma * Mb)), na * nb
                if a == b:  # drop the n self pairs x.x
                    total, total2, pairs = total - sqa, total2 - sq2a, na * (na - 1)
                if pairs < 2:
                    continue
                mean = total / pairs
                var = max(total2 / pairs - mean**2, 0.0)
                if var > 0:
                    self.stats_[a, b] = (mean, np.sqrt(var))

    def transform(self, raw, queries, query_modality):
        out = np.empty_like(raw, dtype=np.float64)
        for m, c in self.columns_.items():
            self._need_modality((query_modality, m), self.stats_, "score statistics")
            mean, sd = self.stats_[query_modality, m]
            out[:, c] = (raw[:, c] - mean) / sd
        return out


class PerQueryZ(ScoreMethod):
    """Per-query standardization, in closed form per target modality.

    Each query's scores against the items of modality ``m`` are z-scored by
    their own mean and variance over those items: with ``mu_m`` and
    ``Sigma_m`` (ddof 0) the mean and covariance of the modality's
    embeddings, ``mean = q . mu_m`` and ``var = q^T Sigma_m q``, so
    ``z = (s - q . mu_m) / sqrt(q^T Sigma_m q)`` costs ``O(D^2)`` per query
    and never touches the items. This is the per-query "z-score"
    normalisation of metasearch (Montague and Aslam, CIKM 2001) computed over
    the whole modality rather than a retrieved list. Label-free.
    """

    name = "per-query"
    modality_affine = True

    def _fit(self, log, positives):
        self.moments_ = {}
        for m, c in self.columns_.items():
            X = self.corpus_[c]
            if len(X) < 2:
                raise SimstdError(f"per-query standardization needs >= 2 items of modality {m!r}, got {len(X)}")
            mu = X.mean(axis=0)
            self.moments_[m] = (mu, np.cov(X, rowvar=False, bias=True))

    def transform(self, raw, queries, query_modality):
        Q = np.asarray(queries, dtype=np.float64)
        out = np.empty_like(raw, dtype=np.float64)
        for m, c in self.columns_.items():
            mu, cov = self.moments_[m]
            mean = Q @ mu
            var = np.einsum("ij,ij->i", Q @ cov, Q)
            sd = np.sqrt(np.maximum(var, np.finfo(float).tiny))
            out[:, c] = (raw[:, c] - mean[:, None]) / sd[:, None]
        return out
