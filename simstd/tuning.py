"""Per-shard search budgets for approximate shards, tuned without labels.

A standardized search asks every modality's shard for its own top-k
(:mod:`simstd.index`), so with approximate shards (HNSW, IVF) the work of one
query is the sum of the shards' work, and the recall of the merged top-k is
made of each shard's recall of *its part* of the standardized top-k. The two
parts are not alike: on CLIP-like data most of a text query's standardized
top-k are images (cross-modal hits, Yamashita, Shirafuji and Saito 2025), and
graph search recalls cross-modal neighbours worse than same-modality ones at
the same beam width (docs/performance.md). One ``efSearch`` for every shard
spends the work where it buys least.

:func:`tune_search_params` chooses one setting per (query modality, shard)
pair, ``efSearch`` for HNSW or ``nprobe`` for IVF, for a total work budget
(distance computations per query, FAISS's own counters) or for a target
recall. It is label-free: pseudo queries are stored items (each left out of
its own result, as in :meth:`~simstd.MixedIndex.search_like`), their exact
standardized top-k is computed by brute force over the stored vectors, and
each shard is searched once per candidate setting. Because an item of the
exact top-k is in the merged result exactly when its own shard returns it
(any other candidate scores lower), the merged recall is the sum of the
shards' hits, and the best split is a small exhaustive search over the
per-shard tables. That holds exactly for a fit without a query-side term (the
paper's method); the default's query term (the mean cosine of each shard's
K best by the corrected similarity) moves with what every shard returned, so
for it the sum is an estimate (within 0.05 of the real recall in
tests/test_tuning.py), and the held-out report is the real search. The choice uses only the tuning queries; a disjoint set of
held-out queries reports the chosen split's recall and work, measured with
the real search.

With cross-modal bridges (:meth:`MixedIndex.build_bridges`) a bridged shard
is entered from the query's own-modality results; the tables then use the own
shard's results at its smallest setting (the real search uses at least that
setting, so its entries are at least as good) and count the entry points'
distances as work.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import faiss
import numpy as np

from .engines.faiss import shard_kind, search_parameters
from .errors import NotFittedError, SimstdError
from .index import search as pipeline
from .index.bridges import BRIDGE_ENTRIES, level0_search
from .validation import Interval, as_embeddings, check_label

if TYPE_CHECKING:  # pragma: no cover
    from .index import MixedIndex

#: efSearch values tried per HNSW shard (FAISS uses max(efSearch, k)).
HNSW_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
#: Rows of a shard scored at once by the brute-force reference.
_BLOCK = 32_768


@dataclass
class PairTable:
    """One shard's measurements for queries of one modality: per candidate
    setting, the hits of the exact standardized top-k and the work per query."""

    target: str
    param: str
    values: list[int]
    hits: np.ndarray
    work: np.ndarray


@dataclass
class SearchBudget:
    """The per-shard settings chosen for queries of one modality, and what they do.

    ``params``: ``{target: {"efSearch": 96}}``; ``work``/``recall``: on the
    tuning queries (work in distance computations, or codes scanned for IVF,
    per query; recall of the exact standardized top-k); ``eval_*``: the same,
    measured with :meth:`MixedIndex.search` on the held-out queries, for the
    chosen settings and for the settings in place before tuning
    (``baseline_*``). ``frontier``: the best recall found at each work level
    on the tuning queries, ``(work, recall, {target: value})``.
    """

    query_modality: str
    k: int
    params: dict[str, dict[str, int]]
    work: float
    recall: float
    budget: float | None
    target_recall: float | None
    n_tune: int
    n_eval: int
    eval_work: float | None = None
    eval_recall: float | None = None
    baseline_params: dict[str, dict[str, int]] = field(default_factory=dict)
    baseline_work: float | None = None
    baseline_recall: float | None = None
    frontier: list[tuple[float, float, dict[str, int]]] = field(default_factory=list)
    tables: list[PairTable] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        """JSON-ready summary (no tables)."""
        keys = ("query_modality", "k", "params", "work", "recall", "budget", "target_recall", "n_tune", "n_eval",
                "eval_work", "eval_recall", "baseline_params", "baseline_work", "baseline_recall")
        out = {key: getattr(self, key) for key in keys}
        out["frontier"] = [{"work": w, "recall": r, "params": p} for w, r, p in self.frontier]
        return out

    def apply(self, index: "MixedIndex") -> None:
        """Set the chosen settings on ``index`` (:meth:`MixedIndex.set_search_params`)."""
        for target, values in self.params.items():
            text = ",".join(f"{n}={v}" for n, v in values.items())
            index.set_search_params(text, query_modality=self.query_modality, target=target)


def tune_search_params(
    index: "MixedIndex",
    *,
    budget: float | None = None,
    target_recall: float | None = None,
    k: int = 10,
    query_modalities: Sequence[str] | None = None,
    n_queries: int = 1000,
    holdout: float = 0.5,
    candidates: Sequence[int] | None = None,
    seed: int = 0,
    apply: bool = True,
    bridges: bool | None = None,
    queries: Mapping[str, np.ndarray] | None = None,
) -> dict[str, SearchBudget]:
    """Choose each shard's ``efSearch`` (HNSW) or ``nprobe`` (IVF) per query modality.

    ``budget``: work per query (FAISS's distance counter summed over the
    shards) not to exceed; ``target_recall``: the cheapest split whose tuning
    recall reaches it (else the best one, with ``recall`` below it). Neither:
    the work of the current settings, split better. ``n_queries`` stored items
    of each query modality are drawn (``seed``), ``holdout`` of them held out
    for the report, never used to choose. ``apply=True`` sets the chosen
    settings on ``index`` (saved with it by ``index.save``). ``bridges=True``
    first builds cross-modal entry points (:meth:`MixedIndex.build_bridges`,
    kept on ``index``), ``False`` drops them, None tunes the index as it is.
    ``queries``: ``{modality: (n, dim) vectors}``, e.g. a query log, to tune
    on instead of stored items (split into tuning and held-out queries the
    same way); stored items are easier queries for their own graph than
    fresh ones (docs/performance.md). Returns ``{query modality: SearchBudget}``.
    """
    std = _check(index, budget, target_recall, k, n_queries, holdout)
    if bridges is True and not index.bridges:
        index.build_bridges()
    elif bridges is False:
        index.drop_bridges()
    if queries is not None:
        if not isinstance(queries, Mapping) or query_modalities is not None:
            raise SimstdError("pass queries as {modality: (n, dim) vectors}, without query_modalities")
        modalities = list(queries)
    else:
        modalities = list(query_modalities) if query_modalities is not None else index.modalities
    out = {}
    for q in modalities:
        check_label(q, "query modality")
        if queries is not None:
            vectors = as_embeddings(queries[q], f"tuning queries of {q!r}", index.dim)
            order = np.random.default_rng([seed, len(vectors)]).permutation(len(vectors))[:n_queries]
            n_eval = int(round(len(order) * holdout))
            if len(order) - n_eval < 1:
                raise SimstdError(f"no tuning queries left: {len(order)} {q!r} queries, holdout={holdout}")
            tune_ids, eval_ids = vectors[np.sort(order[n_eval:])], vectors[np.sort(order[:n_eval])]
        elif q not in index.modalities:
            raise SimstdError(f"query modality {q!r} has no stored items to use as pseudo queries; "
                              f"the index holds {index.modalities}")
        else:
            tune_ids, eval_ids = split_queries(index, q, n_queries, holdout, seed)
        plan = choose(index, q, tune_ids, k, budget=budget, target_recall=target_recall, candidates=candidates,
                      standardizer=std)
        if len(eval_ids):
            evaluate(index, plan, eval_ids, standardizer=std)
        out[q] = plan
    if apply:
        for plan in out.values():
            plan.apply(index)
    return out


def split_queries(index: "MixedIndex", query_modality: str, n_queries: int, holdout: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint tuning and held-out pseudo-query ids of one modality."""
    ids = index.ids(query_modality)
    rng = np.random.default_rng([seed, len(ids)])
    pick = rng.choice(ids, size=min(n_queries, len(ids)), replace=False)
    n_eval = int(round(len(pick) * holdout))
    if len(pick) - n_eval < 1:
        raise SimstdError(f"no tuning queries left: {len(pick)} {query_modality!r} items, holdout={holdout}; "
                          "lower holdout or raise n_queries")
    return np.sort(pick[n_eval:]), np.sort(pick[:n_eval])


def choose(
    index: "MixedIndex",
    query_modality: str,
    tune_ids: np.ndarray,
    k: int = 10,
    *,
    budget: float | None = None,
    target_recall: float | None = None,
    candidates: Sequence[int] | None = None,
    standardizer: object | None = None,
) -> SearchBudget:
    """Measure every shard at every candidate setting on the pseudo queries
    ``tune_ids`` (ids of stored items of ``query_modality``, each left out of
    its own result, or an ``(n, dim)`` array of query vectors) and choose the split
    (:func:`measure`, then :func:`pick`)."""
    tables, baseline, baseline_work = measure(index, query_modality, tune_ids, k, candidates=candidates,
                                              standardizer=standardizer)
    if budget is None and target_recall is None:
        budget = baseline_work
    n_tune = len(tune_ids)
    params, work, recall = pick(tables, n_tune * k, budget=budget, target_recall=target_recall)
    return SearchBudget(
        query_modality=query_modality, k=k, params=params, work=work, recall=recall,
        budget=None if budget is None else float(budget), target_recall=target_recall, n_tune=n_tune,
        n_eval=0, baseline_params=baseline, frontier=frontier(tables, n_tune * k), tables=tables)


def measure(
    index: "MixedIndex",
    query_modality: str,
    tune_ids: np.ndarray,
    k: int = 10,
    *,
    candidates: Sequence[int] | None = None,
    standardizer: object | None = None,
) -> tuple[list[PairTable], dict[str, dict[str, int]], float]:
    """Per approximate shard, the hits of the pseudo queries' exact standardized
    top-k and the work per query at every candidate setting; plus the current
    settings and their work on the same queries."""
    std = standardizer or index.standardizer
    Q, tune_ids = _as_queries(index, tune_ids)
    truth = exact_search(index, Q, query_modality, k, tune_ids, std)
    widths, column = _widths(index, std, query_modality, k)
    padded = index.shard_set.pad(Q, column)
    bridged = index.bridge_table.bridged(query_modality, index.modalities)
    own = None
    if bridged:  # entries of the bridged shards: the own shard's best results at its smallest setting
        kind = shard_kind(index.shards[query_modality])
        param = "efSearch" if kind == "HNSW" else "nprobe"
        own = _shard_run(index, query_modality, padded, widths[query_modality], query_modality, tune_ids,
                         {param: _candidates(index, query_modality, kind, candidates, k)[0]})[0]
    tables = []
    for t in index.modalities:
        kind = shard_kind(index.shards[t])
        if kind is None:
            continue  # exact shard: nothing to tune
        param = "efSearch" if kind == "HNSW" else "nprobe"
        want = np.where(np.isin(truth, index.ids(t)), truth, -2)  # this shard's part of the exact top-k
        hits, work = [], []
        for v in _candidates(index, t, kind, candidates, k):
            found, done = _shard_run(index, t, padded, widths[t], query_modality, tune_ids, {param: v},
                                     own if t in bridged else None)
            hits.append(int((want[:, :, None] == found[:, None, :]).any(axis=2).sum()))
            work.append(done)
        tables.append(PairTable(t, param, _candidates(index, t, kind, candidates, k), np.asarray(hits),
                                np.asarray(work)))
    if not tables:
        raise SimstdError(f"nothing to tune: the {index.factory!r} shards are exhaustive (exact at any setting)")
    baseline = _current(index, query_modality, tables)
    base_work = sum(_shard_run(index, tb.target, padded, widths[tb.target], query_modality, tune_ids,
                               baseline[tb.target], own if tb.target in bridged else None)[1] for tb in tables)
    return tables, baseline, float(base_work)


def _shard_run(index: "MixedIndex", target: str, padded: np.ndarray, width: int, query_modality: str,
               ids: np.ndarray, values: dict[str, int], own: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """One shard searched as :meth:`MixedIndex.search_like` does (one more result in the
    query's own shard, its own item dropped): the ids found and the work per query.
    ``own``: the query's own-modality results, to enter a bridged shard from."""
    shard = index.shards[target]
    width = min(width + int(ids is not None and target == query_modality), shard.ntotal)
    params = search_parameters(shard, values)
    with _counter(shard_kind(shard)) as counted:
        if own is None:
            _, I = index.shard_set.search(target, padded, width, params)
        else:
            entries = index.bridge_table.entries(index.shard_set, query_modality, target, own)
            _, I = level0_search(index.shard_set, target, padded, width, entries, params)
    extra = 0 if own is None else BRIDGE_ENTRIES  # the entry points' distances
    if ids is not None:
        I = np.where(I == ids[:, None], -3, I)
    return I, counted() / len(padded) + extra


def _as_queries(index: "MixedIndex", queries: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Query vectors and the ids to leave out: stored items (1-D ids, each left out of its
    own result) or query vectors (2-D, e.g. a query log; nothing left out)."""
    arr = np.asarray(queries)
    if arr.ndim == 2:
        return as_embeddings(arr, "tuning queries", index.dim), None
    ids = arr.astype(np.int64)
    return index.reconstruct(ids), ids


def entry_work(index: "MixedIndex", query_modality: str) -> int:
    """Distances per query computed outside FAISS's counter: the entry points of bridged shards."""
    return BRIDGE_ENTRIES * len(index.bridge_table.bridged(query_modality, index.modalities))


def pick(tables: list[PairTable], total: int, *, budget: float | None = None,
         target_recall: float | None = None) -> tuple[dict[str, dict[str, int]], float, float]:
    """The split with the best recall within ``budget`` (ties: the least work), or the
    cheapest reaching ``target_recall`` (else the best recall): ``(params, work, recall)``.
    ``total``: the number of items in the exact top-k lists (queries x k)."""
    combos, work, recall = _combos(tables, total)
    if target_recall is not None:
        ok = recall >= target_recall - 1e-12
        best = int(np.flatnonzero(ok)[np.argmin(work[ok])]) if ok.any() else int(np.argmax(recall))
    else:
        ok = work <= budget + 1e-9
        if not ok.any():
            raise SimstdError(f"a budget of {budget:,.0f} distance computations per query is below the least work "
                              f"measured ({work.min():,.0f}, every shard at its smallest setting); raise the budget")
        cand = np.flatnonzero(ok)
        cand = cand[recall[cand] >= recall[cand].max() - 1e-12]
        best = int(cand[np.argmin(work[cand])])
    params = {tb.target: {tb.param: int(tb.values[combos[best, j]])} for j, tb in enumerate(tables)}
    return params, float(work[best]), float(recall[best])


def _combos(tables: list[PairTable], total: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every split (one candidate per shard), its work and its recall (the shards' hits add up)."""
    grids = np.meshgrid(*[np.arange(len(tb.values)) for tb in tables], indexing="ij")
    combos = np.stack([g.ravel() for g in grids], axis=1)
    hits = sum(tb.hits[combos[:, j]] for j, tb in enumerate(tables)).astype(float)
    work = sum(tb.work[combos[:, j]] for j, tb in enumerate(tables))
    return combos, work, hits / total


def frontier(tables: list[PairTable], total: int) -> list[tuple[float, float, dict[str, int]]]:
    """The splits no other split beats in both work and recall, by increasing work."""
    combos, work, recall = _combos(tables, total)
    order = np.lexsort((-recall, work))
    out, best = [], -1.0
    for i in order:
        if recall[i] > best + 1e-12:
            best = recall[i]
            out.append((float(work[i]), float(recall[i]),
                        {tb.target: int(tb.values[combos[i, j]]) for j, tb in enumerate(tables)}))
    return out


def evaluate(index: "MixedIndex", plan: SearchBudget, eval_ids: np.ndarray, standardizer: object | None = None) -> None:
    """Fill ``plan``'s ``eval_*`` and ``baseline_*`` fields from the held-out pseudo queries
    ``eval_ids``, searched with :meth:`MixedIndex.search`'s own code path."""
    std = standardizer or index.standardizer
    Q, eval_ids = _as_queries(index, eval_ids)
    q = plan.query_modality
    truth = exact_search(index, Q, q, plan.k, eval_ids, std)
    kinds = {shard_kind(index.shards[t]) for t in plan.params}
    for name, settings in (("eval", plan.params), ("baseline", plan.baseline_params)):
        params = [search_parameters(index.shards[t], settings.get(t)) for t in index.modalities]
        with _counter(*kinds) as counted:
            got = pipeline.search(index, Q, q, plan.k, standardizer=std, exclude=eval_ids,
                                  shard_params=params).ids
        setattr(plan, f"{name}_work", counted() / len(Q) + entry_work(index, q))
        setattr(plan, f"{name}_recall", recall_at(got, truth))
    plan.n_eval = len(Q)


def exact_search(index: "MixedIndex", queries: np.ndarray, query_modality: str, k: int,
                 exclude: np.ndarray | None = None, standardizer: object | None = None) -> np.ndarray:
    """Ids of the exact standardized top-k: :meth:`MixedIndex.search`'s merge over a
    brute-force search of every shard's stored vectors (as stored: exact for
    Flat and HNSW-Flat, the codes' own scores for SQ/PQ)."""
    std = standardizer or index.standardizer
    return pipeline.search(index, queries, query_modality, k, standardizer=std, exclude=exclude,
                           shard_search=brute_force_search(index)).ids


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` found in the same row of ``found``."""
    hit = (found[:, :, None] == truth[:, None, :]) & (truth[:, None, :] >= 0)
    return float(hit.any(axis=1).sum() / max((truth >= 0).sum(), 1))


def brute_force_search(index: "MixedIndex") -> Callable:
    """A ``shard_search`` for :func:`simstd.index.search.search`: the exact top ``width``
    of every named shard from its stored vectors (brute force)."""

    def search(queries: np.ndarray, names: list[str], widths: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for m, width in zip(names, widths):
            inner = index.shards[m].index
            ids = index.ids(m)
            best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
            best_i = np.zeros((len(queries), 0), dtype=np.int64)
            for start in range(0, inner.ntotal, _BLOCK):
                X = _rows(inner, start, min(_BLOCK, inner.ntotal - start))
                S = np.hstack([best_s, queries @ X.T])
                I = np.hstack([best_i, np.broadcast_to(ids[start : start + len(X)], (len(queries), len(X)))])
                if S.shape[1] > width:
                    top = np.argpartition(-S, width - 1, axis=1)[:, :width]
                    S, I = np.take_along_axis(S, top, 1), np.take_along_axis(I, top, 1)
                best_s, best_i = S, I
            order = np.argsort(-best_s, axis=1, kind="stable")
            out.append((np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)))
        return out

    return search


def _rows(inner: faiss.Index, start: int, n: int) -> np.ndarray:
    try:
        return inner.reconstruct_n(start, n)
    except RuntimeError:  # IVF indexes need a direct map (row -> inverted list entry) to reconstruct
        faiss.extract_index_ivf(inner).make_direct_map()
        return inner.reconstruct_n(start, n)


class _counter:
    """FAISS's work counter of the given shard kinds (``hnsw_stats.ndis``: distances
    computed; ``indexIVF_stats.ndis``: codes scanned), reset on entry."""

    def __init__(self, *kinds: str | None) -> None:
        self.stats = [getattr(faiss.cvar, {"HNSW": "hnsw_stats", "IVF": "indexIVF_stats"}[k])
                      for k in kinds if k is not None]

    def __enter__(self) -> Callable[[], float]:
        for s in self.stats:
            s.reset()
        return lambda: float(sum(s.ndis for s in self.stats))

    def __exit__(self, *exc: object) -> None:
        return None


def _check(index: "MixedIndex", budget: float | None, target_recall: float | None, k: int, n_queries: int,
           holdout: float) -> object:
    if budget is not None and target_recall is not None:
        raise SimstdError("pass either budget (work per query) or target_recall, not both")
    if budget is not None and budget not in Interval(float, 0, None, closed="neither"):
        raise SimstdError(f"budget must be a positive number of distance computations per query, got {budget!r}")
    if target_recall is not None and target_recall not in Interval(float, 0, 1, closed="right"):
        raise SimstdError(f"target_recall must be in (0, 1], got {target_recall!r}")
    if k not in Interval(int, 1):
        raise SimstdError(f"k must be a positive integer, got {k!r}")
    if n_queries not in Interval(int, 2):
        raise SimstdError(f"n_queries must be an integer >= 2, got {n_queries!r}")
    if holdout not in Interval(float, 0, 1, closed="left"):
        raise SimstdError(f"holdout must be in [0, 1), got {holdout!r}")
    if index.standardizer is None:
        raise NotFittedError("tuning needs the index's fitted standardizer (the standardized top-k is what it "
                             "recalls): fit one first (`simstd fit --index ...`)")
    return index.standardizer


def _widths(index: "MixedIndex", std: object, query_modality: str, k: int) -> tuple[dict[str, int], int | None]:
    """How many results :meth:`MixedIndex.search` asks each shard for, and the query's term column:
    the search pipeline's own plan."""
    p = pipeline.plan(index, query_modality, k, standardizer=std)
    return dict(zip(p.names, p.widths)), p.column


def _candidates(index: "MixedIndex", target: str, kind: str, candidates: Sequence[int] | None, k: int) -> list[int]:
    if kind == "HNSW":
        values = sorted({max(int(v), 1) for v in (candidates or HNSW_CANDIDATES)})
        # FAISS searches with max(efSearch, k): smaller values are one setting
        return sorted({max(v, k) for v in values})
    nlist = int(faiss.extract_index_ivf(faiss.downcast_index(index.shards[target].index)).nlist)
    values = candidates or [2**i for i in range(int(np.log2(nlist)) + 1)]
    return sorted({min(max(int(v), 1), nlist) for v in values})


def _current(index: "MixedIndex", query_modality: str, tables: list[PairTable]) -> dict[str, dict[str, int]]:
    """The settings each tuned shard searches with now for queries of ``query_modality``."""
    out = {}
    for tb in tables:
        own = index.shard_search_params(tb.target)
        pair = index.pair_params.get(query_modality, tb.target)
        out[tb.target] = {tb.param: int(pair.get(tb.param, own[tb.param]))}
    return out


__all__ = ["SearchBudget", "PairTable", "tune_search_params", "choose", "measure", "pick", "frontier", "evaluate",
           "exact_search", "split_queries", "recall_at", "entry_work", "HNSW_CANDIDATES"]
