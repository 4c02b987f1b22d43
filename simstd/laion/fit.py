"""Fit a :class:`~simstd.Standardizer` straight from embedding files, no index.

The method is the paper's (Yamashita, Shirafuji and Saito, 2025): pseudo
queries are a seeded sample of the stored items of each modality; each one's
top-``n_pseudo`` cosine neighbours among the items of every target modality,
itself excluded, are its pseudo positives; the standardizer is the per-pair
mean and std of their scores.

Computed as a map-reduce over *pieces* (row ranges of the ``.npy`` files), in
the shape of clip-retrieval's distributors: the same worker,
:func:`partial_topk`, runs over the pieces one after the other here, or per
Spark partition (:mod:`simstd.spark.fit`):

1. draw the pseudo queries (a seeded sample of row numbers, read row by row,
   never the whole collection) and hand them to every task;
2. map: each piece gives every pseudo query its top-k among the piece's items;
3. reduce per query block: the top-k of the partial top-ks (exact: a top-k of
   a union is the top-k of the parts' top-ks);
4. per query block, count/mean/M2 of the final scores per modality pair; pool
   the blocks with Chan et al.'s exact update (:func:`simstd.stats.merge_moments`).

Memory is one piece plus one query block's score matrix plus the pseudo
queries. With the same seed the sample equals the one
``Standardizer(sample=..., seed=...).fit(index)`` draws on an index whose ids
follow the files' order, so the two fits agree to float32 rounding.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import SimstdError
from ..standardizer import Standardizer
from ..stats import merge_moments, pair_moments
from ..validation import check_label
from .ivf import MIN_RECALL, Probes, partial_topk_ivf, train
from .reader import PIECE_ROWS, ClipRetrievalFolder, EmbeddingFiles, Piece

logger = logging.getLogger(__name__)

#: Pseudo queries per block: a block's partial top-k is the unit of the reduce.
QUERY_BLOCK = 2048
#: Items per matrix product inside a piece: QUERY_BLOCK x ITEM_BLOCK float32
#: scores (32 MiB) stay in cache-friendly reach and bound memory.
ITEM_BLOCK = 4096
#: The bfloat16 product runs best on wider blocks (64 MiB of bfloat16 scores).
ITEM_BLOCK_BF16 = 16_384

Key = tuple[str, int]  # (query modality, query block)


@dataclass
class PseudoQueries:
    """The seeded sample every task receives: per modality, sorted global rows and their vectors."""

    rows: dict[str, np.ndarray]
    vectors: dict[str, np.ndarray]
    block: int = QUERY_BLOCK
    probes: Probes | None = None  # search="ivf": centroids and each query's probed lists

    @classmethod
    def draw(cls, files: EmbeddingFiles, sample: int | None, seed: int, block: int = QUERY_BLOCK) -> "PseudoQueries":
        """Per modality (in the files' order), ``sample`` rows without replacement, the same
        draws as :func:`simstd.mining.mine_pseudo_positives` makes over ids in that order."""
        rng = np.random.default_rng(seed)
        rows, vectors = {}, {}
        for m in files.modalities:
            n = files.count(m)
            r = np.arange(n, dtype=np.int64)
            if sample is not None and sample < n:
                r = np.sort(rng.choice(n, size=sample, replace=False)).astype(np.int64)
            rows[m] = r
            vectors[m] = files.take(m, r)
        return cls(rows, vectors, block)

    def keys(self) -> list[Key]:
        return [(m, b) for m, r in self.rows.items() for b in range(-(-len(r) // self.block))]

    def block_of(self, key: Key) -> tuple[np.ndarray, np.ndarray]:
        m, b = key
        sl = slice(b * self.block, (b + 1) * self.block)
        return self.rows[m][sl], self.vectors[m][sl]

    @property
    def nbytes(self) -> int:
        probes = 0 if self.probes is None else self.probes.nbytes
        return sum(v.nbytes + self.rows[m].nbytes for m, v in self.vectors.items()) + probes

    def subset(self, take: dict[str, np.ndarray]) -> "PseudoQueries":
        """The queries at positions ``take[m]`` of each modality (one block each), without probes."""
        return PseudoQueries({m: self.rows[m][i] for m, i in take.items()},
                             {m: self.vectors[m][i] for m, i in take.items()}, block=max(len(i) for i in take.values()))


def partial_topk(
    piece: Piece, items: np.ndarray, queries: PseudoQueries, k: int, search: str = "exact"
) -> Iterator[tuple[tuple[str, int, str], Partial]]:
    """The map step: for every query block, each query's ``k`` best cosines among ``items``.

    ``items`` are the rows of ``piece`` (float32 unit rows). Yields
    ``((query modality, block, target modality), (scores (Qb, k), bound (Qb,)))``:
    score rows sorted descending and padded with ``-inf``; a pseudo query's own
    row is never its own neighbour (it is masked, so exact duplicates of it
    count). ``bound`` is an upper bound on the cosine of every item the scores
    leave out that could beat them unseen: ``-inf`` in float32 (every item is
    scored exactly); with ``search="bfloat16"`` see :func:`_bf16_block`.
    With ``search="ivf"`` only the lists each query probes are scored
    (:mod:`simstd.laion.ivf`).
    """
    tm = piece.modality
    if search == "ivf":
        tops = partial_topk_ivf(piece, items, queries.rows, queries.vectors, queries.probes, k)
        for key in queries.keys():
            sl = slice(key[1] * queries.block, (key[1] + 1) * queries.block)
            best = tops[key[0]][sl]
            yield (key[0], key[1], tm), (best, np.full(len(best), -np.inf, dtype=np.float32))
        return
    n = len(items)
    kk = min(k, n)
    fast = search == "bfloat16"
    if fast:
        torch = _torch()
        all_items = torch.from_numpy(items).to(torch.bfloat16)
    for key in queries.keys():
        rows, vectors = queries.block_of(key)
        best = np.full((len(rows), k), -np.inf, dtype=np.float32)
        bound = np.full(len(rows), -np.inf, dtype=np.float32)
        own = key[0] == tm
        if fast:
            qt = torch.from_numpy(vectors).to(torch.bfloat16)
        step = ITEM_BLOCK_BF16 if fast else ITEM_BLOCK
        for lo in range(0, n, step):
            hi = min(lo + step, n)
            mask = None
            if own:  # each query's own row, if it lies in this block
                local = rows - (piece.offset + lo)
                hit = (local >= 0) & (local < hi - lo)
                mask = (np.flatnonzero(hit), local[hit])
            if fast:
                top, edge = _bf16_block(qt, all_items[lo:hi], vectors, items[lo:hi], mask, k)
                bound = np.maximum(bound, edge)
            else:
                S = vectors @ items[lo:hi].T
                if mask is not None:
                    S[mask] = -np.inf
                top = _topk(S, min(kk, hi - lo))
            best = merge_topk(best, top, k)
        yield (key[0], key[1], tm), (best, bound)


Partial = tuple[np.ndarray, np.ndarray]  # (top-k scores (Qb, k), bound (Qb,))

#: Rows kept per query from a bfloat16 block and re-scored exactly in float32.
BF16_CANDIDATES = 16
#: Upper bound on |bfloat16 score - float32 cosine| for unit vectors: both
#: inputs rounded to bfloat16 (unit roundoff u = 2^-8) give at most
#: (2u + u^2) * sum|q_i x_i| <= (2u + u^2), since sum|q_i x_i| <= |q||x| = 1
#: (Cauchy-Schwarz); the float32 accumulation adds < 1e-4 at 1024 dims and the
#: bfloat16 output another u/2 * |s| <= 2^-9. Rounded up.
BF16_ERROR = 2 * 2.0**-8 + 2.0**-16 + 1e-4 + 2.0**-9 + 1e-4


def _bf16_block(qt, xt, vectors: np.ndarray, items: np.ndarray, mask, k: int) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Candidates by a bfloat16 matrix product, re-scored exactly; returns the
    block's exact top-k of those candidates and a per-query bound.

    Every item outside a query's ``c`` bfloat16 candidates scored at most the
    ``c``-th candidate's bfloat16 score ``t``, so its exact cosine is at most
    ``t + BF16_ERROR``: that is the bound (``-inf`` when all items were
    candidates). If a query's final k-th exact score reaches its bound, its
    top-k is certified exact (ties included); otherwise the fit scores it again
    in float32 (:func:`fit_embeddings`).
    """
    torch = _torch()
    S = qt @ xt.T
    if mask is not None:
        S[torch.from_numpy(mask[0]), torch.from_numpy(mask[1])] = -float("inf")
    c = min(max(BF16_CANDIDATES, k), S.shape[1])
    vals, idx = torch.topk(S, c, dim=1)
    idx = idx.numpy()
    exact = np.einsum("qd,qcd->qc", vectors, items[idx])
    exact[~np.isfinite(vals.float().numpy())] = -np.inf  # masked self rows that filled the candidates
    edge = vals[:, -1].float().numpy() + np.float32(BF16_ERROR) if c < S.shape[1] else np.full(len(S), -np.inf)
    return _topk(exact, min(k, c)), edge.astype(np.float32)


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
    """Top-``k`` per row of two partial top-k arrays (descending, ``-inf`` padded): the reduce step."""
    both = np.concatenate([a, b], axis=1)
    if both.shape[1] > k:
        both = -np.partition(-both, k - 1, axis=1)[:, :k]
    out = -np.sort(-both, axis=1)
    if out.shape[1] < k:
        out = np.concatenate([out, np.full((len(out), k - out.shape[1]), -np.inf, np.float32)], axis=1)
    return out


def _topk(S: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return S.max(axis=1, keepdims=True)
    return -np.sort(-np.partition(S, S.shape[1] - k, axis=1)[:, -k:], axis=1)


def block_moments(scores: np.ndarray) -> tuple[int, float, float]:
    """Count, mean and M2 of one query block's finite top-k scores (one modality pair)."""
    s = scores[np.isfinite(scores)].astype(np.float64)
    n, mean, m2 = pair_moments(np.zeros(s.size, np.int64), s, 1)
    return int(n[0]), float(mean[0]), float(m2[0])


def pool(modalities: Sequence[str], parts: Iterable[tuple[str, str, tuple[int, float, float]]]):  # noqa: ANN201
    """Pool ``(query modality, target modality, (n, mean, m2))`` parts exactly into (M, M) arrays."""
    m = len(modalities)
    code = {x: i for i, x in enumerate(modalities)}
    total = (np.zeros((m, m), np.int64), np.full((m, m), np.nan), np.zeros((m, m)))
    for qm, tm, (n, mean, m2) in parts:
        one = (np.zeros((m, m), np.int64), np.full((m, m), np.nan), np.zeros((m, m)))
        i, j = code[qm], code[tm]
        one[0][i, j], one[1][i, j], one[2][i, j] = n, mean, m2
        total = merge_moments(total, one)
    return total


# ------------------------------------------------------------------ drivers
@dataclass
class FitReport:
    """What a fit from files did: sizes, timings and (on Spark) the job's shape."""

    counts: dict[str, int]
    sample: dict[str, int]
    pieces: int
    seconds: float
    query_bytes: int
    engine: str = "local"
    extra: dict = field(default_factory=dict)


Tops = dict[tuple[str, int, str], Partial]  # (query modality, block, target modality) -> reduced partial


def run_local(files: EmbeddingFiles, pieces: list[Piece], queries: PseudoQueries, k: int,
              search: str = "exact", threads: int | None = None) -> Tops:
    """Map every piece, reduce per (query block, target modality), in this process."""
    acc: Tops = {}
    with threadpool_limits(threads):
        for piece in pieces:
            items = files.read(piece)
            for key, part in partial_topk(piece, items, queries, k, search):
                acc[key] = part if key not in acc else merge_partial(acc[key], part, k)
    return acc


def certify(tops: Tops, run: Callable[[list[Piece], PseudoQueries], Tops], pieces: list[Piece],
            queries: PseudoQueries, k: int) -> int:
    """Score the queries whose bfloat16 top-k is not certified again, exactly, over
    their target modality's pieces (in place); returns how many there were."""
    redo = 0
    for (qm, b, tm), part in tops.items():
        bad = uncertified(part)
        if not len(bad):
            continue
        rows, vectors = queries.block_of((qm, b))
        sub = PseudoQueries({qm: rows[bad]}, {qm: vectors[bad]}, block=len(bad))
        fixed = run([p for p in pieces if p.modality == tm], sub)[(qm, 0, tm)]
        part[0][bad] = fixed[0]
        part[1][bad] = -np.inf
        redo += len(bad)
    return redo


SEARCHES = ("exact", "bfloat16", "ivf")


def standard_errors(tops: Tops) -> dict[str, dict[str, float]]:
    """Each pair's sampling error, in units of its std: of the mean (1/sqrt(n)) and of the std
    (sqrt((kurtosis - 1) / 4n), the delta method), so a fit states how precise its sample is."""
    scores: dict[str, list] = {}
    for (qm, _b, tm), (s, _bound) in tops.items():
        scores.setdefault(f"{qm}->{tm}", []).append(s[np.isfinite(s)].astype(np.float64))
    out = {}
    for pair, parts in sorted(scores.items()):
        x = np.concatenate(parts)
        n, var = len(x), float(x.var()) if len(x) else 0.0
        kurt = float(((x - x.mean()) ** 4).mean() / var**2) if var > 0 else float("nan")
        out[pair] = {"n": n, "mean": 1 / np.sqrt(max(n, 1)), "std": float(np.sqrt(max(kurt - 1, 0) / (4 * max(n, 1))))}
    return out


def check_ivf(tops: Tops, run: Callable[[list[Piece], PseudoQueries], Tops], pieces: list[Piece],
              queries: PseudoQueries, check: int, seed: int) -> dict:
    """Score a seeded subset of the pseudo queries by brute force and compare with their IVF top-k:
    recall (share of top-k scores found) and the shift it causes, per pair, in units of the exact std."""
    rng = np.random.default_rng([seed, 2])
    take = {m: np.sort(rng.choice(len(r), size=min(check, len(r)), replace=False)) for m, r in queries.rows.items()}
    exact = run(pieces, queries.subset(take))
    found, total, shifts = 0, 0, {}
    for (qm, _b, tm), (ref, _bound) in exact.items():
        idx = take[qm]
        got = np.concatenate([tops[(qm, b, tm)][0] for b in range(-(-len(queries.rows[qm]) // queries.block))])[idx]
        for b in np.unique(idx // queries.block):  # the checked queries keep their exact top-k
            mine = idx // queries.block == b
            tops[(qm, int(b), tm)][0][idx[mine] % queries.block] = ref[mine]
        ok = np.isfinite(ref)
        found += int((np.abs(got - ref) <= 1e-6)[ok].sum())
        total += int(ok.sum())
        std = float(ref[ok].std()) or 1.0
        shifts[f"{qm}->{tm}"] = float(abs(got[ok].mean() - ref[ok].mean()) / std)
    recall = found / max(total, 1)
    if recall < MIN_RECALL:
        warnings.warn(f"the IVF candidates found {recall:.1%} of the exact top-k of {sum(map(len, take.values()))} "
                      f"check queries (mean shift up to {max(shifts.values()):.3f} std): raise nprobe, or fit with "
                      'search="exact"', UserWarning, stacklevel=3)
    return {"ivf_recall": recall, "ivf_check_queries": {m: len(i) for m, i in take.items()},
            "ivf_mean_shift_over_std": shifts}


def fit_embeddings(
    source: str | Path | EmbeddingFiles | Mapping[str, Sequence[str | Path]],
    *,
    sample: int | None = 10_000,
    seed: int = 0,
    n_pseudo: int = 1,
    search: str = "exact",
    nlist: int | None = None,
    nprobe: int = 32,
    check: int = 256,
    spark: object | None = None,
    piece_rows: int = PIECE_ROWS,
    report: Callable[[FitReport], None] | None = None,
) -> Standardizer:
    """Fit the paper's standardizer on embedding files, streaming, without an index.

    ``source`` is a clip-retrieval output folder (``img_emb/``, ``text_emb/``),
    an :class:`~simstd.laion.reader.EmbeddingFiles` or ``{modality: [.npy
    paths]}``. ``sample`` pseudo queries per modality (``None``: every item),
    drawn with ``seed``. ``spark`` runs the same map-reduce on Spark: a master
    URL such as ``"local[2]"`` or a ``SparkSession`` (``pip install
    "simstd[spark]"``). The result has no index fingerprint, so it applies to
    any index of the same dimension built from these files
    (``Standardizer.load`` / ``MixedIndex.standardizer``).

    ``search`` is how each pseudo query's top-k is found:

    - ``"exact"``: float32 products with every item (the reference);
    - ``"bfloat16"`` (needs torch): candidates from a bfloat16 product,
      re-scored in float32 and certified by a rounding-error bound; the few it
      cannot certify are scored again exactly. Equal to ``"exact"``;
    - ``"ivf"``: only the ``nprobe`` of ``nlist`` k-means lists nearest each
      query (:mod:`simstd.laion.ivf`), scores exact; a seeded ``check`` sample
      of pseudo queries per modality is also searched exactly and the recall
      and the shift it causes (in units of std) are reported (warned about
      below 99% recall).
    """
    probe = Standardizer(method="paper", n_pseudo=n_pseudo, sample=sample, seed=seed)  # the paper's per-pair fit, whatever the default
    probe._check_params()
    if isinstance(piece_rows, bool) or not isinstance(piece_rows, (int, np.integer)) or piece_rows < 1:
        raise SimstdError(f"piece_rows must be a positive integer, got {piece_rows!r}")
    if search not in SEARCHES:
        raise SimstdError(f"search must be one of {SEARCHES}, got {search!r}")
    for name, value in (("nprobe", nprobe), ("check", check)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SimstdError(f"{name} must be a positive integer, got {value!r}")
    files = open_files(source)
    started = time.perf_counter()
    queries = PseudoQueries.draw(files, sample, seed)
    if search == "ivf":
        queries.probes = train(files, queries.vectors, nlist, nprobe, seed)
    pieces = files.pieces(int(piece_rows))
    k = int(n_pseudo)
    logger.info("fit from files: %s items, %s pseudo queries, %d pieces, %s search", files.counts,
                {m: len(r) for m, r in queries.rows.items()}, len(pieces), search)
    extra: dict = {"search": search}
    if spark is None:
        def run(ps: list[Piece], q: PseudoQueries, how: str = "exact") -> Tops:
            return run_local(files, ps, q, k, how)
    else:
        from ..spark.fit import SparkRunner

        runner = SparkRunner(spark, files, k)
        run = runner.run
    try:
        tops = run(pieces, queries, search)
        if search == "bfloat16":
            extra["recomputed"] = certify(tops, run, pieces, queries, k)
        elif search == "ivf":
            extra.update(check_ivf(tops, run, pieces, queries, int(check), seed))
            extra["nlist"] = {m: len(c) for m, c in queries.probes.centroids.items()}
            extra["nprobe"] = int(nprobe)
    finally:
        if spark is not None:
            extra.update(runner.close())
    parts = [(qm, tm, block_moments(s)) for (qm, _b, tm), (s, _bound) in sorted(tops.items())]
    extra["standard_error"] = standard_errors(tops)
    labels = sorted(files.modalities)
    n, mean, m2 = pool(labels, parts)
    std = from_moments(probe, labels, n, mean, m2, dim=files.dim)
    if report is not None:
        report(FitReport(files.counts, {m: len(r) for m, r in queries.rows.items()}, len(pieces),
                         time.perf_counter() - started, queries.nbytes, "local" if spark is None else "spark", extra))
    return std


def from_moments(std: Standardizer, modalities: Sequence[str], n: np.ndarray, mean: np.ndarray, m2: np.ndarray,
                 *, dim: int | None = None) -> Standardizer:
    """Fit the paper's ``std`` from pooled ``(M, M)`` count/mean/M2 arrays indexed ``[query, target]``
    (the statistics :meth:`Standardizer.merge` pools the same way); no index fingerprint."""
    if std.method != "paper":
        raise SimstdError('a fit from pooled moments is the paper\'s method; method="hubness" needs the store '
                          "(Standardizer.fit(index)) to measure its per-item terms")
    labels = [check_label(str(x)) for x in modalities]
    m = len(labels)
    n, mean, m2 = (np.asarray(a) for a in (n, mean, m2))
    if any(a.shape != (m, m) for a in (n, mean, m2)) or not (n > 0).any():
        raise SimstdError(f"no scores to fit: n, mean and m2 must be ({m}, {m}) arrays with some n > 0")
    std._set_stats(labels, n, mean, m2)  # the standardizer's own setter, as merge() uses it
    std.dim_, std.model_, std.index_fingerprint_ = dim, None, None
    return std


def open_files(source: str | Path | EmbeddingFiles | Mapping[str, Sequence[str | Path]]) -> EmbeddingFiles:
    """A clip-retrieval folder, an :class:`EmbeddingFiles` or ``{modality: [paths]}`` as EmbeddingFiles."""
    if isinstance(source, EmbeddingFiles):
        return source
    if isinstance(source, Mapping):
        return EmbeddingFiles(source)
    return ClipRetrievalFolder(source)
