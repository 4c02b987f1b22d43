"""The shard set: one FAISS index per modality, and the global ids of its rows.

A :class:`ShardSet` owns the FAISS side of a :class:`~simstd.MixedIndex`: the
factory string, one ``IndexIDMap`` per modality (all built from that factory),
the ascending global ids of each shard's rows, the term dimensions the shards
store after the vector (:mod:`simstd.engines.faiss`), adding and adopting
vectors, reconstruction, per-call search of one shard, and the exhaustive
searches a fit makes. It knows nothing of standardization.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import faiss
import numpy as np

from ..engines.faiss import (augment, check_pq_split, factory_of, faiss_message, on_disk_lists, term_padding,
                             search_settings, serialized_bytes)
from ..errors import SimstdError
from ..validation import check_modality

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


class ShardSet:
    """FAISS shards of one factory, one per modality, with global ids.

    ``term_modalities``: the query modalities whose per-item terms the shards
    store as extra dimensions (``dim + len(term_modalities)`` stored
    dimensions), and ``folded``: the digest of the fit those terms come from
    (None: zeros or out of date).
    """

    def __init__(self, dim: int, factory: str) -> None:
        self.dim = int(dim)
        self.factory = factory
        self.shards: dict[str, faiss.IndexIDMap] = {}
        self.row_ids: dict[str, np.ndarray] = {}
        self.term_modalities: list[str] = []
        self.folded: str | None = None
        self.mining = "exhaustive"
        self._exhaustive = False  # inside an exhaustive mining session

    @classmethod
    def restore(cls, dim: int, factory: str, shards: dict[str, faiss.IndexIDMap],
                term_modalities: Sequence[str] = (), folded: str | None = None) -> "ShardSet":
        """Shards read back from storage (their id maps give the global ids)."""
        out = cls(dim, factory)
        out.shards = dict(shards)
        out.row_ids = {m: faiss.vector_to_array(s.id_map) for m, s in shards.items()}
        out.term_modalities, out.folded = list(term_modalities), folded
        return out

    def check_factory(self, extra: int = 0) -> None:
        """Refuse a factory string FAISS cannot build for the stored width: the vector
        dimension plus ``extra`` term dimensions (a fit with per-item terms stores one
        per query modality) and their zero padding for a product quantizer
        (:func:`~simstd.engines.faiss.term_padding`), with the reason and a fix instead
        of FAISS's C++ message."""
        pad = term_padding(self.dim, int(extra), self.factory)
        width = self.dim + int(extra) + pad
        why = (f" ({self.dim} + {extra} hubness term dimensions, one per query modality"
               + (f", + {pad} zero padding" if pad else "") + ")") if extra else ""
        hint = "; or fit with method='paper' (simstd fit --method paper), which stores no term dimensions"
        check_pq_split(width, self.factory, why, hint if extra else "")
        try:
            faiss.index_factory(width, self.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise SimstdError(
                f"FAISS cannot build factory string {self.factory!r} for dimension {width}{why} "
                f"({faiss_message(exc)}); use e.g. 'Flat', 'IVF1024,Flat', 'HNSW32' or 'IVF1024,SQfp16'"
            ) from None

    # ------------------------------------------------------------------ facts
    @property
    def ntotal(self) -> int:
        return sum(s.ntotal for s in self.shards.values())

    @property
    def modalities(self) -> list[str]:
        return list(self.shards)

    @property
    def counts(self) -> dict[str, int]:
        return {m: int(s.ntotal) for m, s in self.shards.items()}

    @property
    def term_width(self) -> int:
        """Stored dimensions after the vector: one term per query modality, then the
        zeros a product quantizer needs to split the width evenly."""
        n = len(self.term_modalities)
        return n + term_padding(self.dim, n, self.factory) if n else 0

    def describe(self, modality: str) -> dict:
        """FAISS facts of one shard: its ``factory`` (FAISS's reverse factory of the
        shard as built: the index's factory string at the stored width, or an adopted
        index's own), ``kind``, ``count``, ``stored_dim`` (the vector plus its term
        dimensions), ``memory_bytes`` and the ``search_params`` set on it.

        ``memory_bytes`` is the size of the shard serialized by ``faiss.write_index``
        (counted as it streams, nothing copied): the codes or vectors, graph links,
        centroids and the id map, i.e. what the shard holds in RAM once loaded, to
        within FAISS's allocator slack. IVF lists kept on disk (``OnDiskInvertedLists``)
        are not in it: ``lists_file`` and ``lists_bytes`` give their file.
        """
        self.check_modality(modality)
        shard = self.shards[modality]
        out = {
            "modality": modality,
            "factory": factory_of(shard),
            "kind": type(faiss.downcast_index(shard.index)).__name__,
            "count": int(shard.ntotal),
            "stored_dim": int(shard.d),
            "memory_bytes": serialized_bytes(shard),
            "search_params": search_settings(shard),
        }
        lists = on_disk_lists(shard)
        if lists is not None:
            out["lists_file"], out["lists_bytes"] = lists
        return out

    def check_modality(self, modality: str, role: str = "modality") -> None:
        check_modality(modality, self.modalities, role)

    def ids(self, modality: str) -> np.ndarray:
        self.check_modality(modality)
        return self.row_ids[modality].copy()

    def modality_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Modality label of each global id (raises for unknown ids)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty(ids.shape, dtype=object)
        found = np.zeros(ids.shape, dtype=bool)
        for m, mids in self.row_ids.items():
            pos = np.clip(np.searchsorted(mids, ids), 0, len(mids) - 1)
            hit = mids[pos] == ids
            out[hit] = m
            found |= hit
        if not found.all():
            bad = int(ids[~found].ravel()[0])
            raise SimstdError(f"id {bad} is not in the index (ids run from 0 to {self.ntotal - 1})")
        return out

    def rows(self, modality: str, ids: np.ndarray) -> np.ndarray:
        """Rows of the shard of ``modality`` that hold the global ``ids``."""
        return np.searchsorted(self.row_ids[modality], ids)

    def reconstruct(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored vectors of the given global ids (as stored: lossy for PQ/SQ), term dimensions dropped."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        labels = self.modality_of(ids)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for m in set(labels.tolist()):
            sel = labels == m
            sub = self.shards[m].index
            try:
                out[sel] = sub.reconstruct_batch(self.rows(m, ids[sel]))[:, : self.dim]
            except RuntimeError:
                # IVF indexes need a direct map (row -> inverted list entry) to reconstruct.
                faiss.extract_index_ivf(sub).make_direct_map()
                out[sel] = sub.reconstruct_batch(self.rows(m, ids[sel]))[:, : self.dim]
        return out

    # ------------------------------------------------------------- building
    def new_shard(self, modality: str, stored: np.ndarray) -> faiss.IndexIDMap:
        """An empty shard of the factory for ``stored``'s width, trained on them if it needs training."""
        sub = faiss.index_factory(stored.shape[1], self.factory, faiss.METRIC_INNER_PRODUCT)
        if not sub.is_trained:
            try:
                sub.train(stored)
            except RuntimeError as exc:
                msg = faiss_message(exc)
                raise SimstdError(
                    f"cannot train {self.factory!r} on the {len(stored)} {modality!r} vectors ({msg}); "
                    "each modality is trained on its own vectors: use a smaller nlist (about sqrt(n)) "
                    "or 'Flat' for small collections"
                ) from None
        return faiss.IndexIDMap(sub)

    def add(self, modality: str, stored: np.ndarray, ids: np.ndarray) -> None:
        """Append vectors as the shards store them (term dimensions included) under ``ids``."""
        shard = self.shards.get(modality) or self.new_shard(modality, stored)
        shard.add_with_ids(stored, ids)
        self.shards[modality] = shard
        self.row_ids[modality] = np.concatenate([self.row_ids.get(modality, np.empty(0, np.int64)), ids])

    def adopt(self, modality: str, shard: faiss.Index, ids: np.ndarray) -> None:
        """Take a built FAISS index as the shard of a new ``modality`` (rows become ``ids``)."""
        # IndexIDMap refuses a non-empty index: wrap an empty stand-in, then point it at the shard.
        wrapper = faiss.IndexIDMap(faiss.IndexFlat(self.dim, shard.metric_type))
        wrapper.index = shard
        wrapper.own_fields = False
        wrapper.referenced_objects = [shard]  # keeps the shard alive as long as the wrapper
        wrapper.ntotal = shard.ntotal
        wrapper.is_trained = shard.is_trained
        faiss.copy_array_to_vector(ids, wrapper.id_map)
        self.shards[modality] = wrapper
        self.row_ids[modality] = ids

    # ------------------------------------------------------------- searching
    def pad(self, queries: np.ndarray, column: int | None = None) -> np.ndarray:
        """Queries as the shards take them: with a zero (raw) or one-hot (the query
        modality's term column) coefficient per term dimension."""
        if queries.shape[1] != self.dim:
            return queries  # already padded
        return augment(queries, self.term_width, column)

    def search(self, modality: str, queries: np.ndarray, k: int,
               params: faiss.SearchParameters | None = None,
               subset: "RowSubset | None" = None) -> tuple[np.ndarray, np.ndarray]:
        """Search one shard's inner index and map its rows to global ids here.

        Same result as ``IndexIDMap.search``, whose id translation opens an
        OpenMP parallel region on every call: for one query that region costs
        more than the search whenever the other cores are busy. ``params``:
        FAISS search parameters for this call only. ``subset``: search only
        those rows of the shard (a stratum, :mod:`simstd.strata`; a FAISS ID
        selector, so on Flat only their products are computed).
        """
        inner = self.shards[modality].index
        if self._exhaustive:  # a fit: the exact top-k of an HNSW shard from its stored vectors
            inner, params = exhaustive(inner), None
        if subset is not None:
            params = subset.parameters(params, inner)
        if params is None:
            D, I = inner.search(self.pad(queries), k)
        else:
            D, I = inner.search(self.pad(queries), k, params=params)
        if inner.metric_type == faiss.METRIC_L2:  # an adopted L2 index over unit vectors: |q - x|^2 = 2 - 2 cos
            D = 1.0 - D / 2.0
        ids = self.row_ids[modality]
        return D, np.where(I >= 0, ids[I], I)

    def search_each(self, queries: np.ndarray, names: list[str], widths: list[int],
                    params: list, subsets: list | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Raw ``(D, I)`` of every named shard (``params``: one FAISS ``SearchParameters`` or None each).

        FAISS parallelises one search over its queries (OpenMP), so a batch
        uses every thread and shards are searched one after the other. Fewer
        queries than threads (a single query, the CLI and latency case) would
        leave threads idle: then the shards are searched concurrently, one
        single-threaded FAISS search per shard (FAISS releases the GIL).
        ``subsets``: a :class:`RowSubset` or None per name (a stratum of that shard).
        """
        subsets = subsets if subsets is not None else [None] * len(names)
        threads = faiss.omp_get_max_threads()
        if len(names) > 1 and threads > 1 and len(queries) < threads:
            pool = _shard_pool(threads)
            futures = [pool.submit(self.search, m, queries, w, p, s)
                       for m, w, p, s in zip(names, widths, params, subsets)]
            return [f.result() for f in futures]
        return [self.search(m, queries, w, p, s) for m, w, p, s in zip(names, widths, params, subsets)]

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
            for shard in self.shards.values():
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


class RowSubset:
    """Some rows of one shard (a stratum) as a FAISS ID selector over row numbers."""

    def __init__(self, rows: np.ndarray, ntotal: int) -> None:
        mask = np.zeros(int(ntotal), dtype=bool)
        mask[np.asarray(rows, dtype=np.int64)] = True
        self.size = int(mask.sum())
        self._bitmap = np.packbits(mask, bitorder="little")  # kept alive: FAISS holds a pointer to it
        self.selector = faiss.IDSelectorBitmap(int(ntotal), faiss.swig_ptr(self._bitmap))

    def parameters(self, params: faiss.SearchParameters | None, inner: faiss.Index) -> faiss.SearchParameters:
        """A copy of ``params`` (None: the shard's own settings, read from ``inner``)
        restricted to these rows. IVF and HNSW indexes take only their own parameter
        types, whose defaults would override the shard's nprobe / efSearch."""
        if params is None:
            index = faiss.downcast_index(inner)
            if isinstance(index, faiss.IndexHNSW):
                params = faiss.SearchParametersHNSW()
                params.efSearch = index.hnsw.efSearch
            else:
                try:
                    ivf = faiss.extract_index_ivf(index)
                except RuntimeError:
                    ivf = None
                if ivf is not None:
                    params = faiss.SearchParametersIVF()
                    params.nprobe, params.max_codes = ivf.nprobe, ivf.max_codes
        if params is None:
            out = faiss.SearchParameters()
        elif isinstance(params, faiss.SearchParametersHNSW):
            out = faiss.SearchParametersHNSW()
            out.efSearch = params.efSearch
        elif isinstance(params, faiss.SearchParametersIVF):
            out = faiss.SearchParametersIVF()
            out.nprobe, out.max_codes = params.nprobe, params.max_codes
        else:
            raise SimstdError(f"cannot restrict a search with {type(params).__name__} to a stratum")
        out.sel = self.selector
        return out


def exhaustive(inner: faiss.Index) -> faiss.Index:
    """The flat storage of an HNSW index (rows = the graph's ids), else ``inner`` itself."""
    hnsw = faiss.downcast_index(inner)
    return faiss.downcast_index(hnsw.storage) if isinstance(hnsw, faiss.IndexHNSW) else inner


def is_hnsw(shard: faiss.Index) -> bool:
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
