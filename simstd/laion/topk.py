"""The arithmetic of one map task of the fit from files: partial top-k scores.

Every pseudo query needs its ``k`` best cosines among the items of each
target modality, itself excluded. A task holds one *piece* (a row range of one
``.npy`` file) and gives every pseudo query its top-k among the piece's items;
the reduce keeps the top-k of the partial top-ks, which is exact (a top-k of a
union is the top-k of the parts' top-ks). This module is that map step for
exhaustive search, in float32 or with bfloat16 candidates re-scored in float32
and certified by a rounding-error bound, and the reduce primitives; the IVF
variant is :mod:`simstd.laion.ivf`, and :mod:`simstd.laion.worker` picks one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import SimstdError
from .reader import EmbeddingFiles, Piece

#: Pseudo queries per block: a block's partial top-k is the unit of the reduce.
QUERY_BLOCK = 2048
#: Items per matrix product inside a piece: QUERY_BLOCK x ITEM_BLOCK float32
#: scores (32 MiB) stay in cache-friendly reach and bound memory.
ITEM_BLOCK = 4096
#: The bfloat16 product runs best on wider blocks (64 MiB of bfloat16 scores).
ITEM_BLOCK_BF16 = 16_384
#: Rows kept per query from a bfloat16 block and re-scored exactly in float32.
BF16_CANDIDATES = 16
#: Upper bound on |bfloat16 score - float32 cosine| for unit vectors: both
#: inputs rounded to bfloat16 (unit roundoff u = 2^-8) give at most
#: (2u + u^2) * sum|q_i x_i| <= (2u + u^2), since sum|q_i x_i| <= |q||x| = 1
#: (Cauchy-Schwarz); the float32 accumulation adds < 1e-4 at 1024 dims and the
#: bfloat16 output another u/2 * |s| <= 2^-9. Rounded up.
BF16_ERROR = 2 * 2.0**-8 + 2.0**-16 + 1e-4 + 2.0**-9 + 1e-4

Key = tuple[str, int]  # (query modality, query block)
Partial = tuple[np.ndarray, np.ndarray]  # (top-k scores (Qb, k), bound (Qb,))
Tops = dict[tuple[str, int, str], Partial]  # (query modality, block, target modality) -> reduced partial


@dataclass
class PseudoQueries:
    """What every task receives: per modality, sorted global rows and their vectors."""

    rows: dict[str, np.ndarray]
    vectors: dict[str, np.ndarray]
    block: int = QUERY_BLOCK
    probes: object | None = None  # search="ivf": a simstd.laion.ivf.Probes for these queries

    @classmethod
    def draw(cls, files: EmbeddingFiles, sample: int | None, seed: int, block: int = QUERY_BLOCK) -> PseudoQueries:
        """Per modality (in the files' order), ``sample`` rows without replacement, the same
        draws as :func:`simstd.mining.mine_pseudo_positives` makes over ids in that order."""
        rng = np.random.default_rng(seed)
        rows = {}
        for m in files.modalities:
            n = files.count(m)
            r = np.arange(n, dtype=np.int64)
            if sample is not None and sample < n:
                r = np.sort(rng.choice(n, size=sample, replace=False)).astype(np.int64)
            rows[m] = r
        return cls.at(files, rows, block)

    @classmethod
    def at(cls, files: EmbeddingFiles, rows: dict[str, np.ndarray], block: int = QUERY_BLOCK) -> PseudoQueries:
        """The queries at the given global rows of each modality (read row by row, never whole files)."""
        rows = {m: np.sort(np.asarray(r, dtype=np.int64)) for m, r in rows.items()}
        return cls(rows, {m: files.take(m, r) for m, r in rows.items()}, block)

    def keys(self) -> list[Key]:
        return [(m, b) for m, r in self.rows.items() for b in range(-(-len(r) // self.block))]

    def block_of(self, key: Key) -> tuple[np.ndarray, np.ndarray]:
        m, b = key
        sl = slice(b * self.block, (b + 1) * self.block)
        return self.rows[m][sl], self.vectors[m][sl]

    @property
    def counts(self) -> dict[str, int]:
        return {m: len(r) for m, r in self.rows.items()}

    @property
    def nbytes(self) -> int:
        probes = 0 if self.probes is None else self.probes.nbytes
        return sum(v.nbytes + self.rows[m].nbytes for m, v in self.vectors.items()) + probes

    def subset(self, take: dict[str, np.ndarray]) -> PseudoQueries:
        """The queries at positions ``take[m]`` of each modality (one block each), without probes."""
        return PseudoQueries({m: self.rows[m][i] for m, i in take.items()},
                             {m: self.vectors[m][i] for m, i in take.items()},
                             block=max(1, max(len(i) for i in take.values())))


def partial_topk_exhaustive(
    piece: Piece, items: np.ndarray, queries: PseudoQueries, k: int, bfloat16: bool = False
) -> Iterator[tuple[tuple[str, int, str], Partial]]:
    """Every query block's ``k`` best cosines among all of ``items`` (the rows of ``piece``).

    Yields ``((query modality, block, target modality), (scores (Qb, k), bound (Qb,)))``:
    score rows sorted descending and padded with ``-inf``; a pseudo query's own
    row is never its own neighbour (it is masked, so exact duplicates of it
    count). ``bound`` is an upper bound on the cosine of every item the scores
    leave out that could beat them unseen: ``-inf`` in float32 (every item is
    scored exactly); with ``bfloat16`` see :func:`_bf16_block`.
    """
    tm = piece.modality
    n = len(items)
    kk = min(k, n)
    if bfloat16:
        torch = _torch()
        all_items = torch.from_numpy(items).to(torch.bfloat16)
    step = ITEM_BLOCK_BF16 if bfloat16 else ITEM_BLOCK
    for key in queries.keys():
        rows, vectors = queries.block_of(key)
        best = np.full((len(rows), k), -np.inf, dtype=np.float32)
        bound = np.full(len(rows), -np.inf, dtype=np.float32)
        own = key[0] == tm
        if bfloat16:
            qt = torch.from_numpy(vectors).to(torch.bfloat16)
        for lo in range(0, n, step):
            hi = min(lo + step, n)
            mask = None
            if own:  # each query's own row, if it lies in this block
                local = rows - (piece.offset + lo)
                hit = (local >= 0) & (local < hi - lo)
                mask = (np.flatnonzero(hit), local[hit])
            if bfloat16:
                top, edge = _bf16_block(qt, all_items[lo:hi], vectors, items[lo:hi], mask, k)
                bound = np.maximum(bound, edge)
            else:
                S = vectors @ items[lo:hi].T
                if mask is not None:
                    S[mask] = -np.inf
                top = top_scores(S, min(kk, hi - lo))
            best = merge_topk(best, top, k)
        yield (key[0], key[1], tm), (best, bound)


def _bf16_block(qt, xt, vectors: np.ndarray, items: np.ndarray, mask, k: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Candidates by a bfloat16 matrix product, re-scored exactly; returns the
    block's exact top-k of those candidates and a per-query bound.

    Every item outside a query's ``c`` bfloat16 candidates scored at most the
    ``c``-th candidate's bfloat16 score ``t``, so its exact cosine is at most
    ``t + BF16_ERROR``: that is the bound (``-inf`` when all items were
    candidates). If a query's final k-th exact score reaches its bound, its
    top-k is certified exact (ties included); otherwise the fit scores it again
    in float32 (:func:`simstd.laion.fit.certify`).
    """
    torch = _torch()
    S = qt @ xt.T
    if mask is not None:
        S[torch.from_numpy(mask[0]), torch.from_numpy(mask[1])] = -float("inf")
    c = min(max(BF16_CANDIDATES, k), S.shape[1])
    vals, idx = torch.topk(S, c, dim=1)
    vals, idx = vals.float().numpy(), idx.numpy()
    # Only candidates within 2 * BF16_ERROR of the k-th best bfloat16 score can be in the exact top-k:
    # each of the k best is exactly >= its score - BF16_ERROR, every other candidate <= its own + BF16_ERROR.
    # Re-scoring those alone (one to three rows a query, not c) spares most of the gather.
    near = np.isfinite(vals) & (vals >= vals[:, min(k, c) - 1 : min(k, c)] - np.float32(2 * BF16_ERROR))
    q, j = np.nonzero(near)
    exact = np.full(vals.shape, -np.inf, dtype=np.float32)
    exact[q, j] = np.einsum("id,id->i", vectors[q], items[idx[q, j]])
    edge = vals[:, -1] + np.float32(BF16_ERROR) if c < S.shape[1] else np.full(len(S), -np.inf)
    return top_scores(exact, min(k, c)), edge.astype(np.float32)


def _torch():  # noqa: ANN202
    try:
        import torch
    except ImportError:
        raise SimstdError('search="bfloat16" needs torch (pip install "simstd[clip]"); '
                          'or fit with search="exact"') from None
    return torch


def merge_partial(a: Partial, b: Partial, k: int) -> Partial:
    """The reduce step: top-k of both, the larger bound."""
    return merge_topk(a[0], b[0], k), np.maximum(a[1], b[1])


def uncertified(part: Partial) -> np.ndarray:
    """Rows whose top-k a bound leaves open (always none in float32)."""
    scores, bound = part
    return np.flatnonzero(~(scores[:, -1] >= bound) & np.isfinite(bound))


def merge_topk(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` per row of two partial top-k arrays (descending, ``-inf`` padded)."""
    both = np.concatenate([a, b], axis=1)
    if both.shape[1] > k:
        both = -np.partition(-both, k - 1, axis=1)[:, :k]
    out = -np.sort(-both, axis=1)
    if out.shape[1] < k:
        out = np.concatenate([out, np.full((len(out), k - out.shape[1]), -np.inf, np.float32)], axis=1)
    return out


def top_scores(S: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` largest values, descending."""
    if k == 1:
        return S.max(axis=1, keepdims=True)
    return -np.sort(-np.partition(S, S.shape[1] - k, axis=1)[:, -k:], axis=1)
