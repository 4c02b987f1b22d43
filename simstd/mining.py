"""Mining the positive pairs whose scores a :class:`~simstd.Standardizer` fits.

Pseudo positives (Yamashita, Shirafuji and Saito, 2025): for every pseudo
query and every target modality, the top-``k`` cosine neighbours among the
items of that modality. Pseudo queries are a query log given by the user or,
when there is none, a seeded sample of the indexed items themselves; an item
is never its own pseudo positive.
"""
from __future__ import annotations

import warnings
from typing import Callable, Iterator, Sequence

import numpy as np

from .engines.base import Searchable, count, drop_self, missing_mask, search_session
from .errors import SimstdError
from .stats import TARGET_SE, draw_sample
from .validation import as_embeddings, check_label

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]

#: A pseudo query whose best hit reaches this cosine is a stored copy of itself
#: (float32 rounding keeps a self-match within ~1e-6 of 1).
SELF_MATCH_COSINE = 1.0 - 1e-5


def mine_pseudo_positives(
    searchable: Searchable,
    queries: np.ndarray | None = None,
    query_modalities: Sequence[str] | str | None = None,
    *,
    k: int = 1,
    sample: int | str | None = 10_000,
    seed: int = 0,
    target_se: float = TARGET_SE,
) -> Pairs:
    """Return ``(query_modality, target_modality, score)`` arrays, one entry per pseudo pair.

    ``searchable`` is any :class:`~simstd.engines.base.Searchable` (a
    MixedIndex, arrays, a vector-database adapter). ``sample`` caps the number
    of pseudo queries per query modality (drawn without replacement with
    ``seed``); ``None`` uses them all; ``"auto"`` draws rounds until the
    standard error of every pair's mean and std is at most ``target_se`` of
    its std (:func:`simstd.stats.sampling_errors`).
    """
    if count(searchable) == 0:
        raise SimstdError("the index is empty: add vectors before fitting")
    rng = np.random.default_rng(seed)
    out_q, out_t, out_s = [], [], []
    copies = 0
    with search_session(searchable):
        for qm, pool, fetch, stored in _query_pools(searchable, queries, query_modalities):
            def score(batch: np.ndarray) -> list[np.ndarray]:
                nonlocal copies
                vectors, out = fetch(batch), []
                for tm in searchable.modalities:
                    D, n_copies = _top_scores(searchable, vectors, batch if stored else None, qm, tm, k)
                    copies += n_copies
                    out.append(D)
                return out

            found = draw_sample(pool, sample, score, rng=rng, seed=seed, modality=qm, target=target_se)
            for tm, D in zip(searchable.modalities, found):
                D = D[np.isfinite(D)]
                out_q.append(np.full(D.size, qm, dtype=object))
                out_t.append(np.full(D.size, tm, dtype=object))
                out_s.append(D)
    if copies:
        warnings.warn(
            f"{copies} pseudo quer{'y is' if copies == 1 else 'ies are'} stored items themselves "
            f"(cosine >= {SELF_MATCH_COSINE}); {'its' if copies == 1 else 'their'} self-match was left out of the fit",
            stacklevel=2,
        )
    return np.concatenate(out_q), np.concatenate(out_t), np.concatenate(out_s)


def _top_scores(searchable: Searchable, vectors: np.ndarray, self_ids: np.ndarray | None, qm: str, tm: str,
                k: int) -> tuple[np.ndarray, int]:
    """Each query's ``k`` best cosines among the items of ``tm`` (-inf where fewer), itself left out."""
    D, I = searchable.search_modality(vectors, tm, k + 1)
    D = np.where(missing_mask(I), np.nan, D).astype(np.float64)  # fewer results than asked
    if self_ids is not None and tm == qm:
        D, I = drop_self(D, I, self_ids)
        found = 0
    else:
        D, found = _drop_copies(D, k)
    D = D[:, :k]
    return np.where(np.isnan(D), -np.inf, D), found


def _drop_copies(D: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Leave out a query log's self-matches: a first hit at cosine ~1 is the
    query itself, stored (a fit on it would give a mean of 1 and a std of ~0).
    ``D`` holds up to ``k + 1`` columns; returns ``k`` (NaN-padded) and the count."""
    width = D.shape[1]
    copy = D[:, 0] >= SELF_MATCH_COSINE if width else np.zeros(len(D), dtype=bool)
    cols = np.arange(k)[None, :] + copy[:, None]
    padded = np.concatenate([D, np.full((len(D), k + 1 - width), np.nan)], axis=1)
    return np.take_along_axis(padded, cols, axis=1), int(copy.sum())


def _query_pools(
    searchable: Searchable, queries, query_modalities
) -> Iterator[tuple[str, np.ndarray, Callable[[np.ndarray], np.ndarray], bool]]:
    """Per query modality: ``(modality, candidate ids or rows, fetch(those) -> vectors, stored?)``."""
    if queries is None:
        if query_modalities is not None:
            raise SimstdError("query_modalities was given without queries; pass the query vectors too")
        for m in searchable.modalities:
            yield m, np.asarray(searchable.ids(m)), searchable.reconstruct, True
        return
    queries = as_embeddings(queries, "pseudo queries", searchable.dim)
    if query_modalities is None:
        raise SimstdError("pass the modality of the pseudo queries (e.g. query_modalities='text')")
    if isinstance(query_modalities, str):
        labels = np.full(len(queries), check_label(query_modalities), dtype=object)
    else:
        labels = np.asarray(query_modalities, dtype=object)
        if labels.shape != (len(queries),):
            raise SimstdError(f"got {labels.size} query modalities for {len(queries)} queries; pass one per query")
    for m in sorted(set(labels.tolist())):
        yield check_label(str(m)), np.flatnonzero(labels == m), queries.__getitem__, False


def labeled_pair_scores(
    index: Searchable,
    positives: np.ndarray,
    queries: np.ndarray | None = None,
    query_modalities: Sequence[str] | str | None = None,
) -> Pairs:
    """Scores of gold pairs ``(query, target id)``; queries are rows of
    ``queries`` or, without them, ids of the index."""
    if not hasattr(index, "modality_of"):
        raise SimstdError(f"labeled pairs need ids that name their modality; a {type(index).__name__} cannot "
                          "look them up: score the gold pairs yourself and use Standardizer().fit_scores")
    pos = np.asarray(positives)
    if pos.ndim != 2 or pos.shape[1] != 2 or not np.issubdtype(pos.dtype, np.integer) or len(pos) == 0:
        raise SimstdError("positives must be a non-empty (P, 2) integer array of (query, target id) pairs")
    targets = index.reconstruct(pos[:, 1])
    t_labels = index.modality_of(pos[:, 1])
    if queries is None:
        q = index.reconstruct(pos[:, 0])
        q_labels = index.modality_of(pos[:, 0])
    else:
        queries = as_embeddings(queries, "queries", index.dim)
        if pos[:, 0].min() < 0 or pos[:, 0].max() >= len(queries):
            raise SimstdError(f"positives refer to query rows outside 0..{len(queries) - 1}")
        q = queries[pos[:, 0]]
        if query_modalities is None:
            raise SimstdError("pass the modality of the queries (query_modalities)")
        q_labels = (
            np.full(len(pos), query_modalities, dtype=object)
            if isinstance(query_modalities, str)
            else np.asarray(query_modalities, dtype=object)[pos[:, 0]]
        )
    scores = np.einsum("ij,ij->i", q.astype(np.float64), targets.astype(np.float64))
    return q_labels, t_labels, scores
