"""Scoring every query with every method: cross-fitting, chunked metrics, modality shares.

Methods that need a query log (or gold pairs, for the labeled oracle) are
*cross-fitted*: the queries are split into ``folds`` (seeded, per query
modality); the queries of one fold are scored by a method fitted with the
other folds' query vectors as its log (and, for the oracle only, their gold).
No query ever takes part in its own fit, and no gold is used by a label-free
method. All query-by-item scores are one matrix product (float64), per query
chunk. The *ceiling* ranks each query against the items of its positives'
modalities only (raw cosine): what a perfect merge of the per-modality
rankings gives.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import SimstdError
from ..methods import DEFAULT_METHODS, ScoreMethod, make_method
from .frontier import FRONTIER_BASE, Frontier, frontier_from_thresholds, frontier_thresholds
from .metrics import CROSS_RECALL, SAME_RECALL, SHARE_KS, modality_recall, modality_share, query_metrics, rank_order
from .tasks import Task

#: Elements of one query-chunk score matrix (float64): bounds memory.
CHUNK_ELEMENTS = 4_000_000


@dataclass
class TaskResult:
    """Per-query metrics of every method (and the ceiling) on one task."""

    task: dict
    per_query: dict[str, dict[str, np.ndarray]]
    shares: dict[str, dict[int, dict[str, dict[str, float]]]]
    query_modalities: np.ndarray
    #: the modality-bias frontier (:mod:`.frontier`), on tasks whose gold is all in other modalities
    frontier: Frontier | None = None

    def summary(self, method: str) -> dict[str, float]:
        return {m: float(v.mean()) for m, v in self.per_query[method].items() if m != "first_rank"}


def evaluate(task: Task, methods: Sequence[str | ScoreMethod] = DEFAULT_METHODS, *, folds: int = 2,
             seed: int = 0) -> TaskResult:
    """Score every query with every method; return per-query metrics (see the module docstring)."""
    fold = query_folds(task, folds, seed)
    ranked = task.ranked_columns
    per_query: dict[str, dict[str, np.ndarray]] = {}
    shares: dict[str, dict] = {}
    # The ceiling: raw cosine, ranking only items of the modalities that hold the query's positives.
    labels, code = np.unique(task.corpus_modalities, return_inverse=True)
    gold_mods = np.zeros((len(task.queries), len(labels)), dtype=bool)
    gold_mods[task.positives[:, 0], code[task.positives[:, 1]]] = True
    allowed = gold_mods[:, code] & ranked[None, :]
    runs = [("ceiling", make_method("raw"), allowed)] + [
        (m.name if isinstance(m, ScoreMethod) else m, m if isinstance(m, ScoreMethod) else make_method(m), None)
        for m in methods
    ]
    names = [r[0] for r in runs]
    if len(set(names)) != len(names):
        raise SimstdError(f"a method is listed twice: {names}")
    corpus64 = task.corpus.astype(np.float64)
    frontier = None
    with single_threaded():
        for name, method, mask in runs:
            S = _score_all(task, corpus64, method, fold, folds)
            S[:, ~ranked] = -np.inf
            if mask is not None:
                S[~mask] = -np.inf
            per_query[name], shares[name] = _metrics_chunked(task, S)
            if name == FRONTIER_BASE and mask is None and has_frontier(task):
                frontier = _frontier_chunked(task, S)
        if frontier is None and has_frontier(task):
            S = _score_all(task, corpus64, make_method(FRONTIER_BASE), fold, folds)
            S[:, ~ranked] = -np.inf
            frontier = _frontier_chunked(task, S)
    return TaskResult(task.describe(), per_query, shares, task.query_modalities, frontier)


def has_frontier(task: Task) -> bool:
    """True when every gold item is in a modality other than its query's (the mixed protocol)."""
    qm = task.query_modalities[task.positives[:, 0]]
    return bool((qm != task.corpus_modalities[task.positives[:, 1]]).all() and task.targets is None)


def _frontier_chunked(task: Task, S: np.ndarray) -> Frontier:
    step = max(1, CHUNK_ELEMENTS // max(len(task.corpus), 1))
    need, cross_need = [], []
    for start in range(0, len(S), step):
        rows = np.arange(start, min(start + step, len(S)))
        same = task.corpus_modalities[None, :] == task.query_modalities[rows][:, None]
        n, c = frontier_thresholds(S[rows], task.relevance(rows), same)
        need.append(n)
        cross_need.append(c)
    return frontier_from_thresholds(np.concatenate(need), np.concatenate(cross_need))


def query_folds(task: Task, folds: int = 2, seed: int = 0) -> np.ndarray:
    """Fold number of every query: a seeded split into ``folds`` parts within each query modality."""
    if folds < 2:
        raise SimstdError("folds must be >= 2 (cross-fitting keeps each query out of its own query log)")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(task.queries), dtype=np.int64)
    for m in np.unique(task.query_modalities):
        rows = np.flatnonzero(task.query_modalities == m)
        fold[rng.permutation(rows)] = np.arange(len(rows)) % folds
    return fold


def crossfit_scores(task: Task, method: str | ScoreMethod, *, folds: int = 2, seed: int = 0) -> np.ndarray:
    """``(n_queries, n_corpus)`` scores of a method on a task, cross-fitted when it uses a query log.

    Items outside ``task.targets`` are not masked here.
    """
    method = make_method(method) if isinstance(method, str) else method
    with single_threaded():
        return _score_all(task, task.corpus.astype(np.float64), method, query_folds(task, folds, seed), folds)


@contextlib.contextmanager
def single_threaded():
    """Run FAISS (OpenMP) and, when threadpoolctl is installed, BLAS on one thread.

    The evaluation makes many small matrix products and searches; threads only
    add overhead there, and on a busy machine they spin-wait (measured 5-6x
    slower on 2 shared cores).
    """
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional: without it BLAS keeps its threads
            limits = contextlib.nullcontext()
        else:
            limits = threadpool_limits(1)
        with limits:
            yield
    finally:
        faiss.omp_set_num_threads(before)


def _score_all(task: Task, corpus64: np.ndarray, method: ScoreMethod, fold: np.ndarray, folds: int) -> np.ndarray:
    """(nq, N) scores; cross-fitted when the method uses a query log or gold pairs."""
    S = np.empty((len(task.queries), len(task.corpus)))
    crossfit = method.needs_log or method.needs_labels
    parts = range(folds) if crossfit else [None]
    for f in parts:
        if f is None:
            method.fit(task.corpus, task.corpus_modalities)
            rows_all = np.arange(len(task.queries))
        else:
            log = np.flatnonzero(fold != f)
            kwargs = {"queries": task.queries[log], "query_modalities": task.query_modalities[log]}
            if method.needs_labels:
                where = np.full(len(task.queries), -1)
                where[log] = np.arange(len(log))
                pos = task.positives[where[task.positives[:, 0]] >= 0]
                kwargs["positives"] = np.stack([where[pos[:, 0]], pos[:, 1]], axis=1)
            method.fit(task.corpus, task.corpus_modalities, **kwargs)
            rows_all = np.flatnonzero(fold == f)
        for qm in np.unique(task.query_modalities[rows_all]):
            rows = rows_all[task.query_modalities[rows_all] == qm]
            step = max(1, CHUNK_ELEMENTS // max(len(task.corpus), 1))
            for start in range(0, len(rows), step):
                r = rows[start : start + step]
                Q = task.queries[r].astype(np.float64)
                raw = Q @ corpus64.T
                S[r] = method.transform(raw, Q, str(qm))
    return S


def _metrics_chunked(task: Task, S: np.ndarray):
    step = max(1, CHUNK_ELEMENTS // max(len(task.corpus), 1))
    chunks, share_sum = [], {}
    topical = task.is_topical
    for start in range(0, len(S), step):
        rows = np.arange(start, min(start + step, len(S)))
        rel = task.relevance(rows)
        chunks.append(query_metrics(S[rows], rel))
        order = rank_order(S[rows], max(SHARE_KS))
        if topical:
            same = task.corpus_modalities[None, :] == task.query_modalities[rows][:, None]
            chunks[-1][SAME_RECALL], chunks[-1][CROSS_RECALL] = modality_recall(order, rel & same, rel & ~same)
        for k in SHARE_KS:
            for tm, v in modality_share(order, task.corpus_modalities, k).items():
                for qm in np.unique(task.query_modalities[rows]):
                    sel = task.query_modalities[rows] == qm
                    acc = share_sum.setdefault(k, {}).setdefault(qm, {}).setdefault(tm, [0.0, 0])
                    acc[0] += float(v[sel].sum())
                    acc[1] += int(sel.sum())
    per_query = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    shares = {k: {qm: {tm: s / n for tm, (s, n) in d.items()} for qm, d in by.items()} for k, by in share_sum.items()}
    return per_query, shares


def cross_share(result: TaskResult, method: str, k: int) -> float:
    """Share of other-modality items among the top ``k``, averaged over all queries."""
    total = 0.0
    for qm, by in result.shares[method][k].items():
        n = int((result.query_modalities == qm).sum())
        total += n * sum(v for tm, v in by.items() if tm != qm)
    return total / len(result.query_modalities)
