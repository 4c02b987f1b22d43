"""Score post-processing methods for mixed-modality retrieval, behind one interface.

Every method is a small fitted object (:class:`ScoreMethod`)::

    method = make_method("simstd-index").fit(corpus, corpus_modalities)
    Z = method.scores(queries, "text")        # (n_queries, n_corpus), comparable across modalities

``fit`` sees the indexed items and, for methods that need them, a *query log*
(``queries``/``query_modalities``: unlabeled past queries, never the queries
being evaluated) or gold pairs (``positives``, only the labeled oracle).
``transform(raw, queries, query_modality)`` is the same as ``scores`` when the
raw cosine matrix is already at hand (the evaluation computes it once).

Names understood by :func:`make_method`: the bases in :data:`BASES` and
``WRAPPER+BASE`` for the re-scoring methods in :data:`WRAPPERS` applied on top
of a base's scores (``nnn`` alone means ``nnn+raw``), e.g. ``csls+simstd-index``.

Methods marked ``modality_affine`` map every score of a query to
``a * s + b`` with ``a > 0`` depending only on the query and the target
modality, so they never reorder items of one modality: on a one-modality
search they return exactly the raw ranking.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .errors import SimstdError
from .standardizer import Standardizer
from .stats import topk_mean
from .validation import BOOLEAN, Interval, Options, as_embeddings, check_is_fitted, check_label, validate_params


class ScoreMethod:
    """Base class: turns raw cosine scores into scores comparable across modalities."""

    #: short name used by the CLI and the reports
    name = "base"
    #: ``fit`` needs a query log (``queries`` and ``query_modalities``)
    needs_log = False
    #: ``fit`` needs gold pairs (``positives``): an oracle, not label-free
    needs_labels = False
    #: each (query, target modality) gets ``a * s + b`` with ``a > 0``
    modality_affine = False
    #: ``{parameter: [allowed constraints]}`` (simstd.validation.validate_params);
    #: subclasses add theirs, merged along the MRO.
    _parameter_constraints: dict = {}

    def _check_params(self, **params: object) -> None:
        table: dict = {}
        for cls in reversed(type(self).__mro__):
            table.update(cls.__dict__.get("_parameter_constraints", {}))
        validate_params(self, {name: table[name] for name in params}, params)

    # ------------------------------------------------------------- fitting
    def fit(
        self,
        corpus: np.ndarray,
        corpus_modalities: Sequence[str],
        *,
        queries: np.ndarray | None = None,
        query_modalities: Sequence[str] | str | None = None,
        positives: np.ndarray | None = None,
    ) -> "ScoreMethod":
        """Fit on the indexed items (``corpus``, one modality label per row).

        ``queries``/``query_modalities`` is a query log (unlabeled); with
        ``positives`` (``(P, 2)`` rows of ``queries`` and corpus ids), gold pairs.
        """
        X = as_embeddings(corpus, "corpus")
        labels = np.asarray(corpus_modalities, dtype=object)
        if labels.shape != (len(X),):
            raise SimstdError(f"got {labels.size} corpus modality labels for {len(X)} rows; pass one per row")
        for m in set(labels.tolist()):
            check_label(m)
        self.corpus_ = X.astype(np.float64)
        self.corpus_modalities_ = labels.astype(str)
        self.modalities_ = sorted(set(self.corpus_modalities_.tolist()))
        self.columns_ = {m: np.flatnonzero(self.corpus_modalities_ == m) for m in self.modalities_}
        log = None
        if queries is not None:
            Q = as_embeddings(queries, "query log", X.shape[1]).astype(np.float64)
            if query_modalities is None:
                raise SimstdError("pass the modality of the query log (query_modalities)")
            qm = (
                np.full(len(Q), check_label(query_modalities), dtype=object)
                if isinstance(query_modalities, str)
                else np.asarray(query_modalities, dtype=object)
            )
            if qm.shape != (len(Q),):
                raise SimstdError(f"got {qm.size} query modalities for {len(Q)} queries; pass one per query")
            log = (Q, qm.astype(str))
        elif self.needs_log:
            raise SimstdError(
                f"method {self.name!r} needs a query log: pass queries= and query_modalities= "
                "(unlabeled past queries, not the queries you evaluate)"
            )
        if self.needs_labels and positives is None:
            raise SimstdError(f"method {self.name!r} uses gold pairs: pass positives= (an (P, 2) array)")
        self._fit(log, positives)
        return self

    def _fit(self, log: tuple[np.ndarray, np.ndarray] | None, positives: np.ndarray | None) -> None:
        pass

    # ------------------------------------------------------------- scoring
    def scores(self, queries: np.ndarray, query_modality: str) -> np.ndarray:
        """``(n_queries, n_corpus)`` scores of queries of one modality against every indexed item."""
        Q = self._queries(queries)
        return self.transform(Q @ self.corpus_.T, Q, query_modality)

    def transform(self, raw: np.ndarray, queries: np.ndarray, query_modality: str) -> np.ndarray:
        """The method's scores given the raw cosine matrix ``raw = queries @ corpus.T``."""
        raise NotImplementedError

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return as_embeddings(queries, "queries", self.corpus_.shape[1]).astype(np.float64)

    def _check_fitted(self) -> None:
        check_is_fitted(self, "corpus_", f"call fit(corpus, corpus_modalities) first (method {self.name!r})")

    def _need_modality(self, modality: str, where: dict, what: str) -> None:
        if modality not in where:
            raise SimstdError(
                f"method {self.name!r} has no {what} for modality {modality!r} (it knows {sorted(where)}); "
                "fit it on a corpus or query log that contains that modality"
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# ----------------------------------------------------------------------- bases
class Raw(ScoreMethod):
    """Raw cosine similarity, no post-processing (the baseline every VLM index uses)."""

    name = "raw"
    modality_affine = True

    def transform(self, raw, queries, query_modality):
        return np.asarray(raw, dtype=np.float64)


class MeanCentering(ScoreMethod):
    """GR-CLIP: remove each modality's mean embedding, renormalise, then cosine.

    Li, Zhang, Wang, Liang, Schmidt and Yeung-Levy, "Closing the Modality Gap
    for Mixed Modality Search" (arXiv:2507.19054, 2025). With ``mu_m`` the mean
    of the embeddings of modality ``m``, every vector ``x`` of modality ``m``
    becomes ``(x - mu_m) / ||x - mu_m||``. The means come from the indexed
    items (no labels); a query modality absent from the corpus takes its mean
    from the query log. Reorders items within a modality (not affine).
    """

    name = "gr-clip"

    def _fit(self, log, positives):
        self.means_ = {m: self.corpus_[c].mean(axis=0) for m, c in self.columns_.items()}
        if log is not None:
            for m in set(log[1].tolist()) - set(self.means_):
                self.means_[m] = log[0][log[1] == m].mean(axis=0)
        self.centred_ = self._centre(self.corpus_, self.corpus_modalities_)

    def _centre(self, X: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = X - np.stack([self.means_[m] for m in labels])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        if (norms == 0).any():
            raise SimstdError("a vector equals its modality's mean embedding; it has no direction after centring")
        return out / norms

    def scores(self, queries, query_modality):
        Q = self._queries(queries)
        return self.transform(None, Q, query_modality)

    def transform(self, raw, queries, query_modality):
        self._need_modality(query_modality, self.means_, "mean embedding")
        Q = np.asarray(queries, dtype=np.float64)
        return self._centre(Q, np.full(len(Q), query_modality)) @ self.centred_.T


class PairZScore(ScoreMethod):
    """z-score over *all* scores of each (query modality, target modality) pair.

    Classic score normalisation for merging ranked lists ("z-score" of
    Montague and Aslam, "Relevance Score Normalization for Metasearch", CIKM
    2001), applied per modality pair: ``z = (s - m_ab) / sd_ab`` where ``m_ab``
    and ``sd_ab`` are the mean and standard deviation of the cosine between
    every indexed item of modality ``a`` and every other indexed item of
    modality ``b``. Computed exactly from first and second moments:
    ``m_ab = mu_a . mu_b`` and ``E[s^2] = <M_a, M_b>`` with ``M = E[x x^T]``
    (self pairs removed when ``a == b``). Label-free.
    """

    name = "zscore-all"
    modality_affine = True

    def _fit(self, log, positives):
        mom = {}
        for m, c in self.columns_.items():
            X = self.corpus_[c]
            sq = np.einsum("ij,ij->i", X, X)
            mom[m] = (len(X), X.sum(axis=0), X.T @ X, sq.sum(), (sq**2).sum())
        self.stats_ = {}
        for a, (na, sa, Ma, sqa, sq2a) in mom.items():
            for b, (nb, sb, Mb, _, _) in mom.items():
                total, total2, pairs = sa @ sb, float(np.sum(Ma * Mb)), na * nb
                if a == b:  # drop the n self pairs x.x
                    total, total2, pairs = total - sqa, total2 - sq2a, na * (na - 1)
                if pairs < 2:
                    continue
                mean = total / pairs
                var = max(total2 / pairs - mean**2, 0.0)
                if var > 0:
                    self.stats_[a, b] = (mean, np.sqrt(var))

    def transform(self, raw, queries, query_modality):
        out = np.empty_like(raw, dtype=np.float64)
        for m, c in self.columns_.items():
            self._need_modality((query_modality, m), self.stats_, "score statistics")
            mean, sd = self.stats_[query_modality, m]
            out[:, c] = (raw[:, c] - mean) / sd
        return out


class PseudoStandardization(ScoreMethod):
    """Similarity standardization with pseudo-positive (or labeled) pairs.

    Yamashita, Shirafuji and Saito, "Bridging the Modality Gap by Similarity
    Standardization with Pseudo-Positive Samples" (PACLIC 2025,
    arXiv:2511.22141). ``z = (s - mean_qt) / std_qt`` with the mean and std of
    positive-pair scores of (query modality q, target modality t), via
    :class:`simstd.Standardizer`. ``source``:

    * ``"index"`` - pseudo queries are the indexed items (each item's own match
      excluded), pseudo positives their top-``n_pseudo`` neighbours per modality;
    * ``"log"`` - pseudo queries are the query log;
    * ``"labeled"`` - gold pairs (an oracle: uses labels); modality pairs
      without any gold pair (e.g. image->image when all gold is cross-modal)
      fall back to index pseudo pairs.

    ``query_shift`` > 0 selects the query-adaptive variant
    (:attr:`simstd.Standardizer.query_shift`).
    """

    modality_affine = True

    _parameter_constraints = {
        "source": [Options(("index", "log", "labeled"))],
        "n_pseudo": [Interval(int, 1)],
        "query_shift": [Interval(float, 0)],
        "shift_k": [Interval(int, 1)],
    }

    def __init__(self, source: str = "index", n_pseudo: int = 1, *, query_shift: float = 0.0,
                 shift_k: int = 10) -> None:
        self._check_params(source=source, n_pseudo=n_pseudo, query_shift=query_shift, shift_k=shift_k)
        self.source = source
        self.n_pseudo = n_pseudo
        self.query_shift = query_shift
        self.shift_k = shift_k
        self.needs_log = source == "log"
        self.needs_labels = source == "labeled"
        self.name = "simstd-" + source + (f"-top{n_pseudo}" if n_pseudo != 1 else "")
        if query_shift:
            self.name = "simstd-qshift" if (source, n_pseudo, query_shift, shift_k) == ("index", 1, 0.5, 10) \
                else self.name + f"-qshift[k={shift_k},w={query_shift:g}]"

    def _fit(self, log, positives):
        std = Standardizer(
            method="paper",  # the paper's method, whatever the library default becomes
            n_pseudo=self.n_pseudo,
            source="labeled" if self.source == "labeled" else "pseudo",
            sample=None,
            **({"query_shift": self.query_shift, "shift_k": self.shift_k} if self.query_shift else {}),
        )
        if self.source == "index":
            std.fit(self.corpus_, self.corpus_modalities_)
        elif self.source == "log":
            std.fit(self.corpus_, self.corpus_modalities_, queries=log[0], query_modalities=log[1])
        else:
            if log is None:
                raise SimstdError("the labeled method needs the queries of its gold pairs (queries=)")
            std = _labeled_with_pseudo_fallback(self.corpus_, self.corpus_modalities_, log, positives)
        self.standardizer_ = std

    def transform(self, raw, queries, query_modality):
        return self.standardizer_.transform(raw, query_modality, self.corpus_modalities_[None, :])


def _labeled_with_pseudo_fallback(corpus, labels, log, positives) -> Standardizer:
    from .engines import ArraySearcher
    from .mining import labeled_pair_scores, mine_pseudo_positives

    index = ArraySearcher(corpus, labels)
    lq, lt, ls = labeled_pair_scores(index, np.asarray(positives), log[0], log[1])
    pq, pt, ps = mine_pseudo_positives(index, sample=None)
    have = set(zip(lq.tolist(), lt.tolist()))
    fallback = np.array([(q, t) not in have for q, t in zip(pq.tolist(), pt.tolist())], dtype=bool)
    return Standardizer(method="paper", source="labeled", sample=None).fit_scores(
        np.concatenate([lq, pq[fallback]]), np.concatenate([lt, pt[fallback]]), np.concatenate([ls, ps[fallback]])
    )


class LibraryHubness(ScoreMethod):
    """The library's hubness-corrected standardization, as users get it: ``Standardizer(method="hubness")``.

    CSLS with the stored items as the bank (Conneau et al., ICLR 2018; NNN,
    Chowdhury et al., EMNLP 2024), z-standardized on pseudo positives like the
    paper (Yamashita, Shirafuji and Saito 2025); see ``docs/default.md``. With
    ``search=False`` the fitted standardizer transforms the full score matrix
    (``Standardizer.transform(..., ids=...)``, its reference definition);
    with ``search=True`` a ``Flat`` :class:`~simstd.MixedIndex` holds the
    items, the fit's per-item terms are folded into its shards, and every
    score comes from ``MixedIndex.search`` over all items, the path a user's
    query takes. Default settings throughout (``hubness_k=10``, bank, sample).
    """

    _parameter_constraints = {"search": [BOOLEAN]}

    def __init__(self, search: bool = False) -> None:
        self._check_params(search=search)
        self.search = search
        self.name = "simstd-hubness" + ("[search]" if search else "")

    def _fit(self, log, positives):
        from .index import MixedIndex

        if self.search:
            self.index_ = MixedIndex.from_arrays(self.corpus_.astype(np.float32), self.corpus_modalities_,
                                                 factory="Flat")
            self.standardizer_ = Standardizer(method="hubness").fit(self.index_)
            self.index_.standardizer = self.standardizer_
        else:
            self.standardizer_ = Standardizer(method="hubness").fit(self.corpus_, self.corpus_modalities_)

    def transform(self, raw, queries, query_modality):
        n = len(self.corpus_)
        if not self.search:
            ids = np.broadcast_to(np.arange(n), raw.shape)
            return self.standardizer_.transform(raw, query_modality, self.corpus_modalities_[None, :], ids=ids)
        result = self.index_.search(np.asarray(queries, dtype=np.float32), query_modality, n)
        out = np.full(raw.shape, -np.inf)
        np.put_along_axis(out, np.asarray(result.ids), np.asarray(result.scores, dtype=np.float64), axis=1)
        return out


class PerQueryZ(ScoreMethod):
    """Per-query standardization, in closed form per target modality.

    Each query's scores against the items of modality ``m`` are z-scored by
    their own mean and variance over those items: with ``mu_m`` and
    ``Sigma_m`` (ddof 0) the mean and covariance of the modality's
    embeddings, ``mean = q . mu_m`` and ``var = q^T Sigma_m q``, so
    ``z = (s - q . mu_m) / sqrt(q^T Sigma_m q)`` costs ``O(D^2)`` per query
    and never touches the items. This is the per-query "z-score"
    normalisation of metasearch (Montague and Aslam, CIKM 2001) computed over
    the whole modality rather than a retrieved list. Label-free.
    """

    name = "per-query"
    modality_affine = True

    def _fit(self, log, positives):
        self.moments_ = {}
        for m, c in self.columns_.items():
            X = self.corpus_[c]
            if len(X) < 2:
                raise SimstdError(f"per-query standardization needs >= 2 items of modality {m!r}, got {len(X)}")
            mu = X.mean(axis=0)
            self.moments_[m] = (mu, np.cov(X, rowvar=False, bias=True))

    def transform(self, raw, queries, query_modality):
        Q = np.asarray(queries, dtype=np.float64)
        out = np.empty_like(raw, dtype=np.float64)
        for m, c in self.columns_.items():
            mu, cov = self.moments_[m]
            mean = Q @ mu
            var = np.einsum("ij,ij->i", Q @ cov, Q)
            sd = np.sqrt(np.maximum(var, np.finfo(float).tiny))
            out[:, c] = (raw[:, c] - mean[:, None]) / sd[:, None]
        return out


# -------------------------------------------------------------------- wrappers
class _Rescore(ScoreMethod):
    """A method applied on top of a base method's scores (per target modality)."""

    kind = "?"

    def __init__(self, base: ScoreMethod | None = None) -> None:
        self.base = base if base is not None else Raw()
        self.name = self.kind if isinstance(self.base, Raw) else f"{self.kind}+{self.base.name}"

    @property
    def needs_labels(self) -> bool:  # type: ignore[override]
        return self.base.needs_labels

    def _fit(self, log, positives):
        kwargs = {}
        if log is not None:
            kwargs = {"queries": log[0], "query_modalities": log[1]}
        self.base.fit(self.corpus_, self.corpus_modalities_, positives=positives, **kwargs)

    def transform(self, raw, queries, query_modality):
        return self._rescore(self.base.transform(raw, queries, query_modality), query_modality)

    def _rescore(self, Z: np.ndarray, query_modality: str) -> np.ndarray:
        raise NotImplementedError

    def _topk_mean(self, Z: np.ndarray, k: int, axis: int) -> np.ndarray:
        return topk_mean(Z, k, axis)


class _BankRescore(_Rescore):
    """Re-scoring that needs the base scores of a bank of reference queries.

    ``bank="log"`` (the papers' setting): the query log. ``bank="index"``: the
    indexed items of the query's modality (each item's score with itself left out).
    """

    _parameter_constraints = {"bank": [Options(("log", "index"))], "k": [Interval(int, 1)]}

    def __init__(self, base: ScoreMethod | None = None, bank: str = "log") -> None:
        super().__init__(base)
        self._check_params(bank=bank)
        self.bank = bank
        if bank == "index":
            self.name += "[index]"

    @property
    def needs_log(self) -> bool:  # type: ignore[override]
        return self.bank == "log" or self.base.needs_log

    def _fit(self, log, positives):
        super()._fit(log, positives)
        self.item_stats_ = {}
        if self.bank == "log":
            groups = {m: (log[0][log[1] == m], None) for m in sorted(set(log[1].tolist()))}
        else:
            groups = {m: (self.corpus_[c], c) for m, c in self.columns_.items()}
        for m, (B, ids) in groups.items():
            Z = self.base.scores(B, m)
            if ids is not None:
                Z[np.arange(len(ids)), ids] = -np.inf  # an item is not its own reference query
            self.item_stats_[m] = self._item_stat(Z)

    def _item_stat(self, bank_scores: np.ndarray) -> object:
        raise NotImplementedError

    def _stat(self, query_modality: str) -> object:
        self._need_modality(query_modality, self.item_stats_, f"{self.bank} reference queries")
        return self.item_stats_[query_modality]


class NNN(_BankRescore):
    """Nearest Neighbor Normalization.

    Chowdhury, Wang, Shenoy, Kiela, Schwettmann and Thrush, "Nearest Neighbor
    Normalization Improves Multimodal Retrieval" (EMNLP 2024). Every item
    ``c`` gets a bias ``b(c) = alpha * mean of the k largest scores between
    c and the reference queries`` (of the query's modality) and
    ``s'(q, c) = s(q, c) - b(c)``. ``k=10, alpha=0.75`` are fixed a priori, not tuned.
    """

    kind = "nnn"

    _parameter_constraints = {"alpha": [Interval(float)]}

    def __init__(self, base=None, bank="log", k: int = 10, alpha: float = 0.75) -> None:
        super().__init__(base, bank)
        self._check_params(k=k, alpha=alpha)
        self.k, self.alpha = k, alpha

    def _item_stat(self, bank_scores):
        return self.alpha * self._topk_mean(bank_scores, self.k, axis=0)

    def _rescore(self, Z, query_modality):
        return Z - self._stat(query_modality)[None, :]


class CSLS(_BankRescore):
    """Cross-domain Similarity Local Scaling.

    Conneau, Lample, Ranzato, Denoyer and Jegou, "Word Translation Without
    Parallel Data" (ICLR 2018): ``CSLS(q, c) = 2 s(q, c) - r_m(q) - r(c)`` with
    ``r_m(q)`` the mean of the query's ``K`` largest scores among the items of
    c's modality ``m`` and ``r(c)`` the mean of c's ``K`` largest scores with
    the reference queries (of the query's modality). ``K = 10`` as in the paper.
    """

    kind = "csls"

    def __init__(self, base=None, bank="log", k: int = 10) -> None:
        super().__init__(base, bank)
        self._check_params(k=k)
        self.k = k

    def _item_stat(self, bank_scores):
        return self._topk_mean(bank_scores, self.k, axis=0)

    def _rescore(self, Z, query_modality):
        r_item = self._stat(query_modality)
        out = 2 * Z - r_item[None, :]
        for c in self.columns_.values():
            out[:, c] -= self._topk_mean(Z[:, c], self.k, axis=1)[:, None]
        return out


class HubnessCorrection(CSLS):
    """Per-item hubness correction scaled per modality pair: CSLS on raw cosine, the index as bank.

    For a query ``q`` of modality ``a`` and an indexed item ``c`` of modality ``b``::

        score(q, c) = (2 s(q, c) - rho_q^b - rho_c^a) / beta_ab

    ``rho_q^b``: mean of q's ``k`` best cosines among the items of ``b``;
    ``rho_c^a``: mean of c's ``k`` best cosines among the *other* indexed items
    of ``a`` (the item itself left out); ``2 s - rho - rho`` is CSLS (Conneau,
    Lample, Ranzato, Denoyer and Jegou, ICLR 2018) with the indexed items as
    the bank, close to NNN (Chowdhury et al., EMNLP 2024). ``beta_ab`` makes
    the modality pairs comparable:

    * ``"pseudo"``: the std of the (a, b) pseudo-positive cosines, the
      paper's scale (Yamashita, Shirafuji and Saito 2025). Then the score
      equals ``csls+simstd-index[index]`` exactly (the paper's means cancel);
    * ``"tail"``: the mean excess of the (a, b) cosines over their
      ``quantile`` (default 99.9%): the scale of the pair's extreme tail, where
      the top of a ranking lives. The cosines are every item of ``a`` against
      every other item of ``b`` (a seeded sample of rows beyond
      :data:`TAIL_PAIRS` pairs).

    ``query="corrected"`` measures the query term on the item-corrected
    similarity ``u = s - rho_c^a / 2`` instead (the mean of q's ``k`` best
    ``u`` among the items of ``b``, which one search by ``u`` returns, so an
    index can stay exact with a single search) and adds back the pair's mean
    difference ``c_ab = E[rho_q^b - r_q^b(u)]`` over the indexed items of
    ``a`` as queries (self left out): ``(2u - r_q^b(u) - c_ab) / beta_ab``.

    Reorders items within a modality (not modality-affine). Label-free and
    needs no query log.
    """

    kind = "hubness"
    #: Most (a, b) cosines the tail scale looks at; beyond, a seeded row sample.
    TAIL_PAIRS = 4_000_000

    _parameter_constraints = {
        "beta": [Options(("tail", "pseudo"))],
        "quantile": [Interval(float, 0.5, 1, closed="left")],
        "query": [Options(("raw", "corrected"))],
    }

    def __init__(self, k: int = 10, beta: str = "tail", quantile: float = 0.999, query: str = "raw") -> None:
        self._check_params(k=k, beta=beta, quantile=quantile, query=query)
        super().__init__(Raw(), bank="index", k=k)
        self.beta, self.quantile, self.query = beta, float(quantile), query
        self.name = hubness_name(k, beta, quantile, query)

    def _fit(self, log, positives):
        super()._fit(log, positives)
        if self.beta == "pseudo":
            std = Standardizer(method="paper", n_pseudo=1, source="pseudo", sample=None).fit(
                self.corpus_, self.corpus_modalities_)
            self.scale_ = {(a, b): std.affine(a, b)[1] for a in self.modalities_ for b in self.modalities_}
        else:
            rng = np.random.default_rng(0)
            self.scale_ = {}
            for a, ca in self.columns_.items():
                for b, cb in self.columns_.items():
                    rows = ca
                    if len(ca) * len(cb) > self.TAIL_PAIRS:
                        rows = np.sort(rng.choice(ca, size=max(1, self.TAIL_PAIRS // len(cb)), replace=False))
                    S = self.corpus_[rows] @ self.corpus_[cb].T
                    if a == b:  # an item's cosine with itself is not a pair
                        S[rows[:, None] == cb[None, :]] = np.nan
                    v = S[np.isfinite(S)]
                    if v.size < 2:
                        raise SimstdError(f"hubness needs >= 2 cosines of the modality pair ({a}, {b}); "
                                          "index more items")
                    cut = np.quantile(v, self.quantile)
                    tail = v[v > cut]
                    excess = float(tail.mean() - cut) if tail.size else 0.0
                    self.scale_[a, b] = excess if excess > 0 else float(np.std(v)) or 1.0

        if self.query == "corrected":
            # c_ab: the indexed items of a as queries (self left out), raw minus corrected query term.
            self.offset_ = {}
            for a, ca in self.columns_.items():
                rho = self.item_stats_[a]
                for b, cb in self.columns_.items():
                    S = self.corpus_[ca] @ self.corpus_[cb].T
                    if a == b:
                        S[ca[:, None] == cb[None, :]] = -np.inf
                    U = S - rho[cb][None, :] / 2
                    self.offset_[a, b] = float(np.mean(self._topk_mean(S, self.k, axis=1)
                                                       - self._topk_mean(U, self.k, axis=1)))

    def _rescore(self, Z, query_modality):
        if self.query == "raw":
            out = super()._rescore(Z, query_modality)
        else:
            r_item = self._stat(query_modality)
            out = 2 * Z - r_item[None, :]
            for m, c in self.columns_.items():
                U = Z[:, c] - r_item[c][None, :] / 2
                out[:, c] -= (self._topk_mean(U, self.k, axis=1) + self.offset_[query_modality, m])[:, None]
        for m, c in self.columns_.items():
            out[:, c] /= self.scale_[query_modality, m]
        return out


def hubness_name(k: int = 10, beta: str = "tail", quantile: float = 0.999, query: str = "raw") -> str:
    """The registry name of a :class:`HubnessCorrection` setting (``hubness`` for the defaults)."""
    parts = [f"k={k}"] if k != 10 else []
    if beta != "tail":
        parts.append(f"beta={beta}")
    elif quantile != 0.999:
        parts.append(f"q={quantile:g}")
    if query != "raw":
        parts.append(f"query={query}")
    return "hubness" + (f"[{','.join(parts)}]" if parts else "")


def _parse_hubness(name: str) -> ScoreMethod:
    spec = name[len("hubness"):]
    kwargs: dict = {}
    if spec:
        if not (spec.startswith("[") and spec.endswith("]")):
            raise SimstdError(f"{name!r}: write hubness or hubness[k=20,beta=pseudo,q=0.999]")
        for part in filter(None, spec[1:-1].split(",")):
            key, _, value = part.partition("=")
            try:
                if key == "k":
                    kwargs["k"] = int(value)
                elif key == "beta":
                    kwargs["beta"] = value
                elif key == "q":
                    kwargs["quantile"] = float(value)
                elif key == "query":
                    kwargs["query"] = value
                else:
                    raise ValueError
            except ValueError:
                raise SimstdError(f"{name!r}: unknown setting {part!r}; use k=INT, beta=tail|pseudo, q=FLOAT, "
                                  "query=raw|corrected") \
                    from None
    return HubnessCorrection(**kwargs)


class QBNorm(_BankRescore):
    """Querybank Normalisation with the Dynamic Inverted Softmax.

    Bogolin, Croitoru, Jin, Liu and Albanie, "Cross Modal Retrieval with
    Querybank Normalisation" (CVPR 2022). The inverted softmax divides
    ``exp(beta s(q, c))`` by ``sum_b exp(beta s(b, c))`` over the query bank;
    the dynamic variant applies it only when the query's top-1 item is in the
    *activation set* (items that are some bank query's top-1), otherwise it
    keeps the scores. Here it runs per target modality ``m``, in log space and
    score units so modalities stay comparable:
    ``s' = s - (1/beta) log mean_b exp(beta s(b, c))`` when activated, and
    ``s' = s - (mean over m's items of that normaliser)`` when not (the
    within-modality order of the original scores is kept, as in DIS).
    ``beta = 20`` on cosine scores (the paper's order of magnitude), and 1 on
    standardized scores, whose unit is about 0.03-0.05 cosine. Not tuned.
    """

    kind = "qb-norm"

    _parameter_constraints = {"beta": [Interval(float, 0, closed="neither"), None]}

    def __init__(self, base=None, bank="log", beta: float | None = None) -> None:
        super().__init__(base, bank)
        self._check_params(beta=beta)
        self.beta = beta if beta is not None else (20.0 if isinstance(self.base, Raw) else 1.0)

    def _item_stat(self, bank_scores):
        B = self.beta * bank_scores
        top = np.max(B, axis=0)
        valid = np.isfinite(B)
        lme = top + np.log(np.where(valid, np.exp(B - top), 0.0).sum(axis=0) / valid.sum(axis=0))
        active = np.zeros(bank_scores.shape[1], dtype=bool)
        for c in self.columns_.values():
            active[c[np.argmax(bank_scores[:, c], axis=1)]] = True
        return lme / self.beta, active

    def _rescore(self, Z, query_modality):
        norm, active = self._stat(query_modality)
        out = np.empty_like(Z)
        for c in self.columns_.values():
            top1 = c[np.argmax(Z[:, c], axis=1)]
            on = active[top1]
            out[:, c] = np.where(on[:, None], Z[:, c] - norm[c][None, :], Z[:, c] - norm[c].mean())
        return out


class QueryShift(_Rescore):
    """Subtract ``weight`` times the query's mean top-``k`` score per target modality.

    The query-side term of CSLS (Conneau et al., ICLR 2018) on its own:
    ``s'(q, c) = s(q, c) - weight * r_m(q)`` with ``r_m(q)`` the mean of the
    query's ``k`` largest scores among the items of c's modality ``m``;
    ``weight = 1/2`` is CSLS's. Needs no bank and is modality-affine (a
    per-query shift), so it keeps each modality's ranking and can run on top
    of per-shard top-k search. ``qshift+simstd-index`` equals ``simstd-qshift``,
    i.e. ``Standardizer(method="paper", query_shift=0.5, shift_k=10)``.
    """

    kind = "qshift"
    modality_affine = True

    _parameter_constraints = {"k": [Interval(int, 1)], "weight": [Interval(float)]}

    def __init__(self, base=None, k: int = 10, weight: float = 0.5) -> None:
        super().__init__(base)
        self._check_params(k=k, weight=weight)
        self.k, self.weight = k, weight
        if (k, weight) != (10, 0.5):
            self.name += f"[k={k},w={weight:g}]"

    @property
    def needs_log(self) -> bool:  # type: ignore[override]
        return self.base.needs_log

    def _rescore(self, Z, query_modality):
        out = Z.copy()
        for c in self.columns_.values():
            out[:, c] -= self.weight * self._topk_mean(Z[:, c], self.k, axis=1)[:, None]
        return out


# -------------------------------------------------------------------- registry
BASES: dict[str, Callable[[], ScoreMethod]] = {
    "raw": Raw,
    "gr-clip": MeanCentering,
    "zscore-all": PairZScore,
    "simstd-index": lambda: PseudoStandardization("index", 1),
    "simstd-index-top10": lambda: PseudoStandardization("index", 10),
    "simstd-log": lambda: PseudoStandardization("log", 1),
    "simstd-log-top10": lambda: PseudoStandardization("log", 10),
    "simstd-labeled": lambda: PseudoStandardization("labeled"),
    "per-query": PerQueryZ,
    "simstd-qshift": lambda: PseudoStandardization("index", 1, query_shift=0.5, shift_k=10),
    "hubness": HubnessCorrection,
    "simstd-hubness": LibraryHubness,
    "simstd-hubness[search]": lambda: LibraryHubness(search=True),
}
WRAPPERS: dict[str, Callable[..., ScoreMethod]] = {
    "nnn": NNN,
    "qb-norm": QBNorm,
    "csls": CSLS,
    "qshift": QueryShift,
}
#: What ``simstd eval`` runs when no ``--methods`` are given.
DEFAULT_METHODS = (
    "raw",
    "gr-clip",
    "zscore-all",
    "per-query",
    "simstd-index",
    "simstd-index-top10",
    "simstd-log",
    "simstd-log-top10",
    "simstd-labeled",
    "nnn",
    "nnn+simstd-index",
    "qb-norm",
    "qb-norm+simstd-index",
    "csls",
    "csls+simstd-index",
    "simstd-qshift",
    "hubness",
)
#: One line per name, for ``--help`` and the docs.
DESCRIPTIONS = {
    "raw": "raw cosine",
    "gr-clip": "GR-CLIP: per-modality mean centring of embeddings, renormalised (Li et al. 2025)",
    "zscore-all": "z-score over all scores of each modality pair (indexed items)",
    "per-query": "per-query z-score over each target modality, closed form q.mu_m, q'Sigma_m q",
    "simstd-index": "the paper: pseudo pairs = top-1 of each indexed item (Yamashita et al. 2025)",
    "simstd-index-top10": "the paper with top-10 pseudo positives per indexed item",
    "simstd-log": "the paper with pseudo queries from a held-out query log, top-1",
    "simstd-log-top10": "the paper with pseudo queries from a held-out query log, top-10",
    "simstd-labeled": "standardization from gold pairs of held-out queries (oracle: uses labels)",
    "nnn": "Nearest Neighbor Normalization on raw cosine, query-log bank (Chowdhury et al. 2024)",
    "qb-norm": "QB-Norm, dynamic inverted softmax on raw cosine, query-log bank (Bogolin et al. 2022)",
    "csls": "CSLS on raw cosine, query-log bank (Conneau et al. 2018)",
    "qshift": "CSLS's query-side term alone: s - 1/2 mean top-10 per target modality",
    "simstd-qshift": "the paper + CSLS query-side shift: Standardizer(method='paper', query_shift=0.5)",
    "hubness": "per-item hubness correction (2s - rho_q - rho_c) / beta_ab, index bank; "
               "hubness[k=..,beta=tail|pseudo,q=..]",
    "simstd-hubness": 'the library\'s Standardizer(method="hubness") on the score matrix',
    "simstd-hubness[search]": 'the same through MixedIndex.search on a Flat index (what users get)',
}


def method_names() -> list[str]:
    """Every base name and every ``wrapper`` / ``wrapper+base`` combination."""
    plain = [b for b in BASES if b not in ("raw", "hubness")]  # hubness is a re-scoring already
    return list(BASES) + [w for w in WRAPPERS] + [f"{w}+{b}" for w in WRAPPERS for b in plain]


def make_method(name: str) -> ScoreMethod:
    """Build an unfitted method from its name (see :func:`method_names`)."""
    spec = name.strip()
    if spec.startswith("hubness") and not spec.startswith("hubness+"):
        return _parse_hubness(spec)
    bank = "log"
    if spec.endswith("[index]"):
        spec, bank = spec[: -len("[index]")], "index"
    wrapper, _, base = spec.partition("+")
    if wrapper in WRAPPERS:
        base_method = make_method(base) if base else Raw()
        if isinstance(base_method, _Rescore):
            raise SimstdError(f"{name!r}: apply one re-scoring method at a time (WRAPPER+BASE)")
        if wrapper == "qshift":
            if bank != "log":
                raise SimstdError(f"{name!r}: qshift uses no bank; drop [index]")
            return WRAPPERS[wrapper](base_method)
        return WRAPPERS[wrapper](base_method, bank=bank)
    if spec in BASES and bank == "log" and not base:
        return BASES[spec]()
    raise SimstdError(
        f"unknown method {name!r}; known: {', '.join(BASES)}, or WRAPPER+BASE with WRAPPER in "
        f"{', '.join(WRAPPERS)} (e.g. nnn+simstd-index; add [index] to use the indexed items as the bank)"
    )
