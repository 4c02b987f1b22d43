"""Term folding: a fit's per-item terms stored in the shards as extra dimensions.

A method with per-item terms (``method="hubness"``) ranks the items of a
modality by ``u = s - rho/2`` for queries of modality ``a``. Each shard
stores ``[x, -rho^1/2, ..., -rho^M/2]`` and a query is sent as ``[q, e_a]``,
so FAISS's own inner product is ``u``: the exact top-k for the price of one
raw search (:mod:`simstd.engines.faiss`). These functions keep a
:class:`~.shards.ShardSet`'s term dimensions in step with the fit.
"""
from __future__ import annotations

import numpy as np

from ..engines.base import Searchable
from ..engines.faiss import augment, fold_terms, term_columns, term_padding
from ..errors import FingerprintMismatchError, NotFittedError
from .shards import ShardSet

#: The named file of an index version that holds a fit's per-item terms.
ITEM_TERMS = "item_terms.npy"


def fold(shards: ShardSet, standardizer: object) -> None:
    """Store the per-item terms of ``standardizer`` in the shards (one extra dimension
    per query modality). A no-op when they are there already."""
    digest = getattr(standardizer, "terms_digest_", None)
    if digest is None:
        raise NotFittedError('fold_terms needs a fitted Standardizer with per-item terms (method="hubness")')
    if shards.folded == digest and shards.term_modalities == standardizer.modalities_:
        return
    if len(standardizer.terms_) != shards.ntotal:
        raise FingerprintMismatchError(
            f"the hubness fit holds terms for {len(standardizer.terms_)} items, the index has {shards.ntotal}: "
            "items were added without it (assign index.standardizer before index.add), or it belongs to "
            "another index; refit with `simstd fit --index ...`"
        )
    n_terms = len(standardizer.modalities_)
    shards.check_factory(n_terms)  # e.g. PQ7 cannot split 512 + 2 dimensions, nor any padding of them
    pad = term_padding(shards.dim, n_terms, shards.factory)  # zeros so that PQ8 splits 512 + 2 + 6
    for m, shard in shards.shards.items():
        cols = term_columns(standardizer.terms_[shards.row_ids[m]])
        if pad:
            cols = np.hstack([cols, np.zeros((len(cols), pad), np.float32)])
        shards.shards[m] = fold_terms(shard, shards.dim, shards.factory, cols)
    shards.term_modalities = list(standardizer.modalities_)
    shards.folded = digest


def stored_vectors(shards: ShardSet, standardizer: object | None, searchable: Searchable, vectors: np.ndarray,
                   ids: np.ndarray) -> np.ndarray:
    """New items' vectors as the shards store them.

    A fit with per-item terms that covers every item so far gives the new items
    their terms against its banks (nothing else refitted), folded or not yet.
    Shards with term dimensions store them, or zeros when the fit does not
    cover the items (the fold is then out of date and redone at the next search).
    """
    std = standardizer
    width = shards.term_width
    in_step = width > 0 and std is not None and shards.folded == getattr(std, "terms_digest_", None) \
        and std.modalities_ == shards.term_modalities
    rho = None
    if std is not None and std.has_item_terms and hasattr(std, "terms_") and len(std.terms_) == ids[0]:
        rho = std.extend_terms(searchable, ids, vectors)
    if width == 0:
        return vectors
    out = augment(vectors, width)
    if in_step and rho is not None:  # the padding after the terms stays zero
        out[:, shards.dim : shards.dim + len(shards.term_modalities)] = term_columns(rho)
        shards.folded = std.terms_digest_
    else:
        shards.folded = None
    return out
