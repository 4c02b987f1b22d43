"""Re-scoring wrappers: ``WRAPPER+BASE`` applies one of them on top of a base method's scores.

* :class:`NNN` (``nnn``): Chowdhury, Wang, Shenoy, Kiela, Schwettmann and
  Thrush, "Nearest Neighbor Normalization Improves Multimodal Retrieval"
  (EMNLP 2024).
* :class:`CSLS` (``csls``): Conneau, Lample, Ranzato, Denoyer and Jegou,
  "Word Translation Without Parallel Data" (ICLR 2018).
* :class:`QBNorm` (``qb-norm``): Bogolin, Croitoru, Jin, Liu and Albanie,
  "Cross Modal Retrieval with Querybank Normalisation" (CVPR 2022).
* :class:`QueryShift` (``qshift``): CSLS's query-side term alone (Conneau et
  al., ICLR 2018).

:class:`_Rescore` is what they share (a base method, re-scored per target
modality); :class:`_BankRescore` adds the bank of reference queries (the
query log, or the indexed items) whose scores give the per-item terms.
"""
from __future__ import annotations

import numpy as np

from ..stats import topk_mean
from ..validation import Interval, Options
from .base import ScoreMethod
from .baselines import Raw


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
