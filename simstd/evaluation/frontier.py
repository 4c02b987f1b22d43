"""The modality-bias frontier: what preferring one modality alone achieves.

On the mixed protocol every gold item is in the other modality, so a method
that merely prefers the other modality already scores well (ranking every
other-modality item first reaches R@20/ceiling = 1). To see whether a method
does more than that, take the paper's standardized score ``z`` (Yamashita,
Shirafuji and Saito, PACLIC 2025; ``simstd-index``) and add a constant bonus
``delta`` to every item of a modality other than the query's. Sweeping
``delta`` from very negative (own modality first) to very positive (other
modality first) traces a curve of ``(cross@10, R@20)``: the *modality-bias
frontier*. A method's **excess** is its R@20/ceiling minus the frontier's at
the method's own cross@10. A pure modality-bias method (the paper plus any
bonus) has excess 0; a positive excess means the method ranks better *within*
the modalities it shows, not only a different mix of them.

The sweep is exact, not a grid: per query, the gold enters the top 20 once
``delta`` passes one threshold, and the top 10 gains its ``j``-th other-modality
item once ``delta`` passes another (:func:`bias_frontier`). Both curves are
step functions of ``delta``; evaluating them between every pair of
consecutive thresholds visits every reachable ``(cross@10, R@20)``, and never
at a tie. Both rise with ``delta``, so the frontier is a non-decreasing
function of cross@10; between its points it is interpolated linearly, and
where several points share a cross@10 the highest recall counts (the
frontier is an upper envelope, so excess errs on the side of zero).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SimstdError

#: The method whose scores are shifted: the paper's standardization.
FRONTIER_BASE = "simstd-index"
#: cross@k and R@k of the frontier (the report's cross@10 and R@20/ceiling).
CROSS_K, RECALL_K = 10, 20
#: Common cross@10 grid on which per-seed curves are averaged (plots, JSON).
GRID = np.linspace(0.0, 1.0, 101)


@dataclass
class Frontier:
    """The frontier of one task: ``recall[i]`` (mean R@20) at ``cross[i]`` (mean cross@10), ``cross`` sorted."""

    deltas: np.ndarray
    cross: np.ndarray
    recall: np.ndarray

    def __post_init__(self) -> None:
        # Collapse equal cross values to their best recall (upper envelope), keep the order.
        cross, inverse = np.unique(self.cross, return_inverse=True)
        best = np.full(len(cross), -np.inf)
        np.maximum.at(best, inverse, self.recall)
        self._x, self._y = cross, np.maximum.accumulate(best)

    def at(self, cross: float | np.ndarray) -> np.ndarray:
        """Frontier recall at the given cross@10 share(s), linearly interpolated."""
        return np.interp(cross, self._x, self._y)


def bias_frontier(scores: np.ndarray, relevant: np.ndarray, same: np.ndarray, *, cross_k: int = CROSS_K,
                  recall_k: int = RECALL_K) -> Frontier:
    """Exact frontier of ``scores + delta * other`` over every ``delta``.

    ``scores`` ``(nq, N)``: the base method's scores (``-inf`` = not ranked);
    ``relevant`` ``(nq, N)`` bool; ``same`` ``(nq, N)`` bool, True where the
    item has the query's modality. Every positive must be an other-modality item.
    """
    return frontier_from_thresholds(*frontier_thresholds(scores, relevant, same, cross_k=cross_k,
                                                          recall_k=recall_k))


def frontier_thresholds(scores: np.ndarray, relevant: np.ndarray, same: np.ndarray, *, cross_k: int = CROSS_K,
                        recall_k: int = RECALL_K) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the bonus above which the gold is in the top ``recall_k`` ``(nq,)``, and above which
    the top ``cross_k`` holds at least ``j`` other-modality items ``(nq, cross_k)``. Query chunks concatenate."""
    S = np.asarray(scores, dtype=np.float64)
    relevant, same = np.asarray(relevant, dtype=bool), np.asarray(same, dtype=bool)
    if (relevant & same).any():
        raise SimstdError("the bias frontier needs every positive in a modality other than the query's")
    if not relevant.any(axis=1).all():
        raise SimstdError("every query needs a positive for the bias frontier")
    nq = len(S)
    own = np.where(same, S, -np.inf)
    other = np.where(same, -np.inf, S)
    # Recall: with `above` other-modality items over the best positive g, the gold is in the top k iff
    # fewer than k - above own-modality items score over g + delta, i.e. delta > own_(k - above) - g.
    g = np.where(relevant, S, -np.inf).max(axis=1)
    above = (other > g[:, None]).sum(axis=1)
    slot = recall_k - above  # 1-based rank of the own item that must fall below the gold
    pad = np.concatenate([-np.sort(-own, axis=1), np.full((nq, 1), -np.inf)], axis=1)
    need = np.where(slot >= 1, pad[np.arange(nq), np.clip(slot - 1, 0, pad.shape[1] - 1)] - g, np.inf)
    # Cross: the top k holds >= j other items iff other_(j) + delta > own_(k + 1 - j).
    o_top, s_rev = _top(other, cross_k), _top(own, cross_k)[:, ::-1]
    cross_need = np.where(np.isneginf(o_top), np.inf, s_rev - o_top)  # no j-th other item: never
    cross_need = np.where(np.isneginf(s_rev) & np.isfinite(o_top), -np.inf, cross_need)  # too few own: always
    return need, cross_need


def frontier_from_thresholds(need: np.ndarray, cross_need: np.ndarray) -> Frontier:
    """The frontier from :func:`frontier_thresholds` (of all queries), one point between consecutive thresholds."""
    nq, k = cross_need.shape
    finite = np.concatenate([need[np.isfinite(need)], cross_need[np.isfinite(cross_need)]])
    cuts = np.unique(finite)
    if len(cuts):
        span = max(1.0, float(cuts[-1] - cuts[0]))
        deltas = np.concatenate([[cuts[0] - span], (cuts[:-1] + cuts[1:]) / 2, [cuts[-1] + span]])
    else:
        deltas = np.array([0.0])
    recall = np.searchsorted(np.sort(need), deltas, side="left") / nq
    cross = np.searchsorted(np.sort(cross_need.ravel()), deltas, side="left") / (nq * k)
    return Frontier(deltas, cross, recall)


def _top(S: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest values per row, descending, padded with ``-inf``."""
    if S.shape[1] < k:
        S = np.concatenate([S, np.full((len(S), k - S.shape[1]), -np.inf)], axis=1)
    part = -np.partition(-S, k - 1, axis=1)[:, :k]
    return -np.sort(-part, axis=1)


def excess(recall: float, cross: float, frontier: Frontier, ceiling_recall: float) -> float:
    """``(recall - frontier recall at cross) / ceiling_recall``: R@20/ceiling above the frontier."""
    if ceiling_recall <= 0:
        return float("nan")
    return float((recall - frontier.at(cross)) / ceiling_recall)
