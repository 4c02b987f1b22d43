"""Evaluation protocols: a :class:`Task` is indexed items, queries and gold pairs.

* :func:`mixed_task` - paired embeddings ``(2, N, D)`` are split into halves
  A and B (seeded); the index holds modality 0 of A and modality 1 of B; the
  queries are modality 1 of A (gold: its partner in A) and modality 0 of B
  (gold: its partner in B). Every gold is in the other modality while half the
  index shares the query's modality.
* :func:`plain_tasks` - one-modality search over all pairs: the index holds
  both modalities of every pair, each query of modality 1 searches modality 0
  only (and the other way round). A per-modality affine method cannot change
  anything here; the report shows that it does not.
* :func:`universal_task` - relevant items in *both* modalities: half the
  pairs (seeded) are indexed with both their modalities, the other half are
  queries in either modality; an indexed item is relevant to a query when
  their pairs are topically related (:mod:`.relevance`: shared subtopic,
  shared content word of human captions; never the embeddings). Preferring
  one modality costs recall here.
* :func:`index_task` - any :class:`~simstd.MixedIndex` with query vectors and
  a ground-truth file (several positives per query allowed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..datasets import mixed_split
from ..errors import SimstdError
from ..validation import as_embeddings, check_label


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
    #: queries of the protocol left out because nothing indexed is relevant to them
    dropped_queries: int = 0

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
    def is_topical(self) -> bool:
        """True when some query has relevant items both in its own and in another modality."""
        same = self.query_modalities[self.positives[:, 0]] == self.corpus_modalities[self.positives[:, 1]]
        return bool(same.any() and (~same).any())

    @property
    def ranked_columns(self) -> np.ndarray:
        """Bool mask of the corpus items that are ranked."""
        if self.targets is None:
            return np.ones(len(self.corpus), dtype=bool)
        return np.isin(self.corpus_modalities, self.targets)

    def describe(self) -> dict:
        counts = lambda labels: {m: int((labels == m).sum()) for m in sorted(set(labels.tolist()))}  # noqa: E731
        out = {
            "task": self.name,
            "corpus": counts(self.corpus_modalities),
            "queries": counts(self.query_modalities),
            "gold_pairs": int(len(self.positives)),
            "targets": list(self.targets) if self.targets else None,
        }
        if self.dropped_queries:
            out["queries_without_relevant_items"] = self.dropped_queries
        return out


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


def universal_task(pairs: np.ndarray, relevance: np.ndarray, modalities: tuple[str, str] = ("image", "text"),
                   seed: int = 0) -> Task:
    """The universal protocol on ``(2, N, D)`` pairs with an ``(N, N)`` bool pair relevance (module docstring).

    Queries without any relevant indexed pair are left out (``Task.describe``
    counts them); the query's own pair is never indexed.
    """
    m0, m1 = _two(modalities)
    n = pairs.shape[1]
    rel = np.asarray(relevance, dtype=bool)
    if rel.shape != (n, n):
        raise SimstdError(f"relevance must be an ({n}, {n}) bool matrix between the pairs, got shape {rel.shape}")
    perm = np.random.default_rng(seed).permutation(n)
    qrows, irows = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
    ni = len(irows)
    corpus = np.concatenate([pairs[0][irows], pairs[1][irows]])
    cm = np.repeat([m0, m1], ni)
    sub = rel[np.ix_(qrows, irows)]
    keep = sub.any(axis=1)
    if not keep.any():
        raise SimstdError("no query pair has a relevant indexed pair; check the relevance labels")
    qrows, sub = qrows[keep], sub[keep]
    queries = np.concatenate([pairs[1][qrows], pairs[0][qrows]])
    qm = np.repeat([m1, m0], len(qrows))
    q, item = np.nonzero(np.concatenate([sub, sub]))
    positives = np.concatenate([np.stack([q, item], axis=1), np.stack([q, item + ni], axis=1)])
    order = np.lexsort((positives[:, 1], positives[:, 0]))
    return Task("universal", corpus, cm, queries, qm, positives[order], dropped_queries=int(2 * (~keep).sum()))


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
