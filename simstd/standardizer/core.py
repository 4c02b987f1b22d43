"""The Standardizer: per-(query modality, target modality) pair statistics, shared by every method.

One estimator class, kept in one file (about 670 lines, a third of them the
parameter and attribute docs): one job, the pairs' statistics, whose
method-specific parts live in the backends, its file format in :mod:`.io` and
the strata's grouping in :mod:`simstd.strata`; splitting the class itself
would scatter the estimator's constructor, fit and transform over files.

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

import inspect
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..engines import Searchable, as_searchable
from ..errors import FingerprintMismatchError, NotFittedError, SimstdError, StaleFitWarning
from ..fileio import read_json, write_json_atomic
from ..stats import SAMPLE_AUTO, TARGET_SE, merge_moments, pair_moments, sampling_errors
from ..strata import MIN_STRATUM, StrataSpec, fit_strata, view as strata_view
from ..validation import Interval, Options, check_is_fitted, check_label, validate_params
from .corrected import terms_path
from .io import fit_from_dict, fit_to_dict
from .method import Method
from .registry import METHODS, backend

SOURCES = ("pseudo", "labeled")
#: The method ``Standardizer()`` fits.
DEFAULT_METHOD = "hubness"


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
        Precision of ``sample="auto"``, in units of each pair's std. The
        tail-scaled hubness default ranks by its terms and per-pair tail
        scales, not by the pseudo positives' moments: its rounds are sized by
        the pseudo positives' cosines (what the uncertainty model uses), and
        the tail scale states its own error (``scale_error_``).
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
    strata:
        Statistics per group inside a modality (:mod:`simstd.strata`): a
        metadata field (one stratum per value, in each modality whose items
        carry it) or ``"text:length"`` (token-count bins of the items' text:
        0-4, 5-9, 10-14, 15-29, 30+). Every stratum is then treated as a
        modality for the statistics: pairs are keyed by (query stratum,
        target stratum), the hubness terms by query stratum, and a search
        ranks each stratum's own top-k (exact on Flat). ``None``: off.
    min_stratum:
        The sharing rule: a stratum with fewer items shares the statistics
        of its modality's largest stratum (joins it); when no stratum of a
        modality reaches it, the modality stays whole (unstratified
        statistics). 0: no sharing, and a stratum of fewer than 2 items is
        an error. ``fit`` and ``info`` list every stratum that shares.

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
    scale_error_ : (M, M) float64, ``method="hubness"`` only: the sampling
        error of each pair's scale in units of itself (NaN where unknown)
    banks_ : dict modality -> :class:`simstd.hubness.Bank` the terms were measured against
    strata_ : :class:`simstd.strata.Strata` or None; with strata, ``modalities_``
        (and every array above) are indexed by stratum labels (``text:5-9``)
    """

    def __init__(
        self,
        method: str = DEFAULT_METHOD,
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
        strata: str | None = None,
        min_stratum: int = MIN_STRATUM,
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
        self.strata = strata
        self.min_stratum = min_stratum

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
        "min_stratum": [Interval(int, 0)],
    }

    def _check_params(self) -> None:
        validate_params(self, self._parameter_constraints)
        if self.strata is not None:
            StrataSpec.parse(self.strata)
        backend(self.method).check_settings(self)

    @property
    def backend_(self) -> Method:
        """The method's backend (:mod:`simstd.standardizer.method`), picked by ``method``."""
        return backend(self.method)

    def fit(
        self,
        X: "Searchable | np.ndarray",
        modalities: Sequence[str] | None = None,
        *,
        queries: np.ndarray | None = None,
        query_modalities: Sequence[str] | str | None = None,
        positives: np.ndarray | None = None,
        terms: np.ndarray | None = None,
        metadata: "Sequence[dict | None] | dict | None" = None,
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

        With ``strata``, the items' metadata is read from ``X``'s payload store
        (a MixedIndex's SQLite sidecar) or from ``metadata`` (one payload dict
        per id, or a mapping id -> payload); the pseudo queries are the stored
        items (no ``queries``/``positives``).
        """
        self._check_params()
        searchable = as_searchable(X, modalities)
        fitted_on = searchable
        if self.strata is not None:
            if queries is not None or positives is not None:
                raise SimstdError("a stratified fit draws its pseudo queries from the stored items, whose strata it "
                                  "knows; fit without queries/positives, or without strata")
            fitted_on = fit_strata(searchable, self.strata, int(self.min_stratum), metadata)
        elif metadata is not None:
            raise SimstdError("metadata is read for strata only: pass strata='FIELD' (or 'text:length') too")
        self.backend_.fit(self, fitted_on, queries=queries, query_modalities=query_modalities,
                          positives=positives, terms=terms)
        self.strata_ = getattr(fitted_on, "strata", None)
        self.dim_ = int(searchable.dim)
        self.model_ = getattr(searchable, "model", None)
        self.index_fingerprint_ = getattr(searchable, "fingerprint", None)
        return self

    # ------------------------------------------------------------ item terms
    @property
    def has_item_terms(self) -> bool:
        """Whether this method fits a term per item and query modality (``method="hubness"``),
        which a store keeps beside each vector (FAISS shards: as extra dimensions)."""
        return self.backend_.has_item_terms

    @property
    def query_depth(self) -> int:
        """Best candidates per target modality a query's result needs beyond ``k``
        (the method's query-side term; 0 for the plain paper map)."""
        return self.backend_.query_depth(self)

    def _terms_backend(self):
        self._check_fitted()
        if not self.has_item_terms:
            raise SimstdError(f"per-item terms exist only in fits of a method that has them "
                              f"(method='hubness'); this fit is method={self.method!r}")
        return self.backend_

    def item_terms(self, ids: np.ndarray, query_modality: str) -> np.ndarray:
        """``rho^a`` of the items ``ids`` for queries of modality ``a`` (``method="hubness"``)."""
        return self._terms_backend().item_terms(self, ids, query_modality)

    def extend_terms(self, searchable: Searchable, ids: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        """Give new items (ids ``len(terms_)`` on) their terms against the fitted banks,
        without refitting anything else; returns their ``(n, M)`` terms."""
        if getattr(self, "strata_", None) is not None:  # the banks are strata of the stored items
            searchable = strata_view(searchable, self.strata_)
        return self._terms_backend().extend_terms(self, searchable, ids, vectors)

    def strata_view(self, searchable: Searchable,
                    metadata: "Sequence[dict | None] | dict | None" = None) -> Searchable:
        """``searchable`` as this fit sees it: its strata as modalities (a stratified fit;
        :class:`simstd.strata.StrataView`), else itself."""
        self._check_fitted()
        strata = getattr(self, "strata_", None)
        return searchable if strata is None else strata_view(searchable, strata, metadata)

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
        if self.strata is not None:
            raise SimstdError("fit_scores takes the labels as given: pass stratum labels (e.g. 'text:5-9') as the "
                              "modalities, with strata=None")
        if not self.backend_.mergeable:
            raise SimstdError(f"fit_scores fits the paper's method from raw scores: use "
                              f"Standardizer(method='paper').fit_scores(...); method={self.method!r} needs "
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
        self._check_fitted()
        return self.backend_.cosine_moments(self, query_modality, target_modality)

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
        self.strata_ = None
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
            self.affine(row["query_modality"], row["target_modality"])  # the method's own map must exist too

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
        self._check_fitted()
        return self.backend_.affine(self, query_modality, target_modality)

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
        if self.has_item_terms and qlab.size != 1:
            raise SimstdError(f"method={self.method!r} transforms one query modality at a time")
        scores = self.backend_.scores(self, scores, str(qlab[0]), ti, ids)
        z = (scores - mean[qi, ti]) / std[qi, ti]
        return self.backend_.adjust(self, z, ti)

    # ----------------------------------------------------------------- merging
    def merge(self, other: "Standardizer") -> "Standardizer":
        """Pool two fits exactly (Chan, Golub and LeVeque's parallel variance).

        Fitting on shards and merging gives the statistics of one fit on the
        whole, up to float rounding. Returns a new Standardizer with this
        fit's settings. ``dim_``, ``model_`` and ``index_fingerprint_`` keep
        their value when both fits agree and become None when they differ
        (a fit of scores alone records none); fits of different dimensions or
        models are refused: their scores are not on one scale.
        """
        self._check_fitted()
        other._check_fitted()
        if not (self.backend_.mergeable and other.backend_.mergeable):
            raise SimstdError(f"merge pools the paper's statistics; a method={self.method!r} fit holds per-item "
                              "terms of one store: fit it on the whole store (its banks are sampled, so that is "
                              "cheap)")
        if getattr(self, "strata_", None) is not None or getattr(other, "strata_", None) is not None:
            raise SimstdError("merge pools unstratified fits; a stratified fit keys its pairs by strata of one "
                              "store: fit the strata on the whole store")
        for name, what in (("dim_", "dimension"), ("model_", "model")):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None and mine != theirs:
                raise SimstdError(f"cannot merge a fit on {what} {mine!r} with a fit on {what} {theirs!r}: their "
                                  f"scores are not on one scale; merge only fits of embeddings from one model "
                                  f"(refit the other on the same index)")
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
        # Every setting of this fit (method included: the merged fit stays the paper's
        # whatever the library default is).
        merged = Standardizer(**{name: getattr(self, name) for name in inspect.signature(Standardizer).parameters})
        merged._set_stats(labels, n, mean, m2)
        merged.strata_ = None
        for name in ("dim_", "model_", "index_fingerprint_"):  # the values, when both fits agree
            mine = getattr(self, name)
            setattr(merged, name, mine if mine == getattr(other, name) else None)
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
                            **self.backend_.table_row(self, i, j),
                        }
                    )
        return rows

    # ------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        """The fit as a JSON-ready document (:mod:`simstd.standardizer.io`)."""
        return fit_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "Standardizer":
        """A fit from the document :meth:`to_dict` wrote; ``source`` names it in errors."""
        return fit_from_dict(cls, data, source)

    def save_terms(self, path: str | Path) -> None:
        """Write the per-item terms (``method="hubness"``) as a ``.npy`` file, atomically."""
        self._terms_backend().save_terms(self, path)

    def load_terms(self, path: str | Path) -> "Standardizer":
        """Read the per-item terms saved by :meth:`save_terms` and check them against the JSON."""
        self._terms_backend().load_terms(self, path)
        return self

    def save(self, path: str | Path, *, terms: bool = True) -> None:
        """Write the fit as a small human-readable JSON file (atomically); a
        ``method="hubness"`` fit also writes its per-item terms beside it
        (:func:`terms_path`) unless ``terms=False`` (an index version stores
        them as its own named file, ``item_terms.npy``)."""
        data = self.to_dict()
        if self.has_item_terms and terms:
            self.save_terms(terms_path(path))
        write_json_atomic(path, data)

    @classmethod
    def load(cls, path: str | Path, *, terms: bool = True) -> "Standardizer":
        """Read a fit written by :meth:`save` (with its terms file, unless ``terms=False``:
        then :meth:`load_terms` must follow before a hubness fit can serve)."""
        data = read_json(path, "standardizer file", "run `simstd fit` to (re)create it")
        std = cls.from_dict(data, str(path))
        if std.has_item_terms and terms:
            std.load_terms(terms_path(path))
        return std

    def __repr__(self) -> str:
        state = f", modalities={self.modalities_}" if hasattr(self, "n_") else ", unfitted"
        if self.strata is not None:
            state = f", strata={self.strata!r}" + state
        shift = f", query_shift={self.query_shift}, shift_k={self.shift_k}" if self.query_shift else ""
        method = f"method={self.method!r}, " + (f"hubness_k={self.hubness_k}, " if self.has_item_terms else "")
        return (f"Standardizer({method}n_pseudo={self.n_pseudo}, source={self.source!r}, sample={self.sample!r}"
                f"{shift}{state})")

    def describe(self) -> dict:
        """What is fitted, for people: the method, its settings (K, sample, target
        error), a one-line summary and the work to cite (shown by ``simstd fit``,
        ``simstd info``, the service's ``/info`` and its page)."""
        method = self.backend_
        settings = {**method.describe(self),
                    "sample": self.sample if self.sample in (None, SAMPLE_AUTO) else int(self.sample),
                    "target_se": float(self.target_se)}
        if self.source == "labeled":
            sample = "on labeled pairs"
        elif self.sample == SAMPLE_AUTO and self.has_item_terms and self.hubness_scale == "tail":
            # the ranking uses the terms and the tail scale; the pseudo positives' cosines size the sample
            sample = (f"sample auto: pseudo queries drawn until every pair's pseudo-positive cosine ± std <= "
                      f"{self.target_se:g}")
        elif self.sample == SAMPLE_AUTO:  # the target error sizes only an adaptive sample
            sample = f"sample auto: pseudo queries drawn until every pair's ± std <= {self.target_se:g}"
        elif self.sample is None:
            sample = "sample: every item as a pseudo query"
        else:
            sample = f"sample: up to {int(self.sample):,} pseudo queries per modality"
        out = {"method": self.method, "settings": settings, "summary": f"{method.summary(self)}; {sample}",
               "citation": method.citation}
        strata = getattr(self, "strata_", None)
        if strata is not None:
            settings.update(strata=self.strata, min_stratum=int(self.min_stratum))
            out["strata"] = strata.describe()
            out["strata_shared"] = strata.notes()
        return out


def _broadcast_labels(labels: Sequence[str] | str, size: int, name: str) -> np.ndarray:
    if isinstance(labels, str):
        return np.full(size, labels, dtype=object)
    arr = np.asarray(labels, dtype=object).ravel()
    if arr.size != size:
        raise SimstdError(f"{name} has {arr.size} labels for {size} scores; pass one label per score")
    return arr
