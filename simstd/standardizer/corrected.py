"""Hubness-corrected standardization (``method="hubness"``).

CSLS (Conneau, Lample, Ranzato, Denoyer and Jegou, ICLR 2018) with the stored
items as the bank, as in Nearest Neighbor Normalization (Chowdhury et al.,
EMNLP 2024), standardized per (query modality, target modality) pair on
pseudo positives (Yamashita, Shirafuji and Saito, 2025). The score of item
``c`` for a query ``q`` of modality ``a`` is ``2 u - r_q`` with
``u = s(q, c) - rho_c^a / 2``; the per-item terms ``rho`` are fitted state
(:mod:`simstd.hubness` has the formulas and their cost).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from .. import hubness
from ..engines.base import Searchable, count
from ..errors import CorruptFileError, NotFittedError, SimstdError
from ..fileio import atomic_path
from .method import Estimator, Method

#: Per-item terms are kept beside a standardizer's JSON file:
#: ``db.standardizer.json`` -> ``db.standardizer.terms.npy``.
TERMS_SUFFIX = ".terms.npy"


def terms_path(path: str | Path) -> Path:
    """Where the per-item terms of the standardizer saved at ``path`` live."""
    path = Path(path)
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    return path.with_name(stem + TERMS_SUFFIX)


class HubnessMethod(Method):
    """Per-item hubness terms, a query term from one search's candidates, per-pair scale."""

    name = "hubness"
    citation = ("hubness-corrected similarity (CSLS, Conneau et al. 2018), standardized on pseudo positives "
                "(Yamashita, Shirafuji and Saito 2025)")
    has_item_terms = True
    fitted_attributes: ClassVar[tuple[str, ...]] = (
        "terms_", "terms_digest_", "banks_", "centre_", "scale_", "cosine_moments_")
    foreign_settings: ClassVar[dict[str, tuple[object, str]]] = {
        "source": ("pseudo", "source='labeled'"),
        "query_shift": (0.0, "query_shift"),
        "n_pseudo": (1, "n_pseudo > 1"),
    }

    # ------------------------------------------------------------ fitting
    def fit(self, est: Estimator, searchable: Searchable, *, queries: np.ndarray | None,
            query_modalities: object, positives: np.ndarray | None, terms: np.ndarray | None) -> None:
        if queries is not None or positives is not None:
            raise SimstdError("method='hubness' measures every stored item against the others: fit it on the "
                              "store alone (no queries/positives), or use Standardizer(method='paper') with a "
                              "query log or gold pairs")
        if count(searchable) == 0:
            raise SimstdError("the index is empty: add vectors before fitting")
        all_ids = np.sort(np.concatenate([np.asarray(searchable.ids(m)) for m in searchable.modalities]))
        if all_ids.dtype == object or not np.array_equal(all_ids, np.arange(len(all_ids))):
            raise SimstdError(f"method='hubness' keeps one term row per id and needs the ids 0..n-1; the "
                              f"{type(searchable).__name__} has other ids: compute the terms with "
                              "simstd.hubness.item_terms and carry them in the store")
        columns = sorted(searchable.modalities)
        banks = hubness.fit_banks(searchable, int(est.hubness_k), est.hubness_bank)
        if terms is None:
            terms = hubness.compute_terms(searchable, columns, banks, int(est.seed), all_ids)
        terms = np.asarray(terms, dtype=np.float32)
        if terms.shape != (len(all_ids), len(columns)) or not np.isfinite(terms).all():
            raise SimstdError(f"terms must be a finite ({len(all_ids)}, {len(columns)}) array (row = id, columns = "
                              f"{columns}), got shape {terms.shape}")
        col = {m: j for j, m in enumerate(columns)}
        qm, tm, v, cosines = hubness.pseudo_positive_scores(
            searchable, lambda ids, a: terms[ids, col[a]], int(est.hubness_k), est.sample, int(est.seed),
            target_se=float(est.target_se),
        )
        est._fit_pairs(qm, tm, v)
        if est.modalities_ != columns:
            raise SimstdError(f"pseudo positives cover {est.modalities_}, the store holds {columns}")
        self.set_terms(est, terms, banks)
        est.cosine_moments_ = est._pair_moments(qm, tm, cosines)
        if est.hubness_scale == "tail":
            est.centre_ = np.zeros_like(est.mean_)
            est.scale_ = hubness.tail_scales(searchable, columns, float(est.hubness_quantile), int(est.seed))
        else:
            est.centre_, est.scale_ = est.mean_.copy(), est.std_.copy()

    # ---------------------------------------------------------- item terms
    @staticmethod
    def set_terms(est: Estimator, terms: np.ndarray, banks: dict) -> None:
        est.terms_ = np.ascontiguousarray(terms, dtype=np.float32)
        est.banks_ = dict(banks)
        est.terms_digest_ = hashlib.blake2b(est.terms_, digest_size=16).hexdigest()

    @staticmethod
    def check_terms(est: Estimator) -> None:
        if not hasattr(est, "terms_"):
            raise CorruptFileError("this hubness fit was loaded without its per-item terms file (item_terms.npy "
                                   "of the index, or <name>.terms.npy beside the JSON); refit with `simstd fit`")

    def item_terms(self, est: Estimator, ids: np.ndarray, query_modality: str) -> np.ndarray:
        self.check_terms(est)
        try:
            col = est.modalities_.index(query_modality)
        except ValueError:
            raise NotFittedError(f"no hubness terms for queries of modality {query_modality!r} (fitted: "
                                 f"{est.modalities_}); refit on data that includes it") from None
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(est.terms_)):
            raise SimstdError(f"ids must lie in 0..{len(est.terms_) - 1} (the items the hubness terms cover); "
                              "items added since the fit get theirs with extend_terms")
        return est.terms_[ids, col]

    def extend_terms(self, est: Estimator, searchable: Searchable, ids: np.ndarray,
                     vectors: np.ndarray | None) -> np.ndarray:
        self.check_terms(est)
        ids = np.asarray(ids, dtype=np.int64)
        if not np.array_equal(ids, np.arange(len(est.terms_), len(est.terms_) + len(ids))):
            raise SimstdError(f"new items must take the ids {len(est.terms_)}.. in order, got {ids[:3]}...")
        new = hubness.compute_terms(searchable, est.modalities_, est.banks_, int(est.seed), ids, vectors)
        self.set_terms(est, np.concatenate([est.terms_, new]), est.banks_)
        return new

    def save_terms(self, est: Estimator, path: str | Path) -> None:
        self.check_terms(est)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, est.terms_)

    def load_terms(self, est: Estimator, path: str | Path) -> None:
        n, digest = getattr(est, "_pending_terms", (None, None))
        fix = "refit with `simstd fit` to rewrite it"
        try:
            terms = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise CorruptFileError(f"hubness terms file {path} is missing; {fix}") from None
        except (OSError, ValueError) as exc:
            raise CorruptFileError(f"cannot read hubness terms file {path} ({exc}); {fix}") from None
        if terms.dtype != np.float32 or terms.shape != (n, len(est.modalities_)):
            raise CorruptFileError(f"hubness terms file {path} holds {terms.dtype} {terms.shape}, expected float32 "
                                   f"({n}, {len(est.modalities_)}); {fix}")
        self.set_terms(est, terms, est.banks_)
        if digest is not None and est.terms_digest_ != digest:
            del est.terms_
            raise CorruptFileError(f"hubness terms file {path} does not belong to its standardizer file; {fix}")

    # ------------------------------------------------------------ applying
    def affine(self, est: Estimator, query_modality: str, target_modality: str) -> tuple[float, float]:
        self.check_terms(est)
        q, t = est._code(query_modality), est._code(target_modality)
        centre, scale = float(est.centre_[q, t]), float(est.scale_[q, t])
        if not (np.isfinite(centre) and scale > 0):
            raise NotFittedError(f"pair ({query_modality!r}, {target_modality!r}) has no hubness scale "
                                 "(too few items of those modalities); index more items and refit")
        return centre, scale

    def cosine_moments(self, est: Estimator, query_modality: str, target_modality: str) -> tuple[float, float]:
        q, t = est._code(query_modality), est._code(target_modality)
        n, mean, m2 = (x[q, t] for x in est.cosine_moments_)
        if n < 2 or not m2 > 0:
            raise NotFittedError(f"too few pseudo positives of pair ({query_modality!r}, {target_modality!r}) "
                                 "for their cosine distribution; refit on more items")
        return float(mean), float(np.sqrt(m2 / n))

    def query_depth(self, est: Estimator) -> int:
        return int(est.hubness_k)

    def scores(self, est: Estimator, cosines: np.ndarray, query_modality: str, codes: np.ndarray,
               ids: np.ndarray | None) -> np.ndarray:
        if ids is None:
            raise SimstdError('method="hubness" needs the item id of every score: transform(..., ids=...)')
        ids = np.broadcast_to(np.asarray(ids, dtype=np.int64), np.shape(cosines))
        rho = self.item_terms(est, ids, query_modality)
        return hubness.corrected_scores(cosines, rho, codes, int(est.hubness_k))

    def block_scores(self, est: Estimator, found: np.ndarray, ids: np.ndarray, missing: np.ndarray,
                     widths: list[int], query_modality: str) -> tuple[np.ndarray, np.ndarray]:
        """FAISS returned ``u = s - rho/2`` (terms folded into the shards, engines/faiss.py):
        the cosines ``s`` and ``2u - r_q`` per shard block, ``r_q`` the mean cosine of its
        ``hubness_k`` best by ``u`` (:func:`simstd.hubness.corrected_scores`); a shard's
        columns arrive sorted by ``u``, best first, so those are its first valid columns."""
        rho = self.item_terms(est, np.where(missing, 0, ids), query_modality).astype(np.float32)
        cosines = found + np.float32(0.5) * rho
        scores = 2 * found
        start = 0
        for width in widths:
            block = slice(start, start + width)
            local = hubness.nearest_mean(cosines[:, block], ~missing[:, block], int(est.hubness_k))
            scores[:, block] -= local[:, None].astype(np.float32)
            start += width
        return cosines, scores

    # ----------------------------------------------------------- persistence
    def table_row(self, est: Estimator, i: int, j: int) -> dict:
        return {"centre": float(est.centre_[i, j]), "scale": float(est.scale_[i, j])}

    def to_dict(self, est: Estimator) -> dict:
        self.check_terms(est)
        n, mean, m2 = est.cosine_moments_
        return {
            "terms_file": TERMS_SUFFIX,
            "n_items": int(len(est.terms_)),
            "terms_digest": est.terms_digest_,
            "banks": {m: {"population": b.population, "size": b.size, "k": b.k} for m, b in est.banks_.items()},
            # The paper's statistics of the same pseudo queries (raw top-1 cosines), for the uncertainty model.
            "cosine_pairs": [
                {"query_modality": q, "target_modality": t, "n": int(n[i, j]), "mean": float(mean[i, j]),
                 "var": float(m2[i, j] / n[i, j])}
                for i, q in enumerate(est.modalities_) for j, t in enumerate(est.modalities_) if n[i, j] > 0
            ],
        }

    def from_dict(self, est: Estimator, section: dict | None, pairs: list[dict], source: str) -> None:
        labels = est.modalities_
        m = len(labels)
        centre, scale = np.full((m, m), np.nan), np.full((m, m), np.nan)
        for row in pairs:
            i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
            centre[i, j], scale[i, j] = float(row["centre"]), float(row["scale"])
            if not (np.isfinite(centre[i, j]) and scale[i, j] > 0):
                raise CorruptFileError(f"{source} is invalid: pair ({row['query_modality']!r}, "
                                       f"{row['target_modality']!r}) has hubness scale {row['scale']!r}; "
                                       "refit with `simstd fit` to rewrite it")
        est.centre_, est.scale_ = centre, scale
        info = section if section is not None else {}
        est._pending_terms = (int(info["n_items"]), str(info["terms_digest"]))
        est.banks_ = {mod: hubness.Bank(int(b["population"]), int(b["size"]), int(b["k"]))
                      for mod, b in info["banks"].items()}
        cn, cmean, cm2 = np.zeros((m, m), np.int64), np.full((m, m), np.nan), np.zeros((m, m))
        for row in info["cosine_pairs"]:
            i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
            cn[i, j], cmean[i, j] = int(row["n"]), float(row["mean"])
            cm2[i, j] = float(row["var"]) * cn[i, j]
        est.cosine_moments_ = (cn, cmean, cm2)

    def describe(self, est: Estimator) -> dict:
        return {"hubness_k": int(est.hubness_k),
                "hubness_bank": None if est.hubness_bank is None else int(est.hubness_bank),
                "hubness_scale": est.hubness_scale}
