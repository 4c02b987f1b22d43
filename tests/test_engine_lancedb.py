"""LanceDBSearcher against a real LanceDB table: fits and searches equal MixedIndex's."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from simstd import NotFittedError, SimstdError, Standardizer
from simstd.datasets import synthetic_pairs

from engine_support import assert_same_fit, assert_same_topk, check_keyed_hubness, clip_case

lancedb = pytest.importorskip("lancedb", reason='needs pip install "simstd[lancedb]"')

from simstd.engines.lancedb import LanceDBSearcher  # noqa: E402


def rows(vectors, labels, **extra):
    return [{"vector": v.tolist(), "modality": m, **{k: f(i) for k, f in extra.items()}}
            for i, (v, m) in enumerate(zip(vectors, labels))]


@pytest.fixture(scope="module")
def case(features):
    return clip_case(features("clip"))


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return lancedb.connect(tmp_path_factory.mktemp("lancedb"))


@pytest.fixture(scope="module")
def searcher(case, db):
    table = db.create_table("mixed", data=rows(case.vectors, case.labels, row=int))
    return LanceDBSearcher(table)


def test_sees_the_table(searcher, case):
    assert searcher.dim == case.index.dim and searcher.counts == {"image": 250, "text": 250}
    np.testing.assert_array_equal(searcher.ids("text"), case.index.ids("text"))  # row ids follow insertion
    np.testing.assert_allclose(searcher.reconstruct([400, 3, 400]), case.vectors[[400, 3, 400]], atol=1e-6)


def test_fit_through_lancedb_equals_fit_on_the_index(searcher, case):
    assert_same_fit(Standardizer(method="paper", sample=60, seed=4).fit(searcher), Standardizer(method="paper", sample=60, seed=4).fit(case.index))


@pytest.mark.parametrize("query_modality", ["text", "image"])
def test_top20_equals_mixed_index(searcher, case, query_modality):
    q = case.queries[query_modality]
    got = searcher.search(q, query_modality, 20, standardizer=case.standardizer)
    assert_same_topk(got, case.index.search(q, query_modality, 20, standardizer=case.standardizer))
    hit = got.hits(0)[0]
    assert hit["metadata"] == {"modality": hit["modality"], "row": hit["id"]}


def test_hubness_method_is_exact_by_certified_over_fetch(searcher, case):
    # The engine ranks by raw cosine only; the adapter over-fetches until no unseen
    # item can enter the top by u = s - rho/2, so the result equals MixedIndex's
    # (whose FAISS shards carry the terms as extra dimensions).
    for qm in ("text", "image"):
        q = case.queries[qm]
        got = searcher.search(q, qm, 20, standardizer=case.hubness)
        assert_same_topk(got, case.index.search(q, qm, 20, standardizer=case.hubness))
    fitted = Standardizer(method="hubness", sample=150).fit(searcher)  # terms and statistics through LanceDB
    np.testing.assert_allclose(fitted.terms_, case.hubness.terms_, atol=1e-6)
    assert_same_fit(fitted, case.hubness)


@pytest.mark.parametrize("method", ["hubness", "paper"])
def test_string_keyed_table_fits_and_ranks_exactly(case, db, method):
    # The default-to-be on a table with string ids: terms keyed by them, then
    # LanceDB ranks by u on the stored vector column (one search per modality).
    keys = [f"item-{i:04d}" for i in range(len(case.vectors))]
    table = db.create_table(f"keyed_{method}", data=rows(case.vectors, case.labels, key=lambda i: keys[i]))
    check_keyed_hubness(LanceDBSearcher(table, id_column="key"), case, keys, method)


def test_raw_targets_and_query_shift_equal_mixed_index(searcher, case):
    q = case.queries["image"]
    assert_same_topk(searcher.search(q, "image", 20, raw=True), case.index.search(q, "image", 20, raw=True))
    std = case.standardizer
    assert_same_topk(searcher.search(q, "image", 5, standardizer=std, targets=["text"]),
                     case.index.search(q, "image", 5, standardizer=std, targets=["text"]))
    shifted = Standardizer(method="paper", sample=150, query_shift=0.5).fit(case.index)
    assert_same_topk(searcher.search(q, "image", 20, standardizer=shifted),
                     case.index.search(q, "image", 20, standardizer=shifted))


def test_string_id_column(db):
    pairs = synthetic_pairs(30, 16, seed=5)
    vectors, labels = np.vstack([pairs[0], pairs[1]]), ["image"] * 30 + ["text"] * 30
    table = db.create_table("named", data=rows(vectors, labels, key=lambda i: f"item-{i}"))
    searcher = LanceDBSearcher(table, id_column="key")
    assert_same_fit(Standardizer(method="paper").fit(searcher), Standardizer(method="paper").fit(vectors, labels))
    res = searcher.search(pairs[1][:2], "text", 62, standardizer=Standardizer(method="paper").fit(searcher))
    assert res.ids.dtype == object and res.ids[0, 60:].tolist() == [None, None]
    assert {h["id"] for h in res.hits(0)} == {f"item-{i}" for i in range(60)}


def test_bad_input_is_named(db):
    pairs = synthetic_pairs(20, 8, seed=1)
    vectors, labels = np.vstack([pairs[0], pairs[1]]), ["image"] * 20 + ["text"] * 20
    table = db.create_table("ok", data=rows(vectors, labels))
    with pytest.raises(SimstdError, match="no column 'kind' .modality_column"):
        LanceDBSearcher(table, modality_column="kind")
    with pytest.raises(SimstdError, match="no column 'emb' .vector_column"):
        LanceDBSearcher(table, vector_column="emb")
    holes = db.create_table("holes", data=[dict(r, modality=None if i % 7 == 0 else r["modality"])
                                           for i, r in enumerate(rows(vectors, labels))])
    with pytest.raises(SimstdError, match="6 of 40 rows .* no modality"):
        LanceDBSearcher(holes)
    empty = db.create_table("empty", schema=table.schema)
    with pytest.raises(SimstdError, match="empty"):
        LanceDBSearcher(empty)
    searcher = LanceDBSearcher(table)
    std = Standardizer(method="paper").fit(searcher)
    with pytest.raises(SimstdError, match="dimension 5 but the index has dimension 8"):
        searcher.search(np.ones((2, 5)), "text", 3, standardizer=std)
    with pytest.raises(SimstdError, match="unknown target modality 'audio'"):
        searcher.search(vectors[:2], "text", 3, standardizer=std, targets=["audio"])
    with pytest.raises(NotFittedError, match="'audio' was not seen"):
        searcher.search(vectors[:2], "audio", 3, standardizer=std)
    with pytest.raises(SimstdError, match="no row with _rowid 99"):
        searcher.reconstruct([1, 99])


def test_missing_extra_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "lancedb", None)
    with pytest.raises(SimstdError, match=r'pip install "simstd\[lancedb\]"'):
        LanceDBSearcher(object())


@pytest.mark.parametrize("shape", ["smaller than K", "one modality", "duplicates"])
def test_hubness_on_awkward_tables_gives_finite_exact_scores(db, shape):
    # Issue 17 item 6, engine side: fewer items than hubness_k, one modality,
    # exact duplicates (cosine 1): the fit and both search paths give finite
    # scores equal to the brute-force reference (ArraySearcher's fit + transform).
    pairs = synthetic_pairs(6, 16, seed=1)
    if shape == "smaller than K":
        vectors, labels = np.vstack([pairs[0], pairs[1]]), ["image"] * 6 + ["text"] * 6
    elif shape == "one modality":
        vectors, labels = pairs[0], ["image"] * 6
    else:
        vectors = np.vstack([pairs[0], pairs[0][:1], pairs[0][:1], pairs[1]])
        labels = ["image"] * 8 + ["text"] * 6
    keys = [f"k{i}" for i in range(len(vectors))]
    table = db.create_table(f"awkward_{shape.replace(' ', '_')}", data=rows(vectors, labels, key=lambda i: keys[i]))
    searcher = LanceDBSearcher(table, id_column="key")
    std = Standardizer(method="hubness").fit(searcher)
    ref = Standardizer(method="hubness").fit(vectors, labels)
    assert std.hubness_k > len(vectors) // 2 and np.isfinite(std.terms_).all()
    np.testing.assert_allclose(std.terms_, ref.terms_, atol=1e-6)
    qm = labels[-1]
    exact = ref.transform(vectors[:3] @ vectors.T, qm, np.array(labels, dtype=object)[None, :],
                          ids=np.arange(len(vectors))[None, :].repeat(3, 0))
    want = -np.sort(-exact, axis=1)[:, :5]
    for route in ("over-fetch", "engine"):
        if route == "engine":
            searcher.store_terms(std)
        res = searcher.search(vectors[:3], qm, 5, standardizer=std)
        assert res.route == route and np.isfinite(res.scores).all() and np.isfinite(res.raw_scores).all()
        np.testing.assert_allclose(res.scores, want, atol=2e-4)


def test_nan_vectors_in_the_table_are_named(db):
    pairs = synthetic_pairs(10, 8, seed=1)
    vectors, labels = np.vstack([pairs[0], pairs[1]]), ["image"] * 10 + ["text"] * 10
    vectors[3, 2] = np.nan
    # LanceDB refuses NaN on insert unless told to store the vector as null: the adapter names that row.
    searcher = LanceDBSearcher(db.create_table("nan", data=rows(vectors, labels, key=lambda i: f"k{i}"),
                                               on_bad_vectors="null"),
                               id_column="key")
    for method in ("hubness", "paper"):
        with pytest.raises(SimstdError, match="null vector .*re-embed or delete"):
            Standardizer(method=method).fit(searcher)
