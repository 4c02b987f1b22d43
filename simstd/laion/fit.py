"""Fit a :class:`~simstd.Standardizer` straight from embedding files, no index.

The method is ``Standardizer()``'s default unless ``method=`` says otherwise.
The corrected method (``method="hubness"``) is fitted by the very code of an
index fit over the files seen as a store (:mod:`simstd.laion.store`): its
per-item terms in one pass over the pieces, its searches as passes of the same
runner. The rest of this module is the paper's fit, whose statistics pool
exactly, as a map-reduce of its own.

The paper's method (Yamashita, Shirafuji and Saito, 2025): pseudo
queries are a seeded sample of the stored items of each modality; each one's
top-``n_pseudo`` cosine neighbours among the items of every target modality,
itself excluded, are its pseudo positives; the standardizer is the per-pair
mean and std of their scores.

Computed as a map-reduce over *pieces* (row ranges of the ``.npy`` files), in
the shape of clip-retrieval's distributors: a :class:`~simstd.laion.worker.Runner`
maps every piece with the same worker (:func:`~simstd.laion.worker.partial_topk`),
in this process (:class:`~simstd.laion.worker.LocalRunner`) or per Spark
partition (:class:`simstd.spark.SparkRunner`):

1. draw the pseudo queries (a seeded sample of row numbers, read row by row,
   never the whole collection) and hand them to every task;
2. map: each piece gives every pseudo query its top-k among the piece's items;
3. reduce per query block: the top-k of the partial top-ks (exact: a top-k of
   a union is the top-k of the parts' top-ks);
4. per query block, count/mean/M2 of the final scores per modality pair; pool
   the blocks with Chan et al.'s exact update (:func:`simstd.stats.merge_moments`).

Memory is one piece plus one query block's score matrix plus the pseudo
queries. With an integer ``sample`` and the same seed the sample equals the one
``Standardizer(sample=..., seed=...).fit(index)`` draws on an index whose ids
follow the files' order, so the two fits agree to float32 rounding.

The cost is ``2 * dim * pseudo queries * items`` floating-point operations:
linear in the collection, and in the sample. ``sample="auto"`` sizes the
sample by the precision it buys instead of a fixed count: a fixed count is
too many for a well-behaved pair and, for a heavy-tailed one, too few.
Rounds of pseudo queries run until every pair's mean and std carry a standard
error of at most ``target_se`` of its std (:func:`simstd.stats.sampling_errors`).
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import SimstdError
from ..standardizer import Standardizer
from ..stats import (SAMPLE_AUTO, TARGET_SE, RoundDraw, first_round, merge_moments, next_round, pair_moments,
                     sampling_errors)
from ..validation import Interval, Options, check_label, validate_params
from .ivf import MIN_RECALL, probe, train_centroids
from .reader import PIECE_ROWS, ClipRetrievalFolder, EmbeddingFiles, Piece
from .topk import PseudoQueries, Tops, uncertified
from .worker import SEARCHES, LocalRunner, Runner

logger = logging.getLogger(__name__)



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


def certify(tops: Tops, runner: Runner, files: EmbeddingFiles, pieces: list[Piece], queries: PseudoQueries,
            k: int) -> int:
    """Score the queries whose bfloat16 top-k is not certified again, exactly, over
    their target modality's pieces (in place); returns how many there were."""
    redo = 0
    for (qm, b, tm), part in tops.items():
        bad = uncertified(part)
        if not len(bad):
            continue
        rows, vectors = queries.block_of((qm, b))
        sub = PseudoQueries({qm: rows[bad]}, {qm: vectors[bad]}, block=len(bad))
        fixed = runner.run(files, [p for p in pieces if p.modality == tm], sub, k)[(qm, 0, tm)]
        part[0][bad] = fixed[0]
        part[1][bad] = -np.inf
        redo += len(bad)
    return redo


def check_ivf(tops: Tops, runner: Runner, files: EmbeddingFiles, pieces: list[Piece], queries: PseudoQueries,
              k: int, check: int, seed: int) -> dict:
    """Score a seeded subset of the pseudo queries by brute force and compare with their IVF top-k:
    top-k scores found and the mean shift the misses cause, per pair, in units of the exact std.
    The checked queries keep their exact top-k (in place)."""
    rng = np.random.default_rng([seed, 2])
    take = {m: np.sort(rng.choice(len(r), size=min(check, len(r)), replace=False)) for m, r in queries.rows.items()}
    exact = runner.run(files, pieces, queries.subset(take), k)
    found, total, shifts = 0, 0, {}
    for (qm, _b, tm), (ref, _bound) in exact.items():
        idx = take[qm]
        got = np.concatenate([tops[(qm, b, tm)][0] for b in range(-(-len(queries.rows[qm]) // queries.block))])[idx]
        for b in np.unique(idx // queries.block):
            mine = idx // queries.block == b
            tops[(qm, int(b), tm)][0][idx[mine] % queries.block] = ref[mine]
        ok = np.isfinite(ref)
        found += int((np.abs(got - ref) <= 1e-6)[ok].sum())
        total += int(ok.sum())
        std = float(ref[ok].std()) or 1.0
        shifts[f"{qm}->{tm}"] = float(abs(got[ok].mean() - ref[ok].mean()) / std)
    return {"found": found, "total": total, "checked": {m: len(i) for m, i in take.items()}, "shifts": shifts}


class _Sample:
    """The pseudo queries drawn so far, round by round, and every pair's scores."""

    def __init__(self, files: EmbeddingFiles, seed: int) -> None:
        self.files = files
        # the draw simstd.mining makes: the same rows as Standardizer(sample="auto") on an index of these files
        self.draws = {m: RoundDraw(files.count(m), seed, m) for m in files.modalities}
        self.scores: dict[tuple[str, str], list[np.ndarray]] = {}
        self.parts: list[tuple[str, str, tuple[int, float, float]]] = []

    def more(self, want: dict[str, int]) -> dict[str, np.ndarray]:
        """``want[m]`` more rows of each modality, never one already drawn."""
        return {m: self.draws[m].next(w) for m, w in want.items()}

    @property
    def counts(self) -> dict[str, int]:
        return {m: len(d.taken) for m, d in self.draws.items()}

    def add(self, tops: Tops) -> None:
        for (qm, _b, tm), (s, _bound) in sorted(tops.items()):
            self.scores.setdefault((qm, tm), []).append(s)
            self.parts.append((qm, tm, block_moments(s)))

    def errors(self) -> dict[str, dict[str, float]]:
        """Each pair's ``{"n", "mean", "std"}``: queries and standard errors in units of its std."""
        out = {}
        for (qm, tm), parts in sorted(self.scores.items()):
            n, se_mean, se_std = sampling_errors(np.concatenate(parts))
            out[f"{qm}->{tm}"] = {"n": n, "mean": se_mean, "std": se_std}
        return out

    def shortfall(self, target: float) -> dict[str, int]:
        """Per query modality whose pairs miss ``target``: how many more rows to draw (none when all meet it)."""
        need = {}
        for qm, draw in self.draws.items():
            pairs = [np.concatenate(parts) for (q, _tm), parts in self.scores.items() if q == qm]
            more = 0 if draw.exhausted else next_round(pairs, len(draw.taken), target)
            if more:
                need[qm] = more
        return need


def block_moments(scores: np.ndarray) -> tuple[int, float, float]:
    """Count, mean and M2 of one query block's finite top-k scores (one modality pair)."""
    s = scores[np.isfinite(scores)].astype(np.float64)
    n, mean, m2 = pair_moments(np.zeros(s.size, np.int64), s, 1)
    return int(n[0]), float(mean[0]), float(m2[0])


def pool(modalities: Sequence[str], parts: list[tuple[str, str, tuple[int, float, float]]]):  # noqa: ANN201
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


#: The settings of :func:`fit_embeddings` the Standardizer does not check.
_PARAMETER_CONSTRAINTS: dict = {
    "piece_rows": [Interval(int, 1)],
    "search": [Options(SEARCHES)],
    "nprobe": [Interval(int, 1)],
    "check": [Interval(int, 1)],
}


#: The Standardizer's own defaults, for the hubness settings of a fit from files.
_DEFAULT = Standardizer()


def fit_embeddings(
    source: str | Path | EmbeddingFiles | Mapping[str, Sequence[str | Path]],
    *,
    method: str | None = None,
    hubness_k: int = _DEFAULT.hubness_k,
    hubness_bank: int | None = _DEFAULT.hubness_bank,
    sample: int | str | None = 10_000,
    target_se: float = TARGET_SE,
    seed: int = 0,
    n_pseudo: int = 1,
    search: str = "exact",
    nlist: int | None = None,
    nprobe: int = 32,
    check: int = 256,
    runner: Runner | None = None,
    piece_rows: int = PIECE_ROWS,
    report: Callable[[FitReport], None] | None = None,
) -> Standardizer:
    """Fit a standardizer on embedding files, streaming, without an index.

    ``method`` (default: ``Standardizer()``'s), ``hubness_k`` and
    ``hubness_bank`` are the :class:`~simstd.Standardizer` settings.
    ``method="hubness"`` gives the fit ``Standardizer(method="hubness",
    ...).fit(index)`` gives on an index built from these files (ids in the
    files' order, modality after modality, as ``simstd build --from`` assigns
    them), per-item terms included (:mod:`simstd.laion.store`); it searches
    exactly (``search="exact"``).

    ``source`` is a clip-retrieval output folder (``img_emb/``, ``text_emb/``),
    an :class:`~simstd.laion.reader.EmbeddingFiles` or ``{modality: [.npy
    paths]}``. The pseudo queries:

    - ``sample=N``: ``N`` per modality drawn with ``seed`` (``None``: every
      item), the same draw as ``Standardizer(sample=N, seed=seed).fit(index)``;
    - ``sample="auto"``: rounds of seeded draws until the standard error of
      every pair's mean and std is at most ``target_se`` of its std (about
      ``1 / target_se**2`` queries per modality for a normal tail, more for a
      heavy one; all items if the files hold fewer). The report's
      ``extra["standard_error"]`` holds the errors reached.

    ``runner`` runs the map-reduce: :class:`~simstd.laion.worker.LocalRunner`
    (default, this process) or :class:`simstd.spark.SparkRunner` (``pip install
    "simstd[spark]"``). The result has no index fingerprint, so it applies to
    any index of the same dimension built from these files
    (``Standardizer.load`` / ``MixedIndex.standardizer``).

    ``search`` is how each pseudo query's top-k is found:

    - ``"exact"``: float32 products with every item (the reference);
    - ``"bfloat16"`` (needs torch; fast where the CPU has bfloat16 matrix
      instructions, such as AVX-512 BF16 or AMX): candidates from a bfloat16
      product, re-scored in float32 and certified by a rounding-error bound;
      the few it cannot certify are scored again exactly. Equal to ``"exact"``;
    - ``"ivf"``: only the ``nprobe`` of ``nlist`` k-means lists nearest each
      query (:mod:`simstd.laion.ivf`), scores exact; a seeded ``check`` sample
      of pseudo queries per modality is also searched exactly and the recall
      and the shift it causes (in units of std) are reported (warned about
      below 99% recall).
    """
    # the Standardizer validates its own settings (method, sample, target_se, seed, n_pseudo, hubness_*)
    probe_std = Standardizer(method=Standardizer().method if method is None else method, hubness_k=hubness_k,
                             hubness_bank=hubness_bank, n_pseudo=n_pseudo, sample=sample, target_se=target_se,
                             seed=seed)
    probe_std._check_params()
    validate_params(fit_embeddings, _PARAMETER_CONSTRAINTS,
                    {"piece_rows": piece_rows, "search": search, "nprobe": nprobe, "check": check})
    adaptive = sample == SAMPLE_AUTO
    piece_rows, nprobe, check = int(piece_rows), int(nprobe), int(check)
    files = open_files(source)
    runner = LocalRunner() if runner is None else runner
    started = time.perf_counter()
    if not probe_std.backend_.mergeable:
        if search != "exact":
            raise SimstdError(f'search={search!r} finds the paper\'s pseudo positives; method={probe_std.method!r} '
                              'searches its candidates exactly: fit it with search="exact"')
        return _fit_store(probe_std, files, runner, piece_rows, report, started)
    pieces = files.pieces(piece_rows)
    k = int(n_pseudo)
    centroids = train_centroids(files, nlist, seed) if search == "ivf" else None
    drawn = _Sample(files, seed)
    extra: dict = {"search": search, "recomputed": 0} if search == "bfloat16" else {"search": search}
    ivf_checks: list[dict] = []
    want = {m: first_round(target_se) for m in files.modalities} if adaptive else None
    rounds, query_bytes = 0, 0
    while True:
        if adaptive:
            queries = PseudoQueries.at(files, drawn.more(want))
        else:
            queries = PseudoQueries.draw(files, sample, seed)
        if centroids is not None:
            queries.probes = probe(centroids, queries.vectors, nprobe)
        logger.info("fit from files, round %d: %s items, %s pseudo queries, %d pieces, %s search", rounds,
                    files.counts, queries.counts, len(pieces), search)
        tops = runner.run(files, pieces, queries, k, search)
        if search == "bfloat16":
            extra["recomputed"] += certify(tops, runner, files, pieces, queries, k)
        elif search == "ivf":
            ivf_checks.append(check_ivf(tops, runner, files, pieces, queries, k, check, seed + rounds))
        drawn.add(tops)
        rounds += 1
        query_bytes = max(query_bytes, queries.nbytes)
        if not adaptive:
            counts = queries.counts
            break
        want = drawn.shortfall(target_se)
        if not want:
            counts = drawn.counts
            break
    if ivf_checks:
        extra.update(_ivf_summary(ivf_checks))
        extra["nlist"] = {m: len(c) for m, c in centroids.items()}
        extra["nprobe"] = nprobe
    extra["standard_error"] = drawn.errors()
    extra["rounds"] = rounds
    if adaptive:
        extra["target_se"] = float(target_se)
    extra.update(runner.facts())
    labels = sorted(files.modalities)
    n, mean, m2 = pool(labels, drawn.parts)
    std = from_moments(probe_std, labels, n, mean, m2, dim=files.dim)
    for pair, e in extra["standard_error"].items():
        qm, tm = pair.split("->")
        std.standard_error_[labels.index(qm), labels.index(tm)] = e["mean"], e["std"]
    if report is not None:
        report(FitReport(files.counts, counts, len(pieces), time.perf_counter() - started, query_bytes,
                         getattr(runner, "engine", type(runner).__name__), extra))
    return std


def _fit_store(std: Standardizer, files: EmbeddingFiles, runner: Runner, piece_rows: int,
               report: Callable[[FitReport], None] | None, started: float) -> Standardizer:
    """A method whose fit is more than pooled moments (per-item terms): ``std.fit`` on the files as a store,
    the terms computed by one pass of ``runner`` (:mod:`simstd.laion.store`)."""
    from .. import hubness
    from .store import FileStore, file_terms

    store = FileStore(files, runner, piece_rows)
    terms = None
    if std.has_item_terms:
        columns = sorted(store.modalities)
        banks = hubness.fit_banks(store, int(std.hubness_k), std.hubness_bank)
        logger.info("fit from files: terms of %s items against banks %s", files.counts,
                    {m: b.size for m, b in banks.items()})
        terms = file_terms(store, columns, banks, int(std.seed))
    std.fit(store, terms=terms)
    labels = std.modalities_
    errors = {f"{q}->{t}": {"n": int(std.n_[i, j]), "mean": float(std.standard_error_[i, j, 0]),
                            "std": float(std.standard_error_[i, j, 1])}
              for i, q in enumerate(labels) for j, t in enumerate(labels) if std.n_[i, j] > 0}
    extra: dict = {"search": "exact", "method": std.method, "passes": store.passes, "standard_error": errors}
    if std.sample == SAMPLE_AUTO:
        extra["target_se"] = float(std.target_se)
    extra.update(runner.facts())
    # pseudo queries that found a pseudo positive (all of them, but for a modality of one item)
    sample = {m: int(std.n_[labels.index(m)].max()) for m in files.modalities}
    if report is not None:
        report(FitReport(files.counts, sample, len(store.pieces), time.perf_counter() - started,
                         max(sample.values()) * files.dim * 4, getattr(runner, "engine", type(runner).__name__),
                         extra))
    return std


def _ivf_summary(checks: list[dict]) -> dict:
    """The IVF checks of every round as one: recall over all checked top-k scores, the largest shift."""
    found, total = sum(c["found"] for c in checks), sum(c["total"] for c in checks)
    recall = found / max(total, 1)
    shifts = {pair: max(c["shifts"][pair] for c in checks) for pair in checks[0]["shifts"]}
    checked = {m: sum(c["checked"][m] for c in checks) for m in checks[0]["checked"]}
    if recall < MIN_RECALL:
        warnings.warn(f"the IVF candidates found {recall:.1%} of the exact top-k of {sum(checked.values())} "
                      f"check queries (mean shift up to {max(shifts.values()):.3f} std): raise nprobe, or fit with "
                      'search="exact"', UserWarning, stacklevel=3)
    return {"ivf_recall": recall, "ivf_check_queries": checked, "ivf_mean_shift_over_std": shifts}


def from_moments(std: Standardizer, modalities: Sequence[str], n: np.ndarray, mean: np.ndarray, m2: np.ndarray,
                 *, dim: int | None = None) -> Standardizer:
    """Fit the paper's ``std`` from pooled ``(M, M)`` count/mean/M2 arrays indexed ``[query, target]``
    (the statistics :meth:`Standardizer.merge` pools the same way); no index fingerprint."""
    if not std.backend_.mergeable:
        raise SimstdError(f"a fit from pooled moments is the paper's method; method={std.method!r} needs the store "
                          "(Standardizer.fit(index), or fit_embeddings(files, method=...)) to measure its "
                          "per-item terms")
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
