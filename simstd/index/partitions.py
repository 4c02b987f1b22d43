"""Strata as searchable partitions of the shards.

A stratified fit (:mod:`simstd.strata`) keys its statistics by stratum, so a
standardized search needs each stratum's own top candidates: within a shard a
per-stratum map reorders the items, and the shard's raw top-k is no longer
its top-k by score. Each stratum of a shard is therefore searched as one FAISS
search restricted to its rows (:class:`~.shards.RowSubset`): exact on Flat,
and on Flat only the stratum's products are computed, so the strata of a shard
together cost one raw search of it. The stratum of every stored item is read
from the metadata store with the fit's value map, once per index state.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..strata import Strata
from .shards import RowSubset, ShardSet


@dataclass(frozen=True)
class Block:
    """One searched partition: a stratum of a shard (``subset`` None: the whole shard)."""

    label: str
    modality: str
    subset: RowSubset | None
    size: int


_CACHE: "weakref.WeakKeyDictionary[Any, tuple[tuple, Strata, dict[str, list[Block]]]]" = weakref.WeakKeyDictionary()


def blocks(shards: ShardSet, store: Any, strata: Strata, names: Sequence[str]) -> list[Block]:
    """The blocks of the target modalities ``names``, in order: each modality's strata."""
    by_modality = _partitions(shards, store, strata)
    out: list[Block] = []
    for m in names:
        out.extend(by_modality[m])
    return out


def stratum_of(shards: ShardSet, store: Any, strata: Strata, modality: str, ids: np.ndarray) -> np.ndarray:
    """The stratum label of the stored items ``ids`` (all of ``modality``)."""
    if not strata.is_stratified(modality):
        return np.full(len(ids), modality, dtype=object)
    return strata.labels_of(modality, store.get(np.asarray(ids)), np.asarray(ids))


def _partitions(shards: ShardSet, store: Any, strata: Strata) -> dict[str, list[Block]]:
    # The store's items change only by adding (the counts), the fit only by a new Strata
    # object (kept in the entry, so its id is not reused while cached).
    key = (tuple(sorted(shards.counts.items())), id(strata))
    cached = _CACHE.get(store)
    if cached is not None and cached[0] == key and cached[1] is strata:
        return cached[2]
    out: dict[str, list[Block]] = {}
    for m in shards.modalities:
        n = shards.shards[m].ntotal
        if m not in strata.modalities or not strata.is_stratified(m):
            out[m] = [Block(m, m, None, n)]
            continue
        labels = stratum_of(shards, store, strata, m, shards.row_ids[m])
        out[m] = [Block(s, m, RowSubset(np.flatnonzero(labels == s), n), int((labels == s).sum()))
                  for s in strata.strata_of(m) if (labels == s).any()]
    _CACHE[store] = (key, strata, out)
    return out
