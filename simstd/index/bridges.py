"""Cross-modal bridges: entry points for searching another modality's HNSW graph.

Most of a standardized top-k is cross-modal, and an HNSW search for a query
of another modality is the expensive part (docs/performance.md). A *bridge*
maps every stored item of modality ``s`` to its nearest item in the HNSW
shard of modality ``t``. A search with queries of ``s`` searches their own
shard first, then starts the search of shard ``t`` on its bottom layer at the
bridges of the query's :data:`BRIDGE_ENTRIES` best own results (FAISS
``search_level_0``), already among the query's cross-modal neighbours,
instead of descending ``t``'s graph from its top. Linking the query
distribution into the base graph is RoarGraph's idea (Chen et al., VLDB
2024); here it costs one stored int32 per item and pair, and no graph change.
Saved with the index as ``bridges.npz``.
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from ..engines.faiss import augment
from ..errors import CorruptFileError, SimstdError
from ..validation import Interval
from .shards import ShardSet, is_hnsw

#: Entry points of a bridged cross-modal HNSW search: the bridges of this many
#: of the query's own-modality results.
BRIDGE_ENTRIES = 3
#: The named file of an index version that holds the cross-modal bridges.
BRIDGES = "bridges.npz"


class Bridges:
    """``{(source, target): rows}``: for each source item (row order), the target row of its nearest target item."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], np.ndarray] = {}

    def __bool__(self) -> bool:
        return bool(self.rows)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(self.rows)

    def build(self, shards: ShardSet, ef_search: int = 32, *, batch: int = 16_384) -> list[tuple[str, str]]:
        """Bridge every modality to every other modality's HNSW shard (one batch FAISS
        search per block of items, a graph search with ``ef_search``); returns the pairs."""
        if ef_search not in Interval(int, 1):
            raise SimstdError(f"ef_search must be a positive integer, got {ef_search!r}")
        if batch not in Interval(int, 1):
            raise SimstdError(f"batch must be a positive integer, got {batch!r}")
        targets = [t for t, shard in shards.shards.items() if is_hnsw(shard) and shard.ntotal
                   and shard.index.metric_type == faiss.METRIC_INNER_PRODUCT]
        built = {}
        for src, shard in shards.shards.items():
            for t in targets:
                if t == src or not shard.ntotal:
                    continue
                params = faiss.SearchParametersHNSW()
                params.efSearch = int(ef_search)
                rows = np.empty(shard.ntotal, dtype=np.int32)
                inner, target = shard.index, shards.shards[t].index
                for start in range(0, shard.ntotal, batch):
                    X = inner.reconstruct_n(start, min(batch, shard.ntotal - start))
                    X = augment(X[:, : shards.dim], shards.term_width)  # a raw search
                    rows[start : start + len(X)] = target.search(X, 1, params=params)[1][:, 0]
                built[(src, t)] = rows
        self.rows.update(built)
        return list(built)

    def drop(self) -> None:
        self.rows = {}

    def drop_source(self, modality: str) -> None:
        """Forget the bridges of ``modality``'s items (new items have none)."""
        for pair in [pair for pair in self.rows if pair[0] == modality]:
            del self.rows[pair]

    def bridged(self, query_modality: str, names: list[str]) -> list[str]:
        """The named shards a query of ``query_modality`` enters through bridges."""
        if not self.rows or query_modality not in names:
            return []
        return [t for t in names if (query_modality, t) in self.rows]

    def entries(self, shards: ShardSet, query_modality: str, target: str, own_ids: np.ndarray) -> np.ndarray:
        """Target rows to start from: the bridges of the best own-modality results."""
        own = own_ids[:, :BRIDGE_ENTRIES]
        own = np.where(own >= 0, own, own[:, :1])  # too few own results: repeat the best
        rows = shards.rows(query_modality, np.maximum(own, 0))
        return np.ascontiguousarray(self.rows[(query_modality, target)][rows], dtype=np.int32)

    def search(self, shards: ShardSet, queries: np.ndarray, names: list[str], widths: list[int],
               query_modality: str, params: list, bridged: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`ShardSet.search_each`, with the ``bridged`` shards searched after the query's own."""
        plain = [j for j, m in enumerate(names) if m not in bridged]
        found: dict[int, tuple[np.ndarray, np.ndarray]] = dict(zip(plain, shards.search_each(
            queries, [names[j] for j in plain], [widths[j] for j in plain], [params[j] for j in plain])))
        own = found[names.index(query_modality)][1]
        for j, m in enumerate(names):
            if m in bridged:
                entries = self.entries(shards, query_modality, m, own)
                found[j] = level0_search(shards, m, queries, widths[j], entries, params[j])
        return [found[j] for j in range(len(names))]

    # ------------------------------------------------------------ persistence
    def save(self, path: Path) -> bool:
        if not self.rows:
            return False
        with open(path, "wb") as fh:  # np.savez would append ".npz" to a name without it
            np.savez(fh, **{f"{s}\x1f{t}": rows for (s, t), rows in self.rows.items()})
        return True

    def load(self, shards: ShardSet, path: Path) -> None:
        fix = "drop them (index.drop_bridges(); save) or rebuild them (index.build_bridges(); save)"
        try:
            with np.load(path, allow_pickle=False) as data:
                bridges = {tuple(name.split("\x1f", 1)): data[name] for name in data.files}
        except (OSError, ValueError) as exc:
            raise CorruptFileError(f"cannot read the bridges {path} ({exc}); {fix}") from None
        for (s, t), rows in bridges.items():
            ok = (s in shards.shards and t in shards.shards and rows.dtype == np.int32
                  and rows.shape == (shards.shards[s].ntotal,) and (rows.size == 0 or (
                      rows.min() >= 0 and rows.max() < shards.shards[t].ntotal)))
            if not ok:
                raise CorruptFileError(f"the bridges {path} do not match the index ({s!r} -> {t!r}); {fix}")
        self.rows = bridges


def level0_search(shards: ShardSet, target: str, queries: np.ndarray, k: int, entries: np.ndarray,
                  params: faiss.SearchParameters | None) -> tuple[np.ndarray, np.ndarray]:
    """An HNSW shard's bottom layer searched from ``entries`` (rows, one row of them per query)."""
    inner = faiss.downcast_index(shards.shards[target].index)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    entries = unique_rows(entries)
    nq, ne = entries.shape
    X = inner.reconstruct_batch(np.maximum(entries, 0).ravel()).reshape(nq, ne, -1)
    near = np.ascontiguousarray(np.einsum("qd,qed->qe", queries, X), dtype=np.float32)
    ef = params.efSearch if params is not None else inner.hnsw.efSearch
    beam = faiss.SearchParametersHNSW()
    beam.efSearch = max(int(ef), k)  # the bottom-layer search returns at most efSearch results
    D = np.empty((nq, k), dtype=np.float32)
    I = np.empty((nq, k), dtype=np.int64)
    inner.search_level_0(nq, faiss.swig_ptr(queries), k, faiss.swig_ptr(entries), faiss.swig_ptr(near),
                         faiss.swig_ptr(D), faiss.swig_ptr(I), ne, 2, beam)
    ids = shards.row_ids[target]
    return D, np.where(I >= 0, ids[np.maximum(I, 0)], -1)


def unique_rows(entries: np.ndarray) -> np.ndarray:
    """Each row's distinct entry rows, then -1: FAISS's bottom-layer search stops at the
    first -1, and returns an entry given twice twice (the bridges of a query's best
    items often coincide: the same id twice in its top-k)."""
    out = np.sort(entries, axis=1)
    out[:, 1:][out[:, 1:] == out[:, :-1]] = -1
    return np.ascontiguousarray(-np.sort(-out, axis=1), dtype=np.int32)
