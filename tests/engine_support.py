"""Shared pieces of the engine-adapter tests: the real CLIP mixed split as one
corpus with global ids (MixedIndex's numbering), a fit, and a tie-tolerant
top-k comparison (as FAISS's contrib/evaluation.py:check_ref_knn_with_draws)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simstd import MixedIndex, Standardizer
from simstd.datasets import mixed_split

#: Standardized scores of two engines agree to float32 rounding of
#: cosine/std (std ~0.03): 1e-7 / 0.03 is ~3e-6; this leaves room.
TOL = 2e-4


@dataclass
class ClipCase:
    vectors: np.ndarray  # (n, d) exact unit rows, row i = global id i
    labels: list[str]
    index: MixedIndex
    standardizer: Standardizer
    queries: dict[str, np.ndarray]
    hubness: Standardizer  # method="hubness": per-item terms the engines do not store


def clip_case(pairs: np.ndarray, n_queries: int = 30) -> ClipCase:
    # Unit rows in float32: the feature file's norms are off by up to 6e-4,
    # which FAISS's inner product keeps and the engines' cosine removes.
    pairs = (pairs / np.linalg.norm(pairs, axis=2, keepdims=True)).astype(np.float32)
    split = mixed_split(pairs)
    index = MixedIndex.from_arrays(split.corpus)
    vectors = np.vstack([split.corpus["image"], split.corpus["text"]])
    labels = ["image"] * len(split.corpus["image"]) + ["text"] * len(split.corpus["text"])
    std = Standardizer(method="paper", sample=150).fit(index)
    queries = {m: q[:n_queries] for m, q in split.queries.items()}
    hubness = Standardizer(method="hubness", sample=150).fit(index)
    return ClipCase(vectors, labels, index, std, queries, hubness)


def assert_same_topk(got, ref, tol: float = TOL) -> None:
    """Same top-k up to ties: equal scores row by row, the same id wherever the
    reference score is clear of its neighbours, the same modality per id."""
    assert got.ids.shape == ref.ids.shape
    assert got.standardized == ref.standardized
    np.testing.assert_allclose(got.scores, ref.scores, atol=tol)
    np.testing.assert_allclose(got.raw_scores, ref.raw_scores, atol=tol)
    for r in range(len(ref.ids)):
        s = ref.scores[r]
        clear = np.ones(len(s), bool)
        clear[1:] &= np.abs(np.diff(s)) > tol
        clear[:-1] &= np.abs(np.diff(s)) > tol
        assert list(np.asarray(got.ids[r])[clear]) == list(np.asarray(ref.ids[r])[clear]), r
        # an id outside the reference's top-k must tie with its last score
        extra = set(np.asarray(got.ids[r]).tolist()) - set(np.asarray(ref.ids[r]).tolist())
        for c, i in enumerate(np.asarray(got.ids[r]).tolist()):
            if i in extra:
                assert abs(got.scores[r, c] - s[-1]) <= tol, (r, i)
        mine = dict(zip(np.asarray(got.ids[r]).tolist(), got.modalities[r]))
        theirs = dict(zip(np.asarray(ref.ids[r]).tolist(), ref.modalities[r]))
        assert all(mine[i] == theirs[i] for i in set(mine) & set(theirs))


def assert_same_fit(a: Standardizer, b: Standardizer, tol: float = 1e-5) -> None:
    assert a.modalities_ == b.modalities_
    np.testing.assert_array_equal(a.n_, b.n_)
    np.testing.assert_allclose(a.mean_, b.mean_, atol=tol)
    np.testing.assert_allclose(a.std_, b.std_, atol=tol)


def by_rows(result, keys: list):
    """``result`` with the store's ids (``keys[i]`` is the key of global id i)
    turned back into global ids, to compare with MixedIndex's result."""
    from dataclasses import replace

    row = {k: i for i, k in enumerate(keys)}
    ids = np.array([[row.get(i, -1) if i is not None else -1 for i in r] for r in result.ids.tolist()], np.int64)
    return replace(result, ids=ids)


def check_keyed_hubness(searcher, case, keys: list, method: str) -> None:
    """Fit ``method`` on a store keyed by ``keys`` (UUIDs, strings), search it
    through the over-fetch and, for the hubness method, through the terms the
    engine stores: both equal MixedIndex's exact top-20 (brute force on Flat),
    and the engine path fetches fewer raw hits."""
    ref_std = case.hubness if method == "hubness" else case.standardizer
    std = Standardizer(method=method, sample=150).fit(searcher)
    if method == "hubness":
        np.testing.assert_allclose(std.terms_, ref_std.terms_, atol=1e-6)  # rows follow the keys' order
        assert list(std.term_ids_) == keys
    assert_same_fit(std, ref_std)
    before = {}
    for qm in ("text", "image"):
        q = case.queries[qm][:10]
        got = before[qm] = searcher.search(q, qm, 20, standardizer=std)
        assert got.route == ("over-fetch" if method == "hubness" else "map")
        assert_same_topk(by_rows(got, keys), case.index.search(q, qm, 20, standardizer=ref_std))
    if method != "hubness":
        return
    searcher.store_terms(std)
    depth = max(20, std.hubness_k)
    for qm in ("text", "image"):
        q = case.queries[qm][:10]
        engine = searcher.search(q, qm, 20, standardizer=std)
        assert engine.route == "engine"
        assert_same_topk(by_rows(engine, keys), case.index.search(q, qm, 20, standardizer=ref_std))
        meta = engine.hits(0)[0]["metadata"]
        assert meta and "simstd_terms" not in meta  # payloads without the terms vector
        for m in engine.fetched:  # one search of depth max(k, K) per modality, fewer than the over-fetch
            assert (engine.fetched[m] == depth).all()
            assert before[qm].fetched[m].mean() > depth
