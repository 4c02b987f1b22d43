"""Per-query retrieval metrics: Recall@k, R-Precision, mAP@R, NDCG@10, modality share.

Recall@k counts a hit if any positive is in the top k (the image-text
retrieval convention); R-Precision and mAP@R follow Musgrave, Belongie and Lim
(ECCV 2020), the ECCV Caption metrics of Chun et al. (2022). One tie rule
everywhere: equal scores are ranked by corpus index, lower first (what a
stable sort and FAISS's ``Flat`` search do).
"""
from __future__ import annotations

import numpy as np

KS = (1, 5, 10, 20)
NDCG_K = 10
SHARE_KS = (10, 20)
#: Recall curves (for plots) go up to this rank.
CURVE_K = 100
METRICS = tuple(f"R@{k}" for k in KS) + ("mAP@R", "R-Precision", f"NDCG@{NDCG_K}")
#: Recall of the relevant items of the query's own / another modality in the top 10 (topical protocols).
SAME_RECALL, CROSS_RECALL = f"same-recall@{NDCG_K}", f"cross-recall@{NDCG_K}"
TOPICAL_METRICS = (SAME_RECALL, CROSS_RECALL)


def rank_order(scores: np.ndarray, depth: int | None = None) -> np.ndarray:
    """Column indices sorted by decreasing score (ties: lower index first), first ``depth`` only."""
    scores = np.asarray(scores, dtype=np.float64)
    if depth is None or depth >= scores.shape[1]:
        order = np.argsort(-scores, axis=1, kind="stable")
        return order if depth is None else order[:, :depth]
    # The depth-th largest score; items tied with it enter by corpus index (argpartition alone would pick
    # an arbitrary subset of the tied items, breaking the tie rule on duplicates).
    kth = -np.partition(-scores, depth - 1, axis=1)[:, depth - 1 : depth]
    above = scores > kth
    tied = scores == kth
    keep = above | (tied & (np.cumsum(tied, axis=1) <= depth - above.sum(axis=1, keepdims=True)))
    top = np.nonzero(keep)[1].reshape(len(scores), depth)
    inner = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, inner, axis=1)


def ranked_relevance(order: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """``relevant`` (nq, N) bool in ranked order: ``out[i, r]`` is rank ``r+1``'s relevance."""
    return np.take_along_axis(relevant, order, axis=1)


def recall_at(ranked: np.ndarray, k: int) -> np.ndarray:
    """1 where a positive is among the first ``k``, else 0 (per query)."""
    return ranked[:, :k].any(axis=1).astype(np.float64)


def r_precision(ranked: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """Share of positives among the first ``R`` results, ``R`` = the query's number of positives."""
    R = np.asarray(n_rel)
    upto = np.arange(1, ranked.shape[1] + 1)[None, :] <= R[:, None]
    return (ranked & upto).sum(axis=1) / np.maximum(R, 1)


def map_at_r(ranked: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """mAP@R: ``(1/R) * sum_{i <= R} P@i * rel(i)`` (Musgrave, Belongie and Lim, ECCV 2020)."""
    R = np.asarray(n_rel)
    ranks = np.arange(1, ranked.shape[1] + 1)[None, :]
    hits = np.cumsum(ranked, axis=1)
    contrib = np.where(ranked & (ranks <= R[:, None]), hits / ranks, 0.0)
    return contrib.sum(axis=1) / np.maximum(R, 1)


def ndcg_at(ranked: np.ndarray, n_rel: np.ndarray, k: int = NDCG_K) -> np.ndarray:
    """NDCG@k with binary relevance: ``sum rel_i / log2(i + 1)`` over the ideal ranking's."""
    gains = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (ranked[:, :k] * gains[: ranked[:, :k].shape[1]]).sum(axis=1)
    ideal = np.cumsum(gains)[np.clip(np.asarray(n_rel), 1, k) - 1]
    return np.where(np.asarray(n_rel) > 0, dcg / ideal, 0.0)


def first_rank(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Rank (1-based) of each query's first positive in :func:`rank_order`'s order.

    1 + the items scored higher + the items tied with it at a lower corpus
    index: the tie rule of R@k, so recall curves and tables agree on duplicates.
    """
    scores = np.asarray(scores, dtype=np.float64)
    masked = np.where(relevant, scores, -np.inf)
    best = masked.max(axis=1)
    first = np.argmax(masked == best[:, None], axis=1)  # lowest index among the best-scored positives
    before = np.arange(scores.shape[1])[None, :] < first[:, None]
    return 1 + (scores > best[:, None]).sum(axis=1) + ((scores == best[:, None]) & before).sum(axis=1)


def query_metrics(scores: np.ndarray, relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` per query, plus ``"first_rank"``."""
    n_rel = relevant.sum(axis=1)
    depth = int(max(max(KS), NDCG_K, n_rel.max(initial=1)))
    ranked = ranked_relevance(rank_order(scores, depth), relevant)
    out = {f"R@{k}": recall_at(ranked, k) for k in KS}
    out["mAP@R"] = map_at_r(ranked, n_rel)
    out["R-Precision"] = r_precision(ranked, n_rel)
    out[f"NDCG@{NDCG_K}"] = ndcg_at(ranked, n_rel)
    out["first_rank"] = first_rank(scores, relevant)
    return out


def modality_share(order: np.ndarray, item_modalities: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per query: the share of each modality among its first ``k`` results."""
    top = np.asarray(item_modalities)[order[:, :k]]
    return {m: (top == m).mean(axis=1) for m in np.unique(item_modalities)}


def modality_recall(order: np.ndarray, relevant_same: np.ndarray, relevant_other: np.ndarray,
                    k: int = NDCG_K) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the share of its own-modality and of its other-modality relevant items in the top ``k``.

    ``order`` is the ranking (:func:`rank_order`, at least ``k`` deep);
    ``relevant_same``/``relevant_other`` ``(nq, N)`` bool. Plain recall
    (found / relevant of that kind); NaN where the query has none of that kind.
    """
    top_same = np.take_along_axis(relevant_same, order[:, :k], axis=1).sum(axis=1)
    top_other = np.take_along_axis(relevant_other, order[:, :k], axis=1).sum(axis=1)
    n_same, n_other = relevant_same.sum(axis=1), relevant_other.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(n_same > 0, top_same / n_same, np.nan), np.where(n_other > 0, top_other / n_other, np.nan))
