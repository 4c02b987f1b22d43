"""Retrieval metrics and evaluation protocols for mixed-modality search.

Protocols (each a :class:`Task`: indexed items, queries, gold pairs):

* :func:`mixed_task` - paired embeddings ``(2, N, D)`` are split into halves
  A and B (seeded); the index holds modality 0 of A and modality 1 of B; the
  queries are modality 1 of A (gold: its partner in A) and modality 0 of B
  (gold: its partner in B). Every gold is in the other modality while half the
  index shares the query's modality.
* :func:`plain_tasks` - one-modality search over all pairs: the index holds
  both modalities of every pair, each query of modality 1 searches modality 0
  only (and the other way round). A per-modality affine method cannot change
  anything here; the report shows that it does not.
* :func:`index_task` - any :class:`~simstd.MixedIndex` with query vectors and
  a ground-truth file (several positives per query allowed).

Metrics per query (averaged over queries): Recall@k (a hit if any positive is
in the top k, the image-text retrieval convention), R-Precision and mAP@R
(Musgrave et al. 2020, the ECCV Caption metrics of Chun et al. 2022), NDCG@10
with binary relevance, and the share of each modality among the top k. The
*ceiling* ranks each query against the items of its positives' modalities
only (raw cosine): what a perfect merge of the per-modality rankings gives, so
every method is also reported as a fraction of it.

Methods that need a query log (or gold pairs, for the labeled oracle) are
*cross-fitted*: the queries are split into ``folds`` (seeded, per query
modality); the queries of one fold are scored by a method fitted with the
other folds' query vectors as its log (and, for the oracle only, their gold).
No query ever takes part in its own fit, and no gold is used by a label-free
method. All query-by-item scores are one matrix product (float64), per query
chunk.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .datasets import mixed_split
from .errors import SimstdError
from .methods import DEFAULT_METHODS, ScoreMethod, make_method
from .validation import as_embeddings, check_label

KS = (1, 5, 10, 20)
NDCG_K = 10
SHARE_KS = (10, 20)
#: Recall curves (for plots) go up to this rank.
CURVE_K = 100
METRICS = tuple(f"R@{k}" for k in KS) + ("mAP@R", "R-Precision", f"NDCG@{NDCG_K}")
#: Elements of one query-chunk score matrix (float64): bounds memory.
CHUNK_ELEMENTS = 4_000_000


# =============================================================== metrics
def rank_order(scores: np.ndarray, depth: int | None = None) -> np.ndarray:
    """Column indices sorted by decreasing score (ties: lower index first), first ``depth`` only."""
    scores = np.asarray(scores, dtype=np.float64)
    if depth is None or depth >= scores.shape[1]:
        order = np.argsort(-scores, axis=1, kind="stable")
        return order if depth is None else order[:, :depth]
    top = np.sort(np.argpartition(-scores, depth - 1, axis=1)[:, :depth], axis=1)
    inner = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, inner, axis=1)


def ranked_relevance(order: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """``relevant`` (nq, N) bool in ranked order: ``out[i, r]`` is rank ``r+1``'s relevance."""
    return np.take_along_axis(relevant, order, axis=1)


def recall_at(ranked: np.ndarray, k: int) -> np.ndarray:
    """1 where a positive is among the first ``k``, else 0 (per query)."""
    return ranked[:, :k].any(axis=1).astype(np.float64)


def r_precision(ranked: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """Share of positives among the first ``R`` results, ``R`` = the query's number of positives."""
    R = np.asarray(n_rel)
    upto = np.arange(1, ranked.shape[1] + 1)[None, :] <= R[:, None]
    return (ranked & upto).sum(axis=1) / np.maximum(R, 1)


def map_at_r(ranked: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    """mAP@R: ``(1/R) * sum_{i <= R} P@i * rel(i)`` (Musgrave, Belongie and Lim, ECCV 2020)."""
    R = np.asarray(n_rel)
    ranks = np.arange(1, ranked.shape[1] + 1)[None, :]
    hits = np.cumsum(ranked, axis=1)
    contrib = np.where(ranked & (ranks <= R[:, None]), hits / ranks, 0.0)
    return contrib.sum(axis=1) / np.maximum(R, 1)


def ndcg_at(ranked: np.ndarray, n_rel: np.ndarray, k: int = NDCG_K) -> np.ndarray:
    """NDCG@k with binary relevance: ``sum rel_i / log2(i + 1)`` over the ideal ranking's."""
    gains = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (ranked[:, :k] * gains[: ranked[:, :k].shape[1]]).sum(axis=1)
    ideal = np.cumsum(gains)[np.clip(np.asarray(n_rel), 1, k) - 1]
    return np.where(np.asarray(n_rel) > 0, dcg / ideal, 0.0)


def first_rank(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Rank (1-based) of each query's best-scored positive: 1 + items scored strictly higher."""
    best = np.where(relevant, scores, -np.inf).max(axis=1)
    return 1 + (scores > best[:, None]).sum(axis=1)


def query_metrics(scores: np.ndarray, relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of :data:`METRICS` per query, plus ``"first_rank"``."""
    n_rel = relevant.sum(axis=1)
    depth = int(max(max(KS), NDCG_K, n_rel.max(initial=1)))
    ranked = ranked_relevance(rank_order(scores, depth), relevant)
    out = {f"R@{k}": recall_at(ranked, k) for k in KS}
    out["mAP@R"] = map_at_r(ranked, n_rel)
    out["R-Precision"] = r_precision(ranked, n_rel)
    out[f"NDCG@{NDCG_K}"] = ndcg_at(ranked, n_rel)
    out["first_rank"] = first_rank(scores, relevant)
    return out


def modality_share(order: np.ndarray, item_modalities: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per query: the share of each modality among its first ``k`` results."""
    top = np.asarray(item_modalities)[order[:, :k]]
    return {m: (top == m).mean(axis=1) for m in np.unique(item_modalities)}


# ================================================================ tasks
@dataclass
class Task:
    """One retrieval problem: indexed items, queries, and gold pairs.

    ``positives`` is ``(P, 2)``: (query row, corpus id). ``targets`` limits the
    ranked items to those modalities (the index still holds all items, and
    methods are fitted on all of them), like ``MixedIndex.search(targets=...)``.
    """

    name: str
    corpus: np.ndarray
    corpus_modalities: np.ndarray
    queries: np.ndarray
    query_modalities: np.ndarray
    positives: np.ndarray
    targets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.corpus = as_embeddings(self.corpus, "corpus")
        self.queries = as_embeddings(self.queries, "queries", self.corpus.shape[1])
        self.corpus_modalities = np.asarray(self.corpus_modalities).astype(str)
        self.query_modalities = np.asarray(self.query_modalities).astype(str)
        if self.corpus_modalities.shape != (len(self.corpus),):
            raise SimstdError("pass one modality label per corpus row")
        if self.query_modalities.shape != (len(self.queries),):
            raise SimstdError("pass one modality label per query row")
        for m in set(self.corpus_modalities.tolist()) | set(self.query_modalities.tolist()):
            check_label(m)
        pos = np.asarray(self.positives)
        if pos.ndim != 2 or pos.shape[1] != 2 or len(pos) == 0 or not np.issubdtype(pos.dtype, np.integer):
            raise SimstdError("gold pairs must be a non-empty (P, 2) integer array of (query row, corpus id)")
        if pos[:, 0].min() < 0 or pos[:, 0].max() >= len(self.queries):
            raise SimstdError(f"gold pairs refer to query rows outside 0..{len(self.queries) - 1}")
        if pos[:, 1].min() < 0 or pos[:, 1].max() >= len(self.corpus):
            raise SimstdError(f"gold pairs refer to corpus ids outside 0..{len(self.corpus) - 1}")
        self.positives = pos.astype(np.int64)
        if self.targets is not None:
            unknown = set(self.targets) - set(self.corpus_modalities.tolist())
            if unknown:
                raise SimstdError(f"target modalities {sorted(unknown)} are not in the corpus")
            ok = np.isin(self.corpus_modalities[pos[:, 1]], self.targets)
            if not ok.all():
                raise SimstdError("some gold items are outside the target modalities; they could never be found")
        missing = np.setdiff1d(np.arange(len(self.queries)), pos[:, 0])
        if len(missing):
            raise SimstdError(f"{len(missing)} queries (first: row {missing[0]}) have no gold item; drop them")

    def relevance(self, rows: np.ndarray) -> np.ndarray:
        """Dense ``(len(rows), N)`` bool relevance of the given query rows."""
        where = np.full(len(self.queries), -1)
        where[rows] = np.arange(len(rows))
        rel = np.zeros((len(rows), len(self.corpus)), dtype=bool)
        keep = where[self.positives[:, 0]] >= 0
        rel[where[self.positives[keep, 0]], self.positives[keep, 1]] = True
        return rel

    @property
    def ranked_columns(self) -> np.ndarray:
        """Bool mask of the corpus items that are ranked."""
        if self.targets is None:
            return np.ones(len(self.corpus), dtype=bool)
        return np.isin(self.corpus_modalities, self.targets)

    def describe(self) -> dict:
        counts = lambda labels: {m: int((labels == m).sum()) for m in sorted(set(labels.tolist()))}  # noqa: E731
        return {
            "task": self.name,
            "corpus": counts(self.corpus_modalities),
            "queries": counts(self.query_modalities),
            "gold_pairs": int(len(self.positives)),
            "targets": list(self.targets) if self.targets else None,
        }


def mixed_task(pairs: np.ndarray, modalities: tuple[str, str] = ("image", "text"), seed: int = 0) -> Task:
    """The mixed-modality protocol on ``(2, N, D)`` pairs (see the module docstring)."""
    m0, m1 = _two(modalities)
    split = mixed_split(pairs, (m0, m1), seed=seed)
    corpus = np.concatenate([split.corpus[m0], split.corpus[m1]])
    cm = np.repeat([m0, m1], [len(split.corpus[m0]), len(split.corpus[m1])])
    queries = np.concatenate([split.queries[m1], split.queries[m0]])
    qm = np.repeat([m1, m0], [len(split.queries[m1]), len(split.queries[m0])])
    gold = np.concatenate([split.gold[m1], split.gold[m0]])
    return Task("mixed", corpus, cm, queries, qm, np.stack([np.arange(len(gold)), gold], axis=1))


def plain_tasks(pairs: np.ndarray, modalities: tuple[str, str] = ("image", "text")) -> list[Task]:
    """The two one-modality protocols over all pairs: ``m1 -> m0`` and ``m0 -> m1``."""
    m0, m1 = _two(modalities)
    n = pairs.shape[1]
    corpus = np.concatenate([pairs[0], pairs[1]])
    cm = np.repeat([m0, m1], n)
    out = []
    for qside, tside in ((1, 0), (0, 1)):
        q, t = (m0, m1)[qside], (m0, m1)[tside]
        gold = np.stack([np.arange(n), tside * n + np.arange(n)], axis=1)
        out.append(Task(f"{q}→{t}", corpus, cm, pairs[qside], np.full(n, q), gold, targets=(t,)))
    return out


def index_task(index, queries: np.ndarray, query_modalities: Sequence[str] | str, positives: np.ndarray,
               name: str = "index") -> Task:
    """A task over every item of a :class:`~simstd.MixedIndex` (vectors as stored) and ground truth."""
    ids = np.arange(index.ntotal)
    if index.ntotal == 0:
        raise SimstdError("the index is empty")
    queries = as_embeddings(queries, "queries", index.dim)
    qm = np.full(len(queries), query_modalities) if isinstance(query_modalities, str) else query_modalities
    return Task(name, index.reconstruct(ids), index.modality_of(ids), queries, qm, positives)


def load_qrels(path: str | Path) -> np.ndarray:
    """Read gold pairs ``(query row, corpus id)``, several lines per query allowed.

    Formats: ``.npy`` with an ``(P, 2)`` integer array; ``.json`` mapping query
    row to a list of ids (``{"0": [12, 40], ...}``); otherwise text with two
    integers per line separated by whitespace, comma or tab (``#`` comments).
    """
    path = Path(path)
    if not path.exists():
        raise SimstdError(f"ground-truth file {path} does not exist; check the path")
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            arr = np.array([(int(q), int(t)) for q, ts in data.items() for t in ts], dtype=np.int64)
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
            raise SimstdError(f"{path}: expected a JSON object {{query row: [corpus ids]}} ({exc})") from None
    else:
        rows = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = line.split("#", 1)[0].replace(",", " ").strip()
            if not line:
                continue
            parts = line.split()
            try:
                if len(parts) != 2:
                    raise ValueError
                rows.append((int(parts[0]), int(parts[1])))
            except ValueError:
                raise SimstdError(
                    f"{path}:{lineno}: expected two integers 'query_row corpus_id', got {line!r}"
                ) from None
        arr = np.array(rows, dtype=np.int64).reshape(-1, 2)
    if arr.ndim != 2 or arr.shape[1] != 2 or len(arr) == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise SimstdError(f"{path}: ground truth must be (query row, corpus id) integer pairs, got shape {arr.shape}")
    return arr.astype(np.int64)


def _two(modalities: Sequence[str]) -> tuple[str, str]:
    if len(modalities) != 2 or modalities[0] == modalities[1]:
        raise SimstdError(f"paired data needs two distinct modality names, got {list(modalities)}")
    return check_label(modalities[0]), check_label(modalities[1])


# ============================================================ evaluation
@dataclass
class TaskResult:
    """Per-query metrics of every method (and the ceiling) on one task."""

    task: dict
    per_query: dict[str, dict[str, np.ndarray]]
    shares: dict[str, dict[int, dict[str, dict[str, float]]]]
    query_modalities: np.ndarray

    def summary(self, method: str) -> dict[str, float]:
        return {m: float(v.mean()) for m, v in self.per_query[method].items() if m != "first_rank"}


def evaluate(task: Task, methods: Sequence[str | ScoreMethod] = DEFAULT_METHODS, *, folds: int = 2,
             seed: int = 0) -> TaskResult:
    """Score every query with every method; return per-query metrics (see the module docstring)."""
    fold = query_folds(task, folds, seed)
    ranked = task.ranked_columns
    per_query: dict[str, dict[str, np.ndarray]] = {}
    shares: dict[str, dict] = {}
    # The ceiling: raw cosine, ranking only items of the modalities that hold the query's positives.
    labels, code = np.unique(task.corpus_modalities, return_inverse=True)
    gold_mods = np.zeros((len(task.queries), len(labels)), dtype=bool)
    gold_mods[task.positives[:, 0], code[task.positives[:, 1]]] = True
    allowed = gold_mods[:, code] & ranked[None, :]
    runs = [("ceiling", make_method("raw"), allowed)] + [
        (m.name if isinstance(m, ScoreMethod) else m, m if isinstance(m, ScoreMethod) else make_method(m), None)
        for m in methods
    ]
    names = [r[0] for r in runs]
    if len(set(names)) != len(names):
        raise SimstdError(f"a method is listed twice: {names}")
    corpus64 = task.corpus.astype(np.float64)
    with single_threaded():
        for name, method, mask in runs:
            S = _score_all(task, corpus64, method, fold, folds)
            S[:, ~ranked] = -np.inf
            if mask is not None:
                S[~mask] = -np.inf
            per_query[name], shares[name] = _metrics_chunked(task, S)
    return TaskResult(task.describe(), per_query, shares, task.query_modalities)


def query_folds(task: Task, folds: int = 2, seed: int = 0) -> np.ndarray:
    """Fold number of every query: a seeded split into ``folds`` parts within each query modality."""
    if folds < 2:
        raise SimstdError("folds must be >= 2 (cross-fitting keeps each query out of its own query log)")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(task.queries), dtype=np.int64)
    for m in np.unique(task.query_modalities):
        rows = np.flatnonzero(task.query_modalities == m)
        fold[rng.permutation(rows)] = np.arange(len(rows)) % folds
    return fold


def crossfit_scores(task: Task, method: str | ScoreMethod, *, folds: int = 2, seed: int = 0) -> np.ndarray:
    """``(n_queries, n_corpus)`` scores of a method on a task, cross-fitted when it uses a query log.

    Items outside ``task.targets`` are not masked here.
    """
    method = make_method(method) if isinstance(method, str) else method
    with single_threaded():
        return _score_all(task, task.corpus.astype(np.float64), method, query_folds(task, folds, seed), folds)


@contextlib.contextmanager
def single_threaded():
    """Run FAISS (OpenMP) and, when threadpoolctl is installed, BLAS on one thread.

    The evaluation makes many small matrix products and searches; threads only
    add overhead there, and on a busy machine they spin-wait (measured 5-6x
    slower on 2 shared cores).
    """
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional: without it BLAS keeps its threads
            limits = contextlib.nullcontext()
        else:
            limits = threadpool_limits(1)
        with limits:
            yield
    finally:
        faiss.omp_set_num_threads(before)


def _score_all(task: Task, corpus64: np.ndarray, method: ScoreMethod, fold: np.ndarray, folds: int) -> np.ndarray:
    """(nq, N) scores; cross-fitted when the method uses a query log or gold pairs."""
    S = np.empty((len(task.queries), len(task.corpus)))
    crossfit = method.needs_log or method.needs_labels
    parts = range(folds) if crossfit else [None]
    for f in parts:
        if f is None:
            method.fit(task.corpus, task.corpus_modalities)
            rows_all = np.arange(len(task.queries))
        else:
            log = np.flatnonzero(fold != f)
            kwargs = {"queries": task.queries[log], "query_modalities": task.query_modalities[log]}
            if method.needs_labels:
                where = np.full(len(task.queries), -1)
                where[log] = np.arange(len(log))
                pos = task.positives[where[task.positives[:, 0]] >= 0]
                kwargs["positives"] = np.stack([where[pos[:, 0]], pos[:, 1]], axis=1)
            method.fit(task.corpus, task.corpus_modalities, **kwargs)
            rows_all = np.flatnonzero(fold == f)
        for qm in np.unique(task.query_modalities[rows_all]):
            rows = rows_all[task.query_modalities[rows_all] == qm]
            step = max(1, CHUNK_ELEMENTS // max(len(task.corpus), 1))
            for start in range(0, len(rows), step):
                r = rows[start : start + step]
                Q = task.queries[r].astype(np.float64)
                raw = Q @ corpus64.T
                S[r] = method.transform(raw, Q, str(qm))
    return S


def _metrics_chunked(task: Task, S: np.ndarray):
    step = max(1, CHUNK_ELEMENTS // max(len(task.corpus), 1))
    chunks, share_sum = [], {}
    for start in range(0, len(S), step):
        rows = np.arange(start, min(start + step, len(S)))
        rel = task.relevance(rows)
        chunks.append(query_metrics(S[rows], rel))
        order = rank_order(S[rows], max(SHARE_KS))
        for k in SHARE_KS:
            for tm, v in modality_share(order, task.corpus_modalities, k).items():
                for qm in np.unique(task.query_modalities[rows]):
                    sel = task.query_modalities[rows] == qm
                    acc = share_sum.setdefault(k, {}).setdefault(qm, {}).setdefault(tm, [0.0, 0])
                    acc[0] += float(v[sel].sum())
                    acc[1] += int(sel.sum())
    per_query = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    shares = {k: {qm: {tm: s / n for tm, (s, n) in d.items()} for qm, d in by.items()} for k, by in share_sum.items()}
    return per_query, shares


def cross_share(result: TaskResult, method: str, k: int) -> float:
    """Share of other-modality items among the top ``k``, averaged over all queries."""
    total = 0.0
    for qm, by in result.shares[method][k].items():
        n = int((result.query_modalities == qm).sum())
        total += n * sum(v for tm, v in by.items() if tm != qm)
    return total / len(result.query_modalities)


# ============================================================== reports
@dataclass
class Report:
    """Results of several seeds of several protocols on one data set, aggregated."""

    data: str
    info: dict
    methods: list[str]
    seeds: list[int]
    folds: int
    results: dict[str, list[TaskResult]] = field(default_factory=dict)

    # ---------------------------------------------------------------- stats
    def values(self, protocol: str, method: str, metric: str, *, of_ceiling: bool = False) -> np.ndarray:
        """One value per seed: the mean over queries (``of_ceiling``: divided by the ceiling's)."""
        out = []
        for r in self.results[protocol]:
            if metric.startswith("cross@"):
                v = cross_share(r, method, int(metric[6:]))
            else:
                v = float(r.per_query[method][metric].mean())
                if of_ceiling:
                    c = float(r.per_query["ceiling"][metric].mean())
                    v = v / c if c > 0 else math.nan
            out.append(v)
        return np.array(out)

    def recall_curve(self, protocol: str, method: str, kmax: int = CURVE_K) -> np.ndarray:
        """Recall@k for k = 1..kmax, averaged over seeds."""
        ks = np.arange(1, kmax + 1)
        return np.mean([(r.per_query[method]["first_rank"][:, None] <= ks).mean(axis=0)
                        for r in self.results[protocol]], axis=0)

    def to_dict(self) -> dict:
        protocols = {}
        for protocol, runs in self.results.items():
            rows = {}
            for method in ["ceiling"] + self.methods:
                metrics = {}
                for metric in METRICS + tuple(f"cross@{k}" for k in SHARE_KS):
                    v = self.values(protocol, method, metric)
                    metrics[metric] = _stat(v)
                    if method != "ceiling" and metric in METRICS:
                        metrics[metric]["of_ceiling"] = _stat(self.values(protocol, method, metric, of_ceiling=True))
                share = {}
                for k in SHARE_KS:
                    share[str(k)] = {
                        qm: {tm: float(np.mean([r.shares[method][k][qm][tm] for r in runs])) for tm in by}
                        for qm, by in runs[0].shares[method][k].items()
                    }
                rows[method] = {"metrics": metrics, "share": share}
            protocols[protocol] = {"task": runs[0].task, "methods": rows}
        return {
            "data": self.data,
            **self.info,
            "seeds": self.seeds,
            "folds": self.folds,
            "spread": "std over seeds (ddof=1); 0 for one seed",
            "protocols": protocols,
        }

    # ----------------------------------------------------------- rendering
    def table_rows(self, protocol: str) -> tuple[list[str], list[list[str]]]:
        header = ["method"] + list(METRICS) + [f"cross@{SHARE_KS[0]}", "R@20/ceiling"]
        rows = []
        for method in ["ceiling"] + self.methods:
            row = [method] + [f"{self.values(protocol, method, m).mean():.3f}" for m in METRICS]
            row.append(f"{self.values(protocol, method, f'cross@{SHARE_KS[0]}').mean():.2f}")
            if method == "ceiling":
                row.append("1")
            else:
                row.append(_pm(self.values(protocol, method, "R@20", of_ceiling=True)))
            rows.append(row)
        return header, rows

    def title(self, protocol: str) -> str:
        t = self.results[protocol][0].task
        corpus = ", ".join(f"{n} {m}" for m, n in t["corpus"].items())
        queries = ", ".join(f"{n} {m}" for m, n in t["queries"].items())
        where = f" (ranking {'/'.join(t['targets'])} only)" if t["targets"] else ""
        return f"{self.data} — {protocol}: index {corpus}; queries {queries}{where}"

    def to_text(self) -> str:
        out = []
        for protocol in self.results:
            header, rows = self.table_rows(protocol)
            out.append(self.title(protocol))
            out.append(_text_table(header, rows))
            out.append("")
        out.append(self.footnote())
        return "\n".join(out)

    def to_markdown(self, level: int = 3) -> str:
        out = []
        for protocol in self.results:
            header, rows = self.table_rows(protocol)
            out.append(f"{'#' * level} {self.title(protocol)}\n")
            out.append(markdown_table(header, rows))
            out.append("")
        out.append(self.footnote() + "\n")
        return "\n".join(out)

    def footnote(self) -> str:
        return (
            f"Means over {len(self.seeds)} seed(s) {_seed_range(self.seeds)}; R@20/ceiling is mean ± std over seeds. "
            f"cross@{SHARE_KS[0]}: share of the other modality among the top {SHARE_KS[0]}. "
            f"Query-log methods are cross-fitted over {self.folds} folds of the queries."
        )


def run_pairs(pairs: np.ndarray, *, data: str = "pairs", modalities: tuple[str, str] = ("image", "text"),
              methods: Sequence[str | ScoreMethod] = DEFAULT_METHODS, seeds: Sequence[int] = range(5), folds: int = 2,
              protocols: Sequence[str] = ("mixed", "plain")) -> Report:
    """Run the mixed and/or plain protocols on ``(2, N, D)`` pairs for every seed.

    ``methods`` are names (:func:`~simstd.methods.make_method`) or configured
    :class:`~simstd.methods.ScoreMethod` objects (refitted for every task).
    """
    pairs = np.asarray(pairs)
    if pairs.ndim != 3 or pairs.shape[0] != 2:
        raise SimstdError(f"paired embeddings must have shape (2, N, D), got {pairs.shape}")
    unknown = set(protocols) - {"mixed", "plain"}
    if unknown or not protocols:
        raise SimstdError(f"protocols are 'mixed' and 'plain', got {list(protocols)}")
    for name in methods:
        if not isinstance(name, ScoreMethod):
            make_method(name)  # fail fast on a bad name
    seeds = list(seeds)
    if not seeds:
        raise SimstdError("pass at least one seed")
    report = Report(data, {"n_pairs": int(pairs.shape[1]), "dim": int(pairs.shape[2]),
                           "modalities": list(modalities)}, _names(methods), seeds, folds)
    for seed in seeds:
        tasks = []
        if "mixed" in protocols:
            tasks.append(mixed_task(pairs, modalities, seed=seed))
        if "plain" in protocols:
            tasks.extend(plain_tasks(pairs, modalities))
        for task in tasks:
            report.results.setdefault(task.name, []).append(evaluate(task, methods, folds=folds, seed=seed))
    return report


def run_task(task: Task, *, data: str = "index", methods: Sequence[str] = DEFAULT_METHODS,
             seeds: Sequence[int] = range(5), folds: int = 2) -> Report:
    """Evaluate one fixed task; the seeds vary only the cross-fitting folds."""
    seeds = list(seeds)
    report = Report(data, {"dim": int(task.corpus.shape[1])}, _names(methods), seeds, folds)
    report.results[task.name] = [evaluate(task, methods, folds=folds, seed=s) for s in seeds]
    return report


def affine_changes(report: Report, protocols: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Modality-affine methods whose per-query ranks differ from raw on the one-modality protocols.

    Empty lists mean that, as they must, every per-modality affine method
    returned exactly the raw ranking (rank of the gold for every query).
    """
    out = {}
    for protocol in protocols or [p for p in report.results if p != "mixed"]:
        bad = []
        for method in report.methods:
            try:
                affine = make_method(method).modality_affine
            except SimstdError:  # a configured object, not a registry name
                continue
            if not affine:
                continue
            for r in report.results[protocol]:
                if not np.array_equal(r.per_query[method]["first_rank"], r.per_query["raw"]["first_rank"]
                                      if "raw" in r.per_query else r.per_query["ceiling"]["first_rank"]):
                    bad.append(method)
                    break
        out[protocol] = bad
    return out


# --------------------------------------------------------------- helpers
def _names(methods: Sequence[str | ScoreMethod]) -> list[str]:
    return [m.name if isinstance(m, ScoreMethod) else m for m in methods]


def _stat(v: np.ndarray) -> dict:
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "per_seed": [float(x) for x in v]}


def _pm(v: np.ndarray) -> str:
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{np.mean(v):.3f} ± {sd:.3f}"


def _seed_range(seeds: Sequence[int]) -> str:
    s = list(seeds)
    if len(s) > 2 and s == list(range(s[0], s[0] + len(s))):
        return f"({s[0]}..{s[-1]})"
    return "(" + ", ".join(map(str, s)) + ")"


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    just = lambda i, c, w: c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
    lines = ["  ".join(just(i, c, w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A Markdown table; ``align`` has one ``l`` or ``r`` per column (default: first left, rest right)."""
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
