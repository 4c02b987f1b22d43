"""One HNSW graph per query modality over every item, in the standardized space (issue 18).

An experimental search path, measured against the per-modality shards by
``benchmarks/hnsw_budget.py --joint`` (docs/performance.md). For a query of
modality ``a`` the standardized score of item ``c`` of modality ``b`` is an
inner product of an augmented query with an augmented item, so one FAISS
inner-product HNSW graph (maximum inner product search) over all items ranks
by it directly, instead of one graph per modality merged afterwards:

* the paper's method (Yamashita, Shirafuji and Saito, 2025),
  ``z = (s - mean_ab) / std_ab``: item ``[c / std_ab, -mean_ab / std_ab]``,
  query ``[q, 1]``;
* the default (hubness-corrected, CSLS after Conneau et al., ICLR 2018;
  :mod:`simstd.hubness`), ``z = (2 s - rho_c^a - r_q^b - mean_ab) / std_ab``:
  item ``[2 c / std_ab, -rho_c^a / std_ab, -mean_ab / std_ab, -e_b / std_ab]``
  (``e_b``: one-hot over the target modalities), query
  ``[q, 1, 1, r_q^1, ..., r_q^B]``.

``r_q^b`` (the mean cosine of the query's ``K`` best items of ``b`` by
``u = s - rho/2``) depends on the query and the target modality, so it is not
known before searching. Two ways are measured (``terms``):

* ``"graph"``: one search of the joint graph with each ``r_q^b`` at its mean
  over the fit's pseudo queries (``prior``); within one target modality that
  prior shifts every item alike, so the candidates of ``b`` come back in
  ``u`` order, and ``r_q^b`` is computed from the first ``K`` of them and
  every candidate rescored exactly. Work: one graph search.
* ``"shards"``: ``r_q^b`` from a ``K``-nearest search of each modality's own
  shard (``term_ef``), then one search of the joint graph with the exact
  terms. Work: those searches plus the graph search.

Either returns the exact standardized top-k when its search covers every item
(``ef`` and ``term_ef`` at least the item counts, on connected graphs).

Costs: one graph per query modality over all ``N`` items, of ``dim + 2 + B``
dimensions (``dim + 1`` for the paper), beside the shards; rebuilt at every
fit (``mean``, ``std`` and the terms change). Items added after a fit get
their terms against the fit's banks with the statistics unchanged
(:meth:`Standardizer.extend_terms`), so until the next fit appending them to
the graph (``add``) suffices.
"""
from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from .. import hubness
from ..errors import NotFittedError, SimstdError
from ..validation import check_modality
from .bridges import BRIDGE_ENTRIES, unique_rows
from .shards import ShardSet
from .terms import fold

#: Rows per ``add`` while building (bounds the augmented copy held at once).
_BLOCK = 50_000


class JointGraph:
    """An inner-product HNSW graph over every item, augmented for queries of one modality."""

    def __init__(self, query_modality: str, graph: faiss.IndexHNSW, targets: list[str], codes: np.ndarray,
                 maps: np.ndarray, prior: np.ndarray | None, hubness_k: int, fingerprint: str) -> None:
        self.query_modality = query_modality
        self.graph = graph
        self.targets = targets
        self.codes = codes  # target code of each global id
        self.maps = maps  # (B, 2): centre, scale of each target's pair
        self.prior = prior  # (B,) mean r_q^b over the fit's pseudo queries; None for the paper's method
        self.hubness_k = hubness_k
        self.fingerprint = fingerprint  # of the fit it was built from

    @property
    def ntotal(self) -> int:
        return int(self.graph.ntotal)

    @classmethod
    def build(cls, index: Any, query_modality: str, *, M: int = 16, ef_construction: int = 40,
              prior_queries: int = 500, seed: int = 0) -> "JointGraph":
        """Build the graph of ``index`` (a fitted :class:`~simstd.MixedIndex`) for queries of
        ``query_modality``: ``M`` and ``ef_construction`` as FAISS's ``IndexHNSWFlat``;
        ``prior_queries`` stored items of that modality estimate the prior ``r_q^b``."""
        std = index.standardizer
        if std is None:
            raise NotFittedError("a joint graph ranks by a fit: fit the index first (simstd fit --index ...)")
        shards: ShardSet = index.shard_set
        check_modality(query_modality, std.modalities_, "query modality")
        targets = shards.modalities
        unfitted = [m for m in targets if m not in std.modalities_]
        if unfitted:
            raise SimstdError(f"the fit has no statistics for {unfitted}: refit before building a joint graph")
        if getattr(std, "query_shift", 0):
            raise SimstdError("a joint graph needs a score affine in the cosine per target; fit without query_shift")
        terms = std.has_item_terms
        if terms:
            fold(shards, std)
        B, n = len(targets), shards.ntotal
        width = shards.dim + (2 + B if terms else 1)
        maps = np.array([std.affine(query_modality, t) for t in targets], dtype=np.float64)
        graph = faiss.IndexHNSWFlat(width, M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = ef_construction
        codes = np.empty(n, dtype=np.int16)
        for code, t in enumerate(targets):
            codes[shards.row_ids[t]] = code
        # Items go in global id order (the graph's row = the global id: MixedIndex ids are 0..n-1).
        for start in range(0, n, _BLOCK):
            ids = np.arange(start, min(start + _BLOCK, n), dtype=np.int64)
            graph.add(_items(shards, std, query_modality, ids, codes[ids], maps, terms, width))
        prior = _prior(index, std, query_modality, targets, prior_queries, seed) if terms else None
        return cls(query_modality, graph, targets, codes, maps, prior, int(getattr(std, "hubness_k", 0)),
                   _fit_key(std, query_modality, targets))

    def query_vectors(self, queries: np.ndarray, r: np.ndarray | None) -> np.ndarray:
        """``[q, 1]`` (paper) or ``[q, 1, 1, r_q^1..r_q^B]`` (hubness) of unit queries."""
        nq, d = queries.shape
        out = np.zeros((nq, self.graph.d), dtype=np.float32)
        out[:, :d] = queries
        out[:, d] = 1.0
        if self.prior is not None:
            out[:, d + 1] = 1.0
            out[:, d + 2 :] = r
        return out

    def search(self, index: Any, queries: np.ndarray, k: int, ef: int, *, terms: str = "graph",
               term_ef: int = 16, bridged: bool = False, entry_ef: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """The standardized top-``k`` ``(Z, I)`` of unit ``queries`` (of the graph's modality):
        one joint graph search with ``efSearch=ef`` (``terms``: how ``r_q^b`` is found, see
        the module docstring; ``term_ef``: the shard searches' ``efSearch`` for ``"shards"``).

        ``bridged``: the modalities lie apart (the modality gap), so a graph search from
        the top stays among the query's own modality. Instead, a first search
        (``efSearch=entry_ef``) finds the query's best items, and the bottom layer is
        searched from them and from their bridges into every other modality
        (``MixedIndex.build_bridges``: each item's nearest item of the other modality).
        """
        std = index.standardizer
        if std is None or _fit_key(std, self.query_modality, self.targets) != self.fingerprint:
            raise SimstdError("the joint graph was built from another fit: rebuild it (JointGraph.build)")
        if terms not in ("graph", "shards"):
            raise SimstdError(f"terms must be 'graph' or 'shards', got {terms!r}")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.prior is None:  # the paper's method: the inner product is z itself
            return self._search(index, self.query_vectors(queries, None), k, ef, bridged, entry_ef)
        centre, scale = self.maps[:, 0], self.maps[:, 1]
        if terms == "shards":
            r = self.shard_terms(index, queries, term_ef)
            return self._search(index, self.query_vectors(queries, r), k, ef, bridged, entry_ef)
        prior = np.broadcast_to(self.prior, (len(queries), len(self.targets)))
        width = max(int(ef), int(k))
        D, I = self._search(index, self.query_vectors(queries, prior), width, ef, bridged, entry_ef)
        valid = I >= 0
        code = self.codes[np.where(valid, I, 0)]
        # D = (2u - prior_b - centre_b) / scale_b, so 2u follows; within a target the
        # candidates are in u order (best first), and r_q^b is the mean cosine of its first K.
        two_u = D.astype(np.float64) * scale[code] + prior[0][code] + centre[code]
        rho = std.item_terms(np.where(valid, I, 0), self.query_modality)
        cosines = 0.5 * (two_u + rho)
        r = np.stack([hubness.nearest_mean(cosines, valid & (code == b), self.hubness_k)
                      for b in range(len(self.targets))], axis=1)
        Z = np.where(valid, (two_u - r[np.arange(len(I))[:, None], code] - centre[code]) / scale[code], -np.inf)
        top = np.argsort(-Z, axis=1, kind="stable")[:, :k]
        rows = np.arange(len(I))[:, None]
        return Z[rows, top].astype(np.float32), I[rows, top]

    def _search(self, index: Any, qv: np.ndarray, k: int, ef: int, bridged: bool,
                entry_ef: int) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersHNSW()
        params.efSearch = int(ef)
        if not bridged:
            return self.graph.search(qv, k, params=params)
        first = faiss.SearchParametersHNSW()
        first.efSearch = int(entry_ef)
        _, own = self.graph.search(qv, BRIDGE_ENTRIES, params=first)
        entries = unique_rows(self.entries(index, own))
        nq, ne = entries.shape
        X = self.graph.reconstruct_batch(np.maximum(entries, 0).ravel()).reshape(nq, ne, -1)
        near = np.ascontiguousarray(np.einsum("qd,qed->qe", qv, X), dtype=np.float32)
        params.efSearch = max(int(ef), int(k))  # the bottom-layer search returns at most efSearch results
        D = np.empty((nq, k), dtype=np.float32)
        I = np.empty((nq, k), dtype=np.int64)
        self.graph.search_level_0(nq, faiss.swig_ptr(qv), k, faiss.swig_ptr(entries), faiss.swig_ptr(near),
                                  faiss.swig_ptr(D), faiss.swig_ptr(I), ne, 2, params)
        return D, I

    def entries(self, index: Any, found: np.ndarray) -> np.ndarray:
        """Bottom-layer entry rows: the ``found`` items and, for those of the query's
        modality, their bridges into every other modality (rows = global ids)."""
        shards, table = index.shard_set, index.bridge_table.rows
        a = self.query_modality
        found = np.where(found >= 0, found, found[:, :1])
        out = [found]
        mine = self.codes[found] == self.targets.index(a)
        rows = shards.rows(a, np.where(mine, found, shards.row_ids[a][0]))
        for b in self.targets:
            if b == a:
                continue
            if (a, b) not in table:
                raise SimstdError(f"no bridges from {a!r} to {b!r}: run index.build_bridges() first")
            out.append(np.where(mine, shards.row_ids[b][table[(a, b)][rows]], found))
        return np.hstack(out)

    def shard_terms(self, index: Any, queries: np.ndarray, term_ef: int) -> np.ndarray:
        """``r_q^b`` of each target from a ``K``-nearest search (by ``u``) of its own shard."""
        std, shards = index.standardizer, index.shard_set
        padded = shards.pad(queries, shards.term_modalities.index(self.query_modality))
        params = faiss.SearchParametersHNSW() if _is_hnsw(shards, self.targets) else None
        if params is not None:
            params.efSearch = int(term_ef)
        out = np.empty((len(queries), len(self.targets)), dtype=np.float64)
        for b, t in enumerate(self.targets):
            U, I = shards.search(t, padded, min(self.hubness_k, shards.shards[t].ntotal), params)
            valid = I >= 0
            cosines = U + 0.5 * std.item_terms(np.where(valid, I, 0), self.query_modality)
            out[:, b] = hubness.nearest_mean(cosines, valid, self.hubness_k)
        return out


def _fit_key(std: Any, a: str, targets: list[str]) -> str:
    """What a joint graph depends on in a fit: its pairs' maps and its item terms."""
    maps = ",".join(f"{c!r}:{s!r}" for c, s in (std.affine(a, t) for t in targets))
    return f"{std.method}|{getattr(std, 'terms_digest_', None)}|{maps}"


def _is_hnsw(shards: ShardSet, targets: list[str]) -> bool:
    return all(isinstance(faiss.downcast_index(shards.shards[t].index), faiss.IndexHNSW) for t in targets)


def _items(shards: ShardSet, std: Any, a: str, ids: np.ndarray, codes: np.ndarray, maps: np.ndarray,
           terms: bool, width: int) -> np.ndarray:
    """The augmented vectors of items ``ids`` for queries of modality ``a``."""
    d = shards.dim
    centre, scale = maps[codes, 0], maps[codes, 1]
    out = np.zeros((len(ids), width), dtype=np.float32)
    X = shards.reconstruct(ids)
    if not terms:
        out[:, :d] = X / scale[:, None]
        out[:, d] = -centre / scale
        return out
    out[:, :d] = 2.0 * X / scale[:, None]
    out[:, d] = -std.item_terms(ids, a) / scale
    out[:, d + 1] = -centre / scale
    out[np.arange(len(ids)), d + 2 + codes] = -1.0 / scale
    return out


def _prior(index: Any, std: Any, a: str, targets: list[str], n: int, seed: int) -> np.ndarray:
    """Mean ``r_q^b`` per target over ``n`` stored items of modality ``a`` as queries
    (each left out of its own neighbours), from exact searches (a fit's mining session)."""
    shards: ShardSet = index.shard_set
    rng = np.random.default_rng(seed)
    own = shards.row_ids[a]
    ids = np.sort(rng.choice(own, size=min(n, len(own)), replace=False))
    padded = shards.pad(shards.reconstruct(ids), shards.term_modalities.index(a))
    K = int(std.hubness_k)
    out = np.empty(len(targets))
    with shards.mining_session():
        for b, t in enumerate(targets):
            U, I = shards.search(t, padded, min(K + 1, shards.shards[t].ntotal))
            valid = (I >= 0) & (I != ids[:, None])
            cosines = U + 0.5 * std.item_terms(np.where(I >= 0, I, 0), a)
            out[b] = float(hubness.nearest_mean(cosines, valid, K).mean())
    return out
