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
from typing import Any, ClassVar, ContextManager

import numpy as np

from .. import hubness
from ..engines.base import Searchable, count, search_session
from ..errors import CorruptFileError, NotFittedError, SimstdError
from ..fileio import atomic_path
from .method import Estimator, Method

#: Per-item terms are kept beside a standardizer's JSON file:
#: ``db.standardizer.json`` -> ``db.standardizer.terms.npy``.
TERMS_SUFFIX = ".terms.npy"
#: The ids of the term rows, when they are not 0..n-1 (a vector database's own
#: ids): ``item_terms.npy`` -> ``item_terms.ids.npy``, written only then.
IDS_SUFFIX = ".ids.npy"


def terms_path(path: str | Path) -> Path:
    """Where the per-item terms of the standardizer saved at ``path`` live."""
    path = Path(path)
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    return path.with_name(stem + TERMS_SUFFIX)


def ids_path(path: str | Path) -> Path:
    """Where the row ids of the terms file ``path`` live (stores whose ids are not 0..n-1)."""
    path = Path(path)
    stem = path.name[: -len(".npy")] if path.name.endswith(".npy") else path.name
    return path.with_name(stem + IDS_SUFFIX)


def _as_key_array(ids: Any) -> np.ndarray:
    """Ids as int64 when they are all integers, else an object array (strings, UUIDs)."""
    arr = np.asarray(ids)
    if arr.dtype == object:
        flat = arr.ravel().tolist()
        if flat and all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in flat):
            return arr.astype(np.int64)
        return arr
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind in "US":
        return arr.astype(object)
    raise SimstdError(f"item ids must be integers or strings, got {arr.dtype} ids")


class TermKeys:
    """Which term row each id owns: the identity when the ids are 0..n-1 (a
    MixedIndex: no lookup at all), else a sorted-array search (integer ids with
    gaps) or a dict (strings, UUIDs). Missing hits (``-1``, ``None``, as the
    engines mark them) map to no row."""

    def __init__(self, ids: np.ndarray | None, n: int) -> None:
        self.ids, self.n = ids, int(n)
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        self._dict: dict | None = None
        if ids is None:
            return
        if ids.dtype == object:
            self._dict = {i: r for r, i in enumerate(ids.tolist())}
            if len(self._dict) != len(ids):
                raise SimstdError("the store returned some item id twice; ids must be unique across modalities")
        else:
            order = np.argsort(ids, kind="stable")
            keys = ids[order]
            if len(keys) > 1 and (keys[1:] == keys[:-1]).any():
                raise SimstdError("the store returned some item id twice; ids must be unique across modalities")
            self._sorted = (keys, order)

    @property
    def identity(self) -> bool:
        return self.ids is None

    def rows(self, ids: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """``(rows, missing)``: the term row of each id (0 where missing) and the
        mask of missing hits (None when there is none)."""
        if self.identity:
            arr = np.asarray(ids)
            if arr.dtype == object:
                missing = np.equal(arr, None)
                arr = np.where(missing, -1, arr)
            try:
                arr = (arr if arr.dtype == np.int64 else arr.astype(np.int64)) if arr.dtype.kind in "iuO" else None
            except (TypeError, ValueError):
                arr = None
            if arr is None:
                raise SimstdError(f"this hubness fit keys its terms by the integer ids 0..{self.n - 1}; got ids such "
                                  f"as {np.asarray(ids).ravel()[:1].tolist()}: fit it on the store you search")
            missing = None
            if arr.size and arr.min() < 0:  # -1: an engine's missing hit
                missing = arr == -1
                arr = np.where(missing, 0, arr)
            if arr.size and (arr.min() < 0 or arr.max() >= self.n):
                bad = arr[(arr < 0) | (arr >= self.n)].ravel()[0]
                raise SimstdError(f"ids must lie in 0..{self.n - 1} (the items the hubness terms cover), got "
                                  f"{int(bad)}; items added since the fit get theirs with extend_terms")
            return arr, missing
        if self._sorted is not None:
            arr = np.asarray(ids)
            if arr.dtype == object:
                missing = np.equal(arr, None)
                arr = np.where(missing, -1, arr)
            if arr.dtype.kind not in "iuO":
                self._unknown(arr.ravel()[0])
            arr = arr.astype(np.int64)
            missing = arr == -1
            keys, order = self._sorted
            pos = np.minimum(np.searchsorted(keys, arr), len(keys) - 1)
            bad = (keys[pos] != arr) & ~missing
            if bad.any():
                self._unknown(arr[bad].ravel()[0])
            rows = np.where(missing, 0, order[pos])
            return rows, (missing if missing.any() else None)
        flat = np.asarray(ids, dtype=object)
        out = np.zeros(flat.shape, np.int64)
        missing = np.zeros(flat.shape, bool)
        lookup = self._dict
        for pos, i in zip(np.ndindex(flat.shape), flat.ravel().tolist()):
            if i is None or (isinstance(i, (int, np.integer)) and i == -1 and i not in lookup):
                missing[pos] = True
                continue
            r = lookup.get(i)
            if r is None:
                self._unknown(i)
            out[pos] = r
        return out, (missing if missing.any() else None)

    def _unknown(self, i: Any) -> None:
        i = i.item() if isinstance(i, np.generic) else i
        raise SimstdError(f"item {i!r} has no hubness term: it was added to the store after the fit (give it one "
                          "with standardizer.extend_terms(store, ids)) or the fit belongs to another store; "
                          "refit to cover every item")


class RowView:
    """A store seen through term rows: ids are the rows 0..n-1 of ``keys``, so
    the term math (:mod:`simstd.hubness`, which indexes arrays by id) runs
    unchanged on stores with string, UUID or gapped ids."""

    def __init__(self, store: Searchable, keys: TermKeys) -> None:
        self.store, self.keys, self.row_ids = store, keys, keys.ids

    @property
    def dim(self) -> int:
        return self.store.dim

    @property
    def modalities(self) -> list[str]:
        return self.store.modalities

    def ids(self, modality: str) -> np.ndarray:
        # Ascending rows: the fit's order of the modality's items (rows were
        # given per modality in the store's order), so a bank drawn from the
        # first ``population`` rows is the fit's bank after items are added.
        rows, _ = self.keys.rows(_as_key_array(self.store.ids(modality)))
        return np.sort(rows)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        rows = np.asarray(ids, dtype=np.int64).ravel()
        return self.store.reconstruct(self.row_ids[rows])

    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        D, I = self.store.search_modality(queries, modality, k)
        rows, missing = self.keys.rows(I)
        return D, (rows if missing is None else np.where(missing, -1, rows))

    def mining_session(self) -> ContextManager[None]:
        return search_session(self.store)


class HubnessMethod(Method):
    """Per-item hubness terms, a query term from one search's candidates, per-pair scale."""

    name = "hubness"
    citation = ("CSLS (Conneau et al. 2018) hubness-corrected, standardized on pseudo positives "
                "(Yamashita et al. 2025)")
    has_item_terms = True
    fitted_attributes: ClassVar[tuple[str, ...]] = (
        "terms_", "term_ids_", "terms_digest_", "banks_", "centre_", "scale_", "scale_error_", "cosine_moments_")
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
        columns = sorted(searchable.modalities)
        keys = self.fit_keys(searchable, columns)
        # Stores whose ids are not 0..n-1 (UUIDs, strings, gaps) are seen through
        # their term rows, so the term math indexes arrays by row as on a MixedIndex.
        store = searchable if keys.identity else RowView(searchable, keys)
        n = keys.n
        banks = hubness.fit_banks(store, int(est.hubness_k), est.hubness_bank)
        if terms is None:
            terms = hubness.compute_terms(store, columns, banks, int(est.seed), np.arange(n, dtype=np.int64))
        terms = np.asarray(terms, dtype=np.float32)
        if terms.shape != (n, len(columns)) or not np.isfinite(terms).all():
            raise SimstdError(f"terms must be a finite ({n}, {len(columns)}) array (row = id, or for a store with "
                              f"other ids the items in the order of its ids(m) over m in {columns}; columns = "
                              f"{columns}), got shape {terms.shape}")
        col = {m: j for j, m in enumerate(columns)}
        tail = est.hubness_scale == "tail"
        # With the tail scale the ranking uses the terms and beta_ab only: the corrected scores'
        # moments are reported, and the sample is sized by the cosines the uncertainty model uses.
        qm, tm, v, cosines = hubness.pseudo_positive_scores(
            store, lambda ids, a: terms[ids, col[a]], int(est.hubness_k), est.sample, int(est.seed),
            target_se=float(est.target_se), sized_by="cosines" if tail else "both",
        )
        est._fit_pairs(qm, tm, v)
        if est.modalities_ != columns:
            raise SimstdError(f"pseudo positives cover {est.modalities_}, the store holds {columns}")
        self.set_terms(est, terms, banks, keys.ids)
        est.cosine_moments_ = est._pair_moments(qm, tm, cosines)
        if tail:
            est.centre_ = np.zeros_like(est.mean_)
            est.scale_, est.scale_error_ = hubness.tail_scales(store, columns, float(est.hubness_quantile),
                                                               int(est.seed))
        else:
            est.centre_, est.scale_ = est.mean_.copy(), est.std_.copy()
            est.scale_error_ = est.standard_error_[..., 1].copy()

    @staticmethod
    def fit_keys(searchable: Searchable, columns: list[str]) -> TermKeys:
        """The ids the term rows belong to: None (identity) when they are 0..n-1,
        else every item's id, modality by modality in ``columns`` order."""
        parts = [_as_key_array(searchable.ids(m)) for m in columns]
        if any(p.dtype == object for p in parts):
            ids = np.concatenate([p.astype(object) for p in parts])
        else:
            ids = np.concatenate(parts).astype(np.int64)
            if np.array_equal(np.sort(ids), np.arange(len(ids))):
                return TermKeys(None, len(ids))
        return TermKeys(ids, len(ids))

    # ---------------------------------------------------------- item terms
    @staticmethod
    def set_terms(est: Estimator, terms: np.ndarray, banks: dict, ids: np.ndarray | None = None) -> None:
        est.terms_ = np.ascontiguousarray(terms, dtype=np.float32)
        est.banks_ = dict(banks)
        #: None: row i holds id i (0..n-1); else the store's id of each row.
        est.term_ids_ = ids
        est._term_keys = TermKeys(ids, len(est.terms_))
        digest = hashlib.blake2b(est.terms_, digest_size=16)
        if ids is not None:  # the same terms under other ids are another fit
            digest.update(_ids_bytes(ids))
        est.terms_digest_ = digest.hexdigest()

    @staticmethod
    def keys(est: Estimator) -> TermKeys:
        keys = getattr(est, "_term_keys", None)
        if keys is None or keys.n != len(est.terms_):
            keys = est._term_keys = TermKeys(getattr(est, "term_ids_", None), len(est.terms_))
        return keys

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
        rows, missing = self.keys(est).rows(ids)
        out = est.terms_[rows, col]
        return out if missing is None else np.where(missing, np.float32(0), out)

    def extend_terms(self, est: Estimator, searchable: Searchable, ids: np.ndarray,
                     vectors: np.ndarray | None) -> np.ndarray:
        self.check_terms(est)
        n = len(est.terms_)
        keys = self.keys(est)
        ids = _as_key_array(ids).ravel()
        if keys.identity and ids.dtype != object and np.array_equal(ids, np.arange(n, n + len(ids))):
            # A MixedIndex's next ids: rows stay ids (no lookup).
            new = hubness.compute_terms(searchable, est.modalities_, est.banks_, int(est.seed), ids, vectors)
            self.set_terms(est, np.concatenate([est.terms_, new]), est.banks_)
            return new
        old = np.arange(n, dtype=np.int64) if keys.identity else keys.ids
        if old.dtype == object or ids.dtype == object:
            combined = np.concatenate([old.astype(object), ids.astype(object)])
        else:
            combined = np.concatenate([old, ids])
        try:
            wider = TermKeys(combined, len(combined))
        except SimstdError:
            raise SimstdError("some of the new ids already have hubness terms; extend_terms takes items added "
                              "since the fit") from None
        rows = np.arange(n, len(combined), dtype=np.int64)
        new = hubness.compute_terms(RowView(searchable, wider), est.modalities_, est.banks_, int(est.seed), rows,
                                    vectors)
        self.set_terms(est, np.concatenate([est.terms_, new]), est.banks_, combined)
        return new

    def save_terms(self, est: Estimator, path: str | Path) -> None:
        self.check_terms(est)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, est.terms_)
        ids = getattr(est, "term_ids_", None)
        if ids is not None:  # the store's own ids: a second file, so the terms file keeps its format
            kind, arr = _ids_for_file(ids)
            with atomic_path(ids_path(path)) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, arr, allow_pickle=False)

    def load_terms(self, est: Estimator, path: str | Path) -> None:
        n, digest = getattr(est, "_pending_terms", (None, None))
        kind = getattr(est, "_pending_ids", None)
        fix = "refit with `simstd fit` to rewrite it"
        files = [path] + ([ids_path(path)] if kind is not None else [])
        loaded = []
        for file in files:
            try:
                loaded.append(np.load(file, allow_pickle=False))
            except FileNotFoundError:
                raise CorruptFileError(f"hubness terms file {file} is missing; {fix}") from None
            except (OSError, ValueError) as exc:
                raise CorruptFileError(f"cannot read hubness terms file {file} ({exc}); {fix}") from None
        terms = loaded[0]
        if terms.dtype != np.float32 or terms.shape != (n, len(est.modalities_)):
            raise CorruptFileError(f"hubness terms file {path} holds {terms.dtype} {terms.shape}, expected float32 "
                                   f"({n}, {len(est.modalities_)}); {fix}")
        ids = None
        if kind is not None:
            ids = _ids_from_file(kind, loaded[1])
            if ids is None or ids.shape != (n,):
                raise CorruptFileError(f"hubness ids file {files[1]} does not hold {n} {kind} ids; {fix}")
        self.set_terms(est, terms, est.banks_, ids)
        if digest is not None and est.terms_digest_ != digest:
            del est.terms_
            raise CorruptFileError(f"hubness terms file {path} does not belong to its standardizer file; {fix}")

    # ------------------------------------------------------------ applying
    def affine(self, est: Estimator, query_modality: str, target_modality: str) -> tuple[float, float]:
        self.check_terms(est)
        q, t = est._code(query_modality), est._code(target_modality)
        centre, scale = float(est.centre_[q, t]), float(est.scale_[q, t])
        if not (np.isfinite(centre) and scale > 0):
            raise NotFittedError(f"pair ({query_modality!r}, {target_modality!r}) has no hubness scale: fewer than "
                                 "two distinct items of those modalities (exact copies of one item make no "
                                 "spread); index more distinct items and refit")
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
        ids = np.broadcast_to(np.asarray(ids), np.shape(cosines))
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
        se = getattr(est, "scale_error_", None)
        known = se is not None and np.isfinite(se[i, j])
        return {"centre": float(est.centre_[i, j]), "scale": float(est.scale_[i, j]),
                **({"scale_se": float(se[i, j])} if known else {})}

    def to_dict(self, est: Estimator) -> dict:
        self.check_terms(est)
        n, mean, m2 = est.cosine_moments_
        return {
            "terms_file": TERMS_SUFFIX,
            "n_items": int(len(est.terms_)),
            "terms_digest": est.terms_digest_,
            # Present only for a store whose ids are not 0..n-1 (then item_terms.ids.npy holds them).
            **({} if getattr(est, "term_ids_", None) is None else {"term_ids": _ids_for_file(est.term_ids_)[0]}),
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
        centre, scale, scale_se = np.full((m, m), np.nan), np.full((m, m), np.nan), np.full((m, m), np.nan)
        for row in pairs:
            i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
            centre[i, j], scale[i, j] = float(row["centre"]), float(row["scale"])
            scale_se[i, j] = float(row.get("scale_se", np.nan))  # written since the tail's error was stated
            if not (np.isfinite(centre[i, j]) and scale[i, j] > 0):
                raise CorruptFileError(f"{source} is invalid: pair ({row['query_modality']!r}, "
                                       f"{row['target_modality']!r}) has hubness scale {row['scale']!r}; "
                                       "refit with `simstd fit` to rewrite it")
        est.centre_, est.scale_, est.scale_error_ = centre, scale, scale_se
        info = section if section is not None else {}
        est._pending_terms = (int(info["n_items"]), str(info["terms_digest"]))
        est._pending_ids = info.get("term_ids")
        est.term_ids_ = None
        est.banks_ = {mod: hubness.Bank(int(b["population"]), int(b["size"]), int(b["k"]))
                      for mod, b in info["banks"].items()}
        cn, cmean, cm2 = np.zeros((m, m), np.int64), np.full((m, m), np.nan), np.zeros((m, m))
        for row in info["cosine_pairs"]:
            i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
            cn[i, j], cmean[i, j] = int(row["n"]), float(row["mean"])
            cm2[i, j] = float(row["var"]) * cn[i, j]
        est.cosine_moments_ = (cn, cmean, cm2)

    def describe(self, est: Estimator) -> dict:
        return {"hubness_k": int(est.hubness_k)}

    def summary(self, est: Estimator) -> str:
        return f"hubness: CSLS-corrected cosine (K={int(est.hubness_k)}), standardized"


def _ids_bytes(ids: np.ndarray) -> bytes:
    kind, arr = _ids_for_file(ids)
    return kind.encode() + b"\0" + np.ascontiguousarray(arr).tobytes()


def _ids_for_file(ids: np.ndarray) -> tuple[str, np.ndarray]:
    """``(kind, array)`` that ``np.save`` writes without pickling: ``"int"`` (int64),
    ``"str"`` (unicode), or ``"mixed"`` (Qdrant's integers and UUIDs as text)."""
    if ids.dtype != object:
        return "int", np.asarray(ids, dtype=np.int64)
    values = ids.tolist()
    if all(isinstance(i, str) for i in values):
        return "str", np.asarray(values, dtype=str)
    if all(isinstance(i, (str, int, np.integer)) for i in values):
        return "mixed", np.asarray([f"i{i}" if not isinstance(i, str) else f"s{i}" for i in values], dtype=str)
    raise SimstdError(f"hubness terms keyed by {type(values[0]).__name__} ids cannot be saved; use integer or "
                      "string ids")


def _ids_from_file(kind: str, arr: np.ndarray) -> np.ndarray | None:
    if kind == "int" and arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if kind == "str" and arr.dtype.kind == "U":
        return np.asarray(arr.tolist(), dtype=object)
    if kind == "mixed" and arr.dtype.kind == "U":
        return np.asarray([int(v[1:]) if v[:1] == "i" else v[1:] for v in arr.tolist()], dtype=object)
    return None
