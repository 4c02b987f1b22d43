"""Similarity standardization per (query modality, target modality) pair.

Method: Yamashita, Shirafuji and Saito, "Bridging the Modality Gap by
Similarity Standardization with Pseudo-Positive Samples" (2025). For every pair
of query modality ``q`` and target modality ``t`` the mean and standard
deviation of the scores of positive pairs are estimated; the positives are
either pseudo positives (each pseudo query's top-1 neighbour among the items of
modality ``t``) or labeled pairs. Every raw cosine ``s`` is then replaced by
``z = (s - mean[q, t]) / std[q, t]``, which puts the scores of all target
modalities on one scale so that a single merged ranking is meaningful.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .engines import Searchable, as_searchable
from .errors import CorruptFileError, FingerprintMismatchError, NotFittedError, SimstdError, StaleFitWarning
from .fileio import check_format, read_json, write_json_atomic
from .mining import labeled_pair_scores, mine_pseudo_positives
from .stats import merge_moments, pair_moments, topk_mean
from .validation import check_label

FORMAT = "simstd.standardizer"
FORMAT_VERSION = 1
SOURCES = ("pseudo", "labeled")


class Standardizer:
    """Fit per-modality-pair score statistics and z-standardize raw scores.

    Parameters
    ----------
    n_pseudo:
        Pseudo positives per pseudo query and target modality: the top
        ``n_pseudo`` neighbours. The paper uses 1.
    source:
        ``"pseudo"`` (default) mines pseudo-positive pairs with FAISS;
        ``"labeled"`` uses gold pairs passed to :meth:`fit` as ``positives``.
    sample:
        Number of pseudo queries per query modality drawn (without
        replacement) when the pseudo queries are the indexed items themselves;
        ``None`` uses every item. Fitting a 10M-item index needs only a sample.
    seed:
        Seed of that sample.
    query_shift, shift_k:
        Query-adaptive variant (off by default): after standardizing, subtract
        ``query_shift`` times the mean of the query's ``shift_k`` best
        standardized scores in each target modality. This is the query-side
        term of CSLS (Conneau et al., ICLR 2018; ``query_shift=0.5``,
        ``shift_k=10`` are CSLS's constants). It stays an increasing affine
        map per (query, target modality), so it never reorders a modality's
        items, and on the mixed-modality benchmark it improved R@20 on all
        four trained models (docs/benchmarks.md). Applied by :meth:`transform`,
        which then needs, in each row, the query's ``shift_k`` best items of
        every target modality present (e.g. all items, or each FAISS shard's
        top-k with k >= ``shift_k``).

    Fitted attributes
    -----------------
    modalities_ : list of str, the labels indexing the arrays below
    n_ : (M, M) int64, number of positive scores per (query, target) modality
    mean_, var_, std_ : (M, M) float64, their mean, variance (ddof=0), std
    dim_, model_, index_fingerprint_ : what the fit was made on (may be None)
    """

    def __init__(
        self,
        n_pseudo: int = 1,
        source: str = "pseudo",
        sample: int | None = 10_000,
        seed: int = 0,
        query_shift: float = 0.0,
        shift_k: int = 10,
    ) -> None:
        self.n_pseudo = n_pseudo
        self.source = source
        self.sample = sample
        self.seed = seed
        self.query_shift = query_shift
        self.shift_k = shift_k

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        if not isinstance(self.n_pseudo, (int, np.integer)) or self.n_pseudo < 1:
            raise SimstdError(f"n_pseudo must be a positive integer, got {self.n_pseudo!r}")
        if self.source not in SOURCES:
            raise SimstdError(f"source must be one of {SOURCES}, got {self.source!r}")
        if self.sample is not None and (not isinstance(self.sample, (int, np.integer)) or self.sample < 1):
            raise SimstdError(f"sample must be a positive integer or None, got {self.sample!r}")
        if isinstance(self.query_shift, bool) or not (
            isinstance(self.query_shift, (int, float, np.number)) and 0 <= self.query_shift < np.inf
        ):
            raise SimstdError(f"query_shift must be a number >= 0 (0 = off, 0.5 = CSLS), got {self.query_shift!r}")
        if isinstance(self.shift_k, bool) or not isinstance(self.shift_k, (int, np.integer)) or self.shift_k < 1:
            raise SimstdError(f"shift_k must be a positive integer, got {self.shift_k!r}")

    def fit(
        self,
        X: "Searchable | np.ndarray",
        modalities: Sequence[str] | None = None,
        *,
        queries: np.ndarray | None = None,
        query_modalities: Sequence[str] | str | None = None,
        positives: np.ndarray | None = None,
    ) -> "Standardizer":
        """Fit on any searchable collection, or on embeddings plus their modality labels.

        ``X`` is a :class:`~simstd.MixedIndex`, a vector-database adapter from
        :mod:`simstd.engines`, anything else satisfying
        :class:`~simstd.engines.base.Searchable`, or an ``(n, dim)`` array with
        one label per row in ``modalities`` (searched exactly, brute force).

        With ``source="pseudo"``, pseudo queries are ``queries`` (a query log,
        with ``query_modalities``) or, when none are given, a sample of the
        stored items themselves (each item's own match excluded).

        With ``source="labeled"``, ``positives`` is an ``(P, 2)`` int array of
        gold pairs ``(query row, target id)``: rows of ``queries`` when given,
        else ids of ``X`` for both sides.
        """
        self._check_params()
        searchable = as_searchable(X, modalities)
        if self.source == "pseudo":
            if positives is not None:
                raise SimstdError('positives are gold pairs: use them with Standardizer(source="labeled")')
            qm, tm, scores = mine_pseudo_positives(
                searchable, queries, query_modalities, k=int(self.n_pseudo), sample=self.sample, seed=self.seed
            )
        else:
            if positives is None:
                raise SimstdError('source="labeled" needs positives: an (P, 2) array of (query, target id) pairs')
            qm, tm, scores = labeled_pair_scores(searchable, positives, queries, query_modalities)
        self.fit_scores(qm, tm, scores)
        self.dim_ = int(searchable.dim)
        self.model_ = getattr(searchable, "model", None)
        self.index_fingerprint_ = getattr(searchable, "fingerprint", None)
        return self

    def fit_scores(
        self,
        query_modalities: Sequence[str] | str,
        target_modalities: Sequence[str] | str,
        scores: Iterable[float] | np.ndarray,
    ) -> "Standardizer":
        """Fit from positive-pair scores a user already has (any search engine).

        ``scores[i]`` is the similarity of a positive pair whose query has
        modality ``query_modalities[i]`` and whose target has modality
        ``target_modalities[i]`` (a single label is broadcast).
        """
        scores = np.asarray(scores, dtype=np.float64).ravel()
        if scores.size == 0:
            raise SimstdError("no scores to fit: pass at least one positive-pair score per modality pair")
        if not np.isfinite(scores).all():
            raise SimstdError("scores contain NaN or inf; drop those pairs before fitting")
        qm = _broadcast_labels(query_modalities, scores.size, "query_modalities")
        tm = _broadcast_labels(target_modalities, scores.size, "target_modalities")
        labels, codes = np.unique(np.concatenate([qm, tm]), return_inverse=True)
        for label in labels:
            check_label(str(label))
        m = len(labels)
        pair = codes[: scores.size] * m + codes[scores.size :]
        n, mean, m2 = pair_moments(pair, scores, m * m)
        self._set_stats([str(x) for x in labels], n.reshape(m, m), mean.reshape(m, m), m2.reshape(m, m))
        self.dim_ = None
        self.model_ = None
        self.index_fingerprint_ = None
        return self

    def _set_stats(self, labels: list[str], n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> None:
        n = np.asarray(n, dtype=np.int64)
        seen = n > 0
        self.modalities_ = list(labels)
        self.n_ = n
        self.mean_ = np.where(seen, mean, np.nan)
        self.var_ = np.where(seen, np.divide(m2, n, out=np.zeros_like(m2, dtype=np.float64), where=seen), np.nan)
        self.std_ = np.sqrt(self.var_)

    # ---------------------------------------------------------------- applying
    def _check_fitted(self) -> None:
        if not hasattr(self, "n_"):
            raise NotFittedError(
                "this Standardizer is not fitted yet: call fit(index) or fit_scores(...) "
                "(CLI: simstd fit --index db.faiss) before transforming scores"
            )

    def _code(self, label: str) -> int:
        try:
            return self.modalities_.index(label)
        except ValueError:
            raise NotFittedError(
                f"modality {label!r} was not seen when fitting (fitted modalities: {self.modalities_}); "
                "refit on data that includes it"
            ) from None

    def affine(self, query_modality: str, target_modality: str) -> tuple[float, float]:
        """Return ``(mean, std)`` of a pair, raising if it cannot standardize."""
        self._check_fitted()
        q, t = self._code(query_modality), self._code(target_modality)
        n, std = int(self.n_[q, t]), float(self.std_[q, t])
        if n == 0:
            raise NotFittedError(
                f"no positive pairs were fitted for queries of modality {query_modality!r} against "
                f"targets of modality {target_modality!r}; fit with pseudo queries of that modality "
                "(e.g. --queries with --query-modality, or the indexed items themselves)"
            )
        if not std > 0:
            raise NotFittedError(
                f"pair ({query_modality!r}, {target_modality!r}) has zero variance from {n} score(s); "
                "fit on more pseudo queries (n >= 2 with distinct scores)"
            )
        return float(self.mean_[q, t]), std

    def transform(
        self,
        scores: np.ndarray,
        query_modality: str | Sequence[str],
        target_modalities: str | Sequence[str] | np.ndarray,
    ) -> np.ndarray:
        """Return ``(scores - mean[q, t]) / std[q, t]`` elementwise.

        ``scores`` is one query's scores ``(k,)`` or a batch ``(nq, k)``;
        ``query_modality`` is one label or one per query; ``target_modalities``
        is one label or an array of labels broadcastable to ``scores``.
        With ``query_shift > 0`` each row is then shifted per target modality
        (see the class docstring). Pure: the standardizer is not modified.
        """
        self._check_fitted()
        self._check_params()
        scores = np.asarray(scores, dtype=np.float64)
        qlab, qinv = np.unique(np.asarray(query_modality, dtype=object).astype(str), return_inverse=True)
        tlab, tinv = np.unique(np.asarray(target_modalities, dtype=object).astype(str), return_inverse=True)
        qshape = np.shape(query_modality)
        tshape = np.shape(target_modalities)
        mean = np.empty((len(qlab), len(tlab)))
        std = np.empty((len(qlab), len(tlab)))
        for i, q in enumerate(qlab):
            for j, t in enumerate(tlab):
                mean[i, j], std[i, j] = self.affine(str(q), str(t))
        qi = qinv.reshape(qshape)
        if qi.ndim == 1 and scores.ndim == 2:
            qi = qi[:, None]  # one label per query row
        ti = tinv.reshape(tshape)
        try:
            qi, ti, _ = np.broadcast_arrays(qi, ti, scores)
        except ValueError:
            raise SimstdError(
                f"cannot align scores of shape {scores.shape} with query modalities of shape {qshape} "
                f"and target modalities of shape {tshape}"
            ) from None
        z = (scores - mean[qi, ti]) / std[qi, ti]
        return self._shift(z, ti) if self.query_shift else z

    def _shift(self, z: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``z - query_shift * mean(row's shift_k largest finite z of the same target modality)``."""
        out = np.array(z, dtype=np.float64, ndmin=1)
        codes = np.broadcast_to(codes, z.shape).reshape(out.shape)
        for code in np.unique(codes):
            mine = codes == code
            local = topk_mean(np.where(mine, out, -np.inf), int(self.shift_k))
            out = out - np.where(mine, float(self.query_shift) * local[..., None], 0.0)
        return out.reshape(np.shape(z))

    # ----------------------------------------------------------------- merging
    def merge(self, other: "Standardizer") -> "Standardizer":
        """Pool two fits exactly (Chan, Golub and LeVeque's parallel variance).

        Fitting on shards and merging gives the statistics of one fit on the
        whole, up to float rounding. Returns a new Standardizer.
        """
        self._check_fitted()
        other._check_fitted()
        labels = sorted(set(self.modalities_) | set(other.modalities_))
        m = len(labels)
        moments = []
        for part in (self, other):
            idx = np.array([labels.index(x) for x in part.modalities_])
            n = np.zeros((m, m), dtype=np.int64)
            mean = np.full((m, m), np.nan)
            m2 = np.zeros((m, m))
            n[np.ix_(idx, idx)] = part.n_
            mean[np.ix_(idx, idx)] = part.mean_
            m2[np.ix_(idx, idx)] = np.nan_to_num(part.var_) * part.n_
            moments.append((n, mean, m2))
        n, mean, m2 = merge_moments(*moments)
        merged = Standardizer(self.n_pseudo, self.source, self.sample, self.seed, self.query_shift, self.shift_k)
        merged._set_stats(labels, n, mean, m2)
        same = lambda a: a if getattr(self, a) == getattr(other, a) else None  # noqa: E731
        merged.dim_ = same("dim_")
        merged.model_ = same("model_")
        merged.index_fingerprint_ = same("index_fingerprint_")
        return merged

    # ------------------------------------------------------------------ checks
    def is_stale(self, index: Searchable) -> bool:
        """Whether ``index`` changed (items added, or rebuilt) since this fit
        (for collections that keep a ``fingerprint``)."""
        fp = getattr(self, "index_fingerprint_", None)
        theirs = getattr(index, "fingerprint", None)
        return fp is not None and theirs is not None and fp != theirs

    def check_index(self, index: Searchable, path: str | Path | None = None, *, strict: bool = False) -> None:
        """Raise if this fit cannot serve ``index`` (another dimension).

        A stale fit (the collection changed since: its ``fingerprint``
        differs) keeps serving: the statistics of each (query, target)
        modality pair still apply to the items added since. It is noted once
        (:class:`~simstd.errors.StaleFitWarning`), or refused with ``strict=True``.
        """
        self._check_fitted()
        where = f" ({path})" if path else ""
        if self.dim_ is not None and self.dim_ != index.dim:
            raise SimstdError(
                f"standardizer{where} was fitted on dimension {self.dim_}, the index has {index.dim}; "
                "refit it on this index (simstd fit --index ...)"
            )
        if self.is_stale(index):
            message = (f"the standardizer{where} is stale: it was fitted before the index changed (fingerprint "
                       f"{self.index_fingerprint_[:12]}, the index now {index.fingerprint[:12]}); ")
            if strict:
                raise FingerprintMismatchError(message + "refit with `simstd fit --index ...` or "
                                               "Standardizer().fit(index), or search without strict")
            warnings.warn(message + "it keeps serving with the fitted statistics of each modality pair "
                          "until you refit (simstd fit --index ...)", StaleFitWarning, stacklevel=3)

    def table(self) -> list[dict]:
        """The fitted statistics as one row per (query, target) modality pair."""
        self._check_fitted()
        rows = []
        for i, q in enumerate(self.modalities_):
            for j, t in enumerate(self.modalities_):
                if self.n_[i, j] > 0:
                    rows.append(
                        {
                            "query_modality": q,
                            "target_modality": t,
                            "n": int(self.n_[i, j]),
                            "mean": float(self.mean_[i, j]),
                            "std": float(self.std_[i, j]),
                            "var": float(self.var_[i, j]),
                        }
                    )
        return rows

    # ------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        self._check_fitted()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "metric": "cosine",
            "dim": self.dim_,
            "model": self.model_,
            "index_fingerprint": self.index_fingerprint_,
            "settings": {
                "n_pseudo": int(self.n_pseudo),
                "source": self.source,
                "sample": None if self.sample is None else int(self.sample),
                "seed": int(self.seed),
                "query_shift": float(self.query_shift),
                "shift_k": int(self.shift_k),
            },
            "modalities": list(self.modalities_),
            "pairs": self.table(),
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "Standardizer":
        fix = "refit with `simstd fit` to rewrite it"
        check_format(data, source, FORMAT, FORMAT_VERSION, "simstd standardizer", fix)
        try:
            std = cls(**data["settings"])
            labels = [check_label(x) for x in data["modalities"]]
            m = len(labels)
            n = np.zeros((m, m), dtype=np.int64)
            mean = np.zeros((m, m))
            m2 = np.zeros((m, m))
            for row in data["pairs"]:
                i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
                n[i, j] = int(row["n"])
                mean[i, j] = float(row["mean"])
                m2[i, j] = float(row["var"]) * n[i, j]
            std._set_stats(labels, n, mean, m2)
            std.dim_ = data.get("dim")
            std.model_ = data.get("model")
            std.index_fingerprint_ = data.get("index_fingerprint")
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{source} is malformed ({exc!r}); {fix}") from None
        return std

    def save(self, path: str | Path) -> None:
        """Write the fit as a small human-readable JSON file (atomically)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Standardizer":
        data = read_json(path, "standardizer file", "run `simstd fit` to (re)create it")
        return cls.from_dict(data, str(path))

    def __repr__(self) -> str:
        state = f", modalities={self.modalities_}" if hasattr(self, "n_") else ", unfitted"
        shift = f", query_shift={self.query_shift}, shift_k={self.shift_k}" if self.query_shift else ""
        return (f"Standardizer(n_pseudo={self.n_pseudo}, source={self.source!r}, sample={self.sample}"
                f"{shift}{state})")


def _broadcast_labels(labels: Sequence[str] | str, size: int, name: str) -> np.ndarray:
    if isinstance(labels, str):
        return np.full(size, labels, dtype=object)
    arr = np.asarray(labels, dtype=object).ravel()
    if arr.size != size:
        raise SimstdError(f"{name} has {arr.size} labels for {size} scores; pass one label per score")
    return arr
