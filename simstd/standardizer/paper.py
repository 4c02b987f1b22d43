"""The paper's method: z-standardize the raw cosine per (query, target) modality pair.

Yamashita, Shirafuji and Saito, "Bridging the Modality Gap by Similarity
Standardization with Pseudo-Positive Samples" (2025): the mean and standard
deviation of each pair's positive scores (pseudo positives: each pseudo
query's top-``n_pseudo`` neighbours in the target modality; or gold pairs)
map every cosine ``s`` to ``z = (s - mean) / std``.

Optional query-side shift (``query_shift``, ``shift_k``): CSLS's query term
(Conneau et al., ICLR 2018) on the standardized scores, see
:class:`~simstd.Standardizer`.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..engines.base import Searchable
from ..errors import SimstdError
from ..mining import labeled_pair_scores, mine_pseudo_positives
from ..stats import topk_mean
from .method import Estimator, Method


class PaperMethod(Method):
    """Yamashita et al. (2025), exactly; fits from a store, a query log, gold pairs or scores."""

    name = "paper"
    citation = "Yamashita, Shirafuji and Saito 2025"
    mergeable = True
    fitted_attributes: ClassVar[tuple[str, ...]] = ()

    def fit(self, est: Estimator, searchable: Searchable, *, queries: np.ndarray | None,
            query_modalities: object, positives: np.ndarray | None, terms: np.ndarray | None) -> None:
        if terms is not None:
            raise SimstdError("terms are per-item terms of a method that has them (method='hubness'); "
                              "the paper's method has none")
        if est.source == "pseudo":
            if positives is not None:
                raise SimstdError('positives are gold pairs: use them with Standardizer(source="labeled")')
            qm, tm, scores = mine_pseudo_positives(
                searchable, queries, query_modalities, k=int(est.n_pseudo), sample=est.sample, seed=est.seed,
                target_se=float(est.target_se),
            )
        else:
            if positives is None:
                raise SimstdError('source="labeled" needs positives: an (P, 2) array of (query, target id) pairs')
            qm, tm, scores = labeled_pair_scores(searchable, positives, queries, query_modalities)
        est._fit_pairs(qm, tm, scores)

    def query_depth(self, est: Estimator) -> int:
        return int(est.shift_k) if est.query_shift else 0

    def adjust(self, est: Estimator, z: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``z - query_shift * mean(row's shift_k largest finite z of the same target modality)``."""
        if not est.query_shift:
            return z
        out = np.array(z, dtype=np.float64, ndmin=1)
        codes = np.broadcast_to(codes, np.shape(z)).reshape(out.shape)
        for code in np.unique(codes):
            mine = codes == code
            local = topk_mean(np.where(mine, out, -np.inf), int(est.shift_k))
            out = out - np.where(mine, float(est.query_shift) * local[..., None], 0.0)
        return out.reshape(np.shape(z))

    def adjust_blocks(self, est: Estimator, z: np.ndarray, ids: np.ndarray, widths: list[int]) -> np.ndarray:
        """The shift per shard block; a shard's columns arrive sorted, best first."""
        if not est.query_shift:
            return z
        z = z.copy()
        start = 0
        for width in widths:
            block = slice(start, start + width)
            local = topk_mean(np.where(ids[:, block] >= 0, z[:, block], -np.inf), int(est.shift_k))
            z[:, block] -= np.float32(est.query_shift) * local[:, None].astype(np.float32)
            start += width
        return z

    def describe(self, est: Estimator) -> dict:
        return {"query_shift": float(est.query_shift), "shift_k": int(est.shift_k)} if est.query_shift else {}

    def summary(self, est: Estimator) -> str:
        shift = f", query shift {est.query_shift:g} (K={int(est.shift_k)})" if est.query_shift else ""
        return f"paper: standardized cosine{shift}"
