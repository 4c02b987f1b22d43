"""The Searchable contract: the statistics fit on any store, not only on MixedIndex."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from simstd import MixedIndex, SimstdError, Standardizer
from simstd.datasets import synthetic_pairs
from simstd.engines import ArraySearcher, as_searchable, drop_self
from simstd.mining import mine_pseudo_positives
from simstd.stats import merge_moments, pair_moments, topk_mean

PAIRS = synthetic_pairs(120, 32, seed=3)
CORPUS = np.vstack([PAIRS[0], PAIRS[1]])
LABELS = ["image"] * 120 + ["text"] * 120


class DictStore:
    """A minimal third-party store: only the five members of the protocol, string ids."""

    def __init__(self, corpus: np.ndarray, labels: list[str]) -> None:
        self.dim = corpus.shape[1]
        self._vec = {f"item-{i}": v for i, v in enumerate(corpus)}
        self._by = {m: np.array([f"item-{i}" for i, x in enumerate(labels) if x == m], dtype=object)
                    for m in dict.fromkeys(labels)}

    @property
    def modalities(self) -> list[str]:
        return list(self._by)

    def ids(self, modality):
        return self._by[modality]

    def reconstruct(self, ids):
        return np.stack([self._vec[i] for i in ids])

    def search_modality(self, queries, modality, k):
        ids = self._by[modality]
        S = queries @ self.reconstruct(ids).T
        order = np.argsort(-S, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(S, order, axis=1), ids[order]


def test_array_searcher_equals_flat_index():
    index = MixedIndex.from_arrays(CORPUS, LABELS)
    arrays = ArraySearcher(CORPUS, LABELS)
    for m in ("image", "text"):
        D1, I1 = index.search_modality(PAIRS[1][:30], m, 7)
        D2, I2 = arrays.search_modality(PAIRS[1][:30], m, 7)
        np.testing.assert_allclose(D1, D2, atol=1e-5)
        assert (I1 == I2).mean() > 0.99  # equal up to float ties
        np.testing.assert_array_equal(index.ids(m), arrays.ids(m))


@pytest.mark.parametrize("method", ["paper", "hubness"])
@pytest.mark.parametrize("store", ["arrays", "index", "dict"])
def test_fit_is_the_same_on_every_store(store, method):
    X = {"arrays": CORPUS, "index": MixedIndex.from_arrays(CORPUS, LABELS), "dict": DictStore(CORPUS, LABELS)}[store]
    ref = Standardizer(method=method, sample=50, seed=1).fit(CORPUS, LABELS)
    std = Standardizer(method=method, sample=50, seed=1).fit(X, LABELS if store == "arrays" else None)
    np.testing.assert_array_equal(std.n_, ref.n_)
    np.testing.assert_allclose(std.mean_, ref.mean_, atol=1e-6)
    np.testing.assert_allclose(std.std_, ref.std_, rtol=1e-4)
    if method == "hubness":  # and the per-item terms, keyed by the same ids
        np.testing.assert_allclose(std.terms_, ref.terms_, atol=1e-6)


def test_fit_refuses_what_is_not_searchable():
    with pytest.raises(SimstdError, match="lacks .*search_modality"):
        Standardizer().fit(object())
    with pytest.raises(SimstdError, match="one modality label per row"):
        as_searchable(CORPUS)
    with pytest.raises(SimstdError, match="do not pass them"):
        as_searchable(ArraySearcher(CORPUS, LABELS), LABELS)


def test_drop_self_keeps_k_hits_and_duplicates():
    D = np.array([[1.0, 0.9, 0.8], [0.9, 0.8, 0.7], [1.0, 1.0, 0.5]])
    I = np.array([[5, 1, 2], [3, 4, 6], [7, 8, 9]])
    D2, I2 = drop_self(D, I, np.array([5, 9, 8]))
    np.testing.assert_array_equal(I2, [[1, 2], [3, 4], [7, 9]])  # absent self: the last hit goes
    np.testing.assert_array_equal(D2, [[0.9, 0.8], [0.9, 0.8], [1.0, 0.5]])


def test_moments_merge_exactly():
    rng = np.random.default_rng(0)
    codes, scores = rng.integers(0, 4, 1000), rng.normal(size=1000)
    whole = pair_moments(codes, scores, 5)
    merged = merge_moments(pair_moments(codes[:300], scores[:300], 5), pair_moments(codes[300:], scores[300:], 5))
    for a, b in zip(whole, merged):
        np.testing.assert_allclose(a, b, rtol=1e-12, equal_nan=True)
    assert whole[0][4] == 0 and np.isnan(whole[1][4])
    np.testing.assert_allclose(topk_mean(np.array([[3.0, -np.inf, 1.0, 2.0]]), 2), [2.5])


def test_query_log_self_matches_are_left_out():
    """A log that contains the stored items must not fit text->text at mean 1, std ~0."""
    index = MixedIndex.from_arrays({"image": PAIRS[0], "text": PAIRS[1]})
    with pytest.warns(UserWarning, match="40 pseudo queries are stored items"):
        qm, tm, s = mine_pseudo_positives(index, PAIRS[1][:40], "text", sample=None)
    same = s[(qm == "text") & (tm == "text")]
    assert len(same) == 40 and same.max() < 0.999
    fresh = synthetic_pairs(40, 32, seed=99)[1]  # a log of unseen queries: nothing is left out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qm, _, s = mine_pseudo_positives(index, fresh, "text", sample=None)
    assert len(s) == 80


def test_hubness_terms_keyed_by_string_ids_save_load_and_extend(tmp_path):
    # Terms keyed by the store's own ids: the fit on string ids equals the fit on
    # row numbers, round-trips through save/load (ids in a second file only for
    # such ids), names an unknown id, and extends to new ids.
    store = DictStore(CORPUS[:-1], LABELS[:-1])
    ref = Standardizer(method="hubness", sample=50, seed=1).fit(CORPUS[:-1], LABELS[:-1])
    std = Standardizer(method="hubness", sample=50, seed=1).fit(store)
    assert ref.term_ids_ is None and list(std.term_ids_[:2]) == ["item-0", "item-1"]
    np.testing.assert_array_equal(std.terms_, ref.terms_)
    np.testing.assert_array_equal(std.mean_, ref.mean_)
    ids = np.array([["item-7", None, "item-130"]], dtype=object)
    np.testing.assert_allclose(std.item_terms(ids, "text"), [[ref.item_terms([7], "text")[0], 0,
                                                               ref.item_terms([130], "text")[0]]])
    with pytest.raises(SimstdError, match="'item-999' has no hubness term.*extend_terms"):
        std.item_terms(np.array(["item-999"], dtype=object), "text")
    std.save(tmp_path / "s.json")
    ref.save(tmp_path / "r.json")
    assert (tmp_path / "s.terms.ids.npy").exists() and not (tmp_path / "r.terms.ids.npy").exists()
    back = Standardizer.load(tmp_path / "s.json")
    assert back.terms_digest_ == std.terms_digest_ and list(back.term_ids_) == list(std.term_ids_)
    full = DictStore(CORPUS, LABELS)  # the last text item arrives
    new = std.extend_terms(full, np.array(["item-239"], dtype=object))
    whole = Standardizer(method="hubness", sample=50, seed=1).fit(CORPUS, LABELS)
    np.testing.assert_allclose(new[0], whole.terms_[239], atol=1e-6)
    assert std.item_terms(np.array(["item-239"], dtype=object), "image")[0] == new[0, 0]


def test_hubness_terms_keyed_by_integer_ids_with_gaps():
    class Gapped(ArraySearcher):  # ids 7, 10, 13, ...: no lookup table by position
        def ids(self, m):
            return super().ids(m) * 3 + 7

        def reconstruct(self, ids):
            return super().reconstruct((np.asarray(ids, dtype=np.int64) - 7) // 3)

        def search_modality(self, q, m, k):
            D, I = super().search_modality(q, m, k)
            return D, I * 3 + 7

    ref = Standardizer(method="hubness", sample=50, seed=1).fit(CORPUS, LABELS)
    std = Standardizer(method="hubness", sample=50, seed=1).fit(Gapped(CORPUS, LABELS))
    np.testing.assert_array_equal(std.terms_, ref.terms_)
    np.testing.assert_array_equal(std.item_terms([7 + 3 * 5, -1], "text"), [ref.item_terms([5], "text")[0], 0])
    with pytest.raises(SimstdError, match="item 8 has no hubness term"):
        std.item_terms([8], "text")
