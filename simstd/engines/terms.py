"""Per-item hubness terms stored in a vector database, so it ranks by them.

A ``method="hubness"`` fit ranks the items of a modality by the item-corrected
similarity ``u = s - rho_c^a / 2`` (:mod:`simstd.hubness`). An engine with an
inner-product metric computes ``u`` itself from one more vector per item,
``[x, -rho^{a_1} / 2, ..., -rho^{a_M} / 2]`` (one term per query modality of
the fit), queried with ``[q, e_a]`` (a one-hot on the query's modality): the
same fold as MixedIndex's FAISS shards (:mod:`simstd.engines.faiss`). Then a
query's candidates in a modality are one engine search (its top ``depth`` by
``u``) instead of a certified over-fetch of raw hits.

This module holds what the three adapters share: the record that names the
fit whose terms are stored (its digest, modalities and item count), the item
pages to write, and the augmented queries. The adapters write and read them
(``store_terms``, ``stored_terms``, ``search_corrected``).
"""
from __future__ import annotations

import json
from typing import Iterator

import numpy as np

from ..errors import NotFittedError, SimstdError
from .base import Searchable, Transform, missing_mask

#: Default name of the engine's vector of augmented items (a Qdrant named
#: vector, a LanceDB or pgvector column).
TERMS_NAME = "simstd_terms"
#: Items per write batch.
PAGE = 1024


def record(std: Transform) -> dict:
    """What identifies the stored terms: the fit's digest, modalities (the
    order of the term coordinates) and item count."""
    return {"digest": str(std.terms_digest_), "modalities": list(std.modalities_), "n": int(len(std.terms_))}


def dumps(std: Transform) -> str:
    return json.dumps(record(std), sort_keys=True)


def loads(text: str | bytes | None) -> dict | None:
    """The record written by :func:`dumps`, or None (none, or not simstd's)."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) and {"digest", "modalities", "n"} <= set(data) else None


def check_fit(searchable: Searchable, std: Transform | None) -> Transform:
    """Raise unless ``std`` is a hubness fit with terms for every item of ``searchable``."""
    if std is None or not getattr(std, "has_item_terms", False) or not hasattr(std, "terms_"):
        raise NotFittedError('store_terms needs a fitted Standardizer(method="hubness") with its per-item terms')
    if sorted(searchable.modalities) != list(std.modalities_):
        raise SimstdError(f"the hubness fit covers the modalities {std.modalities_}, the store holds "
                          f"{sorted(searchable.modalities)}: refit on this store")
    n = sum(len(searchable.ids(m)) for m in searchable.modalities)
    if n != len(std.terms_):
        raise SimstdError(f"the hubness fit holds terms for {len(std.terms_)} items, the store has {n}: refit on "
                          "this store, or give new items their terms with standardizer.extend_terms(store, ids)")
    return std


def pages(searchable: Searchable, std: Transform, dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(ids, augmented vectors (n, dim + M))`` of every item, a page at a time
    (an id without a term raises, naming it)."""
    for m in searchable.modalities:
        ids = np.asarray(searchable.ids(m))
        for start in range(0, len(ids), PAGE):
            chunk = ids[start : start + PAGE]
            vectors = searchable.reconstruct(chunk)
            rho = np.stack([std.item_terms(chunk, a) for a in std.modalities_], axis=1)
            out = np.empty((len(chunk), dim + rho.shape[1]), np.float32)
            out[:, :dim] = vectors
            out[:, dim:] = -0.5 * rho
            yield chunk, out


def queries(queries: np.ndarray, std: Transform, query_modality: str) -> np.ndarray:
    """``[q, e_a]``: the queries with a one-hot on the query modality's term coordinate."""
    if query_modality not in std.modalities_:
        raise NotFittedError(f"no hubness terms for queries of modality {query_modality!r} (fitted: "
                             f"{std.modalities_}); refit on data that includes it")
    out = np.zeros((len(queries), queries.shape[1] + len(std.modalities_)), np.float32)
    out[:, : queries.shape[1]] = queries
    out[:, queries.shape[1] + list(std.modalities_).index(query_modality)] = 1.0
    return out


def cosines(U: np.ndarray, I: np.ndarray, std: Transform, query_modality: str) -> np.ndarray:
    """The cosines ``s = u + rho / 2`` of hits the engine scored by ``u`` (NaN where missing)."""
    missing = missing_mask(I)
    rho = std.item_terms(I, query_modality)
    return np.where(missing, np.nan, U.astype(np.float64) + 0.5 * rho).astype(np.float32)
