"""The contract between simstd's statistics and any vector store.

A :class:`Searchable` can list and fetch the items of each modality and search
one modality by cosine similarity. That is all mining, the standardizer and
the uncertainty model use, so they fit on a FAISS :class:`~simstd.MixedIndex`,
on plain arrays (:class:`~simstd.engines.numpy.ArraySearcher`) or on a vector
database adapter alike, and never import the index. Like scikit-hubness's
kNN-graph contract, backends and statistics share only this data contract.

Results follow FAISS: ``(D, I)`` with ``D`` the cosines ``(n_queries, k')``
in descending order and ``I`` the items' ids, where ``k' = min(k, count)``.
Ids are int64 (``-1`` marks a missing hit) or, for engines with string/UUID
ids, an object array (``None`` marks a missing hit).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Any, ContextManager, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import NotFittedError, SimstdError
from ..validation import as_embeddings, check_probability, check_query_modality

REQUIRED = ("dim", "modalities", "ids", "reconstruct", "search_modality")


@runtime_checkable
class Searchable(Protocol):
    """Anything simstd can fit on: items of several modalities, searchable per modality."""

    @property
    def dim(self) -> int:
        """Vector dimension."""

    @property
    def modalities(self) -> list[str]:
        """Modality labels of the stored items."""

    def ids(self, modality: str) -> np.ndarray:
        """Ids of the stored items of one modality (1-D)."""

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of ``ids`` (any modalities) as ``(n, dim)`` float32 unit rows."""

    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw cosine top-k ``(D, I)`` among the items of one modality."""


@runtime_checkable
class RankedSearchable(Searchable, Protocol):
    """A :class:`Searchable` that also ranks its own items as queries with a fitted
    standardizer, and states its version (a :class:`~simstd.MixedIndex`): what the
    uncertainty model fits on."""

    @property
    def fingerprint(self) -> str:
        """Changes whenever items are added."""

    def search_like(self, ids: np.ndarray, k: int = 10, **kwargs: Any) -> "SearchResult":
        """Stored items as queries (their own modality), each left out of its own result."""


class CachedCountsStore:
    """The Searchable bookkeeping the vector-database adapters share: ``dim``,
    the modalities and their counts read once from the engine (cached until
    :meth:`refresh`), and the unknown-modality check.

    A subclass sets ``_dim``, implements ``_read_counts()`` (``{modality:
    count}``, raising on an empty or mislabelled store) and names itself in
    ``_holder`` for error messages.
    """

    _dim: int
    _counts: dict[str, int] | None = None

    @property
    def _holder(self) -> str:
        raise NotImplementedError

    def _read_counts(self) -> dict[str, int]:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def counts(self) -> dict[str, int]:
        """Items per modality (read once, cached until :meth:`refresh`)."""
        if self._counts is None:
            self._counts = self._read_counts()
        return dict(self._counts)

    @property
    def modalities(self) -> list[str]:
        return list(self.counts)

    def refresh(self) -> None:
        """Forget the cached modalities and counts (after items were added or removed)."""
        self._counts = None

    def _check(self, modality: str) -> str:
        if modality not in self.counts:
            raise SimstdError(f"unknown modality {modality!r}; {self._holder} holds {self.modalities}")
        return modality


def check_searchable(obj: object) -> Searchable:
    """Return ``obj`` if it satisfies :class:`Searchable`, else raise naming what it lacks."""
    missing = [name for name in REQUIRED if not hasattr(obj, name)]
    if missing:
        raise SimstdError(
            f"cannot fit on a {type(obj).__name__}: it lacks {', '.join(missing)} of the Searchable protocol "
            "(simstd.engines.base.Searchable); pass a MixedIndex, an engine adapter from simstd.engines, "
            "or embeddings with one modality label per row"
        )
    return obj  # type: ignore[return-value]


def count(searchable: Searchable, modality: str | None = None) -> int:
    """Number of items of one modality (all modalities when ``modality`` is None)."""
    labels = searchable.modalities if modality is None else [modality]
    return int(sum(len(searchable.ids(m)) for m in labels))


def search_session(searchable: Searchable) -> ContextManager[None]:
    """The engine's context for many exhaustive-quality searches (e.g. a wider HNSW
    beam while mining), if it defines one through ``mining_session()``."""
    session = getattr(searchable, "mining_session", None)
    return session() if callable(session) else contextlib.nullcontext()


def missing_mask(I: np.ndarray) -> np.ndarray:
    """True where ``I`` marks a missing hit (``-1`` or ``None``)."""
    if I.dtype == object:
        return np.equal(I, None)
    return I < 0


def drop_self(D: np.ndarray, I: np.ndarray, self_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own id from its row of a ``k + 1`` search.

    The one self-exclusion rule (as scikit-learn's ``kneighbors(X=None)``):
    drop the query's own id where it was retrieved, else the last column, so
    every row keeps ``k`` hits. Exact duplicates of the query stay (they are
    other items).
    """
    keep = I != np.asarray(self_ids)[:, None]
    keep[keep.all(axis=1), -1] = False
    shape = (len(D), D.shape[1] - 1)
    return D[keep].reshape(shape), I[keep].reshape(shape)


# ------------------------------------------------------------------ results
class PayloadSource(Protocol):
    """Where a :class:`SearchResult` finds its hits' payloads: ``get(ids) -> {id: payload}``
    (the index's SQLite store, or the payloads an engine returned with its hits)."""

    def get(self, ids: Sequence[Any]) -> Mapping[Any, dict]:
        """Payload of each id that has one."""


class Payloads:
    """Payloads an engine returned with its hits, keyed by the engine's ids."""

    def __init__(self, data: Mapping[Any, dict] | None = None) -> None:
        self.data = dict(data or {})

    def get(self, ids: Sequence[Any]) -> dict[Any, dict]:
        return {i: self.data[i] for i in np.asarray(ids, dtype=object).ravel().tolist() if i in self.data}


@dataclass
class SearchResult:
    """Top-k of a batch of queries. Unpacks like FAISS: ``D, I = result``.

    ``scores`` (D) are standardized scores (raw cosines if ``standardized`` is
    False), ``ids`` (I) the store's ids: int64 with ``-1`` where fewer than k
    items exist, or, for engines with string/UUID ids, an object array with
    ``None`` there; ``raw_scores`` are cosines; ``modalities`` the label of each hit.
    Payloads come from ``store`` (fetched lazily for a MixedIndex, so search
    stays as fast as FAISS; returned with the hits by a vector database).
    With an uncertainty model (``search(..., uncertainty=model)``),
    ``confidence`` is each hit's label-free posterior share ``p`` and
    ``uncertainty`` its ``-ln p`` (docs/uncertainty.md); otherwise both are None.
    """

    scores: np.ndarray
    ids: np.ndarray
    raw_scores: np.ndarray
    modalities: np.ndarray
    query_modality: str
    standardized: bool
    store: PayloadSource | None = field(default=None, repr=False)
    confidence: np.ndarray | None = field(default=None, repr=False)
    uncertainty: np.ndarray | None = field(default=None, repr=False)
    #: How the engine ranked (adapters): ``"engine"`` (per-item terms stored in
    #: it, one search per modality), ``"over-fetch"`` (certified, client-side),
    #: ``"map"`` (per-pair map) or ``"raw"``; None for a MixedIndex.
    route: str | None = field(default=None, repr=False)
    #: Raw hits fetched per query and target modality (adapters; for reports).
    fetched: dict[str, np.ndarray] | None = field(default=None, repr=False)
    #: With an uncertainty model: each hit's match probability (``UncertaintyModel.p_match``
    #: of its ``confidence``; label-free or calibrated on gold pairs, docs/uncertainty.md).
    p_match: np.ndarray | None = field(default=None, repr=False)

    @property
    def query_confidence(self) -> np.ndarray | None:
        """Per-query confidence: the ``confidence`` of each query's rank-1 hit."""
        return None if self.confidence is None else self.confidence[:, 0]

    def above(self, min_prob: float) -> "SearchResult":
        """The same result with the hits whose ``p_match`` is below ``min_prob`` removed
        (their ids become missing: ``-1``, or None for string ids; ranks keep their place)."""
        min_prob = check_probability(min_prob, "min_prob")
        if self.p_match is None:
            raise SimstdError("filtering by match probability needs the uncertainty model: search with "
                              "uncertainty=model (CLI: simstd fit --uncertainty --index ...)")
        drop = ~(self.p_match >= min_prob)
        ids = self.ids.copy()
        ids[drop] = None if ids.dtype == object else -1
        return replace(self, ids=ids, scores=np.where(drop, -np.inf, self.scores).astype(self.scores.dtype),
                       raw_scores=np.where(drop, -np.inf, self.raw_scores).astype(self.raw_scores.dtype),
                       confidence=np.where(drop, 0.0, self.confidence),
                       uncertainty=np.where(drop, np.inf, self.uncertainty),
                       p_match=np.where(drop, 0.0, self.p_match))

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.scores, self.ids))

    def __len__(self) -> int:
        return len(self.ids)

    def hits(self, query: int = 0) -> list[dict]:
        """Hits of one query as dicts: rank, id, modality, score, raw_score,
        (confidence, uncertainty when computed,) metadata."""
        ids = self.ids[query]
        found = ~missing_mask(ids)
        metadata = self.store.get(ids[found]) if self.store is not None else {}
        hits = []
        for rank, i in enumerate(ids.tolist(), start=1):
            if not found[rank - 1]:
                continue
            hit = {
                "rank": rank,
                "id": i,
                "modality": str(self.modalities[query, rank - 1]),
                "score": float(self.scores[query, rank - 1]),
                "raw_score": float(self.raw_scores[query, rank - 1]),
            }
            if self.confidence is not None:
                hit["confidence"] = float(self.confidence[query, rank - 1])
                hit["uncertainty"] = float(self.uncertainty[query, rank - 1])
            if self.p_match is not None:
                hit["p_match"] = float(self.p_match[query, rank - 1])
            hit["metadata"] = metadata.get(i, {})
            hits.append(hit)
        return hits


# --------------------------------------------------------- standardized search
class Transform(Protocol):
    """What a search needs of a fitted :class:`~simstd.Standardizer` (typed here
    without importing it: engines sit below the statistics)."""

    query_shift: float
    shift_k: int
    has_item_terms: bool
    query_depth: int

    def affine(self, query_modality: str, target_modality: str) -> tuple[float, float]: ...

    def transform(self, scores: np.ndarray, query_modality: str, target_modalities: object) -> np.ndarray: ...

    def check_index(self, index: Searchable) -> None: ...


@dataclass
class SearchPlan:
    """A checked standardized (or raw) search: unit queries, target modalities,
    and how many raw hits each modality must return (``depth``)."""

    queries: np.ndarray
    query_modality: str
    k: int
    targets: list[str]
    depth: int
    standardizer: Transform | None
    #: Raw candidates fetched per query and target (set by :func:`gather`; for reports).
    fetched: dict[str, np.ndarray] = field(default_factory=dict)
    #: Which path :func:`gather` took (see :attr:`SearchResult.route`).
    route: str = ""

    @property
    def hubness(self) -> bool:
        """A fit with per-item terms (``method="hubness"``): they reorder items within a modality."""
        return self.standardizer is not None and bool(getattr(self.standardizer, "has_item_terms", False))

    @property
    def client_side(self) -> bool:
        """Whether the map needs more than per-pair statistics (a query term or
        per-item terms), so an engine that applies per-pair maps cannot rank alone."""
        return self.standardizer is not None and (bool(self.standardizer.query_shift) or self.hubness)

    @property
    def maps(self) -> list[tuple[float, float]]:
        """``(mean, std)`` of (query modality, target) for every target (paper's per-pair map)."""
        assert self.standardizer is not None
        return [self.standardizer.affine(self.query_modality, m) for m in self.targets]


def plan_search(
    searchable: Searchable,
    queries: np.ndarray,
    query_modality: str,
    k: int,
    *,
    standardizer: Transform | None = None,
    raw: bool = False,
    targets: Sequence[str] | None = None,
) -> SearchPlan:
    """Check the arguments of an adapter's ``search`` the way MixedIndex checks its own."""
    check_query_modality(query_modality, searchable.modalities)
    queries = as_embeddings(queries, "queries", searchable.dim)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise SimstdError(f"k must be a positive integer, got {k!r}")
    stored = searchable.modalities
    if not stored:
        raise SimstdError(f"the {type(searchable).__name__} is empty: add vectors before searching")
    names = list(targets) if targets is not None else list(stored)
    if not names:
        raise SimstdError("targets is empty: name at least one target modality")
    for m in names:
        if m not in stored:
            raise SimstdError(f"unknown target modality {m!r}; the collection holds {stored}")
    depth = int(k)
    if raw:
        standardizer = None
    else:
        if standardizer is None:
            raise NotFittedError(
                "pass a fitted standardizer (standardizer=Standardizer().fit(searcher)), or search with raw=True"
            )
        standardizer.check_index(searchable)
        if getattr(standardizer, "strata_", None) is not None:
            raise SimstdError("a stratified fit (strata=...) ranks each stratum's own top-k, which this engine "
                              "adapter does not search yet: search a MixedIndex, or fit without strata")
        for m in names:  # fail before searching if a pair was never fitted
            standardizer.affine(query_modality, m)
        # A query-side term (query_shift's shift_k best, the hubness query term's hubness_k best by u).
        depth = max(depth, int(getattr(standardizer, "query_depth", 0)))
    return SearchPlan(queries, query_modality, int(k), names, depth, standardizer)


#: First over-fetch of a hubness search, as a multiple of the depth needed.
HUBNESS_WIDTH = 4


def terms_in_engine(searchable: Searchable, std: Transform | None) -> bool:
    """Whether ``searchable`` holds ``std``'s per-item terms beside its vectors
    (written by its ``store_terms(std)``) for every item it has now, so the
    engine ranks by ``u = s - rho / 2`` itself."""
    read = getattr(searchable, "stored_terms", None)
    if std is None or not callable(read):
        return False
    record = read()
    counts = getattr(searchable, "counts", None)
    return (record is not None and record.get("digest") == getattr(std, "terms_digest_", None)
            and record.get("modalities") == list(std.modalities_)
            and isinstance(counts, dict) and int(record.get("n", -1)) == sum(counts.values()))


def gather(searchable: Searchable, plan: SearchPlan) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each target modality's candidates for :func:`merge_topk`: its raw top
    ``plan.depth``, or, for a hubness fit, its top ``plan.depth`` by
    ``u = s - rho_c / 2``: one engine search when the engine stores the terms
    (``search_corrected``), else enough raw hits to certify them
    (:func:`certified_candidates`). ``plan.route`` names the path taken."""
    parts = []
    if not plan.hubness:
        plan.route = "raw" if plan.standardizer is None else "map"
    elif terms_in_engine(searchable, plan.standardizer):
        plan.route = "engine"
    else:
        plan.route = "over-fetch"
    for m in plan.targets:
        if plan.route == "engine":
            D, I = searchable.search_corrected(plan.queries, plan.query_modality, m, plan.depth,  # type: ignore
                                               plan.standardizer)
        elif plan.route == "over-fetch":
            D, I = certified_candidates(searchable, plan, m)
        else:
            D, I = searchable.search_modality(plan.queries, m, plan.depth)
        plan.fetched[m] = (~missing_mask(I)).sum(axis=1)
        parts.append((D, I))
    return parts


_FLOORS: dict[tuple, tuple[int, float]] = {}


def _term_floor(searchable: Searchable, std: Transform, a: str, modality: str) -> tuple[int, float]:
    """``(count, smallest rho^a)`` of the items of ``modality``, cached per store,
    fit and count (the items' own modality bounds it far tighter than all items)."""
    counts = getattr(searchable, "counts", None)
    size = int(counts[modality]) if isinstance(counts, dict) else None
    key = (id(searchable), getattr(std, "terms_digest_", None), a, modality, size)
    if size is None or key not in _FLOORS:
        ids = np.asarray(searchable.ids(modality))
        size = len(ids)
        if len(_FLOORS) > 64:
            _FLOORS.clear()
        _FLOORS[key[:4] + (size,)] = (size, float(np.min(std.item_terms(ids, a))) if size else 0.0)
        key = key[:4] + (size,)
    return _FLOORS[key]


def certified_candidates(searchable: Searchable, plan: SearchPlan, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw hits of ``modality`` that provably contain each query's top ``plan.depth``
    by the item-corrected similarity ``u = s - rho_c / 2`` (hubness method).

    An engine that ranks by raw cosine cannot rank by ``u``, but it can over-fetch:
    an item outside a query's raw top ``W`` has ``s <= s_W``, so ``u <= s_W - rho_min / 2``
    (``rho_min`` the smallest term of the fit). Once the ``depth``-th best ``u`` among
    the ``W`` hits reaches that bound, no unseen item can enter the top ``depth``;
    rows that fall short are searched again at 4x the width, up to the whole
    modality. So the result is exact, at the cost of a wider raw search.
    """
    std = plan.standardizer
    a, d = plan.query_modality, plan.depth
    size, rho_min = _term_floor(searchable, std, a, modality)
    nq = len(plan.queries)
    found: list[tuple[np.ndarray, np.ndarray] | None] = [None] * nq
    pending = np.arange(nq)
    width = min(size, HUBNESS_WIDTH * d)
    while len(pending):
        D, I = searchable.search_modality(plan.queries[pending], modality, width)
        valid = ~missing_mask(I)
        D = np.where(valid, D, -np.inf).astype(np.float64)
        # Missing hits (-1 / None) get term 0 and u = -inf.
        u = np.where(valid, D - 0.5 * std.item_terms(I, a), -np.inf)
        kth = -np.partition(-u, d - 1, axis=1)[:, d - 1] if u.shape[1] >= d else np.full(len(u), -np.inf)
        last = D[:, -1] if D.shape[1] else np.full(len(D), -np.inf)
        done = (width >= size) | ~valid[:, -1] | (kth >= last - 0.5 * rho_min)
        for r in np.flatnonzero(done):
            found[pending[r]] = (D[r], I[r])
        pending = pending[~done]
        width = min(size, width * HUBNESS_WIDTH)
    wide = max(len(x[0]) for x in found)
    as_object = any(x[1].dtype == object for x in found)
    Dout = np.full((nq, wide), np.nan, np.float32)
    Iout = np.full((nq, wide), None if as_object else -1, dtype=object if as_object else np.int64)
    for r, (Dr, Ir) in enumerate(found):
        Dout[r, : len(Dr)] = Dr
        Iout[r, : len(Ir)] = Ir
    return Dout, Iout


def merge_topk(
    parts: Sequence[tuple[np.ndarray, np.ndarray]],
    plan: SearchPlan,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-modality raw top lists into one top-k: ``(Z, S, I, labels)``.

    ``parts[j]`` is ``search_modality``'s ``(D, I)`` for ``plan.targets[j]``.
    Within a target modality the standardization is increasing, so the
    top-k by standardized score lies in the union of these lists (exact when
    each list is the modality's exact raw top ``plan.depth``). Missing hits
    (``-1``/``None``) rank last with score ``-inf``; rows with fewer than k
    candidates are padded with missing hits. Ties keep the candidates' order.
    """
    widths = [np.shape(d)[1] for d, _ in parts]
    S = np.concatenate([np.asarray(d, dtype=np.float32) for d, _ in parts], axis=1)
    ids = [np.asarray(i) for _, i in parts]
    as_object = any(i.dtype == object for i in ids)
    I = np.concatenate([i.astype(object) if as_object else i.astype(np.int64) for i in ids], axis=1)
    nq, width = S.shape
    if width < plan.k:  # fewer stored items than k: pad like FAISS
        pad = plan.k - width
        S = np.concatenate([S, np.full((nq, pad), np.nan, np.float32)], axis=1)
        I = np.concatenate([I, np.full((nq, pad), None if as_object else -1, dtype=I.dtype)], axis=1)
        widths = widths + [pad]
    names = list(plan.targets) + ([""] if len(widths) > len(plan.targets) else [])
    codes = np.repeat(np.arange(len(widths)), widths)
    column_labels = np.asarray(names, dtype=object)[codes]
    missing = missing_mask(I)
    S = np.where(missing, np.float32(np.nan), S)
    if plan.standardizer is None:
        Z = S.copy()
    else:
        real = codes < len(plan.targets)
        Z = np.full(S.shape, np.nan, np.float32)
        extra = {}
        if plan.hubness:  # per-item terms, looked up by the store's ids (missing hits: term 0)
            extra["ids"] = I[:, real]
        Z[:, real] = plan.standardizer.transform(
            np.where(missing[:, real], -np.inf, S[:, real]), plan.query_modality, column_labels[real][None, :],
            **extra,
        ).astype(np.float32)
    key = np.where(missing | np.isnan(Z), -np.inf, Z)
    order = np.argsort(-key, axis=1, kind="stable")[:, : plan.k]
    rows = np.arange(nq)[:, None]
    Z, S, I = key[rows, order], S[rows, order], I[rows, order]
    labels = np.where(missing_mask(I), "", column_labels[order]).astype(object)
    return Z, S, I, labels
