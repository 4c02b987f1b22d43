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

Persistence lives in :mod:`simstd.storage`: ``save("db.faiss")`` commits a
new immutable version atomically, under a writer lock; ``load`` opens the
current one (docs/reliability.md).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, Sequence

import faiss
import numpy as np

from .engines.base import SearchResult
from .engines.faiss import augment, fold_terms, parse_pair_params, search_parameters, term_columns
from .errors import CorruptFileError, FingerprintMismatchError, NotFittedError, SimstdError
from .fileio import check_format, dump_json, read_json
from .standardizer import Standardizer
from .storage.layout import Part, register_part
from .hubness import nearest_mean
from .stats import topk_mean
from .store import MetadataStore
from .validation import Interval, as_embeddings, check_label, load_npy

if TYPE_CHECKING:  # pragma: no cover
    from .uncertainty.model import UncertaintyModel

FORMAT_VERSION = 1

#: HNSW beam width while mining with ``mining="graph"``. Pseudo queries of the
#: other modality lie far from a shard's graph and a narrow beam misses their
#: true top-1, biasing the fit: on 30k+30k CLIP-like vectors (HNSW16, 2000
#: queries) efSearch 16 gave std 1.6-2.4x the exact fit's; 256 is within 0.01
#: std there, but at 1M even 256 left the text->image std at 0.0377 against
#: 0.0247 exact. Hence the default ``mining="exhaustive"``.
MINING_EF_SEARCH = 256
#: How a fit searches HNSW shards: "exhaustive" scans the graph's stored
#: vectors (its flat storage: the exact top-k, a Flat fit's cost), "graph"
#: walks the graph with a beam of :data:`MINING_EF_SEARCH` (faster, biased).
MINING_MODES = ("exhaustive", "graph")

#: Entry points of a bridged cross-modal HNSW search: the bridges of this many
#: of the query's own-modality results (build_bridges).
BRIDGE_ENTRIES = 3


class MixedIndex:
    """FAISS vectors of several modalities, a modality label per id, and payloads.

    Cosine similarity is the inner product of L2-normalised vectors; vectors
    that are not normalised are normalised with a warning.
    """

    def __init__(self, dim: int, factory: str = "Flat", model: str | None = None) -> None:
        if dim not in Interval(int, 1):  # True is no dimension
            raise SimstdError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.factory = factory
        self.model = model
        self.store = MetadataStore()
        self.standardizer: Standardizer | None = None
        self.uncertainty: UncertaintyModel | None = None  # fitted by `simstd fit --uncertainty`
        self.version: str | None = None  # the stored version this was loaded from / saved as
        self._origin: tuple[str, str | None] | None = None  # (real path, version) for save's lost-update check
        self._shards: dict[str, faiss.IndexIDMap] = {}
        self._ids: dict[str, np.ndarray] = {}
        # Hubness terms folded into the shards: one extra dimension per query
        # modality listed here (engines/faiss.py), and the digest of the
        # Standardizer terms they hold (None: zeros or out of date).
        self._term_modalities: list[str] = []
        self._folded: str | None = None
        # Search-time parameters of one (query modality, shard) pair, e.g. a
        # wider HNSW beam for cross-modal queries (set_search_params).
        self._pair_params: dict[tuple[str, str], dict[str, int]] = {}
        # Cross-modal entry points (build_bridges): (source, target) -> for each
        # source item (row order) the target row of its nearest target item.
        self._bridges: dict[tuple[str, str], np.ndarray] = {}
        self._fingerprint = _digest(f"simstd:{FORMAT_VERSION}:{self.dim}:{factory}:{uuid.uuid4()}".encode())
        #: How fits search HNSW shards (MINING_MODES); other shards are searched as they are.
        self.mining = "exhaustive"
        self._exhaustive = False  # inside an exhaustive mining session
        self._check_factory()

    def _check_factory(self) -> None:
        try:
            faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else str(exc)
            raise SimstdError(
                f"FAISS cannot build factory string {self.factory!r} for dimension {self.dim} ({first}); "
                "use e.g. 'Flat', 'IVF1024,Flat', 'HNSW32' or 'IVF1024,SQfp16'"
            ) from None

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
            parts = list(embeddings.items())
            metas = metadata or {}
            if not isinstance(metas, Mapping):
                raise SimstdError("with a mapping of embeddings, pass metadata as {modality: records}")
            index = None
            for label, arr in parts:
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
        index._add_rows(arr, labels, metadata)
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
        stored = self._with_terms(vectors, ids)
        shard = self._shards.get(modality) or self._new_shard(modality, stored)
        shard.add_with_ids(stored, ids)
        self._shards[modality] = shard
        self._ids[modality] = np.concatenate([self._ids.get(modality, np.empty(0, np.int64)), ids])
        self.store.add(ids, modality, metadata)
        for pair in [pair for pair in self._bridges if pair[0] == modality]:
            del self._bridges[pair]  # the new items have no bridges: rebuild them (build_bridges)
        h = hashlib.blake2b(self._fingerprint.encode(), digest_size=16)
        h.update(modality.encode())
        h.update(vectors)  # C-contiguous float32 (as_embeddings): hashed in place, no copy
        self._fingerprint = h.hexdigest()
        return ids

    def _with_terms(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The vectors as the shards store them.

        Shards with term dimensions get the new items' terms from the folded
        hubness fit (measured against its banks, nothing else refitted), or
        zeros (the fold is then out of date and redone at the next search).
        """
        width = len(self._term_modalities)
        if width == 0:
            return vectors
        std = self.standardizer
        rho = np.zeros((len(vectors), width), dtype=np.float32)
        covered = (std is not None and std.method == "hubness" and self._folded == getattr(std, "terms_digest_", None)
                   and len(std.terms_) == ids[0] and std.modalities_ == self._term_modalities)
        if covered:
            rho = std.extend_terms(self, ids, vectors)
            self._folded = std.terms_digest_
        else:
            self._folded = None
        out = augment(vectors, width)
        out[:, self.dim :] = term_columns(rho)
        return out

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
        if self._term_modalities:
            raise SimstdError("this index stores hubness terms in its shards; adopt indexes into an index "
                              "without them (a new MixedIndex), then fit")
        if modality in self._shards:
            raise SimstdError(f"the index already holds {modality!r} items; adopt a shard only for a new modality")
        if isinstance(shard, faiss.IndexIDMap) or shard.d != self.dim:
            why = "an IndexIDMap (ids of its own)" if isinstance(shard, faiss.IndexIDMap) else f"dimension {shard.d}"
            raise SimstdError(f"cannot adopt a {modality!r} FAISS index of {why} into an index of dimension "
                              f"{self.dim} with ids 0..n-1; rebuild it with index.add over the embeddings")
        if shard.metric_type not in (faiss.METRIC_INNER_PRODUCT, faiss.METRIC_L2):
            raise SimstdError(f"the {modality!r} FAISS index uses metric {shard.metric_type}; simstd ranks by cosine: "
                              "use an inner-product index (or L2 over L2-normalised vectors)")
        ids = np.arange(self.ntotal, self.ntotal + shard.ntotal, dtype=np.int64)
        # IndexIDMap refuses a non-empty index: wrap an empty stand-in, then point it at the shard.
        wrapper = faiss.IndexIDMap(faiss.IndexFlat(self.dim, shard.metric_type))
        wrapper.index = shard
        wrapper.own_fields = False
        wrapper.referenced_objects = [shard]  # keeps the shard alive as long as the wrapper
        wrapper.ntotal = shard.ntotal
        wrapper.is_trained = shard.is_trained
        faiss.copy_array_to_vector(ids, wrapper.id_map)
        self._shards[modality] = wrapper
        self._ids[modality] = ids
        records = iter(metadata) if metadata is not None else None
        for start in range(0, len(ids), 10_000):
            chunk = ids[start : start + 10_000]
            batch = None if records is None else [next(records, None) for _ in range(len(chunk))]
            self.store.add(chunk, modality, batch)
        h = hashlib.blake2b(self._fingerprint.encode(), digest_size=16)
        h.update(f"adopt:{modality}:{shard.ntotal}:{type(shard).__name__}".encode())
        self._fingerprint = h.hexdigest()
        return ids
    def _add_rows(self, vectors: np.ndarray, labels: np.ndarray, metadata: Sequence[dict] | None) -> None:
        # Ids follow rows even when modalities interleave: add runs of equal labels in order.
        bounds = np.flatnonzero(labels[1:] != labels[:-1]) + 1
        for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(labels)]):
            self.add(vectors[start:stop], str(labels[start]), None if metadata is None else metadata[start:stop])

    def _new_shard(self, modality: str, vectors: np.ndarray) -> faiss.IndexIDMap:
        sub = faiss.index_factory(vectors.shape[1], self.factory, faiss.METRIC_INNER_PRODUCT)
        if not sub.is_trained:
            try:
                sub.train(vectors)
            except RuntimeError as exc:
                msg = str(exc).strip().splitlines()[-1]
                raise SimstdError(
                    f"cannot train {self.factory!r} on the {len(vectors)} {modality!r} vectors ({msg}); "
                    "each modality is trained on its own vectors: use a smaller nlist (about sqrt(n)) "
                    "or 'Flat' for small collections"
                ) from None
        return faiss.IndexIDMap(sub)

    # ------------------------------------------------------------------ facts
    @property
    def ntotal(self) -> int:
        return sum(s.ntotal for s in self._shards.values())

    @property
    def modalities(self) -> list[str]:
        """Modality labels in the order they were first added."""
        return list(self._shards)

    @property
    def counts(self) -> dict[str, int]:
        return {m: int(s.ntotal) for m, s in self._shards.items()}

    @property
    def fingerprint(self) -> str:
        """Changes whenever vectors are added; a fit records it to detect staleness."""
        return self._fingerprint

    @property
    def shards(self) -> dict[str, faiss.Index]:
        """The FAISS index of each modality (``IndexIDMap`` to global ids)."""
        return dict(self._shards)

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
        if not isinstance(params, str):
            raise SimstdError(f"search parameters must be a string such as 'efSearch=128', got {params!r}")
        if query_modality is None and target is None:
            space = faiss.ParameterSpace()
            for shard in self._shards.values():
                try:
                    space.set_index_parameters(shard.index, params)
                except RuntimeError as exc:
                    raise SimstdError(
                        f"invalid FAISS search parameters {params!r} for {self.factory!r} ({exc})") from None
            names = {item.split("=", 1)[0].strip() for item in params.split(",")}
            for key in list(self._pair_params):
                left = {n: v for n, v in self._pair_params[key].items() if n not in names}
                if left:
                    self._pair_params[key] = left
                else:
                    del self._pair_params[key]
            return
        if query_modality is not None:
            check_label(query_modality, "query modality")
        if target is not None and target not in self._shards:
            raise SimstdError(f"unknown target modality {target!r}; the index holds {self.modalities}")
        parsed = {t: parse_pair_params(params, self._shards[t], t) for t in ([target] if target else self.modalities)}
        queries = [query_modality] if query_modality is not None else self.modalities
        for q in queries:
            for t, values in parsed.items():
                self._pair_params[(q, t)] = {**self._pair_params.get((q, t), {}), **values}

    @property
    def search_params(self) -> dict[tuple[str, str], str]:
        """The per-pair search parameters, ``{(query modality, target): "efSearch=256"}``
        (:meth:`set_search_params`; the shards' own settings apply elsewhere)."""
        return {key: ",".join(f"{n}={v}" for n, v in values.items()) for key, values in self._pair_params.items()}

    def clear_search_params(self) -> None:
        """Drop every per-pair search parameter (the shards' own settings apply again)."""
        self._pair_params = {}

    def shard_search_params(self, target: str) -> dict[str, int]:
        """A shard's own search parameters (``efSearch`` for HNSW, ``nprobe`` for IVF)."""
        if target not in self._shards:
            raise SimstdError(f"unknown target modality {target!r}; the index holds {self.modalities}")
        inner = faiss.downcast_index(self._shards[target].index)
        if isinstance(inner, faiss.IndexHNSW):
            return {"efSearch": int(inner.hnsw.efSearch)}
        try:
            return {"nprobe": int(faiss.extract_index_ivf(inner).nprobe)}
        except RuntimeError:
            return {}

    def ids(self, modality: str) -> np.ndarray:
        """Global ids of the items of one modality, ascending."""
        if modality not in self._ids:
            raise SimstdError(f"unknown modality {modality!r}; the index holds {self.modalities}")
        return self._ids[modality].copy()

    @contextlib.contextmanager
    def mining_session(self) -> Iterator[None]:
        """The searches of a fit (:func:`simstd.engines.base.search_session`).

        With ``mining="exhaustive"`` (default) an HNSW shard is searched over its
        stored vectors, not its graph: the exact top-k, as on ``Flat``, because a
        fit's statistics are only as good as its pseudo positives. With
        ``mining="graph"`` its beam is raised to :data:`MINING_EF_SEARCH` instead.
        Restored afterwards either way.
        """
        if self.mining not in MINING_MODES:
            raise SimstdError(f"mining must be one of {MINING_MODES}, got {self.mining!r}")
        saved = []
        if self.mining == "graph":
            for shard in self._shards.values():
                inner = faiss.downcast_index(shard.index)
                if isinstance(inner, faiss.IndexHNSW) and inner.hnsw.efSearch < MINING_EF_SEARCH:
                    saved.append((inner, inner.hnsw.efSearch))
                    inner.hnsw.efSearch = MINING_EF_SEARCH
        outer, self._exhaustive = self._exhaustive, self.mining == "exhaustive"
        try:
            yield
        finally:
            self._exhaustive = outer
            for inner, ef in saved:
                inner.hnsw.efSearch = ef

    def modality_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Modality label of each global id (raises for unknown ids)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty(ids.shape, dtype=object)
        found = np.zeros(ids.shape, dtype=bool)
        for m, mids in self._ids.items():
            pos = np.clip(np.searchsorted(mids, ids), 0, len(mids) - 1)
            hit = mids[pos] == ids
            out[hit] = m
            found |= hit
        if not found.all():
            bad = int(ids[~found].ravel()[0])
            raise SimstdError(f"id {bad} is not in the index (ids run from 0 to {self.ntotal - 1})")
        return out

    def reconstruct(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored vectors of the given global ids (as stored: lossy for PQ/SQ)."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        labels = self.modality_of(ids)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for m in set(labels.tolist()):
            sel = labels == m
            rows = np.searchsorted(self._ids[m], ids[sel])
            sub = self._shards[m].index
            try:
                out[sel] = sub.reconstruct_batch(rows)[:, : self.dim]
            except RuntimeError:
                # IVF indexes need a direct map (row -> inverted list entry) to reconstruct.
                faiss.extract_index_ivf(sub).make_direct_map()
                out[sel] = sub.reconstruct_batch(rows)[:, : self.dim]
        return out

    def build_bridges(self, ef_search: int = 32, *, batch: int = 16_384) -> list[tuple[str, str]]:
        """Cross-modal entry points for HNSW shards; returns the bridged (query, target) pairs.

        Most of a standardized top-k is cross-modal, and an HNSW search for a
        query of another modality is the expensive part (docs/performance.md).
        A *bridge* maps every stored item of modality ``s`` to its nearest item
        in the HNSW shard of modality ``t`` (a graph search with ``ef_search``,
        one batch FAISS search per block of items). A search with queries of
        ``s`` then searches their own shard first, and starts the search of
        shard ``t`` on its bottom layer at the bridges of the query's
        :data:`BRIDGE_ENTRIES` best own results (FAISS ``search_level_0``),
        already among the query's cross-modal neighbours, instead of
        descending ``t``'s graph from its top. The idea of linking the query
        distribution into the base graph is RoarGraph's (Chen et al., VLDB
        2024); here it costs one stored int32 per item and pair, and no graph
        change. Results stay approximate, as any HNSW search. Saved with the
        index; adding items of ``s`` drops its bridges (rebuild them).
        """
        if ef_search not in Interval(int, 1):
            raise SimstdError(f"ef_search must be a positive integer, got {ef_search!r}")
        if batch not in Interval(int, 1):
            raise SimstdError(f"batch must be a positive integer, got {batch!r}")
        targets = [t for t, shard in self._shards.items() if _is_hnsw(shard) and shard.ntotal
                   and shard.index.metric_type == faiss.METRIC_INNER_PRODUCT]
        built = {}
        for src, shard in self._shards.items():
            for t in targets:
                if t == src or not shard.ntotal:
                    continue
                params = faiss.SearchParametersHNSW()
                params.efSearch = int(ef_search)
                rows = np.empty(shard.ntotal, dtype=np.int32)
                inner, target = shard.index, self._shards[t].index
                for start in range(0, shard.ntotal, batch):
                    X = inner.reconstruct_n(start, min(batch, shard.ntotal - start))
                    X = augment(X[:, : self.dim], len(self._term_modalities))  # a raw search
                    rows[start : start + len(X)] = target.search(X, 1, params=params)[1][:, 0]
                built[(src, t)] = rows
        self._bridges.update(built)
        return list(built)

    def drop_bridges(self) -> None:
        """Forget every bridge (searches descend each graph from its top again)."""
        self._bridges = {}

    @property
    def bridges(self) -> list[tuple[str, str]]:
        """The (query modality, target) pairs searched from bridges (:meth:`build_bridges`)."""
        return list(self._bridges)

    def _bridged(self, query_modality: str, names: list[str]) -> list[str]:
        """The named shards a query of ``query_modality`` enters through bridges."""
        if not self._bridges or query_modality not in names:
            return []
        return [t for t in names if (query_modality, t) in self._bridges]

    def _entries(self, query_modality: str, target: str, own_ids: np.ndarray) -> np.ndarray:
        """Target rows to start from: the bridges of the best own-modality results."""
        own = own_ids[:, :BRIDGE_ENTRIES]
        own = np.where(own >= 0, own, own[:, :1])  # too few own results: repeat the best
        rows = np.searchsorted(self._ids[query_modality], np.maximum(own, 0))
        return np.ascontiguousarray(self._bridges[(query_modality, target)][rows], dtype=np.int32)

    def _level0_search(self, target: str, queries: np.ndarray, k: int, entries: np.ndarray,
                       params: faiss.SearchParameters | None) -> tuple[np.ndarray, np.ndarray]:
        """An HNSW shard's bottom layer searched from ``entries`` (rows, one row of them per query)."""
        inner = faiss.downcast_index(self._shards[target].index)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        nq, ne = entries.shape
        X = inner.reconstruct_batch(entries.ravel()).reshape(nq, ne, -1)
        near = np.ascontiguousarray(np.einsum("qd,qed->qe", queries, X), dtype=np.float32)
        ef = params.efSearch if params is not None else inner.hnsw.efSearch
        beam = faiss.SearchParametersHNSW()
        beam.efSearch = max(int(ef), k)  # the bottom-layer search returns at most efSearch results
        D = np.empty((nq, k), dtype=np.float32)
        I = np.empty((nq, k), dtype=np.int64)
        inner.search_level_0(nq, faiss.swig_ptr(queries), k, faiss.swig_ptr(entries), faiss.swig_ptr(near),
                             faiss.swig_ptr(D), faiss.swig_ptr(I), ne, 2, beam)
        ids = self._ids[target]
        return D, np.where(I >= 0, ids[np.maximum(I, 0)], -1)

    def _search_with_bridges(self, queries: np.ndarray, names: list[str], widths: list[int], query_modality: str,
                             params: list, bridged: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`_search_shards`, with the ``bridged`` shards searched after the query's own."""
        plain = [j for j, m in enumerate(names) if m not in bridged]
        found: dict[int, tuple[np.ndarray, np.ndarray]] = dict(zip(plain, self._search_shards(
            queries, [names[j] for j in plain], [widths[j] for j in plain], query_modality,
            [params[j] for j in plain])))
        own = found[names.index(query_modality)][1]
        for j, m in enumerate(names):
            if m in bridged:
                found[j] = self._level0_search(m, queries, widths[j], self._entries(query_modality, m, own),
                                               params[j])
        return [found[j] for j in range(len(names))]

    def fold_terms(self, standardizer: Standardizer) -> None:
        """Store the per-item terms of a ``method="hubness"`` fit in the shards
        (one extra dimension per query modality; engines/faiss.py), so FAISS
        ranks by the corrected similarity. Runs once per fit (a no-op when they
        are there already); :meth:`search` calls it."""
        digest = getattr(standardizer, "terms_digest_", None)
        if digest is None:
            raise NotFittedError('fold_terms needs a fitted Standardizer(method="hubness") with its terms')
        if self._folded == digest and self._term_modalities == standardizer.modalities_:
            return
        if len(standardizer.terms_) != self.ntotal:
            raise FingerprintMismatchError(
                f"the hubness fit holds terms for {len(standardizer.terms_)} items, the index has {self.ntotal}: "
                "items were added without it (assign index.standardizer before index.add), or it belongs to "
                "another index; refit with `simstd fit --index ...`"
            )
        for m, shard in self._shards.items():
            cols = term_columns(standardizer.terms_[self._ids[m]])
            self._shards[m] = fold_terms(shard, self.dim, self.factory, cols)
        self._term_modalities = list(standardizer.modalities_)
        self._folded = digest

    # ------------------------------------------------------------------ search
    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw FAISS ``(D, I)`` top-k among the items of one modality (global ids)."""
        if modality not in self._shards:
            raise SimstdError(f"unknown modality {modality!r}; the index holds {self.modalities}")
        queries = as_embeddings(queries, "queries", self.dim)
        return self._shard_search(modality, queries, min(k, self._shards[modality].ntotal))

    def _shard_search(self, modality: str, queries: np.ndarray, k: int,
                      params: faiss.SearchParameters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Search one shard's inner index and map its rows to global ids here.

        Same result as ``IndexIDMap.search``, whose id translation opens an
        OpenMP parallel region on every call: for one query that region costs
        more than the search whenever the other cores are busy. ``params``:
        FAISS search parameters for this call only.
        """
        inner = self._shards[modality].index
        if self._exhaustive:  # a fit: the exact top-k of an HNSW shard from its stored vectors
            inner, params = _exhaustive(inner), None
        if params is None:
            D, I = inner.search(self._pad(queries), k)
        else:
            D, I = inner.search(self._pad(queries), k, params=params)
        if inner.metric_type == faiss.METRIC_L2:  # an adopted L2 index over unit vectors: |q - x|^2 = 2 - 2 cos
            D = 1.0 - D / 2.0
        ids = self._ids[modality]
        return D, np.where(I >= 0, ids[I], I)

    def _pad(self, queries: np.ndarray, column: int | None = None) -> np.ndarray:
        """Queries as the shards take them: with a zero (raw) or one-hot
        (hubness, column of the query modality) coefficient per term dimension."""
        if queries.shape[1] != self.dim:
            return queries  # already padded
        return augment(queries, len(self._term_modalities), column)

    def _pair_search_params(self, query_modality: str | None, names: list[str]) -> list:
        """FAISS ``SearchParameters`` (or None: the shard's own) of each named shard for queries
        of ``query_modality``."""
        if query_modality is None or not self._pair_params:
            return [None] * len(names)
        return [search_parameters(self._shards[m], self._pair_params.get((query_modality, m))) for m in names]

    def _search_shards(
        self, queries: np.ndarray, names: list[str], widths: list[int], query_modality: str | None = None,
        params: list | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Raw ``(D, I)`` of every named shard, with the per-pair search parameters of
        ``query_modality`` (or the given ``params``, one per shard).

        FAISS parallelises one search over its queries (OpenMP), so a batch
        uses every thread and shards are searched one after the other. Fewer
        queries than threads (a single query, the CLI and latency case) would
        leave threads idle: then the shards are searched concurrently, one
        single-threaded FAISS search per shard (FAISS releases the GIL).
        """
        if params is None:
            params = self._pair_search_params(query_modality, names)
        bridged = self._bridged(query_modality, names) if query_modality is not None else []
        if bridged:
            return self._search_with_bridges(queries, names, widths, query_modality, params, bridged)
        threads = faiss.omp_get_max_threads()
        if len(names) > 1 and threads > 1 and len(queries) < threads:
            pool = _shard_pool(threads)
            futures = [pool.submit(self._shard_search, m, queries, w, p) for m, w, p in zip(names, widths, params)]
            return [f.result() for f in futures]
        return [self._shard_search(m, queries, w, p) for m, w, p in zip(names, widths, params)]

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
        """
        queries = as_embeddings(queries, "queries", self.dim)
        return self._search(queries, query_modality, k, standardizer, raw, targets, uncertainty, rerank,
                            rerank_weight, strict)

    def _search(
        self,
        queries: np.ndarray,
        query_modality: str,
        k: int,
        standardizer: Standardizer | None,
        raw: bool,
        targets: Sequence[str] | None,
        uncertainty: UncertaintyModel | None,
        rerank: str | None,
        rerank_weight: float,
        strict: bool = False,
        exclude: np.ndarray | None = None,
        shard_params: list | None = None,
        shard_search: Callable | None = None,
    ) -> SearchResult:
        """:meth:`search`; ``exclude`` (one id per query) leaves each query's own
        item out before any query-dependent term is computed (search_like);
        ``shard_params`` (one FAISS ``SearchParameters`` or None per searched
        shard) replaces the per-pair search parameters, and ``shard_search``
        (``(queries, names, widths) -> [(D, I)]``) the FAISS shard searches
        (simstd.tuning's brute-force reference)."""
        check_label(query_modality, "query modality")
        if self.ntotal == 0:
            raise SimstdError("the index is empty: add vectors before searching")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise SimstdError(f"k must be a positive integer, got {k!r}")
        names = list(targets) if targets is not None else self.modalities
        for m in names:
            if m not in self._shards:
                raise SimstdError(f"unknown target modality {m!r}; the index holds {self.modalities}")
        if uncertainty is not None or rerank is not None:
            from .uncertainty.model import check_rerank  # lazy: plain searches do not need the module

            if check_rerank(rerank, rerank_weight) and (uncertainty is None or raw):
                raise SimstdError('rerank="uncertainty" needs a fitted uncertainty model (uncertainty=...) and '
                                  "standardized scores (raw=False); fit one with UncertaintyModel().fit(index) "
                                  "(CLI: simstd fit --uncertainty)")
            if uncertainty is not None:
                uncertainty.check_index(self, strict=strict)
        sizes = [self._shards[m].ntotal for m in names]
        if exclude is not None:  # each query's own item is not a candidate
            sizes = [n - int(m == query_modality) for m, n in zip(names, sizes)]
        available = sum(sizes)
        if k > available:
            raise SimstdError(f"k={k} is larger than the {available} searchable items; use k <= {available}")
        hub = False
        if not raw:
            standardizer = standardizer or self.standardizer
            if standardizer is None:
                raise NotFittedError(
                    "the index has no fitted standardizer: run `simstd fit --index ...` "
                    "(Python: index.standardizer = Standardizer().fit(index)), or search with raw=True"
                )
            standardizer.check_index(self, strict=strict)
            maps = [standardizer.affine(query_modality, m) for m in names]
            hub = standardizer.method == "hubness"
        # Each shard's top candidates: k, the query term's (query_shift's shift_k or the
        # hubness query term's hubness_k best), and the uncertainty model's depth (its tail
        # model). A search_like query's own item is one more candidate in its own shard.
        needed = k
        shift = 0.0 if raw or hub else float(standardizer.query_shift)
        if shift:
            needed = max(needed, int(standardizer.shift_k))
        column = None
        if hub:
            needed = max(needed, int(standardizer.hubness_k))
            self.fold_terms(standardizer)
            column = self._term_modalities.index(query_modality)
        tail = 0 if uncertainty is None else int(uncertainty.depth)
        widths = [min(max(needed + int(exclude is not None and m == query_modality), tail), self._shards[m].ntotal)
                  for m in names]
        if shard_search is not None:
            found = shard_search(self._pad(queries, column), names, widths)
        else:
            found = self._search_shards(self._pad(queries, column), names, widths, query_modality, shard_params)
        S = np.concatenate([d for d, _ in found], axis=1) if len(found) > 1 else found[0][0]
        I = np.concatenate([i for _, i in found], axis=1) if len(found) > 1 else found[0][1]
        if exclude is not None:
            I = np.where(I == np.asarray(exclude)[:, None], -1, I)
        # Column j of the candidates comes from shard codes[j]; standardize all
        # columns in one vectorised step (same float32 arithmetic per element).
        codes = np.repeat(np.arange(len(names), dtype=np.int16), widths)
        missing = I < 0
        if raw:
            Z = S
        else:
            mean = np.repeat(np.array([a for a, _ in maps], dtype=np.float32), widths)
            std = np.repeat(np.array([b for _, b in maps], dtype=np.float32), widths)
            if hub:  # FAISS returned u = s - rho/2 (engines/faiss.py): z of 2u - r_q
                U = S
                rho = standardizer.item_terms(np.where(missing, 0, I), query_modality).astype(np.float32)
                S = U + np.float32(0.5) * rho  # the raw cosines
                V = self._query_term(U, S, missing, widths, int(standardizer.hubness_k))
                Z = (V - mean) / std
            else:
                Z = (S - mean) / std
            if shift:
                Z = self._query_shift(Z, I, widths, shift, int(standardizer.shift_k))
        if missing.any():
            Z = np.where(missing, np.float32(-np.inf), Z).astype(np.float32, copy=False)
        U = None
        key = Z
        if uncertainty is not None:
            # The model describes the score the standardizer standardizes: the cosine, or 2u - r_q.
            # The model describes raw cosines, for either method (docs/uncertainty.md).
            U = uncertainty.uncertainty(S, I, codes, names, query_modality, sizes)
            if rerank == "uncertainty":
                key = np.where(missing, -np.inf, Z - rerank_weight * np.where(missing, 0.0, U))
        rows = np.arange(len(Z))[:, None]
        if key.shape[1] > k:
            top = np.argpartition(-key, k - 1, axis=1)[:, :k]
            pos = top[rows, np.argsort(-key[rows, top], axis=1, kind="stable")]
        else:
            pos = np.argsort(-key, axis=1, kind="stable")
        Z, S, I = Z[rows, pos], S[rows, pos], I[rows, pos]
        C = codes[pos]
        labels = np.asarray(names + [""], dtype=object)[np.where(I >= 0, C, len(names))]
        if U is None:
            return SearchResult(Z, I, S, labels, query_modality, not raw, self.store)
        U = U[rows, pos]
        return SearchResult(Z, I, S, labels, query_modality, not raw, self.store, np.exp(-U), U)

    @staticmethod
    def _query_term(U: np.ndarray, S: np.ndarray, missing: np.ndarray, widths: list[int],
                    hubness_k: int) -> np.ndarray:
        """``2u - r_q`` per shard block, ``r_q`` the mean cosine of its ``hubness_k`` best
        by ``u`` (:func:`simstd.hubness.corrected_scores`); a shard's columns arrive
        sorted by ``u``, best first, so those are its first valid columns."""
        V = 2 * U
        start = 0
        for width in widths:
            block = slice(start, start + width)
            local = nearest_mean(S[:, block], ~missing[:, block], hubness_k)
            V[:, block] -= local[:, None].astype(np.float32)
            start += width
        return V

    @staticmethod
    def _query_shift(Z: np.ndarray, I: np.ndarray, widths: list[int], shift: float, shift_k: int) -> np.ndarray:
        """Subtract ``shift`` x the mean of each shard's ``shift_k`` best z per query
        (Standardizer's ``query_shift``); shard columns arrive sorted, best first."""
        Z = Z.copy()
        start = 0
        for width in widths:
            block = slice(start, start + width)
            local = topk_mean(np.where(I[:, block] >= 0, Z[:, block], -np.inf), shift_k)
            Z[:, block] -= np.float32(shift) * local[:, None].astype(np.float32)
            start += width
        return Z

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
        opts = {"standardizer": None, "raw": False, "targets": None, "uncertainty": None, "rerank": None,
                "rerank_weight": 1.0, "strict": False, **kwargs}
        return self._search(self.reconstruct(ids), str(labels[0]), k, exclude=ids, **opts)

    # ------------------------------------------------------------- persistence
    def save(self, path: str | Path, *, lock_timeout: float | None = 600.0, overwrite: bool = False,
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
        from .storage.layout import save_index

        return save_index(self, path, lock_timeout=lock_timeout, overwrite=overwrite, keep=keep)

    @classmethod
    def load(cls, path: str | Path, *, load_standardizer: bool = True, verify: bool | None = None) -> "MixedIndex":
        """Open the current version of the index at ``path``, with its fitted models.

        Takes no lock and never sees a half-written version. ``verify``
        checksums files up to 64 MiB by default, all with True, none with False
        (sizes and counts are always checked; ``simstd check`` verifies all).
        """
        from .storage.layout import load_index

        return load_index(cls, path, load_standardizer=load_standardizer, verify=verify)

    @classmethod
    def _restore(cls, dim: int, factory: str, model: str | None, store: MetadataStore,
                 shards: dict[str, faiss.IndexIDMap], fingerprint: str, term_modalities: Sequence[str] = (),
                 folded: str | None = None) -> "MixedIndex":
        """An index from loaded parts (the storage layer's constructor)."""
        index = cls.__new__(cls)
        index.dim, index.factory, index.model = dim, factory, model
        index.store = store
        index.standardizer = None
        index.uncertainty = None
        index.version = None
        index._origin = None
        index._shards = dict(shards)
        index._ids = {m: faiss.vector_to_array(s.id_map) for m, s in shards.items()}
        index._fingerprint = fingerprint
        index._term_modalities = list(term_modalities)
        index._folded = folded
        index._pair_params = {}
        index._bridges = {}
        index.mining, index._exhaustive = "exhaustive", False
        return index

    @property
    def fit_is_stale(self) -> bool:
        """Whether items were added since the standardizer was fitted (it still serves)."""
        std = self.standardizer
        return std is not None and std.is_stale(self)

    def __repr__(self) -> str:
        counts = ", ".join(f"{m}={n}" for m, n in self.counts.items())
        fitted = "fitted" if self.standardizer is not None else "not fitted"
        return f"MixedIndex(dim={self.dim}, factory={self.factory!r}, {counts or 'empty'}, {fitted})"


#: The named file of an index version that holds a hubness fit's per-item terms.
ITEM_TERMS = "item_terms.npy"


def _save_item_terms(index: MixedIndex, path: Path) -> bool:
    std = index.standardizer
    if std is None or std.method != "hubness":
        return False
    std.save_terms(path)
    return True


def _load_item_terms(index: MixedIndex, path: Path) -> None:
    std = index.standardizer
    if std is not None and std.method == "hubness":
        std.load_terms(path)


register_part(Part(ITEM_TERMS, _save_item_terms, _load_item_terms))

#: The named file of an index version that holds the per-pair search parameters.
SEARCH_PARAMS = "search_params.json"
_SEARCH_PARAMS_FORMAT = "simstd-search-params"


def _save_search_params(index: MixedIndex, path: Path) -> bool:
    if not index._pair_params:
        return False
    pairs = [{"query_modality": q, "target": t, "params": dict(v)} for (q, t), v in index._pair_params.items()]
    path.write_text(dump_json({"format": _SEARCH_PARAMS_FORMAT, "format_version": 1, "pairs": pairs},
                              SEARCH_PARAMS), encoding="utf-8")
    return True


def _load_search_params(index: MixedIndex, path: Path) -> None:
    fix = "rewrite it with index.set_search_params(...) and save, or delete the version's search parameters"
    data = check_format(read_json(path, "search parameters file", fix), str(path), _SEARCH_PARAMS_FORMAT, 1,
                        "simstd search parameters", fix)
    pairs = data.get("pairs")
    try:
        for pair in pairs:
            q, t = check_label(pair["query_modality"], "query modality"), pair["target"]
            if t not in index._shards:
                raise SimstdError(f"unknown target modality {t!r}")
            text = ",".join(f"{n}={v}" for n, v in pair["params"].items())
            index._pair_params[(q, t)] = parse_pair_params(text, index._shards[t], t)
    except (SimstdError, TypeError, KeyError, AttributeError) as exc:
        raise CorruptFileError(f"{path} holds invalid search parameters ({exc}); {fix}") from None


register_part(Part(SEARCH_PARAMS, _save_search_params, _load_search_params))

#: The named file of an index version that holds the cross-modal bridges.
BRIDGES = "bridges.npz"


def _save_bridges(index: MixedIndex, path: Path) -> bool:
    if not index._bridges:
        return False
    with open(path, "wb") as fh:  # np.savez would append ".npz" to a name without it
        np.savez(fh, **{f"{s}\x1f{t}": rows for (s, t), rows in index._bridges.items()})
    return True


def _load_bridges(index: MixedIndex, path: Path) -> None:
    fix = "drop them (index.drop_bridges(); save) or rebuild them (index.build_bridges(); save)"
    try:
        with np.load(path, allow_pickle=False) as data:
            bridges = {tuple(name.split("\x1f", 1)): data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"cannot read the bridges {path} ({exc}); {fix}") from None
    for (s, t), rows in bridges.items():
        ok = (s in index._shards and t in index._shards and rows.dtype == np.int32
              and rows.shape == (index._shards[s].ntotal,) and (rows.size == 0 or (
                  rows.min() >= 0 and rows.max() < index._shards[t].ntotal)))
        if not ok:
            raise CorruptFileError(f"the bridges {path} do not match the index ({s!r} -> {t!r}); {fix}")
    index._bridges = bridges


register_part(Part(BRIDGES, _save_bridges, _load_bridges))


def _exhaustive(inner: faiss.Index) -> faiss.Index:
    """The flat storage of an HNSW index (rows = the graph's ids), else ``inner`` itself."""
    hnsw = faiss.downcast_index(inner)
    return faiss.downcast_index(hnsw.storage) if isinstance(hnsw, faiss.IndexHNSW) else inner


def _is_hnsw(shard: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(shard.index), faiss.IndexHNSW)

_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool)
_POOL_LOCK = threading.Lock()


def _shard_pool(threads: int) -> ThreadPoolExecutor:
    """Process-wide pool whose workers run FAISS with one OpenMP thread each
    (``omp_set_num_threads`` applies to the calling thread only). Made anew
    in a forked child, which does not inherit the parent's threads."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < threads:
            pool = ThreadPoolExecutor(threads, "simstd-shard", faiss.omp_set_num_threads, (1,))
            _POOL = (os.getpid(), threads, pool)
        return _POOL[2]


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()

