"""MixedIndex: one searchable collection of several modalities, with exact
standardized search at the cost of a raw FAISS search.

Design. The standardization ``z = (s - mean[q, t]) / std[q, t]`` is, for a
fixed query modality ``q``, a strictly increasing affine map of the raw
cosine ``s`` within each target modality ``t``. So the top-k by ``z`` over the
whole collection is contained in the union over ``t`` of the top-k by ``s``
among the items of modality ``t``. MixedIndex therefore keeps one FAISS index
(a *shard*, built from the same factory string) per modality: a search asks
every shard for its raw top-k, maps the scores through that shard's affine
map, and merges ``M * k`` candidates. For ``Flat`` shards the result equals
brute force exactly, for every k; the number of distance computations is the
same as one raw search over all items, so standardized search costs what a
raw one does. Over-fetching from one mixed FAISS index would not be exact: its
raw top-k can hold one modality only.

MixedIndex is a facade over components that each own one job:
:class:`~.shards.ShardSet` (the FAISS shards and their ids),
:class:`~.params.PairParams` (per-pair search parameters),
:class:`~.bridges.Bridges` (cross-modal HNSW entry points), :mod:`.terms`
(per-item terms folded into the shards), :mod:`.search` (plan, gather,
score, select) and :mod:`.persistence` (the parts :mod:`simstd.storage`
commits atomically, under a writer lock; docs/reliability.md).
"""
from __future__ import annotations

import contextlib
import hashlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import faiss
import numpy as np

from ..engines.base import SearchResult
from ..errors import SimstdError
from ..standardizer import Standardizer
from ..storage.lock import DEFAULT_TIMEOUT
from ..store import MetadataStore
from ..validation import Interval, as_embeddings, check_label, check_query_modality, load_npy
from . import persistence, search as pipeline, terms
from .bridges import Bridges
from .params import PairParams, shard_search_params
from .partitions import stratum_of
from .shards import RowSubset, ShardSet

if TYPE_CHECKING:  # pragma: no cover
    from ..uncertainty.model import UncertaintyModel

FORMAT_VERSION = 1


class MixedIndex:
    """FAISS vectors of several modalities, a modality label per id, and payloads.

    Cosine similarity is the inner product of L2-normalised vectors; vectors
    that are not normalised are normalised with a warning.
    """

    def __init__(self, dim: int, factory: str = "Flat", model: str | None = None) -> None:
        if dim not in Interval(int, 1):  # True is no dimension
            raise SimstdError(f"dim must be a positive integer, got {dim!r}")
        self.shard_set = ShardSet(int(dim), factory)
        self.shard_set.check_factory()
        self.model = model
        self.store = MetadataStore()
        self.standardizer: Standardizer | None = None
        self.uncertainty: UncertaintyModel | None = None  # fitted by `simstd fit --uncertainty`
        self.version: str | None = None  # the stored version this was loaded from / saved as
        self._origin: tuple[str, str | None] | None = None  # (real path, version) for save's lost-update check
        self.pair_params = PairParams()
        self.bridge_table = Bridges()
        self._fingerprint = _digest(f"simstd:{FORMAT_VERSION}:{self.dim}:{factory}:{uuid.uuid4()}".encode())

    @classmethod
    def _restore(cls, shard_set: ShardSet, store: MetadataStore, model: str | None,
                 fingerprint: str) -> "MixedIndex":
        """An index from loaded parts (persistence's constructor)."""
        index = cls.__new__(cls)
        index.shard_set, index.store, index.model = shard_set, store, model
        index.standardizer = index.uncertainty = None
        index.version = index._origin = None
        index.pair_params, index.bridge_table = PairParams(), Bridges()
        index._fingerprint = fingerprint
        return index

    # ------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        embeddings: np.ndarray | Mapping[str, np.ndarray],
        modalities: Sequence[str] | None = None,
        *,
        factory: str = "Flat",
        metadata: Mapping[str, Sequence[dict]] | Sequence[dict] | None = None,
        model: str | None = None,
    ) -> "MixedIndex":
        """Build from ``{modality: (n, d) array}`` (ids follow the mapping's
        order) or from one ``(n, d)`` array plus one modality label per row
        (ids follow the rows)."""
        if isinstance(embeddings, Mapping):
            if modalities is not None:
                raise SimstdError("pass modalities either as the mapping's keys or as labels, not both")
            metas = metadata or {}
            if not isinstance(metas, Mapping):
                raise SimstdError("with a mapping of embeddings, pass metadata as {modality: records}")
            index = None
            for label, arr in embeddings.items():
                arr = as_embeddings(arr, f"embeddings for {label!r}")
                if index is None:
                    index = cls(arr.shape[1], factory, model)
                index.add(arr, label, metas.get(label))
            if index is None:
                raise SimstdError("no embeddings given: pass at least one modality")
            return index
        arr = as_embeddings(embeddings, "embeddings")
        if modalities is None or isinstance(modalities, str):
            raise SimstdError("pass one modality label per row of embeddings (or a {modality: array} mapping)")
        labels = np.asarray(modalities, dtype=object)
        if labels.shape != (len(arr),):
            raise SimstdError(f"got {labels.size} modality labels for {len(arr)} rows; pass one label per row")
        if metadata is not None and len(metadata) != len(arr):
            raise SimstdError(f"got {len(metadata)} metadata records for {len(arr)} rows; pass one per row")
        index = cls(arr.shape[1], factory, model)
        # Ids follow rows even when modalities interleave: add runs of equal labels in order.
        bounds = np.flatnonzero(labels[1:] != labels[:-1]) + 1
        for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(labels)]):
            index.add(arr[start:stop], str(labels[start]), None if metadata is None else metadata[start:stop])
        return index

    @classmethod
    def from_npy(cls, files: Mapping[str, str | Path], **kwargs: object) -> "MixedIndex":
        """Build from ``{modality: path to .npy}``; ids follow the mapping's order."""
        return cls.from_arrays({m: load_npy(p, f"embeddings for {m!r}") for m, p in files.items()}, **kwargs)

    def add(self, vectors: np.ndarray, modality: str, metadata: Sequence[dict | None] | None = None) -> np.ndarray:
        """Append vectors of one modality; returns their new global ids."""
        check_label(modality)
        vectors = as_embeddings(vectors, f"embeddings for {modality!r}", self.dim)
        if metadata is not None and len(metadata) != len(vectors):
            raise SimstdError(
                f"got {len(metadata)} metadata records for {len(vectors)} {modality!r} vectors; "
                "pass exactly one record per vector"
            )
        ids = np.arange(self.ntotal, self.ntotal + len(vectors), dtype=np.int64)
        strata = getattr(self.standardizer, "strata_", None)
        if strata is not None and modality in strata.modalities:  # a stratified fit must place every new item
            strata.labels_of(modality, dict(zip(ids.tolist(), metadata or [None] * len(ids))), ids)
        self.shard_set.add(modality, terms.stored_vectors(self.shard_set, self.standardizer, self, vectors, ids), ids)
        self.store.add(ids, modality, metadata)
        self.bridge_table.drop_source(modality)  # the new items have no bridges: rebuild them (build_bridges)
        h = hashlib.blake2b(self._fingerprint.encode(), digest_size=16)
        h.update(modality.encode())
        h.update(vectors)  # C-contiguous float32 (as_embeddings): hashed in place, no copy
        self._fingerprint = h.hexdigest()
        return ids

    def adopt(self, modality: str, shard: faiss.Index, metadata: Iterable[dict | None] | None = None) -> np.ndarray:
        """Take a built FAISS index of one modality as that modality's shard, without re-adding its vectors.

        For indexes built elsewhere, e.g. autofaiss's ``image.index`` /
        ``text.index`` (:mod:`simstd.laion.build`). ``shard`` holds every
        vector of ``modality`` (row ``r`` becomes the next free global id plus
        ``r``); its metric must be inner product, or L2 over unit vectors
        (``1 - d/2`` is then the cosine). ``metadata`` yields one record per
        row, streamed into the store. Returns the new global ids.
        """
        check_label(modality)
        if self.shard_set.term_modalities:
            raise SimstdError("this index stores hubness terms in its shards; adopt indexes into an index "
                              "without them (a new MixedIndex), then fit")
        if modality in self.shard_set.shards:
            raise SimstdError(f"the index already holds {modality!r} items; adopt a shard only for a new modality")
        if isinstance(shard, faiss.IndexIDMap) or shard.d != self.dim:
            why = "an IndexIDMap (ids of its own)" if isinstance(shard, faiss.IndexIDMap) else f"dimension {shard.d}"
            raise SimstdError(f"cannot adopt a {modality!r} FAISS index of {why} into an index of dimension "
                              f"{self.dim} with ids 0..n-1; rebuild it with index.add over the embeddings")
        if shard.metric_type not in (faiss.METRIC_INNER_PRODUCT, faiss.METRIC_L2):
            raise SimstdError(f"the {modality!r} FAISS index uses metric {shard.metric_type}; simstd ranks by cosine: "
                              "use an inner-product index (or L2 over L2-normalised vectors)")
        ids = np.arange(self.ntotal, self.ntotal + shard.ntotal, dtype=np.int64)
        self.shard_set.adopt(modality, shard, ids)
        records = iter(metadata) if metadata is not None else None
        for start in range(0, len(ids), 10_000):
            chunk = ids[start : start + 10_000]
            batch = None if records is None else [next(records, None) for _ in range(len(chunk))]
            self.store.add(chunk, modality, batch)
        h = hashlib.blake2b(self._fingerprint.encode(), digest_size=16)
        h.update(f"adopt:{modality}:{shard.ntotal}:{type(shard).__name__}".encode())
        self._fingerprint = h.hexdigest()
        return ids

    # ------------------------------------------------------------------ facts
    @property
    def dim(self) -> int:
        return self.shard_set.dim

    @property
    def factory(self) -> str:
        """The FAISS factory string of the shards (new shards are built from it)."""
        return self.shard_set.factory

    @factory.setter
    def factory(self, value: str) -> None:  # e.g. adopted autofaiss shards (simstd.laion.build)
        self.shard_set.factory = value

    @property
    def ntotal(self) -> int:
        return self.shard_set.ntotal

    @property
    def modalities(self) -> list[str]:
        """Modality labels in the order they were first added."""
        return self.shard_set.modalities

    @property
    def counts(self) -> dict[str, int]:
        return self.shard_set.counts

    @property
    def fingerprint(self) -> str:
        """Changes whenever vectors are added; a fit records it to detect staleness."""
        return self._fingerprint

    @property
    def shards(self) -> dict[str, faiss.Index]:
        """The FAISS index of each modality (``IndexIDMap`` to global ids)."""
        return dict(self.shard_set.shards)

    @property
    def mining(self) -> str:
        """How fits search HNSW shards (``"exhaustive"`` or ``"graph"``; :meth:`mining_session`)."""
        return self.shard_set.mining

    @mining.setter
    def mining(self, value: str) -> None:
        self.shard_set.mining = value

    def ids(self, modality: str) -> np.ndarray:
        """Global ids of the items of one modality, ascending."""
        return self.shard_set.ids(modality)

    def modality_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Modality label of each global id (raises for unknown ids)."""
        return self.shard_set.modality_of(ids)

    def reconstruct(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored vectors of the given global ids (as stored: lossy for PQ/SQ)."""
        return self.shard_set.reconstruct(ids)

    def mining_session(self) -> contextlib.AbstractContextManager[None]:
        """The searches of a fit (:meth:`ShardSet.mining_session`: exact top-k on HNSW shards by default)."""
        return self.shard_set.mining_session()

    # ---------------------------------------------------- search parameters
    def set_search_params(self, params: str, *, query_modality: str | None = None,
                          target: str | None = None) -> None:
        """Set FAISS search-time parameters, e.g. ``"nprobe=16"`` or ``"efSearch=128"``.

        Without ``query_modality`` and ``target``: on every shard (FAISS's
        ``ParameterSpace``, stored in the shards), and any per-pair setting of
        the same parameter is dropped. With either of them: only for the
        standardized and raw searches of queries of ``query_modality`` in the
        shard of ``target`` (None: every query modality / every shard), e.g.
        ``set_search_params("efSearch=256", query_modality="text", target="image")``
        for a wider HNSW beam where the query is cross-modal. Per-pair
        settings take ``efSearch`` (HNSW shards) and ``nprobe`` (IVF shards),
        are applied per call (FAISS ``SearchParameters``, the shards are not
        changed) by :meth:`search` and :meth:`search_like` (not by
        :meth:`search_modality`, which fitting uses with its own wider beam),
        and are saved with the index. :func:`simstd.tuning.tune_search_params`
        chooses them for a work budget.
        """
        self.pair_params.set(self.shard_set, params, query_modality, target)

    @property
    def search_params(self) -> dict[tuple[str, str], str]:
        """The per-pair search parameters, ``{(query modality, target): "efSearch=256"}``
        (:meth:`set_search_params`; the shards' own settings apply elsewhere)."""
        return self.pair_params.as_strings()

    def clear_search_params(self) -> None:
        """Drop every per-pair search parameter (the shards' own settings apply again)."""
        self.pair_params = PairParams()

    def shard_search_params(self, target: str) -> dict[str, int]:
        """A shard's own search parameters (``efSearch`` for HNSW, ``nprobe`` for IVF)."""
        return shard_search_params(self.shard_set, target)

    def shard_info(self) -> list[dict]:
        """One record per shard: its FAISS ``factory`` string, ``kind``, ``count``,
        ``stored_dim``, ``memory_bytes`` (its ``faiss.write_index`` size, the RAM it
        takes once loaded; :meth:`ShardSet.describe`), the ``search_params`` set on
        the shard, the per-pair settings that override them for queries of some
        modalities (``pair_params``, ``{query modality: "efSearch=256"}``;
        :meth:`set_search_params`) and the query modalities searched from bridges
        (``bridged_from``). ``simstd info`` prints them."""
        pairs, bridged = self.search_params, self.bridges
        out = []
        for m in self.modalities:
            facts = self.shard_set.describe(m)
            facts["pair_params"] = {q: v for (q, t), v in pairs.items() if t == m}
            facts["bridged_from"] = [q for q, t in bridged if t == m]
            out.append(facts)
        return out

    # ---------------------------------------------------------------- bridges
    def build_bridges(self, ef_search: int = 32, *, batch: int = 16_384) -> list[tuple[str, str]]:
        """Cross-modal entry points for HNSW shards; returns the bridged (query, target) pairs.

        Every stored item of modality ``s`` is linked to its nearest item in the
        HNSW shard of modality ``t``; a search of ``t`` with queries of ``s``
        then starts on its bottom layer at the bridges of the query's best own
        results (:mod:`simstd.index.bridges`, after RoarGraph, Chen et al.,
        VLDB 2024). Results stay approximate, as any HNSW search. Saved with
        the index; adding items of ``s`` drops its bridges (rebuild them).
        """
        return self.bridge_table.build(self.shard_set, ef_search, batch=batch)

    def drop_bridges(self) -> None:
        """Forget every bridge (searches descend each graph from its top again)."""
        self.bridge_table.drop()

    @property
    def bridges(self) -> list[tuple[str, str]]:
        """The (query modality, target) pairs searched from bridges (:meth:`build_bridges`)."""
        return self.bridge_table.pairs

    # ------------------------------------------------------------------ terms
    def fold_terms(self, standardizer: Standardizer) -> None:
        """Store the per-item terms of a fit with them (``method="hubness"``) in the
        shards (one extra dimension per query modality; engines/faiss.py), so FAISS
        ranks by the corrected similarity. Runs once per fit (a no-op when they
        are there already); :meth:`search` calls it."""
        terms.fold(self.shard_set, standardizer)

    # ------------------------------------------------------------------ search
    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS ``(D, I)`` top-k among the items of one modality (global ids)."""
        self.shard_set.check_modality(modality)
        queries = as_embeddings(queries, "queries", self.dim)
        return self.shard_set.search(modality, queries, min(k, self.shard_set.shards[modality].ntotal))

    def search_subset(self, queries: np.ndarray, modality: str, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(D, I)`` top-k among the items ``ids`` of one modality (a stratum,
        :class:`simstd.strata.StrataView`): one FAISS search restricted to their rows."""
        self.shard_set.check_modality(modality)
        queries = as_embeddings(queries, "queries", self.dim)
        rows = self.shard_set.rows(modality, np.asarray(ids, dtype=np.int64))
        subset = RowSubset(rows, self.shard_set.shards[modality].ntotal)
        return self.shard_set.search(modality, queries, min(k, subset.size), subset=subset)

    def search(
        self,
        queries: np.ndarray,
        query_modality: str,
        k: int = 10,
        *,
        standardizer: Standardizer | None = None,
        raw: bool = False,
        targets: Sequence[str] | None = None,
        uncertainty: UncertaintyModel | None = None,
        rerank: str | None = None,
        rerank_weight: float = 1.0,
        strict: bool = False,
        query_stratum: str | None = None,
    ) -> SearchResult:
        """Top-k over all (or the ``targets``) modalities by standardized score.

        Uses ``standardizer``, else the one fitted and saved with the index;
        ``raw=True`` ranks by raw cosine instead. Exact for ``Flat``, with
        either method (``Standardizer(method="paper" | "hubness")``).
        A fitted ``uncertainty`` model fills the result's ``confidence`` and
        ``uncertainty``; ``rerank="uncertainty"`` then orders the candidates
        (each shard's top ``max(k, uncertainty.depth)``) by
        ``z - rerank_weight * uncertainty`` instead of ``z`` (``scores`` stay
        the standardized scores). A fit made before items were added (stale)
        keeps serving with a :class:`~simstd.errors.StaleFitWarning`;
        ``strict=True`` refuses it instead.

        The query modality comes before ``k``: FAISS's ``search(xq, 10)`` is
        refused with an error naming this signature, also for an index of one
        modality (one call, one meaning).

        With a stratified fit (``Standardizer(strata=...)``), ``query_stratum``
        names the queries' stratum (a label such as ``"text:5-9"`` or a value)
        when their modality is stratified; every stratum of a shard is searched
        on its own (exact on Flat).
        """
        check_query_modality(query_modality, self.modalities)
        queries = as_embeddings(queries, "queries", self.dim)
        return pipeline.search(self, queries, query_modality, k, standardizer=standardizer, raw=raw,
                               targets=targets, uncertainty=uncertainty, rerank=rerank,
                               rerank_weight=rerank_weight, strict=strict, query_stratum=query_stratum)

    def search_like(self, ids: Sequence[int] | int, k: int = 10, **kwargs: object) -> SearchResult:
        """Use indexed items as queries (their own modality); each item itself is
        left out of its own result and of every query term computed from it
        (``query_shift``, the hubness query term, the uncertainty tail)."""
        ids = np.atleast_1d(np.asarray(ids, dtype=np.int64))
        labels = self.modality_of(ids)
        if len(set(labels.tolist())) != 1:
            raise SimstdError("search_like takes ids of one modality at a time")
        if isinstance(k, (int, np.integer)) and k > self.ntotal - 1:
            raise SimstdError(f"k={k} is larger than the {self.ntotal - 1} other items; use k <= {self.ntotal - 1}")
        unknown = set(kwargs) - {"standardizer", "raw", "targets", "uncertainty", "rerank", "rerank_weight", "strict"}
        if unknown:
            raise SimstdError(f"search_like got unknown arguments {sorted(unknown)}")
        std = None if kwargs.get("raw") else (kwargs.get("standardizer") or self.standardizer)
        strata = getattr(std, "strata_", None)
        if strata is None or not strata.is_stratified(str(labels[0])):
            return pipeline.search(self, self.reconstruct(ids), str(labels[0]), k, exclude=ids, **kwargs)
        # A stratified fit: each item queries as its own stratum, one search per stratum.
        own = stratum_of(self.shard_set, self.store, strata, str(labels[0]), ids)
        parts = {s: np.flatnonzero(own == s) for s in dict.fromkeys(own.tolist())}
        found = {s: pipeline.search(self, self.reconstruct(ids[rows]), str(labels[0]), k, exclude=ids[rows],
                                    query_stratum=s, **kwargs) for s, rows in parts.items()}
        first = next(iter(found.values()))
        out = {}
        for name in ("scores", "ids", "raw_scores", "modalities"):
            arr = np.empty((len(ids),) + getattr(first, name).shape[1:], dtype=getattr(first, name).dtype)
            for s, rows in parts.items():
                arr[rows] = getattr(found[s], name)
            out[name] = arr
        return SearchResult(out["scores"], out["ids"], out["raw_scores"], out["modalities"], first.query_modality,
                            first.standardized, first.store)

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path, *, lock_timeout: float | None = DEFAULT_TIMEOUT, overwrite: bool = False,
             keep: int | None = None) -> str:
        """Commit the index (vectors, payloads, fitted models) as a new version at
        ``path``, atomically and under the writer lock (waits up to
        ``lock_timeout`` seconds); returns the version id (also ``self.version``).

        If this index was loaded from ``path`` and another writer committed
        since, raises :class:`~simstd.errors.ConcurrentWriteError` instead of
        losing that writer's change (see :func:`simstd.storage.writer_lock`).
        An index not loaded from ``path`` replaces one already there only with
        ``overwrite=True`` (else :class:`~simstd.errors.IndexExistsError`); the
        replaced one stays one ``simstd rollback`` away. ``keep``: how many
        versions the index keeps from now on (default 2; docs/reliability.md).
        """
        return persistence.save(self, path, lock_timeout=lock_timeout, overwrite=overwrite, keep=keep)

    @classmethod
    def load(cls, path: str | Path, *, load_standardizer: bool = True, verify: bool | None = None) -> "MixedIndex":
        """Open the current version of the index at ``path``, with its fitted models.

        Takes no lock and never sees a half-written version. ``verify``
        checksums files up to :data:`simstd.storage.layout.VERIFY_LIMIT` (16 MiB)
        by default, all with True, none with False (sizes and counts are always
        checked; ``simstd check`` verifies all).
        """
        return persistence.load(cls, path, load_standardizer=load_standardizer, verify=verify)

    @property
    def fit_is_stale(self) -> bool:
        """Whether items were added since the standardizer was fitted (it still serves)."""
        std = self.standardizer
        return std is not None and std.is_stale(self)

    def __repr__(self) -> str:
        counts = ", ".join(f"{m}={n}" for m, n in self.counts.items())
        fitted = "fitted" if self.standardizer is not None else "not fitted"
        return f"MixedIndex(dim={self.dim}, factory={self.factory!r}, {counts or 'empty'}, {fitted})"


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()
