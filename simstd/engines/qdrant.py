"""Qdrant: standardized search over an existing collection, computed by Qdrant.

:class:`QdrantSearcher` wraps a ``qdrant_client.QdrantClient`` (local mode,
``QdrantClient(":memory:")`` or a path, or a server) and a collection whose
points carry their modality in a payload key. It satisfies
:class:`~simstd.engines.base.Searchable`, so ``Standardizer(method="paper").fit(searcher)``
mines pseudo positives (Yamashita, Shirafuji and Saito, 2025) through
Qdrant's own search, and its :meth:`QdrantSearcher.search` ranks server-side:
one ``Prefetch`` per target modality (filtered on the modality key, limit k)
and a ``FormulaQuery`` summing, over the modalities ``j``,
``[modality == m_j] * ($score[j] - mean_j) / std_j``. The condition is kept
because a point missing from prefetch ``j`` scores 0 there, not nothing. For a
fixed query modality the map is increasing within each target modality, so
the standardized top-k lies in the union of the per-modality raw top-k: the
result is exact whenever each prefetch is (Qdrant's exact search, or its HNSW
at a wide enough ``hnsw_ef``). Needs Qdrant >= 1.14 (formula queries).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import SimstdError
from ..validation import as_embeddings, check_label
from . import terms as item_terms
from .base import CachedCountsStore, Payloads, SearchResult, Transform, gather, merge_topk, missing_mask, plan_search

#: HNSW beam while mining (the same reason as MixedIndex's MINING_EF_SEARCH:
#: pseudo queries of the other modality lie far from a modality's graph).
MINING_HNSW_EF = 256
#: Requests per batch call and ids per retrieve/scroll page.
BATCH = 256
PAGE = 2048


def _import_qdrant() -> Any:
    try:
        from qdrant_client import models
    except ImportError:
        raise SimstdError('the Qdrant adapter needs qdrant-client: pip install "simstd[qdrant]"') from None
    return models


class QdrantSearcher(CachedCountsStore):
    """A Qdrant collection of mixed-modality points, searchable by simstd.

    Parameters
    ----------
    client:
        A ``qdrant_client.QdrantClient`` (any mode).
    collection_name:
        The collection; its vectors must use ``Cosine`` distance (or ``Dot``
        on unit vectors), so that scores are cosines.
    modality_key:
        Payload key holding each point's modality label (a string).
    vector_name:
        Name of the vector to search in a collection with named vectors
        (None: the unnamed vector, or the only named one).
    exact:
        Ask Qdrant for exact (full-scan) per-modality searches instead of HNSW.

    Modalities and their counts are read once (a facet on ``modality_key``)
    and cached: call :meth:`refresh` after adding points.
    """

    def __init__(
        self,
        client: Any,
        collection_name: str,
        *,
        modality_key: str = "modality",
        vector_name: str | None = None,
        exact: bool = False,
    ) -> None:
        self._models = _import_qdrant()
        self.client = client
        self.collection_name = collection_name
        self.modality_key = check_label(modality_key, "modality key")
        self.exact = bool(exact)
        self._hnsw_ef: int | None = None
        self._record: dict | None | bool = False  # the stored-terms record, read lazily (False: not read)
        if not client.collection_exists(collection_name):
            names = [c.name for c in client.get_collections().collections]
            raise SimstdError(f"Qdrant has no collection {collection_name!r}; it has {names}")
        vectors = client.get_collection(collection_name).config.params.vectors
        self.vector_name, params = self._pick_vector(vectors, vector_name)
        distance = self._models.Distance
        if params.distance not in (distance.COSINE, distance.DOT):
            raise SimstdError(
                f"collection {collection_name!r} uses {params.distance.value} distance; simstd standardizes "
                "cosine similarities: use a collection with Cosine distance (or Dot on unit vectors)"
            )
        if getattr(params, "multivector_config", None) is not None:
            raise SimstdError(f"vector {self.vector_name or '(unnamed)'} is a multivector; simstd needs one "
                              "vector per point")
        self._dim = int(params.size)
        # Local mode searches brute force and warns about search params it ignores.
        self._local = type(getattr(client, "_client", None)).__name__ == "QdrantLocal"
        self._counts = self._read_counts()  # fail fast: empty collection, wrong or missing modality key

    def _pick_vector(self, vectors: Any, name: str | None) -> tuple[str | None, Any]:
        if isinstance(vectors, dict):
            vectors = {k: v for k, v in vectors.items() if k != item_terms.TERMS_NAME}  # simstd's own (store_terms)
            if set(vectors) == {""}:  # an unnamed vector beside simstd's named one
                if name is not None:
                    raise SimstdError(f"collection {self.collection_name!r} has one unnamed vector; "
                                      f"leave vector_name unset (got {name!r})")
                return None, vectors[""]
            if name is None:
                if len(vectors) != 1:
                    raise SimstdError(f"collection {self.collection_name!r} has named vectors {sorted(vectors)}; "
                                      "pass vector_name= to pick one")
                name = next(iter(vectors))
            if name not in vectors:
                raise SimstdError(f"collection {self.collection_name!r} has no vector named {name!r}; "
                                  f"it has {sorted(vectors)}")
            return name, vectors[name]
        if name is not None:
            raise SimstdError(f"collection {self.collection_name!r} has one unnamed vector; "
                              f"leave vector_name unset (got {name!r})")
        return None, vectors

    # ------------------------------------------------------------ Searchable
    @property
    def _holder(self) -> str:
        return f"collection {self.collection_name!r}"

    def _read_counts(self) -> dict[str, int]:
        models, key, name = self._models, self.modality_key, self.collection_name
        total = self.client.count(name, exact=True).count
        if total == 0:
            raise SimstdError(f"Qdrant collection {name!r} is empty: upsert points before fitting or searching")
        try:
            hits = self.client.facet(name, key=key, limit=1_000, exact=True).hits
            counts = {h.value: int(h.count) for h in hits}
        except Exception:  # a server without a keyword index on the key refuses facets: scan instead
            counts = {}
            for record in self._scroll(None, payload=[key]):
                value = (record.payload or {}).get(key)
                if value is not None:
                    counts[value] = counts.get(value, 0) + 1
        if not counts:
            raise SimstdError(f"no point of Qdrant collection {name!r} has payload key {self.modality_key!r}; "
                              "pass modality_key= naming the key that holds each point's modality")
        bad = [v for v in counts if not isinstance(v, str) or not v or v != v.strip()]
        if bad:
            raise SimstdError(f"payload key {key!r} holds {bad[0]!r}; modality labels must be non-empty strings "
                              "such as 'text' or 'image'")
        labelled = sum(counts.values())
        if labelled != total:
            missing = self.client.count(
                name, exact=True,
                count_filter=models.Filter(must=[models.IsEmptyCondition(is_empty=models.PayloadField(key=key))]),
            ).count
            raise SimstdError(
                f"{missing or total - labelled} of {total} points of Qdrant collection {name!r} have no modality "
                f"in payload key {key!r}; set it on every point (client.set_payload) or delete those points"
            )
        return dict(sorted(counts.items()))

    def _filter(self, modalities: Sequence[str]) -> Any:
        models = self._models
        match = (models.MatchValue(value=modalities[0]) if len(modalities) == 1
                 else models.MatchAny(any=list(modalities)))
        return models.Filter(must=[models.FieldCondition(key=self.modality_key, match=match)])

    def _scroll(self, modality: str | None, payload: Any = False) -> Iterator[Any]:
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection_name, scroll_filter=None if modality is None else self._filter([modality]),
                limit=PAGE, offset=offset, with_payload=payload, with_vectors=False,
            )
            yield from records
            if offset is None:
                return

    def ids(self, modality: str) -> np.ndarray:
        return _as_ids([r.id for r in self._scroll(self._check(modality))])

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        wanted = np.asarray(ids, dtype=object).ravel().tolist()
        using = [self.vector_name or ""]
        found: dict[Any, Any] = {}
        for start in range(0, len(wanted), PAGE):
            chunk = [_point_id(i) for i in wanted[start : start + PAGE]]
            for record in self.client.retrieve(self.collection_name, ids=chunk, with_vectors=using,
                                               with_payload=False):
                vec = record.vector
                found[record.id] = vec[self.vector_name or ""] if isinstance(vec, dict) else vec
        missing = [i for i in wanted if _point_id(i) not in found]
        if missing:
            raise SimstdError(f"Qdrant collection {self.collection_name!r} has no point with id {missing[0]!r}")
        if not wanted:
            return np.empty((0, self.dim), np.float32)
        return as_embeddings([found[_point_id(i)] for i in wanted], "stored vectors", self.dim)

    def _params(self) -> Any:
        if self._local:
            return None
        if self.exact:
            return self._models.SearchParams(exact=True)
        if self._hnsw_ef is not None:
            return self._models.SearchParams(hnsw_ef=self._hnsw_ef)
        return None

    @contextlib.contextmanager
    def mining_session(self) -> Iterator[None]:
        """Widen the HNSW beam (``hnsw_ef``) to :data:`MINING_HNSW_EF` while mining."""
        saved, self._hnsw_ef = self._hnsw_ef, max(self._hnsw_ef or 0, MINING_HNSW_EF)
        try:
            yield
        finally:
            self._hnsw_ef = saved

    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        models = self._models
        queries = as_embeddings(queries, "queries", self.dim)
        k = min(int(k), self.counts[self._check(modality)])
        where = self._filter([modality])
        requests = [
            models.QueryRequest(query=q, using=self.vector_name, filter=where, limit=k, params=self._params(),
                                with_payload=False, with_vector=False)
            for q in queries.tolist()
        ]
        rows = self._batch(requests)
        D = np.full((len(queries), k), np.nan, np.float32)
        found = [[p.id for p in row] for row in rows]
        for r, row in enumerate(rows):
            D[r, : len(row)] = [p.score for p in row]
        return D, _pad_ids(found, k)

    def _batch(self, requests: list) -> list[list]:
        out = []
        for start in range(0, len(requests), BATCH):
            for response in self.client.query_batch_points(self.collection_name, requests[start : start + BATCH]):
                out.append(response.points)
        return out

    # ------------------------------------------------------------ item terms
    def refresh(self) -> None:
        """Forget the cached modalities, counts and stored-terms record (after points changed)."""
        super().refresh()
        self._record = False

    def store_terms(self, standardizer: Transform) -> "QdrantSearcher":
        """Write a ``method="hubness"`` fit's per-item terms into the collection,
        so Qdrant ranks by the corrected similarity itself: a named vector
        ``simstd_terms`` = ``[x, -rho / 2 per query modality]`` with ``Dot``
        distance on every point (added with ``create_vector_name``; your vector
        and payloads are untouched), and the fit's digest in the collection's
        metadata. Rewrite it after every refit; points added later make
        :meth:`search` fall back to the over-fetch until it is rewritten."""
        models, name = self._models, item_terms.TERMS_NAME
        std = item_terms.check_fit(self, standardizer)
        size = self.dim + len(std.modalities_)
        vectors = self.client.get_collection(self.collection_name).config.params.vectors
        have = vectors.get(name) if isinstance(vectors, dict) else None
        if have is not None and (have.size != size or have.distance != models.Distance.DOT):
            self.client.delete_vector_name(self.collection_name, name)
            have = None
        if have is None:
            self.client.create_vector_name(self.collection_name, name, models.DenseVectorNameConfig(
                dense=models.DenseVectorConfig(size=size, distance=models.Distance.DOT)))
        self.client.update_collection(self.collection_name, metadata={name: None})  # stale until all are written
        for ids, aug in item_terms.pages(self, std, self.dim):
            self.client.update_vectors(self.collection_name, [
                models.PointVectors(id=_point_id(i), vector={name: v}) for i, v in zip(ids.tolist(), aug.tolist())])
        self.client.update_collection(self.collection_name, metadata={name: item_terms.record(std)})
        self._record = False
        return self

    def stored_terms(self) -> dict | None:
        """The record of the terms :meth:`store_terms` wrote (digest, modalities, n), or None."""
        if self._record is False:
            config = self.client.get_collection(self.collection_name).config
            vectors = config.params.vectors
            record = (getattr(config, "metadata", None) or {}).get(item_terms.TERMS_NAME)
            has_vector = isinstance(vectors, dict) and item_terms.TERMS_NAME in vectors
            self._record = record if has_vector and isinstance(record, dict) else None
        return self._record  # type: ignore[return-value]

    def search_corrected(self, queries: np.ndarray, query_modality: str, modality: str, k: int,
                         standardizer: Transform) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of ``modality`` by ``u = s - rho / 2``, ranked by Qdrant on the stored
        terms (:meth:`store_terms`): ``(cosines, ids)``."""
        models = self._models
        k = min(int(k), self.counts[self._check(modality)])
        aug = item_terms.queries(as_embeddings(queries, "queries", self.dim), standardizer, query_modality)
        where = self._filter([modality])
        rows = self._batch([
            models.QueryRequest(query=q, using=item_terms.TERMS_NAME, filter=where, limit=k, params=self._params(),
                                with_payload=False, with_vector=False) for q in aug.tolist()])
        U = np.full((len(aug), k), np.nan, np.float32)
        for r, row in enumerate(rows):
            U[r, : len(row)] = [p.score for p in row]
        I = _pad_ids([[p.id for p in row] for row in rows], k)
        return item_terms.cosines(U, I, standardizer, query_modality), I

    # ------------------------------------------------------------------ search
    def formula(self, query_modality: str, targets: Sequence[str], standardizer: Transform) -> Any:
        """The ``FormulaQuery`` that standardizes prefetch ``j`` (target ``targets[j]``)."""
        models = self._models
        terms = []
        for j, m in enumerate(targets):
            mean, std = standardizer.affine(query_modality, m)
            is_m = models.FieldCondition(key=self.modality_key, match=models.MatchValue(value=m))
            z = models.DivExpression(div=models.DivParams(left=models.SumExpression(sum=[f"$score[{j}]", -mean]),
                                                          right=std))
            terms.append(models.MultExpression(mult=[is_m, z]))
        return models.FormulaQuery(formula=models.SumExpression(sum=terms))

    def search(
        self,
        queries: np.ndarray,
        query_modality: str,
        k: int = 10,
        *,
        standardizer: Transform | None = None,
        raw: bool = False,
        targets: Sequence[str] | None = None,
    ) -> SearchResult:
        """Top-k over all (or the ``targets``) modalities by standardized score, ranked by Qdrant.

        The same :class:`~simstd.SearchResult` as ``MixedIndex.search``, with
        Qdrant's point ids and payloads. ``raw=True`` ranks by raw cosine
        (one filtered query). With ``query_shift`` or ``method="hubness"`` the
        map depends on each query's own top scores (and on per-item terms), so
        the merge happens here instead, still exact (:func:`~simstd.engines.base.gather`).
        """
        plan = plan_search(self, queries, query_modality, k, standardizer=standardizer, raw=raw, targets=targets)
        if plan.client_side:  # hubness: engine-side terms (store_terms) or certified over-fetch
            Z, S, I, labels = merge_topk(gather(self, plan), plan)
            return SearchResult(Z, I, S, labels, query_modality, True, self._payloads(I), route=plan.route,
                                fetched=plan.fetched)
        models = self._models
        requests = []
        for q in plan.queries.tolist():
            if plan.standardizer is None:
                requests.append(models.QueryRequest(query=q, using=self.vector_name, filter=self._filter(plan.targets),
                                                    limit=plan.k, params=self._params(), with_payload=True))
                continue
            prefetch = [models.Prefetch(query=q, using=self.vector_name, filter=self._filter([m]), limit=plan.k,
                                        params=self._params()) for m in plan.targets]
            requests.append(models.QueryRequest(prefetch=prefetch, limit=plan.k, with_payload=True,
                                                query=self.formula(query_modality, plan.targets, plan.standardizer)))
        rows = self._batch(requests)
        nq, k = len(plan.queries), plan.k
        scores = np.full((nq, k), -np.inf, np.float32)
        labels = np.full((nq, k), "", dtype=object)
        payloads = {}
        for r, row in enumerate(rows):
            for c, point in enumerate(row):
                scores[r, c] = point.score
                labels[r, c] = (point.payload or {}).get(self.modality_key, "")
                payloads[point.id] = point.payload or {}
        I = _pad_ids([[p.id for p in row] for row in rows], k)
        if plan.standardizer is None:
            raw_scores = np.where(missing_mask(I), np.nan, scores).astype(np.float32)
            return SearchResult(scores, I, raw_scores, labels, query_modality, False, Payloads(payloads), route="raw")
        # Qdrant returns z only; the cosine is its inverse map (exact up to float32 rounding).
        mean = np.zeros(labels.shape)
        std = np.ones(labels.shape)
        for m, (a, b) in zip(plan.targets, plan.maps):
            mean[labels == m], std[labels == m] = a, b
        raw_scores = np.where(missing_mask(I), np.nan, mean + std * scores).astype(np.float32)
        return SearchResult(scores, I, raw_scores, labels, query_modality, True, Payloads(payloads), route="map")

    def _payloads(self, I: np.ndarray) -> Payloads:
        ids = [_point_id(i) for i in I[~missing_mask(I)].tolist()]
        records = self.client.retrieve(self.collection_name, ids=list(dict.fromkeys(ids)), with_payload=True,
                                       with_vectors=False) if ids else []
        return Payloads({r.id: r.payload or {} for r in records})

    def __repr__(self) -> str:
        counts = ", ".join(f"{m}={n}" for m, n in (self._counts or {}).items())
        return f"QdrantSearcher({self.collection_name!r}, dim={self.dim}{', ' + counts if counts else ''})"


def _point_id(i: Any) -> Any:
    """Qdrant takes ints and UUID strings; numpy ints become Python ints."""
    return int(i) if isinstance(i, (int, np.integer)) else str(i)


def _as_ids(ids: list) -> np.ndarray:
    """int64 when every id is an integer, else an object array (UUID strings)."""
    if all(isinstance(i, int) for i in ids):
        return np.asarray(ids, dtype=np.int64)
    return np.asarray(ids, dtype=object)


def _pad_ids(rows: list[list], k: int) -> np.ndarray:
    """Rows of hit ids padded to ``k`` with ``-1`` (int ids) or ``None`` (UUIDs)."""
    ints = all(isinstance(i, int) for row in rows for i in row)
    out = np.full((len(rows), k), -1 if ints else None, dtype=np.int64 if ints else object)
    for r, row in enumerate(rows):
        out[r, : len(row)] = row
    return out
