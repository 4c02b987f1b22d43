"""Label-free uncertainty for standardized mixed-modality search.

A confidence for every result, a confidence per query and an optional
uncertainty rerank, fitted without labels and without training (after the
idea of VACSR, Wei et al., 2026: a similarity is a distribution, not a point,
and ambiguous pairs deserve a high variance). The model (docs/uncertainty.md):

* For each (query modality ``a``, target modality ``t``) two Gaussians of the
  raw cosine ``s``: the *pseudo-positive* one ``N(mu_p, sigma_p)``, the very
  statistics the :class:`~simstd.Standardizer` fitted (each pseudo query's
  top-1 neighbour in ``t``), and the *background* one ``N(mu_b, sigma_b)`` of
  all (pseudo query, item) cosines, computed exactly from the sample's mean
  vectors and second-moment matrices.
* Their likelihood ratio ``LR(s) = N(s; mu_p, sigma_p) / N(s; mu_b, sigma_b)``
  made monotone (clamped at the vertex of the log-ratio parabola), so a higher
  cosine never lowers the evidence and, per FAISS shard, the top-k by ``LR``
  is the top-k by cosine.
* A hubness prior: an item that is the (standardized, merged) top-1 of ``h``
  of the sampled pseudo queries of modality ``a`` gets prior weight
  ``1 / (1 + h)`` -- under a roughly one-to-one matching it can be the true
  match of only a few of the queries it attracts; ``1 + h`` is the posterior
  mean of its attraction rate under a Gamma(1, 1) prior, so a small pseudo
  query sample gives a weak prior rather than a noisy one.
* A posterior over the candidates of a query, normalised over the retrieved
  candidates *and* the unretrieved tail of every shard (``n_tail`` items whose
  cosine is below the shard's last retrieved one, ``c``; their expected ratio
  under the background has the closed form ``F_p(c) / F_b(c)``)::

      p_j = w_j LR(s_j) / (sum_i w_i LR(s_i) + sum_t n_tail_t E_b[LR | s < c_t])

  The per-result uncertainty is ``u_j = -ln p_j`` (nats), the per-query
  confidence the ``p`` of the rank-1 result. The optional rerank orders by
  ``z_j - weight * u_j``: standardized score minus weighted uncertainty.

``p`` is a posterior share under a model fitted without labels, not a
calibrated probability: on the real feature files it ranks queries by
difficulty well but its scale is off (docs/uncertainty.md reports the ECE).
Every hit also gets ``p_match = sigmoid(a logit(p) + b)``, a match probability:
label-free by default (``p`` itself, or a map fitted on pseudo queries), or
calibrated on a few gold pairs with :meth:`UncertaintyModel.calibrate`.

The analysis that measures all this lives in :mod:`simstd.evaluation.uncertainty`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..engines.base import RankedSearchable, count, drop_self
from .likelihood import background_moments, log_tail_mean, monotone_log_lr, surprisal
from ..errors import CorruptFileError, FingerprintMismatchError, NotFittedError, SimstdError, StaleFitWarning
from ..fileio import check_format, read_json, write_json_atomic
from ..validation import BOOLEAN, Interval, Options, check_is_fitted, validate_params

if TYPE_CHECKING:  # pragma: no cover
    from ..standardizer import Standardizer

FORMAT = "simstd.uncertainty"
FORMAT_VERSION = 1
RERANKS = ("none", "uncertainty")
#: The label-free maps from ``p`` to ``p_match`` (``UncertaintyModel(calibration=...)``):
#: ``"identity"`` keeps ``p``; ``"mutual"`` fits a Platt map on the stored items' own
#: pseudo queries with "the top hit's own top hit is the query" (a mutual nearest
#: neighbour) as the match event.
LABEL_FREE_MAPS = ("identity", "mutual", "shifted")
#: Strength of the prior that pulls a map fitted on gold labels toward the label-free
#: map (``ridge`` of the slope and of the intercept in :func:`fit_logistic`): worth about
#: as much as a few labels, so it steadies 10 pairs and washes out by 200.
LABEL_PRIOR = (2.0, 0.5)


class UncertaintyModel:
    """Fit the label-free score distributions and hub counts; score search results.

    Parameters
    ----------
    sample:
        Pseudo queries (and background items) per modality, drawn without
        replacement with ``seed``; ``None`` uses every indexed item.
    seed:
        Seed of that sample.
    hubness:
        Use the hubness prior ``1 / (1 + h)`` (see the module docstring).
    calibration:
        The label-free map from ``p`` to the match probability ``p_match``
        (one of :data:`LABEL_FREE_MAPS`; docs/uncertainty.md measures them);
        :meth:`calibrate` replaces it with a map fitted on gold pairs.
    depth:
        Candidates per shard that a search scores (at least its k): the
        posterior's normaliser sums them exactly and models only the rest as a
        tail, and the rerank reorders them. With 20 the top-1 confidence is
        on average within 0.01 of the posterior over all items on the real
        feature files (CLIP, ConVIRT, VideoCLIP).

    Fitted attributes
    -----------------
    modalities_ : labels indexing the arrays below
    pos_mean_, pos_std_ : (M, M) pseudo-positive cosine Gaussians (from the standardizer)
    bg_mean_, bg_std_ : (M, M) background cosine Gaussians
    hubs_ : {query modality: (sorted item ids, win counts, number of pseudo queries)}
    calibration_ : the map ``p_match = sigmoid(a logit(p) + b)``: ``{"source": "label-free" | "labels",
        "map", "a", "b", "n_labels", "n_fit"}`` (:meth:`p_match`, :meth:`calibrate`)
    index_fingerprint_ : the index the fit belongs to
    """

    _parameter_constraints: dict = {
        "sample": [Interval(int, 1), None],
        "seed": [Interval(int, 0)],
        "hubness": [BOOLEAN],
        "depth": [Interval(int, 1)],
        "calibration": [Options(LABEL_FREE_MAPS)],
    }

    def __init__(self, sample: int | None = 10_000, seed: int = 0, hubness: bool = True, depth: int = 20,
                 calibration: str = "identity") -> None:
        self.sample = sample
        self.seed = seed
        self.hubness = hubness
        self.depth = depth
        self.calibration = calibration

    # ------------------------------------------------------------------ fitting
    def fit(self, index: RankedSearchable, standardizer: "Standardizer | None" = None) -> "UncertaintyModel":
        """Fit on ``index`` with its fitted standardizer (or ``standardizer``)."""
        validate_params(self, self._parameter_constraints)
        std = standardizer if standardizer is not None else index.standardizer
        if std is None:
            raise NotFittedError(
                "the uncertainty model needs a fitted standardizer: fit one first "
                "(simstd fit --index ...; Python: index.standardizer = Standardizer().fit(index))"
            )
        std.check_index(index, strict=True)
        if count(index) == 0:
            raise SimstdError("the index is empty: add vectors before fitting")
        labels = list(index.modalities)
        m = len(labels)
        rng = np.random.default_rng(self.seed)
        ids, vecs = {}, {}
        for label in labels:
            pick = index.ids(label)
            if self.sample is not None and self.sample < len(pick):
                pick = pick[np.sort(rng.choice(len(pick), size=int(self.sample), replace=False))]
            ids[label] = pick
            vecs[label] = index.reconstruct(pick)
        pos_mean, pos_std = np.full((m, m), np.nan), np.full((m, m), np.nan)
        for i, a in enumerate(labels):
            for j, t in enumerate(labels):
                try:
                    pos_mean[i, j], pos_std[i, j] = std.cosine_moments(a, t)
                except NotFittedError:
                    pass
        none = np.empty(0, np.int64)
        bg_mean, bg_std = background_moments([vecs[x].astype(np.float64) for x in labels])
        if std.has_item_terms:  # wins of the corrected ranking's own merged top-1
            self.hubs_ = {a: _hub_wins(index.search_like(ids[a], 1, standardizer=std).ids[:, 0], len(ids[a]))
                          if self.hubness else (none, none, len(ids[a])) for a in labels}
        else:
            self.hubs_ = {a: _hub_counts(index, std, a, vecs[a], ids[a], labels) if self.hubness
                          else (none, none, len(ids[a])) for a in labels}
        self.modalities_ = labels
        self.pos_mean_, self.pos_std_ = pos_mean, pos_std
        self.bg_mean_, self.bg_std_ = bg_mean, bg_std
        self.index_fingerprint_ = index.fingerprint
        self.dim_ = index.dim
        self.calibration_ = _identity_map()
        if self.calibration == "mutual":
            self.calibration_ = self._mutual_map(index, std, ids)
        elif self.calibration == "shifted":
            self.calibration_ = self._shifted_map(index, std, ids, vecs)
        return self

    def _shifted_map(self, index: RankedSearchable, std: "Standardizer", ids: dict[str, np.ndarray],
                     vecs: dict[str, np.ndarray]) -> dict:
        """Platt map of ``p`` fitted on simulated partners: each sampled item ``x`` of modality ``t``
        becomes a query of modality ``a`` whose match is ``x`` itself, moved across the modality
        gap (the difference of the modality means, which Liang et al., 2022, "Mind the gap", find
        to be largely a constant shift) plus a centred item of ``a`` as the residual, scaled so
        that the mean cosine to ``x`` is the pair's pseudo-positive mean."""
        rng = np.random.default_rng(self.seed + 1)
        labels = list(ids)
        means = {m: vecs[m].astype(np.float64).mean(axis=0) for m in labels}
        conf, event = [], []
        for j, t in enumerate(labels):
            X = vecs[t].astype(np.float64)
            for i, a in enumerate(labels):
                if a == t or len(X) < 2 or not np.isfinite(self.pos_mean_[i, j]):
                    continue
                base = X - means[t] + means[a]
                noise = vecs[a][rng.integers(len(vecs[a]), size=len(X))].astype(np.float64) - means[a]
                cos = lambda lam: np.mean(np.einsum("ij,ij->i", _unit(base + lam * noise), X))  # noqa: E731
                lo, hi = 0.0, 64.0  # bisection: the cosine to x falls as the residual grows
                for _ in range(40):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if cos(mid) > self.pos_mean_[i, j] else (lo, mid)
                q = _unit(base + lo * noise).astype(np.float32)
                res = index.search(q, a, 1, standardizer=std, uncertainty=self)
                conf.append(res.confidence[:, 0])
                event.append(np.asarray(res.ids[:, 0], dtype=np.int64) == ids[t])
        if not conf:
            return _identity_map()
        conf, event = np.concatenate(conf), np.concatenate(event)
        a, b = fit_logistic(logit(conf), event)
        return {"source": "label-free", "map": "shifted", "a": a, "b": b, "n_labels": 0, "n_fit": int(len(conf))}

    def _mutual_map(self, index: RankedSearchable, std: "Standardizer", ids: dict[str, np.ndarray]) -> dict:
        """Platt map of ``p`` fitted on the sampled stored items as pseudo queries (own item left
        out), with a label-free match event: the query is its top hit's own top hit (mutual nearest
        neighbours, the synthetic dictionary of Conneau et al., 2018, "Word translation without
        parallel data")."""
        conf, event = [], []
        for a, pick in ids.items():
            if len(pick) < 2 or count(index) < 3:
                continue
            res = index.search_like(pick, 1, standardizer=std, uncertainty=self)
            hit, back = np.asarray(res.ids[:, 0], dtype=np.int64), np.full(len(pick), -1, dtype=np.int64)
            for m in np.unique(res.modalities[:, 0][hit >= 0]).tolist():
                sel = (hit >= 0) & (res.modalities[:, 0] == m)
                back[sel] = index.search_like(hit[sel], 1, standardizer=std).ids[:, 0]
            ok = hit >= 0
            conf.append(res.confidence[ok, 0])
            event.append(back[ok] == pick[ok])
        if not conf or sum(len(c) for c in conf) < 10:
            return _identity_map()
        conf, event = np.concatenate(conf), np.concatenate(event)
        a, b = fit_logistic(logit(conf), event)
        return {"source": "label-free", "map": "mutual", "a": a, "b": b, "n_labels": 0, "n_fit": int(len(conf))}

    # ------------------------------------------------------------ calibration
    def p_match(self, confidence: np.ndarray) -> np.ndarray:
        """The match probability of hits with posterior share ``confidence``:
        ``sigmoid(a logit(p) + b)`` with the fitted map (``calibration_``)."""
        self._check_fitted()
        c = self.calibration_
        return apply_logistic(logit(np.asarray(confidence, dtype=np.float64)), c["a"], c["b"])

    @property
    def calibration_source(self) -> str:
        """``"label-free"`` or ``"calibrated on N gold pairs"``: what the probabilities rest on."""
        self._check_fitted()
        c = self.calibration_
        return "label-free" if c["source"] == "label-free" else f"calibrated on {c['n_labels']} gold pairs"

    def calibrate(self, index: RankedSearchable, target_ids: Sequence[int], *, query_ids: Sequence[int] | None = None,
                  queries: np.ndarray | None = None, query_modality: str | Sequence[str] | None = None,
                  k: int = 1, prior: float | tuple[float, float] = LABEL_PRIOR) -> "UncertaintyModel":
        """Fit ``p_match`` on gold pairs: query ``i`` (stored item ``query_ids[i]``, or vector
        ``queries[i]`` of ``query_modality``) matches stored item ``target_ids[i]``.

        Each query is searched (top ``k``, by default its top hit only, where thresholds act);
        every hit is a labelled example, a match where it is the target. A Platt map
        ``sigmoid(a logit(p) + b)`` (Platt, 1999) is fitted on them by penalised maximum likelihood,
        with a Gaussian prior of strength ``prior`` centred on the label-free map, so a handful of
        pairs moves it only as far as they can tell.
        """
        self._check_fitted()
        self.check_index(index, strict=True)
        targets = np.asarray(target_ids)
        if targets.ndim != 1 or len(targets) == 0 or not np.issubdtype(targets.dtype, np.integer):
            raise SimstdError("gold pairs need one integer target id per query (at least one pair)")
        if (query_ids is None) == (queries is None):
            raise SimstdError("give the queries of the gold pairs either as stored ids (query_ids) or as "
                              "vectors (queries with query_modality), not both")
        known = np.concatenate([index.ids(m) for m in index.modalities])
        _check_ids(targets, known, "target")
        conf, event = [], []
        if query_ids is not None:
            qids = np.asarray(query_ids)
            if qids.shape != targets.shape or not np.issubdtype(qids.dtype, np.integer):
                raise SimstdError(f"give one integer query id per target id (got {qids.shape[0] if qids.ndim else 0} "
                                  f"query ids for {len(targets)} targets)")
            _check_ids(qids, known, "query")
            if (qids == targets).any():
                raise SimstdError(f"query {int(qids[qids == targets][0])} is paired with itself; a gold pair "
                                  "names two different items")
            mods = np.asarray(index.modality_of(qids)).astype(str)
            groups = [(m, mods == m) for m in np.unique(mods).tolist()]
            search = lambda m, sel: index.search_like(  # noqa: E731
                qids[sel], min(k, count(index) - 1), uncertainty=self)
        else:
            if query_modality is None:
                raise SimstdError("query vectors need their query_modality (e.g. \"text\")")
            X = np.asarray(queries, dtype=np.float32)
            if X.ndim != 2 or len(X) != len(targets):
                raise SimstdError(f"give one query vector per target id (got {X.shape} for {len(targets)} targets)")
            mods = np.broadcast_to(np.asarray(query_modality, dtype=object), (len(X),)).astype(str)
            groups = [(m, mods == m) for m in np.unique(mods).tolist()]
            search = lambda m, sel: index.search(X[sel], m, min(k, count(index)), uncertainty=self)  # noqa: E731
        for m, sel in groups:
            res = search(m, sel)
            found = np.asarray(res.ids, dtype=np.int64) >= 0
            conf.append(res.confidence[found])
            event.append((np.asarray(res.ids, dtype=np.int64) == targets[sel][:, None])[found])
        conf, event = np.concatenate(conf), np.concatenate(event)
        # A second calibration starts again from the label-free map, not from the first one's.
        base = self.calibration_ if self.calibration_["source"] == "label-free" else self.calibration_["label_free"]
        a, b = fit_logistic(logit(conf), event, prior=(base["a"], base["b"]), ridge=prior)
        self.calibration_ = {"source": "labels", "map": "platt", "a": a, "b": b,
                             "n_labels": int(len(targets)), "n_fit": int(len(conf)), "label_free": base}
        return self

    # ---------------------------------------------------------------- scoring
    def _check_fitted(self) -> None:
        check_is_fitted(self, "pos_mean_", "call fit(index) (CLI: simstd fit --uncertainty --index db.faiss)")

    def check_index(self, index: RankedSearchable, *, strict: bool = False) -> None:
        """Note (or with ``strict`` refuse) a fit made before the index changed.

        A stale model keeps serving: items added since have no hub count (prior 1).
        """
        self._check_fitted()
        if self.index_fingerprint_ is not None and self.index_fingerprint_ != index.fingerprint:
            message = (f"the uncertainty model is stale: it was fitted before the index changed (fingerprint "
                       f"{self.index_fingerprint_[:12]}, the index now {index.fingerprint[:12]}); ")
            if strict:
                raise FingerprintMismatchError(message + "refit it with `simstd fit --uncertainty --index ...` "
                                               "or UncertaintyModel().fit(index)")
            warnings.warn(message + "items added since have no hub count until you refit "
                          "(simstd fit --uncertainty --index ...)", StaleFitWarning, stacklevel=3)

    def pair(self, query_modality: str, target_modality: str) -> tuple[float, float, float, float]:
        """``(mu_p, sigma_p, mu_b, sigma_b)`` of a modality pair, raising if it was not fitted."""
        self._check_fitted()
        try:
            i, j = self.modalities_.index(query_modality), self.modalities_.index(target_modality)
        except ValueError:
            raise NotFittedError(
                f"modality pair ({query_modality!r}, {target_modality!r}) was not seen when fitting the "
                f"uncertainty model (fitted modalities: {self.modalities_}); refit it"
            ) from None
        params = (self.pos_mean_[i, j], self.pos_std_[i, j], self.bg_mean_[i, j], self.bg_std_[i, j])
        if not all(np.isfinite(params)) or not (params[1] > 0 and params[3] > 0):
            raise NotFittedError(
                f"the uncertainty model has no score distributions for queries of modality {query_modality!r} "
                f"against targets of modality {target_modality!r} (too few items); refit on more data"
            )
        return tuple(float(x) for x in params)  # type: ignore[return-value]

    def log_lr(self, scores: np.ndarray, query_modality: str, target_modality: str) -> np.ndarray:
        """Monotone log likelihood ratio ``ln LR(s)`` of raw cosines (see the module docstring)."""
        return monotone_log_lr(scores, *self.pair(query_modality, target_modality))

    def log_tail_mean(self, cutoff: np.ndarray, query_modality: str, target_modality: str) -> np.ndarray:
        """``ln E_b[LR(s) | s < cutoff]``: the mean ratio of an unretrieved item."""
        return log_tail_mean(cutoff, *self.pair(query_modality, target_modality))

    def hub_counts(self, ids: np.ndarray, query_modality: str) -> np.ndarray:
        """How many sampled pseudo queries of ``query_modality`` had each id as top-1 (0 for unseen ids)."""
        self._check_fitted()
        ids = np.asarray(ids, dtype=np.int64)
        hub_ids, counts, _ = self.hubs_.get(query_modality, (np.empty(0, np.int64), np.empty(0, np.int64), 0))
        if len(hub_ids) == 0:
            return np.zeros(ids.shape, dtype=np.int64)
        pos = np.clip(np.searchsorted(hub_ids, ids), 0, len(hub_ids) - 1)
        return np.where(hub_ids[pos] == ids, counts[pos], 0)

    def uncertainty(
        self,
        raw: np.ndarray,
        ids: np.ndarray,
        codes: np.ndarray,
        names: Sequence[str],
        query_modality: str,
        sizes: Sequence[int],
    ) -> np.ndarray:
        """``u = -ln p`` for every candidate of a batch of queries.

        ``raw`` and ``ids`` are ``(nq, C)`` cosines and global ids of the
        candidates (``-1`` = missing), column ``c`` taken from the shard
        ``names[codes[c]]`` holding ``sizes[codes[c]]`` items. The candidates of
        a shard must be its top cosines: the others form its tail. Missing
        candidates get ``u = inf``.
        """
        self._check_fitted()
        raw = np.asarray(raw, dtype=np.float64)
        ids = np.asarray(ids, dtype=np.int64)
        codes = np.asarray(codes)
        logits = np.full(raw.shape, -np.inf)
        tails = np.full((raw.shape[0], len(names)), -np.inf)
        for code, name in enumerate(names):
            cols = codes == code
            if not cols.any():
                continue
            s, valid = raw[:, cols], ids[:, cols] >= 0
            logit = self.log_lr(s, query_modality, name)
            if self.hubness:
                logit = logit - np.log1p(self.hub_counts(ids[:, cols], query_modality))
            logits[:, cols] = np.where(valid, logit, -np.inf)
            n_tail = int(sizes[code]) - valid.sum(axis=1)
            cutoff = np.where(valid, s, np.inf).min(axis=1)
            with np.errstate(divide="ignore"):
                tails[:, code] = np.where(
                    n_tail > 0, np.log(np.maximum(n_tail, 1)) + self.log_tail_mean(cutoff, query_modality, name),
                    -np.inf,
                )
        return surprisal(logits, tails)

    # ------------------------------------------------------------- persistence
    def table(self) -> list[dict]:
        """The fitted distributions as one row per (query, target) modality pair."""
        self._check_fitted()
        rows = []
        for i, q in enumerate(self.modalities_):
            for j, t in enumerate(self.modalities_):
                values = [self.pos_mean_[i, j], self.pos_std_[i, j], self.bg_mean_[i, j], self.bg_std_[i, j]]
                rows.append({"query_modality": q, "target_modality": t,
                             **{k: (float(v) if np.isfinite(v) else None)
                                for k, v in zip(("pos_mean", "pos_std", "bg_mean", "bg_std"), values)}})
        return rows

    def to_dict(self) -> dict:
        self._check_fitted()
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dim": self.dim_,
            "index_fingerprint": self.index_fingerprint_,
            "settings": {"sample": None if self.sample is None else int(self.sample), "seed": int(self.seed),
                         "hubness": bool(self.hubness), "depth": int(self.depth), "calibration": self.calibration},
            "calibration": self.calibration_,
            "modalities": list(self.modalities_),
            "pairs": self.table(),
            "hubs": {m: {"n_queries": int(n), "ids": hid.tolist(), "counts": cnt.tolist()}
                     for m, (hid, cnt, n) in self.hubs_.items()},
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "UncertaintyModel":
        fix = "refit with `simstd fit --uncertainty` to rewrite it"
        check_format(data, source, FORMAT, FORMAT_VERSION, "simstd uncertainty", fix)
        try:
            model = cls(**data["settings"])
            labels = [str(x) for x in data["modalities"]]
            m = len(labels)
            arrays = {k: np.full((m, m), np.nan) for k in ("pos_mean", "pos_std", "bg_mean", "bg_std")}
            for row in data["pairs"]:
                i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
                for key, arr in arrays.items():
                    arr[i, j] = np.nan if row[key] is None else float(row[key])
            model.modalities_ = labels
            model.pos_mean_, model.pos_std_ = arrays["pos_mean"], arrays["pos_std"]
            model.bg_mean_, model.bg_std_ = arrays["bg_mean"], arrays["bg_std"]
            model.hubs_ = {str(k): (np.asarray(v["ids"], dtype=np.int64), np.asarray(v["counts"], dtype=np.int64),
                                    int(v["n_queries"])) for k, v in data["hubs"].items()}
            model.index_fingerprint_ = data.get("index_fingerprint")
            model.dim_ = data.get("dim")
            model.calibration_ = _read_map(data.get("calibration"))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(f"{source} is malformed ({exc!r}); {fix}") from None
        return model

    def save(self, path: str | Path) -> None:
        """Write the fit as a JSON file (atomically)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "UncertaintyModel":
        data = read_json(path, "uncertainty file", "run `simstd fit --uncertainty` to (re)create it")
        return cls.from_dict(data, str(path))

    def __repr__(self) -> str:
        state = f", modalities={self.modalities_}" if hasattr(self, "pos_mean_") else ", unfitted"
        return (f"UncertaintyModel(sample={self.sample}, seed={self.seed}, hubness={self.hubness}, "
                f"depth={self.depth}, calibration={self.calibration!r}{state})")


# ------------------------------------------------------------------- formulas
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _identity_map() -> dict:
    return {"source": "label-free", "map": "identity", "a": 1.0, "b": 0.0, "n_labels": 0, "n_fit": 0}


def _read_map(data: dict | None) -> dict:
    """A stored calibration map (files written before maps existed: the identity)."""
    if data is None:
        return _identity_map()
    out = {"source": str(data["source"]), "map": str(data["map"]), "a": float(data["a"]), "b": float(data["b"]),
           "n_labels": int(data["n_labels"]), "n_fit": int(data.get("n_fit", 0))}
    if out["source"] not in ("label-free", "labels") or not (np.isfinite(out["a"]) and np.isfinite(out["b"])):
        raise ValueError(f"bad calibration map {data!r}")
    if "label_free" in data:
        out["label_free"] = _read_map(data["label_free"])
    return out


def _check_ids(ids: np.ndarray, known: np.ndarray, what: str) -> None:
    unknown = ids[~np.isin(ids, known)]
    if len(unknown):
        raise SimstdError(f"{len(unknown)} gold pair(s) name unknown {what} ids (first: {int(unknown[0])}); "
                          f"ids must be stored items of the index (0..{int(known.max())})")


def logit(p: np.ndarray) -> np.ndarray:
    """``ln(p / (1 - p))``, clipped to ``p`` in [1e-12, 1 - 1e-12]."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


def apply_logistic(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """``sigmoid(a x + b)``, overflow-safe."""
    from scipy.special import expit

    return expit(a * np.asarray(x, dtype=np.float64) + b)


def fit_logistic(x: np.ndarray, y: np.ndarray, *, prior: tuple[float, float] = (1.0, 0.0),
                 ridge: float | tuple[float, float] = 0.0, iters: int = 100) -> tuple[float, float]:
    """Platt scaling (Platt, 1999): ``P(y | x) = sigmoid(a x + b)`` by Newton's method.

    ``ridge`` weighs a Gaussian prior ``ridge / 2 |(a, b) - prior|^2`` (a MAP fit: few labels
    stay near ``prior``); at least 1, so separable data keeps a finite map. Returns ``(a, b)``.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    X = np.stack([x, np.ones_like(x)], axis=1)
    centre = np.asarray(prior, dtype=np.float64)
    w = centre.copy()
    # at least a unit prior: separable data keeps a finite map
    ridge = np.diag(np.maximum(np.broadcast_to(np.asarray(ridge, dtype=np.float64), (2,)), 1.0))
    for _ in range(iters):
        p = apply_logistic(X @ w, 1.0, 0.0)
        grad = X.T @ (p - y) + ridge @ (w - centre)
        hess = (X * (p * (1 - p))[:, None]).T @ X + ridge
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def _hub_counts(index, std, a: str, X: np.ndarray, self_ids: np.ndarray, labels: Sequence[str]):
    """Wins of each item as the merged standardized top-1 of the pseudo queries ``X`` (own item excluded)."""
    best_z = np.full(len(X), -np.inf)
    best_id = np.full(len(X), -1, dtype=np.int64)
    for t in labels:
        try:
            mean, sd = std.affine(a, t)
        except NotFittedError:
            continue
        same = t == a
        D, I = index.search_modality(X, t, 2 if same else 1)
        if same:  # the query's own item is not its match
            D, I = drop_self(D, I, self_ids)
        if I.shape[1] == 0:
            continue
        D, I = D[:, 0], I[:, 0]
        z = np.where(I >= 0, (D.astype(np.float64) - mean) / sd, -np.inf)
        better = z > best_z
        best_z, best_id = np.where(better, z, best_z), np.where(better, I, best_id)
    return _hub_wins(best_id, len(X))


def _hub_wins(best_id: np.ndarray, n_queries: int) -> tuple[np.ndarray, np.ndarray, int]:
    hub_ids, counts = np.unique(best_id[best_id >= 0], return_counts=True)
    return hub_ids.astype(np.int64), counts.astype(np.int64), n_queries


def check_rerank(rerank: str | None, weight: float) -> bool:
    """Validate the rerank settings; True when the uncertainty rerank is on."""
    if rerank not in (None,) + RERANKS:
        raise SimstdError(f"rerank must be one of {RERANKS}, got {rerank!r}")
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)) or not 0 <= weight < np.inf:
        raise SimstdError(f"rerank_weight must be a finite number >= 0, got {weight!r}")
    return rerank == "uncertainty"
