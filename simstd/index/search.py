"""Standardized search over a shard set: plan, gather, score, select.

For a fixed query modality a method's standardization is a strictly
increasing map of the score each shard ranks by, within each target modality
(an affine map of the cosine; with per-item terms folded into the shards, of
the item-corrected similarity). So the standardized top-k over everything
lies in the union of each shard's top-k: :func:`search` asks every shard for
its top candidates (one raw FAISS search each; per-pair search parameters and
bridges apply), scores them with the fitted method and merges. On ``Flat``
shards the result equals brute force exactly, for the price of one raw search.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ..engines.base import SearchResult
from ..errors import NotFittedError, SimstdError, StaleFitWarning
from ..validation import check_label, check_modality
from .bridges import Bridges
from .params import PairParams
from .partitions import blocks
from .shards import ShardSet
from .terms import fold

#: ``(padded queries, shard names, widths) -> [(D, I)]``: a replacement for the FAISS
#: shard searches (simstd.tuning's brute-force reference).
ShardSearch = Callable[[np.ndarray, list[str], list[int]], list[tuple[np.ndarray, np.ndarray]]]


class Searched(Protocol):
    """What the pipeline reads of an index (a :class:`~simstd.MixedIndex`)."""

    shard_set: ShardSet
    pair_params: PairParams
    bridge_table: Bridges
    store: Any
    standardizer: Any
    dim: int
    fingerprint: str


@dataclass
class Plan:
    """A checked search: shards to search, candidates per shard, and the fitted method."""

    query_modality: str
    k: int
    names: list[str]
    widths: list[int]
    sizes: list[int]
    standardizer: Any  # None: raw cosine
    column: int | None  # the query modality's term column (fits with item terms)
    maps: list[tuple[float, float]]  # (centre, scale) of each searched shard's pair (empty for raw)
    #: A stratified fit: the query's stratum, and each searched block's rows (a stratum of
    #: the shard ``names[j]``; None: the whole shard). ``names`` then repeats a modality.
    stratum: str | None = None
    subsets: list | None = None


def plan(index: Searched, query_modality: str, k: int, *, standardizer: Any = None, raw: bool = False,
         targets: Sequence[str] | None = None, uncertainty: Any = None, rerank: str | None = None,
         rerank_weight: float = 1.0, strict: bool = False, exclude: np.ndarray | None = None,
         query_stratum: str | None = None) -> Plan:
    """Check a search and size it: each shard's candidates are ``k``, the method's
    query term's depth and the uncertainty model's depth (its tail model); a
    ``search_like`` query's own item is one more candidate in its own shard.
    With a stratified fit every stratum of a shard is a block of its own, scored
    with the pair (``query_stratum``, its stratum)."""
    shards = index.shard_set
    check_label(query_modality, "query modality")
    if shards.ntotal == 0:
        raise SimstdError("the index is empty: add vectors before searching")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise SimstdError(f"k must be a positive integer, got {k!r}")
    names = list(targets) if targets is not None else shards.modalities
    for m in names:
        shards.check_modality(m, "target modality")
    if uncertainty is not None or rerank is not None:
        from ..uncertainty.model import check_rerank  # lazy: plain searches do not need the module

        if check_rerank(rerank, rerank_weight) and (uncertainty is None or raw):
            raise SimstdError('rerank="uncertainty" needs a fitted uncertainty model (uncertainty=...) and '
                              "standardized scores (raw=False); fit one with UncertaintyModel().fit(index) "
                              "(CLI: simstd fit --uncertainty)")
        if uncertainty is not None:
            uncertainty.check_index(index, strict=strict)
    needed, column, maps = k, None, []
    stratum, subsets, sizes = None, None, None
    if raw:
        standardizer = None
    else:
        standardizer = standardizer or index.standardizer
        if standardizer is None:
            raise NotFittedError(
                "the index has no fitted standardizer: run `simstd fit --index ...` "
                "(Python: index.standardizer = Standardizer().fit(index)), or search with raw=True"
            )
        standardizer.check_index(index, strict=strict)
        check_modality(query_modality, [*shards.modalities, *standardizer.modalities_])  # a slip, not a refit
        strata = getattr(standardizer, "strata_", None)
        fitted = standardizer.modalities_ if strata is None else strata.modalities
        unfitted = [m for m in names if m not in fitted]
        if unfitted and targets is None and not strict and len(unfitted) < len(names):
            # A modality added after the fit has no statistics: the others keep serving (stale fit).
            warnings.warn(f"the fit has no statistics for {unfitted} (added after it): those items are left out "
                          f"until you refit (simstd fit --index ...)", StaleFitWarning, stacklevel=4)
            names = [m for m in names if m not in unfitted]
        if strata is not None:
            if uncertainty is not None:
                raise SimstdError("the uncertainty model describes modality pairs; a stratified fit keys its pairs "
                                  "by stratum: search without uncertainty, or fit without strata")
            stratum = strata.query_label(query_modality, query_stratum)
            parts = blocks(shards, index.store, strata, names)
            names, subsets, sizes = [b.modality for b in parts], [b.subset for b in parts], [b.size for b in parts]
            maps = [standardizer.affine(stratum, b.label) for b in parts]  # fails before searching
        else:
            maps = [standardizer.affine(query_modality, m) for m in names]  # fails before searching
        needed = max(k, standardizer.query_depth)
    if query_stratum is not None and stratum is None:
        raise SimstdError("query_stratum applies to a stratified fit (Standardizer(strata=...), simstd fit --strata); "
                          "this search has none: drop it")
    own = stratum or query_modality
    if sizes is None:
        sizes = [shards.shards[m].ntotal for m in names]
    labels = [b.label for b in parts] if stratum is not None else names
    full = list(sizes)
    if exclude is not None:  # each query's own item is not a candidate
        sizes = [n - int(m == own) for m, n in zip(labels, sizes)]
    available = sum(sizes)
    if k > available:
        raise SimstdError(f"k={k} is larger than the {available} searchable items; use k <= {available}")
    if standardizer is not None and standardizer.has_item_terms:
        fold(shards, standardizer)
        column = shards.term_modalities.index(own)
    tail = 0 if uncertainty is None else int(uncertainty.depth)
    widths = [min(max(needed + int(exclude is not None and m == own), tail), n) for m, n in zip(labels, full)]
    return Plan(query_modality, int(k), names, widths, sizes, standardizer, column, maps, stratum, subsets)


def gather(index: Searched, queries: np.ndarray, p: Plan, shard_params: list | None = None,
           shard_search: ShardSearch | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each planned shard's top candidates ``(D, I)``, sorted best first (FAISS's order)."""
    shards = index.shard_set
    padded = shards.pad(queries, p.column)
    if shard_search is not None:
        if p.subsets is not None:
            raise SimstdError("a stratified fit searches each stratum of a shard on its own; this shard search "
                              "replacement (tuning) cannot: tune with an unstratified fit")
        return shard_search(padded, p.names, p.widths)
    params = shard_params if shard_params is not None else index.pair_params.for_shards(shards, p.query_modality,
                                                                                         p.names)
    if p.subsets is not None:  # one restricted search per stratum (no bridges: they enter a whole shard)
        return shards.search_each(padded, p.names, p.widths, params, p.subsets)
    bridged = index.bridge_table.bridged(p.query_modality, p.names)
    if bridged:
        return index.bridge_table.search(shards, padded, p.names, p.widths, p.query_modality, params, bridged)
    return shards.search_each(padded, p.names, p.widths, params)


def search(index: Searched, queries: np.ndarray, query_modality: str, k: int, *, standardizer: Any = None,
           raw: bool = False, targets: Sequence[str] | None = None, uncertainty: Any = None,
           rerank: str | None = None, rerank_weight: float = 1.0, strict: bool = False,
           exclude: np.ndarray | None = None, shard_params: list | None = None,
           shard_search: ShardSearch | None = None, query_stratum: str | None = None) -> SearchResult:
    """The standardized (or raw) top-k of unit ``queries`` over the planned shards.

    ``exclude`` (one id per query) leaves each query's own item out before any
    query-dependent term is computed (``search_like``); ``shard_params`` (one
    FAISS ``SearchParameters`` or None per searched shard) replaces the
    per-pair search parameters, and ``shard_search`` the FAISS shard searches.
    """
    p = plan(index, query_modality, k, standardizer=standardizer, raw=raw, targets=targets,
             uncertainty=uncertainty, rerank=rerank, rerank_weight=rerank_weight, strict=strict, exclude=exclude,
             query_stratum=query_stratum)
    found = gather(index, queries, p, shard_params, shard_search)
    S = np.concatenate([d for d, _ in found], axis=1) if len(found) > 1 else found[0][0]
    I = np.concatenate([i for _, i in found], axis=1) if len(found) > 1 else found[0][1]
    if exclude is not None:
        I = np.where(I == np.asarray(exclude)[:, None], -1, I)
    # Column j of the candidates comes from shard codes[j]; score all columns in one
    # vectorised step (same float32 arithmetic per element).
    codes = np.repeat(np.arange(len(p.names), dtype=np.int16), p.widths)
    missing = I < 0
    if p.standardizer is None:
        Z = S
    else:
        std = p.standardizer
        mean = np.repeat(np.array([a for a, _ in p.maps], dtype=np.float32), p.widths)
        scale = np.repeat(np.array([b for _, b in p.maps], dtype=np.float32), p.widths)
        method = std.backend_
        # The method's score of each candidate and the raw cosines (with item terms folded
        # in, FAISS returned u = s - rho/2, and the score is 2u - r_q).
        S, V = method.block_scores(std, S, I, missing, p.widths, p.stratum or query_modality)
        Z = method.adjust_blocks(std, (V - mean) / scale, I, p.widths)
    if missing.any():
        Z = np.where(missing, np.float32(-np.inf), Z).astype(np.float32, copy=False)
    return select(index, p, Z, S, I, codes, missing, uncertainty, rerank, rerank_weight)


def select(index: Searched, p: Plan, Z: np.ndarray, S: np.ndarray, I: np.ndarray, codes: np.ndarray,
           missing: np.ndarray, uncertainty: Any, rerank: str | None, rerank_weight: float) -> SearchResult:
    """The top-k of the scored candidates (or of ``z - w * uncertainty`` with the rerank)."""
    U = None
    key = Z
    if uncertainty is not None:
        # The model describes raw cosines, for either method (docs/uncertainty.md).
        U = uncertainty.uncertainty(S, I, codes, p.names, p.query_modality, p.sizes)
        if rerank == "uncertainty":
            key = np.where(missing, -np.inf, Z - rerank_weight * np.where(missing, 0.0, U))
    k = p.k
    rows = np.arange(len(Z))[:, None]
    if key.shape[1] > k:
        top = np.argpartition(-key, k - 1, axis=1)[:, :k]
        pos = top[rows, np.argsort(-key[rows, top], axis=1, kind="stable")]
    else:
        pos = np.argsort(-key, axis=1, kind="stable")
    Z, S, I = Z[rows, pos], S[rows, pos], I[rows, pos]
    C = codes[pos]
    labels = np.asarray(p.names + [""], dtype=object)[np.where(I >= 0, C, len(p.names))]
    standardized = p.standardizer is not None
    if U is None:
        return SearchResult(Z, I, S, labels, p.query_modality, standardized, index.store)
    U = U[rows, pos]
    P = np.exp(-U)
    return SearchResult(Z, I, S, labels, p.query_modality, standardized, index.store, P, U,
                        p_match=uncertainty.p_match(P))
