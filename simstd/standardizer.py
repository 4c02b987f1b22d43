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

import hashlib
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import hubness
from .engines import Searchable, as_searchable
from .engines.base import count
from .errors import CorruptFileError, FingerprintMismatchError, NotFittedError, SimstdError, StaleFitWarning
from .fileio import atomic_path, check_format, read_json, write_json_atomic
from .mining import labeled_pair_scores, mine_pseudo_positives
from .stats import SAMPLE_AUTO, TARGET_SE, merge_moments, pair_moments, sampling_errors, topk_mean
from .validation import Interval, Options, check_is_fitted, check_label, validate_params

FORMAT = "simstd.standardizer"
FORMAT_VERSION = 1
SOURCES = ("pseudo", "labeled")
METHODS = ("paper", "hubness")
#: Per-item terms of a ``method="hubness"`` fit are kept beside its JSON file:
#: ``db.standardizer.json`` -> ``db.standardizer.terms.npy``.
TERMS_SUFFIX = ".terms.npy"


def terms_path(path: str | Path) -> Path:
    """Where the per-item terms of the standardizer saved at ``path`` live."""
    path = Path(path)
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    return path.with_name(stem + TERMS_SUFFIX)


#: A fitted pair needs at least this many positive scores (a spread needs two).
MIN_PAIRS = 2
#: Below this std (in cosine units) a pair counts as zero variance: float32
#: cosines of distinct items differ by more.
MIN_STD = 1e-6


class Standardizer:
    """Fit per-modality-pair score statistics and z-standardize raw scores.

    Parameters
    ----------
    method:
        ``"paper"`` standardizes the raw cosine (Yamashita et al. 2025,
        exactly). ``"hubness"`` standardizes the hubness-corrected similarity
        ``2 s(q, c) - rho_c^a - r_q^b`` (CSLS with the stored items as the
        bank; :mod:`simstd.hubness`): every item gets a fitted term ``rho_c^a``
        per query modality ``a``, the mean of its ``hubness_k`` best cosines
        among the other stored items of ``a``.
    hubness_k:
        ``K`` of the hubness terms (CSLS's 10).
    hubness_bank:
        Items per modality the terms are measured against: above it, a seeded
        random bank of that size (``None``: always all items, exact, ``n^2``).
    hubness_scale:
        The per-pair scale ``beta_ab`` that makes the corrected scores of the
        modality pairs comparable: ``"tail"`` (default), the mean excess of
        the pair's cosines over their ``hubness_quantile`` (the scale of the
        extreme tail, where rankings live), or ``"pseudo"``, the z-score of
        the corrected score over pseudo positives (centred on their mean).
    hubness_quantile:
        The quantile of the tail scale (0.999).
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
        ``"auto"``: draw rounds until the standard error of
        every pair's mean and std is at most ``target_se`` of its std (about
        ``1/target_se**2`` queries per modality, 10,000 at the default 0.01;
        more for a heavy tail).
    target_se:
        Precision of ``sample="auto"``, in units of each pair's std.
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
        (of the raw cosine, or with ``method="hubness"`` of ``2u - r_q``)
    standard_error_ : (M, M, 2) float64, the sampling error of each pair's mean
        and std in units of its std (:func:`simstd.stats.sampling_errors`;
        NaN where unknown, e.g. after :meth:`merge`)
    dim_, model_, index_fingerprint_ : what the fit was made on (may be None)
    terms_ : (n_items, M) float32, ``method="hubness"`` only: ``rho`` of item
        id ``i`` for query modality ``modalities_[j]`` at ``[i, j]``
    centre_, scale_ : (M, M) float64, ``method="hubness"`` only: the map
        ``score = (2u - r_q - centre) / scale`` of each pair
    banks_ : dict modality -> :class:`simstd.hubness.Bank` the terms were measured against
    """

    def __init__(
        self,
        method: str = "paper",
        hubness_k: int = 10,
        hubness_bank: int | None = 4096,
        hubness_scale: str = "tail",
        hubness_quantile: float = 0.999,
        n_pseudo: int = 1,
        source: str = "pseudo",
        sample: int | str | None = 10_000,
        target_se: float = TARGET_SE,
        seed: int = 0,
        query_shift: float = 0.0,
        shift_k: int = 10,
    ) -> None:
        self.method = method
        self.hubness_k = hubness_k
        self.hubness_bank = hubness_bank
        self.hubness_scale = hubness_scale
        self.hubness_quantile = hubness_quantile
        self.n_pseudo = n_pseudo
        self.source = source
        self.sample = sample
        self.target_se = target_se
        self.seed = seed
        self.query_shift = query_shift
        self.shift_k = shift_k

    # ------------------------------------------------------------------ fitting
    #: Every parameter's allowed values, checked by one validator
    #: (simstd.validation.validate_params; scikit-learn's ``_parameter_constraints``).
    _parameter_constraints: dict = {
        "method": [Options(METHODS)],
        "hubness_k": [Interval(int, 1)],
        "hubness_bank": [Interval(int, 1), None],
        "hubness_scale": [Options(("tail", "pseudo"))],
        "hubness_quantile": [Interval(float, 0.5, 1, closed="left")],
        "n_pseudo": [Interval(int, 1)],
        "source": [Options(SOURCES)],
        "sample": [Interval(int, 1), None, Options((SAMPLE_AUTO,))],
        "target_se": [Interval(float, 0, 1, closed="neither")],
        "seed": [Interval(int, 0)],
        "query_shift": [Interval(float, 0)],
        "shift_k": [Interval(int, 1)],
    }

    def _check_params(self) -> None:
        validate_params(self, self._parameter_constraints)
        if self.method == "hubness":
            paper_only = [name for name, on in (("source='labeled'", self.source != "pseudo"),
                                                ("query_shift", bool(self.query_shift)),
                                                ("n_pseudo > 1", self.n_pseudo != 1)) if on]
            if paper_only:
                raise SimstdError(f"{', '.join(paper_only)} belong to the paper's method: use "
                                  f"Standardizer(method='paper', ...) (the default, method='hubness', has its own "
                                  "query term and fits on the stored items)")

    def fit(
        self,
        X: "Searchable | np.ndarray",
        modalities: Sequence[str] | None = None,
        *,
        queries: np.ndarray | None = None,
        query_modalities: Sequence[str] | str | None = None,
        positives: np.ndarray | None = None,
        terms: np.ndarray | None = None,
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

        With ``method="hubness"``, ``terms`` may hold per-item terms computed
        elsewhere (e.g. a Spark pass calling :func:`simstd.hubness.item_terms`
        per partition against the banks of :func:`simstd.hubness.fit_banks`):
        ``(n, M)`` float32, row = id, columns = sorted modalities.
        """
        self._check_params()
        searchable = as_searchable(X, modalities)
        if self.method == "hubness":
            if queries is not None or positives is not None:
                raise SimstdError("method='hubness' (the default) measures every stored item against the others: "
                                  "fit it on the store alone (no queries/positives), or use "
                                  "Standardizer(method='paper') with a query log or gold pairs")
            return self._fit_hubness(searchable, terms)
        if terms is not None:
            raise SimstdError('terms are per-item hubness terms: use them with Standardizer(method="hubness")')
        if self.source == "pseudo":
            if positives is not None:
                raise SimstdError('positives are gold pairs: use them with Standardizer(source="labeled")')
            qm, tm, scores = mine_pseudo_positives(
                searchable, queries, query_modalities, k=int(self.n_pseudo), sample=self.sample, seed=self.seed,
                target_se=float(self.target_se),
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

    def _fit_hubness(self, searchable: Searchable, terms: np.ndarray | None = None) -> "Standardizer":
        if count(searchable) == 0:
            raise SimstdError("the index is empty: add vectors before fitting")
        all_ids = np.sort(np.concatenate([np.asarray(searchable.ids(m)) for m in searchable.modalities]))
        if all_ids.dtype == object or not np.array_equal(all_ids, np.arange(len(all_ids))):
            raise SimstdError(f"method='hubness' keeps one term row per id and needs the ids 0..n-1; the "
                              f"{type(searchable).__name__} has other ids: compute the terms with "
                              "simstd.hubness.item_terms and carry them in the store")
        columns = sorted(searchable.modalities)
        banks = hubness.fit_banks(searchable, int(self.hubness_k), self.hubness_bank)
        if terms is None:
            terms = hubness.compute_terms(searchable, columns, banks, int(self.seed), all_ids)
        terms = np.asarray(terms, dtype=np.float32)
        if terms.shape != (len(all_ids), len(columns)) or not np.isfinite(terms).all():
            raise SimstdError(f"terms must be a finite ({len(all_ids)}, {len(columns)}) array (row = id, columns = "
                              f"{columns}), got shape {terms.shape}")
        col = {m: j for j, m in enumerate(columns)}
        qm, tm, v, cosines = hubness.pseudo_positive_scores(
            searchable, lambda ids, a: terms[ids, col[a]], int(self.hubness_k), self.sample, int(self.seed),
            target_se=float(self.target_se),
        )
        self._fit_pairs(qm, tm, v)
        if self.modalities_ != columns:
            raise SimstdError(f"pseudo positives cover {self.modalities_}, the store holds {columns}")
        self._set_terms(terms, banks)
        self.cosine_moments_ = self._pair_moments(qm, tm, cosines)
        if self.hubness_scale == "tail":
            self.centre_ = np.zeros_like(self.mean_)
            self.scale_ = hubness.tail_scales(searchable, columns, float(self.hubness_quantile), int(self.seed))
        else:
            self.centre_, self.scale_ = self.mean_.copy(), self.std_.copy()
        self.dim_ = int(searchable.dim)
        self.model_ = getattr(searchable, "model", None)
        self.index_fingerprint_ = getattr(searchable, "fingerprint", None)
        return self

    def _set_terms(self, terms: np.ndarray, banks: dict) -> None:
        self.terms_ = np.ascontiguousarray(terms, dtype=np.float32)
        self.banks_ = dict(banks)
        self._term_columns = {m: j for j, m in enumerate(self.modalities_)}
        self.terms_digest_ = hashlib.blake2b(self.terms_, digest_size=16).hexdigest()

    def item_terms(self, ids: np.ndarray, query_modality: str) -> np.ndarray:
        """``rho^a`` of the items ``ids`` for queries of modality ``a`` (``method="hubness"``)."""
        self._check_hubness()
        col = self._term_columns.get(query_modality)
        if col is None:
            raise NotFittedError(f"no hubness terms for queries of modality {query_modality!r} (fitted: "
                                 f"{list(self._term_columns)}); refit on data that includes it")
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.terms_)):
            raise SimstdError(f"ids must lie in 0..{len(self.terms_) - 1} (the items the hubness terms cover); "
                              "items added since the fit get theirs with extend_terms")
        return self.terms_[ids, col]

    def extend_terms(self, searchable: Searchable, ids: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        """Give new items (ids ``len(terms_)`` on) their terms against the fitted banks,
        without refitting anything else; returns their ``(n, M)`` terms."""
        self._check_hubness()
        ids = np.asarray(ids, dtype=np.int64)
        if not np.array_equal(ids, np.arange(len(self.terms_), len(self.terms_) + len(ids))):
            raise SimstdError(f"new items must take the ids {len(self.terms_)}.. in order, got {ids[:3]}...")
        new = hubness.compute_terms(searchable, self.modalities_, self.banks_, int(self.seed), ids, vectors)
        self._set_terms(np.concatenate([self.terms_, new]), self.banks_)
        return new

    def _check_hubness(self) -> None:
        self._check_fitted()
        if self.method != "hubness":
            raise SimstdError('per-item terms exist only in a Standardizer(method="hubness") fit')
        if not hasattr(self, "terms_"):
            raise CorruptFileError("this hubness fit was loaded without its per-item terms file (item_terms.npy "
                                   "of the index, or <name>.terms.npy beside the JSON); refit with `simstd fit`")

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
        self._check_params()
        if self.method == "hubness":
            raise SimstdError("fit_scores fits the paper's method from raw scores: use "
                              "Standardizer(method='paper').fit_scores(...); the default, method='hubness', needs "
                              "the store (fit(index)) to measure its per-item terms")
        return self._fit_pairs(query_modalities, target_modalities, scores)

    def _pair_moments(self, qm: np.ndarray, tm: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(n, mean, m2)`` ``(M, M)`` of ``scores`` per pair of ``modalities_``."""
        m = len(self.modalities_)
        code = {x: i for i, x in enumerate(self.modalities_)}
        pair = np.array([code[a] * m + code[b] for a, b in zip(qm.tolist(), tm.tolist())], dtype=np.int64)
        n, mean, m2 = pair_moments(pair, scores, m * m)
        return n.reshape(m, m), mean.reshape(m, m), m2.reshape(m, m)

    def cosine_moments(self, query_modality: str, target_modality: str) -> tuple[float, float]:
        """``(mean, std)`` of a pair's pseudo-positive *cosines* (each pseudo query's
        raw top-1, the paper's statistics): what the uncertainty model describes,
        for either method."""
        if self.method == "paper":
            return self.positive_moments(query_modality, target_modality)
        self._check_fitted()
        q, t = self._code(query_modality), self._code(target_modality)
        n, mean, m2 = (x[q, t] for x in self.cosine_moments_)
        if n < 2 or not m2 > 0:
            raise NotFittedError(f"too few pseudo positives of pair ({query_modality!r}, {target_modality!r}) "
                                 "for their cosine distribution; refit on more items")
        return float(mean), float(np.sqrt(m2 / n))

    def _fit_pairs(self, query_modalities, target_modalities, scores) -> "Standardizer":
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
        per_query = int(self.n_pseudo) if self.source == "pseudo" else 1  # a query's top-k are not independent
        for code in np.unique(pair):
            _n, se_mean, se_std = sampling_errors(scores[pair == code][:, None])
            self.standard_error_[code // m, code % m] = np.array([se_mean, se_std]) * np.sqrt(per_query)
        self.dim_ = None
        self.model_ = None
        self.index_fingerprint_ = None
        return self

    def check_degenerate(self) -> None:
        """Raise if a fitted modality pair cannot standardize: fewer than
        MIN_PAIRS positive scores, or (numerically) zero spread. ``simstd fit``
        and ``MixedIndex.save`` refuse such a fit: saved, it would make every
        query of that pair fail. (In memory it stays usable for its other pairs.)"""
        self._check_fitted()
        for row in self.table():
            pair = f"({row['query_modality']!r}, {row['target_modality']!r})"
            if row["n"] < MIN_PAIRS:
                raise SimstdError(
                    f"too few pseudo pairs for modality pair {pair}: {row['n']} (at least {MIN_PAIRS} are needed "
                    "to estimate a spread, thousands for a stable one); fit on more pseudo queries "
                    "(e.g. simstd fit --sample 10000, or --sample 0 for all items)"
                )
            if not row["std"] >= MIN_STD:
                raise SimstdError(
                    f"modality pair {pair} has zero variance: all {row['n']} pseudo-pair scores are "
                    f"{row['mean']:.6f}, so nothing can be standardized; the pseudo queries are probably copies "
                    "of one item or of the indexed items: fit on more, distinct pseudo queries"
                )

    def _set_stats(self, labels: list[str], n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> None:
        n = np.asarray(n, dtype=np.int64)
        seen = n > 0
        self.modalities_ = list(labels)
        self.n_ = n
        self.mean_ = np.where(seen, mean, np.nan)
        self.var_ = np.where(seen, np.divide(m2, n, out=np.zeros_like(m2, dtype=np.float64), where=seen), np.nan)
        self.std_ = np.sqrt(self.var_)
        self.standard_error_ = np.full(n.shape + (2,), np.nan)  # known only to a fit that saw the scores

    # ---------------------------------------------------------------- applying
    def _check_fitted(self) -> None:
        check_is_fitted(self, "n_", "call fit(index) or fit_scores(...) (CLI: simstd fit --index db.faiss) "
                                    "before transforming scores")

    def _code(self, label: str) -> int:
        try:
            return self.modalities_.index(label)
        except ValueError:
            raise NotFittedError(
                f"modality {label!r} was not seen when fitting (fitted modalities: {self.modalities_}); "
                "refit on data that includes it"
            ) from None

    def affine(self, query_modality: str, target_modality: str) -> tuple[float, float]:
        """Return ``(centre, scale)`` of a pair, raising if it cannot standardize: the
        standardized score is ``(score - centre) / scale``, with ``score`` the raw
        cosine (paper) or ``2u - r_q`` (hubness); for the paper these are the
        mean and std of the pseudo positives."""
        if self.method == "hubness":
            self._check_hubness()
            q, t = self._code(query_modality), self._code(target_modality)
            centre, scale = float(self.centre_[q, t]), float(self.scale_[q, t])
            if not (np.isfinite(centre) and scale > 0):
                raise NotFittedError(f"pair ({query_modality!r}, {target_modality!r}) has no hubness scale "
                                     "(too few items of those modalities); index more items and refit")
            return centre, scale
        return self.positive_moments(query_modality, target_modality)

    def positive_moments(self, query_modality: str, target_modality: str) -> tuple[float, float]:
        """``(mean, std)`` of a pair's positive scores (the score the method standardizes)."""
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
        ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return ``(scores - mean[q, t]) / std[q, t]`` elementwise.

        With ``method="hubness"`` pass ``ids``, the item id of every score:
        the scores become ``2u - r_q`` first (:func:`simstd.hubness.corrected_scores`),
        which needs, in each row, the query's ``hubness_k`` best items by
        ``u`` of every target modality present (e.g. all items).

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
        if self.method == "hubness":
            if ids is None:
                raise SimstdError('method="hubness" needs the item id of every score: transform(..., ids=...)')
            ids = np.broadcast_to(np.asarray(ids, dtype=np.int64), scores.shape)
            if qlab.size != 1:
                raise SimstdError('method="hubness" transforms one query modality at a time')
            rho = self.item_terms(ids, str(qlab[0]))
            scores = hubness.corrected_scores(scores, rho, ti, int(self.hubness_k))
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
        if self.method != "paper" or other.method != "paper":
            raise SimstdError('merge pools the paper\'s statistics; a method="hubness" fit holds per-item terms '
                              "of one store: fit it on the whole store (its banks are sampled, so that is cheap)")
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
        merged = Standardizer(n_pseudo=self.n_pseudo, source=self.source, sample=self.sample,
                              target_se=self.target_se, seed=self.seed,
                              query_shift=self.query_shift, shift_k=self.shift_k)
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
                            **({"se_mean": float(self.standard_error_[i, j, 0]),
                                "se_std": float(self.standard_error_[i, j, 1])}
                               if np.isfinite(self.standard_error_[i, j]).all() else {}),
                            **({"centre": float(self.centre_[i, j]), "scale": float(self.scale_[i, j])}
                               if self.method == "hubness" else {}),
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
                "method": self.method,
                "hubness_k": int(self.hubness_k),
                "hubness_bank": None if self.hubness_bank is None else int(self.hubness_bank),
                "hubness_scale": self.hubness_scale,
                "hubness_quantile": float(self.hubness_quantile),
                "n_pseudo": int(self.n_pseudo),
                "source": self.source,
                "sample": self.sample if self.sample in (None, SAMPLE_AUTO) else int(self.sample),
                "target_se": float(self.target_se),
                "seed": int(self.seed),
                "query_shift": float(self.query_shift),
                "shift_k": int(self.shift_k),
            },
            "modalities": list(self.modalities_),
            "pairs": self.table(),
            **({"hubness": self._hubness_dict()} if self.method == "hubness" else {}),
        }

    def _hubness_dict(self) -> dict:
        self._check_hubness()
        return {
            "terms_file": TERMS_SUFFIX,
            "n_items": int(len(self.terms_)),
            "terms_digest": self.terms_digest_,
            "banks": {m: {"population": b.population, "size": b.size, "k": b.k} for m, b in self.banks_.items()},
            # The paper's statistics of the same pseudo queries (raw top-1 cosines), for the uncertainty model.
            "cosine_pairs": [
                {"query_modality": q, "target_modality": t, "n": int(n[i, j]), "mean": float(mean[i, j]),
                 "var": float(m2[i, j] / n[i, j])}
                for n, mean, m2 in [self.cosine_moments_]
                for i, q in enumerate(self.modalities_) for j, t in enumerate(self.modalities_) if n[i, j] > 0
            ],
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "Standardizer":
        fix = "refit with `simstd fit` to rewrite it"
        check_format(data, source, FORMAT, FORMAT_VERSION, "simstd standardizer", fix)
        try:
            # Files written before the method setting existed are the paper's method.
            std = cls(**{"method": "paper", **data["settings"]})
            labels = [check_label(x) for x in data["modalities"]]
            m = len(labels)
            n = np.zeros((m, m), dtype=np.int64)
            mean = np.zeros((m, m))
            m2 = np.zeros((m, m))
            centre, scale = np.full((m, m), np.nan), np.full((m, m), np.nan)
            for row in data["pairs"]:
                i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
                n[i, j] = int(row["n"])
                mean[i, j] = float(row["mean"])
                var = float(row["var"])
                if n[i, j] < 1 or not np.isfinite(mean[i, j]) or not (np.isfinite(var) and var >= 0):
                    raise CorruptFileError(
                        f"{source} is invalid: pair ({row['query_modality']!r}, {row['target_modality']!r}) has "
                        f"n={n[i, j]}, mean={row['mean']!r}, var={row['var']!r} (need n >= 1, a finite mean and "
                        f"a finite variance >= 0); {fix}"
                    )
                m2[i, j] = var * n[i, j]
                if std.method == "hubness":
                    centre[i, j], scale[i, j] = float(row["centre"]), float(row["scale"])
                    if not (np.isfinite(centre[i, j]) and scale[i, j] > 0):
                        raise CorruptFileError(f"{source} is invalid: pair ({row['query_modality']!r}, "
                                               f"{row['target_modality']!r}) has hubness scale {row['scale']!r}; {fix}")
            std._set_stats(labels, n, mean, m2)
            for row in data["pairs"]:
                if "se_mean" in row:
                    i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
                    std.standard_error_[i, j] = float(row["se_mean"]), float(row["se_std"])
            if std.method == "hubness":
                std.centre_, std.scale_ = centre, scale
            std.dim_ = data.get("dim")
            std.model_ = data.get("model")
            std.index_fingerprint_ = data.get("index_fingerprint")
            if std.method == "hubness":
                info = data["hubness"]
                std._pending_terms = (int(info["n_items"]), str(info["terms_digest"]))
                std.banks_ = {m: hubness.Bank(int(b["population"]), int(b["size"]), int(b["k"]))
                              for m, b in info["banks"].items()}
                cn, cmean, cm2 = np.zeros((m, m), np.int64), np.full((m, m), np.nan), np.zeros((m, m))
                for row in info["cosine_pairs"]:
                    i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
                    cn[i, j], cmean[i, j] = int(row["n"]), float(row["mean"])
                    cm2[i, j] = float(row["var"]) * cn[i, j]
                std.cosine_moments_ = (cn, cmean, cm2)
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{source} is malformed ({exc!r}); {fix}") from None
        return std

    def save_terms(self, path: str | Path) -> None:
        """Write the per-item terms (``method="hubness"``) as a ``.npy`` file, atomically."""
        self._check_hubness()
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, self.terms_)

    def load_terms(self, path: str | Path) -> "Standardizer":
        """Read the per-item terms saved by :meth:`save_terms` and check them against the JSON."""
        n, digest = getattr(self, "_pending_terms", (None, None))
        fix = "refit with `simstd fit` to rewrite it"
        try:
            terms = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise CorruptFileError(f"hubness terms file {path} is missing; {fix}") from None
        except (OSError, ValueError) as exc:
            raise CorruptFileError(f"cannot read hubness terms file {path} ({exc}); {fix}") from None
        if terms.dtype != np.float32 or terms.shape != (n, len(self.modalities_)):
            raise CorruptFileError(f"hubness terms file {path} holds {terms.dtype} {terms.shape}, expected float32 "
                                   f"({n}, {len(self.modalities_)}); {fix}")
        self._set_terms(terms, self.banks_)
        if digest is not None and self.terms_digest_ != digest:
            del self.terms_
            raise CorruptFileError(f"hubness terms file {path} does not belong to its standardizer file; {fix}")
        return self

    def save(self, path: str | Path, *, terms: bool = True) -> None:
        """Write the fit as a small human-readable JSON file (atomically); a
        ``method="hubness"`` fit also writes its per-item terms beside it
        (:func:`terms_path`) unless ``terms=False`` (an index version stores
        them as its own named file, ``item_terms.npy``)."""
        data = self.to_dict()
        if self.method == "hubness" and terms:
            self.save_terms(terms_path(path))
        write_json_atomic(path, data)

    @classmethod
    def load(cls, path: str | Path, *, terms: bool = True) -> "Standardizer":
        """Read a fit written by :meth:`save` (with its terms file, unless ``terms=False``:
        then :meth:`load_terms` must follow before a hubness fit can serve)."""
        data = read_json(path, "standardizer file", "run `simstd fit` to (re)create it")
        std = cls.from_dict(data, str(path))
        if std.method == "hubness" and terms:
            std.load_terms(terms_path(path))
        return std

    def __repr__(self) -> str:
        state = f", modalities={self.modalities_}" if hasattr(self, "n_") else ", unfitted"
        shift = f", query_shift={self.query_shift}, shift_k={self.shift_k}" if self.query_shift else ""
        method = f"method={self.method!r}, " + (f"hubness_k={self.hubness_k}, " if self.method == "hubness" else "")
        return (f"Standardizer({method}n_pseudo={self.n_pseudo}, source={self.source!r}, sample={self.sample!r}"
                f"{shift}{state})")

    def describe(self) -> dict:
        """What is fitted, for people: the method, its settings (K, sample, target
        error), a one-line summary and the work to cite (shown by ``simstd fit``,
        ``simstd info``, the service's ``/info`` and its page)."""
        hub = self.method == "hubness"
        settings = {**({"hubness_k": int(self.hubness_k)} if hub else {}),
                    "sample": self.sample if self.sample in (None, SAMPLE_AUTO) else int(self.sample),
                    "target_se": float(self.target_se)}
        if self.source == "labeled":
            sample = "on labeled pairs"
        elif self.sample == SAMPLE_AUTO:  # the target error sizes only an adaptive sample
            sample = f"sample auto: pseudo queries drawn until every pair's ± std <= {self.target_se:g}"
        elif self.sample is None:
            sample = "sample: every item as a pseudo query"
        else:
            sample = f"sample: up to {int(self.sample):,} pseudo queries per modality"
        name = (f"hubness: CSLS-corrected cosine (K={int(self.hubness_k)}), standardized" if hub
                else "paper: standardized cosine")
        if self.query_shift:
            settings.update(query_shift=float(self.query_shift), shift_k=int(self.shift_k))
            name += f", query shift {self.query_shift:g} (K={int(self.shift_k)})"
        cite = ("CSLS (Conneau et al. 2018) hubness-corrected, standardized on pseudo positives "
                "(Yamashita et al. 2025)" if hub else "Yamashita, Shirafuji and Saito 2025")
        return {"method": self.method, "settings": settings, "summary": f"{name}; {sample}", "citation": cite}


def _broadcast_labels(labels: Sequence[str] | str, size: int, name: str) -> np.ndarray:
    if isinstance(labels, str):
        return np.full(size, labels, dtype=object)
    arr = np.asarray(labels, dtype=object).ravel()
    if arr.size != size:
        raise SimstdError(f"{name} has {arr.size} labels for {size} scores; pass one label per score")
    return arr
