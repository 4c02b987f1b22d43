"""The FAISS side of simstd: :class:`MixedIndex` and the components it is made of.

==================  ==========================================================
``mixed``           :class:`MixedIndex`, the facade users hold
``shards``          :class:`ShardSet`: one FAISS index per modality, global ids
``params``          :class:`PairParams`: search parameters per (query, shard) pair
``bridges``         :class:`Bridges`: cross-modal HNSW entry points
``terms``           a fit's per-item terms folded into the shards
``search``          the pipeline: plan, gather, score, select
``persistence``     the parts :mod:`simstd.storage` commits, and back
==================  ==========================================================

Imports run one way: ``mixed`` over ``search`` and ``persistence``, over
``terms``, ``bridges`` and ``params``, over ``shards``.
"""
from __future__ import annotations

from ..engines.base import SearchResult
from .bridges import BRIDGE_ENTRIES, BRIDGES, Bridges
from .mixed import FORMAT_VERSION, MixedIndex
from .params import SEARCH_PARAMS, PairParams
from .persistence import Part, register_part
from .shards import MINING_EF_SEARCH, MINING_MODES, ShardSet
from .terms import ITEM_TERMS

__all__ = [
    "BRIDGES",
    "BRIDGE_ENTRIES",
    "FORMAT_VERSION",
    "ITEM_TERMS",
    "MINING_EF_SEARCH",
    "MINING_MODES",
    "SEARCH_PARAMS",
    "Bridges",
    "MixedIndex",
    "PairParams",
    "Part",
    "SearchResult",
    "ShardSet",
    "register_part",
]
