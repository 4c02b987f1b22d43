"""The ``hubness`` evaluation twin: per-item hubness correction scaled per modality pair.

:class:`HubnessCorrection` is CSLS (Conneau, Lample, Ranzato, Denoyer and
Jegou, "Word Translation Without Parallel Data", ICLR 2018) on raw cosine
with the indexed items as the bank, close to NNN (Chowdhury et al., EMNLP
2024), divided by a per-pair scale: the std of the pseudo-positive cosines of
Yamashita, Shirafuji and Saito (PACLIC 2025, arXiv:2511.22141), or the mean
excess of the pair's extreme tail. :func:`hubness_name` and
:func:`_parse_hubness` map its settings to its registry name and back.
"""
from __future__ import annotations

import numpy as np

from ..errors import SimstdError
from ..standardizer import Standardizer
from ..validation import Interval, Options
from .base import ScoreMethod
from .baselines import Raw
from .rescore import CSLS


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
