"""Twins of the library's :class:`simstd.Standardizer`, fitted on the evaluation's corpus.

* :class:`PseudoStandardization` (``simstd-index``, ``simstd-index-top10``,
  ``simstd-log``, ``simstd-log-top10``, ``simstd-labeled``,
  ``simstd-qshift``): Yamashita, Shirafuji and Saito, "Bridging the Modality
  Gap by Similarity Standardization with Pseudo-Positive Samples" (PACLIC
  2025, arXiv:2511.22141); the query-shift variant adds CSLS's query-side
  term (Conneau, Lample, Ranzato, Denoyer and Jegou, ICLR 2018).
* :class:`LibraryHubness` (``simstd-hubness``, ``simstd-hubness[search]``):
  ``Standardizer(method="hubness")``, CSLS (Conneau et al., ICLR 2018) and
  NNN (Chowdhury et al., EMNLP 2024) with the stored items as the bank,
  z-standardized like the paper above.
"""
from __future__ import annotations

import numpy as np

from ..errors import SimstdError
from ..standardizer import Standardizer
from ..validation import BOOLEAN, Interval, Options
from .base import ScoreMethod


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
    from ..engines import ArraySearcher
    from ..mining import labeled_pair_scores, mine_pseudo_positives

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
        from ..index import MixedIndex

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
