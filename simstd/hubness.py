"""Per-item hubness terms: the state behind hubness-corrected standardization.

Method. Cross-domain Similarity Local Scaling (CSLS, Conneau, Lample,
Ranzato, Denoyer and Jegou, "Word Translation Without Parallel Data", ICLR
2018) with the indexed items as the bank, as in Nearest Neighbor Normalization
(Chowdhury et al., EMNLP 2024), then z-standardized per (query modality,
target modality) pair on pseudo positives (Yamashita, Shirafuji and Saito,
2025). For a query ``q`` of modality ``a`` and an item ``c`` of modality
``b``::

    u(q, c)   = s(q, c) - rho_c^a / 2           item-corrected similarity
    r_q^b     = mean cosine s(q, .) of q's K nearest items of b by u
    score     = (2 u(q, c) - r_q^b - mean_ab) / std_ab

``rho_c^a`` (this module) is the mean of ``c``'s ``K`` best cosines among the
*other* stored items of modality ``a``: how much of a hub ``c`` is for queries
of modality ``a``. ``2 u - r_q^b = 2 s - rho_c^a - r_q^b`` is CSLS's
``2 s - r_q - r_c``; the query term ``r_q^b`` averages the cosines of the
query's K nearest items *by the corrected similarity*, so it comes from the
very candidates one search returns (CSLS takes the K nearest by raw cosine,
which would take a second search; with constant item terms they coincide).
``mean_ab`` and ``std_ab`` are the mean and std of ``2 u - r_q^b`` over
pseudo-positive pairs (each sampled item's best ``u`` in ``b``, itself left
out), so the score is a z-score comparable across pairs, like the paper's.

Per-item terms are fitted state, applied at search time, as scikit-hubness's
``LocalScaling.r_dist_indexed_``. The index folds ``-rho_c^a / 2`` into one
extra dimension per query modality, so FAISS ranks by ``u`` and a ``Flat``
search stays exact at the cost of one raw search (:mod:`simstd.engines.faiss`).

Fit cost. The exact term needs every item's ``K`` nearest stored items of every
modality: ``n^2`` dot products. Above ``bank`` items per modality a seeded
random bank of that size stands in, and the term is the mean of the
``k_bank = max(1, round(K * bank / n))`` best cosines in the bank (the same
rank fraction of the neighbourhood); ``benchmarks/hubness_terms.py`` measures
the error against the exact term. :func:`item_terms` is pure numpy + FAISS
array functions (no index), so a Spark job can compute the terms of one
partition against a broadcast bank.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import faiss
import numpy as np

from .engines.base import Searchable, count, search_session
from .errors import SimstdError
from .stats import TARGET_SE, draw_sample, topk_mean

#: Items per block when computing terms (bounds the block's (rows, bank) work).
BLOCK = 16_384
#: Raw candidates per pseudo query and target modality when mining the pseudo
#: positives of the corrected score on a store that ranks by raw cosine.
MINING_WIDTH = 100


def bank_k(k: int, bank_size: int, population: int) -> int:
    """Neighbours to average in a bank of ``bank_size`` drawn from ``population``
    items: ``K`` scaled by the sampling rate (at least 1), ``K`` when exact."""
    if bank_size >= population:
        return int(k)
    return max(1, int(round(k * bank_size / max(population, 1))))


def bank_ids(ids: np.ndarray, size: int | None, seed: int) -> np.ndarray:
    """The bank of one modality: all ``ids``, or a seeded sample of ``size`` of them (ascending)."""
    ids = np.asarray(ids)
    if size is None or size >= len(ids):
        return ids
    rng = np.random.default_rng(seed)
    return ids[np.sort(rng.choice(len(ids), size=int(size), replace=False))]


def item_terms(
    vectors: np.ndarray,
    bank: np.ndarray,
    k: int,
    *,
    self_ids: np.ndarray | None = None,
    bank_ids: np.ndarray | None = None,
) -> np.ndarray:
    """``rho``: mean of each row's ``k`` best cosines with the ``bank`` rows.

    ``vectors`` ``(n, d)`` and ``bank`` ``(B, d)`` are L2-normalised float32.
    With ``self_ids`` (the rows' ids) and ``bank_ids`` (the bank's ids), a row
    never counts itself (exact duplicates of it do count: they are other
    items). Pure array code, no index: a Spark job calls it per partition with
    the bank broadcast. Returns float32 ``(n,)``.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    if vectors.ndim != 2 or bank.ndim != 2 or vectors.shape[1] != bank.shape[1]:
        raise SimstdError(f"item_terms needs (n, d) vectors and a (B, d) bank, got {vectors.shape} and {bank.shape}")
    if (self_ids is None) != (bank_ids is None):
        raise SimstdError("pass self_ids and bank_ids together (both or neither)")
    out = np.empty(len(vectors), dtype=np.float32)
    if len(bank) == 0 or len(vectors) == 0:
        out[:] = 0.0
        return out
    exclude = self_ids is not None
    width = min(int(k) + int(exclude), len(bank))
    for start in range(0, len(vectors), BLOCK):
        block = vectors[start : start + BLOCK]
        D, I = faiss.knn(block, bank, width, metric=faiss.METRIC_INNER_PRODUCT)
        D = D.astype(np.float64)
        D = np.where(I >= 0, D, -np.inf)
        if exclude:  # k + 1 were fetched: the k best of the others remain
            ids = np.where(I >= 0, np.asarray(bank_ids)[np.maximum(I, 0)], -1)
            D = np.where(ids == np.asarray(self_ids)[start : start + BLOCK, None], -np.inf, D)
        out[start : start + BLOCK] = topk_mean(D, int(k))
    return out


@dataclass
class Bank:
    """The bank of one modality: ``size`` ids drawn with ``seed`` from the first
    ``population`` ids of the modality, averaged over ``k`` neighbours."""

    population: int
    size: int
    k: int

    def ids(self, modality_ids: np.ndarray, seed: int) -> np.ndarray:
        return bank_ids(np.asarray(modality_ids)[: self.population], self.size, seed)


def fit_banks(searchable: Searchable, k: int, bank: int | None) -> dict[str, Bank]:
    """One :class:`Bank` per modality of ``searchable``."""
    out = {}
    for m in searchable.modalities:
        n = count(searchable, m)
        size = n if bank is None else min(int(bank), n)
        out[m] = Bank(n, size, bank_k(k, size, n) if size < n else int(k))
    return out


def compute_terms(
    searchable: Searchable,
    columns: list[str],
    banks: dict[str, Bank],
    seed: int,
    ids: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
) -> np.ndarray:
    """Terms ``(n, len(columns))``: column ``a`` holds ``rho^a`` of every item
    (of ``ids``, default every stored item ordered by id) against the bank of
    modality ``a``."""
    if ids is None:
        ids = np.sort(np.concatenate([np.asarray(searchable.ids(m), dtype=np.int64) for m in searchable.modalities]))
    ids = np.asarray(ids, dtype=np.int64)
    terms = np.zeros((len(ids), len(columns)), dtype=np.float32)
    for j, a in enumerate(columns):
        spec = banks[a]
        b_ids = spec.ids(searchable.ids(a), seed)
        B = searchable.reconstruct(b_ids)
        for start, stop, block in _blocks(searchable, ids, vectors):
            terms[start:stop, j] = item_terms(block, B, spec.k, self_ids=ids[start:stop], bank_ids=b_ids)
    return terms


def _blocks(searchable: Searchable, ids: np.ndarray, vectors: np.ndarray | None) -> Iterator[tuple[int, int, np.ndarray]]:
    step = BLOCK * 4
    for start in range(0, len(ids), step):
        stop = min(start + step, len(ids))
        yield start, stop, (vectors[start:stop] if vectors is not None else searchable.reconstruct(ids[start:stop]))


def query_terms(
    searchable: Searchable,
    X: np.ndarray,
    target: str,
    terms_of,
    query_modality: str,
    k: int,
    self_ids: np.ndarray | None = None,
    width: int = MINING_WIDTH,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(u, ids, r_q, s_1)`` of queries ``X`` (modality ``query_modality``) against
    the items of ``target``: the candidates' item-corrected similarities ``u``
    (best first, ``-inf`` where missing), their ids, ``r_q``, the mean cosine
    of each query's ``k`` best by ``u``, and ``s_1``, its best cosine (the
    paper's pseudo positive); its own item (``self_ids``) left out.

    ``terms_of(ids, a)`` returns ``rho^a`` of items. A store that ranks by raw
    cosine is asked for each query's top ``width`` and they are re-ranked by
    ``u``: exact when the corrected top ``k`` lies in the raw top ``width``
    (10x ``K`` by default). A :class:`~simstd.MixedIndex` search with its terms
    folded in is exact.
    """
    D, I = searchable.search_modality(X, target, max(width, k) + int(self_ids is not None))
    D = D.astype(np.float64)
    valid = I >= 0
    if self_ids is not None:  # one more was fetched: the query's own item is no candidate
        valid &= I != np.asarray(self_ids)[:, None]
    u = np.where(valid, D - 0.5 * terms_of(np.where(valid, I, 0), query_modality), -np.inf)
    order = np.argsort(-u, axis=1, kind="stable")
    u, I, D = (np.take_along_axis(x, order, axis=1) for x in (u, I, D))
    return u, I, nearest_mean(D, np.isfinite(u), k), np.where(np.isfinite(u), D, -np.inf).max(axis=1, initial=-np.inf)


def pseudo_positive_scores(
    searchable: Searchable,
    terms_of,
    k: int,
    sample: int | str | None,
    seed: int,
    width: int = MINING_WIDTH,
    target_se: float = TARGET_SE,
    sized_by: str = "both",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(query modality, target modality, 2u - r_q, cosine)`` of each sampled
    item's best item-corrected neighbour in every modality (itself left out):
    the pseudo positives of the corrected score (see :func:`query_terms`), and
    the cosine of its best raw neighbour (the paper's pseudo positive, which
    the uncertainty model describes). ``sample`` is drawn as
    :func:`simstd.stats.draw_sample` draws it (``"auto"``: rounds until every
    pair reaches ``target_se``); ``sized_by="cosines"`` sizes those rounds by
    the cosines alone, for a fit whose ranking does not use the corrected
    scores' moments (the tail scale): their heavy tail asks ~5x the queries."""
    if sized_by not in ("both", "cosines"):
        raise SimstdError(f"sized_by must be 'both' or 'cosines', got {sized_by!r}")
    # score() returns [v, s1] per target modality: the cosines are every second array
    sizing = slice(1, None, 2) if sized_by == "cosines" else slice(None)
    rng = np.random.default_rng(seed)
    out_q, out_t, out_v, out_s = [], [], [], []
    with search_session(searchable):
        for a in searchable.modalities:
            def score(q_ids: np.ndarray) -> list[np.ndarray]:
                X, out = searchable.reconstruct(q_ids), []
                for b in searchable.modalities:
                    u, _, r, s1 = query_terms(searchable, X, b, terms_of, a, k, q_ids if a == b else None, width)
                    v = 2 * u[:, 0] - r if u.shape[1] else np.full(len(X), -np.inf)
                    out += [np.where(np.isfinite(v), v, -np.inf)[:, None], s1[:, None]]
                return out

            found = draw_sample(searchable.ids(a), sample, score, rng=rng, seed=seed, modality=a, target=target_se,
                                sized_by=sizing)
            for b, v, s1 in zip(searchable.modalities, found[::2], found[1::2]):
                keep = np.isfinite(v[:, 0])
                out_q.append(np.full(keep.sum(), a, dtype=object))
                out_t.append(np.full(keep.sum(), b, dtype=object))
                out_v.append(v[keep, 0])
                out_s.append(s1[keep, 0])
    if not out_v:
        return np.empty(0, object), np.empty(0, object), np.empty(0), np.empty(0)
    return np.concatenate(out_q), np.concatenate(out_t), np.concatenate(out_v), np.concatenate(out_s)


#: The tail a pair's scale is measured on holds at least this many cosines: on a
#: small collection (fewer than 2,000 pairs) the 0.999 quantile leaves an empty or
#: one-value tail, whose "excess" is interpolation noise (scores in the hundreds on
#: 4 + 3 items). 2 leaves every held-out number of docs/default.md unchanged; 5
#: cost CLASP and VideoCLIP 1.5 points of R@20/ceiling (seeds 5-9).
TAIL_MIN = 2


def tail_scales(searchable: Searchable, columns: list[str], quantile: float, seed: int,
                cap: int = 2000, tail_min: int = TAIL_MIN) -> tuple[np.ndarray, np.ndarray]:
    """``(beta, se)``, each ``(M, M)``: ``beta_ab``, the mean excess of the (a, b)
    cosines over their ``quantile``, from up to ``cap`` seeded items of each
    modality (self pairs left out); the quantile is lowered so that the tail
    holds at least ``tail_min`` cosines. The pair's std where the tail is empty,
    1 if that is 0 too. ``se_ab`` is the standard error of the tail's mean in
    units of ``beta_ab`` (the cut held fixed; NaN where there is no tail):
    the sampling error of the one fitted number per pair the ranking uses.

    Exact copies stay in: on ConVIRT, whose reports repeat word for word, leaving
    them out of the tail cost 7 points of R@20/ceiling (seeds 5-9).
    """
    rng = np.random.default_rng(seed)
    picked = {}
    for m in columns:
        ids = searchable.ids(m)
        if len(ids) > cap:
            ids = ids[np.sort(rng.choice(len(ids), size=cap, replace=False))]
        picked[m] = (ids, searchable.reconstruct(ids).astype(np.float64))
    out = np.full((len(columns), len(columns)), np.nan)
    errors = np.full_like(out, np.nan)
    for i, a in enumerate(columns):
        for j, b in enumerate(columns):
            (ia, Xa), (ib, Xb) = picked[a], picked[b]
            S = Xa @ Xb.T
            v = S[np.asarray(ia)[:, None] != np.asarray(ib)[None, :]]
            if v.size < 2:
                continue
            q = min(quantile, 1.0 - tail_min / v.size) if v.size > tail_min else 0.0
            cut = np.quantile(v, q)
            tail = v[v > cut]
            excess = float(tail.mean() - cut) if tail.size else 0.0
            out[i, j] = excess if excess > 0 else (float(v.std()) or 1.0)
            if excess > 0 and tail.size > 1:
                errors[i, j] = float(tail.std(ddof=1) / np.sqrt(tail.size)) / excess
    return out, errors


def nearest_mean(S: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``S`` over each row's first ``k`` valid columns (0 if none): the
    query term ``r_q`` when columns are sorted by ``u``, best first."""
    take = valid & (np.cumsum(valid, axis=-1) <= k)
    return np.where(take, S, 0.0).sum(axis=-1) / np.maximum(take.sum(axis=-1), 1)


def query_term(S: np.ndarray, u: np.ndarray, k: int) -> np.ndarray:
    """``r_q``: mean cosine ``S`` of each row's ``k`` best by ``u`` (finite ``u`` only)."""
    order = np.argsort(-u, axis=-1, kind="stable")
    u, S = np.take_along_axis(u, order, axis=-1), np.take_along_axis(S, order, axis=-1)
    return nearest_mean(S, np.isfinite(u), k)


def corrected_scores(
    S: np.ndarray,
    item_rho: np.ndarray,
    codes: np.ndarray,
    k: int,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """``2u - r_q`` for candidate cosines ``S`` ``(nq, C)`` whose items have terms
    ``item_rho`` (``rho^a`` for the query modality ``a``); ``codes`` (``C,`` or
    ``nq, C``) names each column's target modality. ``r_q`` per row and target
    modality is the mean cosine of the ``k`` best by ``u`` among that modality's
    columns: a row must hold the query's ``k`` best of every modality present."""
    S = np.asarray(S, dtype=np.float64)
    u = S - 0.5 * np.asarray(item_rho, dtype=np.float64)
    if valid is not None:
        u = np.where(valid, u, -np.inf)
    codes = np.broadcast_to(codes, u.shape)
    out = np.full(u.shape, -np.inf)
    for code in np.unique(codes):
        mine = codes == code
        r = query_term(S, np.where(mine, u, -np.inf), k)
        out = np.where(mine, 2 * u - r[..., None], out)
    return out
