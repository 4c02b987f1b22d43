import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simstd import MixedIndex, Standardizer
from simstd.errors import CorruptFileError, FingerprintMismatchError, NotFittedError, SimstdError, StaleFitWarning
from simstd.storage import version_files

from conftest import unit_rows


def brute_force(index, std, queries, qm, k):
    """All cosines, standardized per target modality, sorted: the definition of the result."""
    ids = np.arange(index.ntotal)
    X = index.reconstruct(ids).astype(np.float64)
    labels = index.modality_of(ids)
    S = queries.astype(np.float64) @ X.T
    Z = std.transform(S, qm, labels[None, :])
    return np.sort(Z, axis=1)[:, ::-1][:, :k], Z


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    dim=st.integers(2, 24),
    nq=st.integers(1, 6),
    data=st.data(),
)
def test_standardized_topk_equals_brute_force_on_flat(counts, dim, nq, data):
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    labels = ["text", "image", "audio", "video"][: len(counts)]
    arrays = {m: unit_rows(rng, n, dim, shift=3.0 * i) for i, (m, n) in enumerate(zip(labels, counts))}
    index = MixedIndex.from_arrays(arrays)
    # Statistics with very different scales per pair, as real modality gaps have.
    qm = data.draw(st.sampled_from(labels))
    std = Standardizer(method="paper").fit_scores(
        [qm] * (2 * len(labels)), [m for m in labels for _ in range(2)],
        np.concatenate([[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in labels]) + 1e-3 * np.arange(2 * len(labels)),
    )
    k = data.draw(st.integers(1, sum(counts)))
    queries = unit_rows(rng, nq, dim, shift=float(rng.uniform(-3, 3)))
    res = index.search(queries, qm, k, standardizer=std)
    expected, Z = brute_force(index, std, queries, qm, k)
    # Exactness: the returned ids have the k best standardized scores (ties may swap ids).
    got = np.take_along_axis(Z, res.ids, axis=1)
    # FAISS scores in float32: a cosine off by ~1e-6 moves z by 1e-6 / std, and
    # these fits have std down to ~1e-3.
    tol = 1e-4 + 1e-5 / np.nanmin(std.std_)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=tol)
    np.testing.assert_allclose(res.scores, expected, rtol=1e-5, atol=tol)
    assert (np.diff(res.scores, axis=1) <= 0).all()
    assert all(len(set(row)) == k for row in res.ids.tolist())
    np.testing.assert_allclose(res.raw_scores, np.take_along_axis(queries @ index.reconstruct(np.arange(index.ntotal)).T, res.ids, axis=1), atol=1e-5)
    assert (res.modalities == index.modality_of(res.ids)).all()


def real_like_index(factory="Flat", n=300, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    return MixedIndex.from_arrays(
        {"text": unit_rows(rng, n, dim, 4.0), "image": unit_rows(rng, n, dim, -4.0)},
        factory=factory,
        metadata={"text": [{"text": f"caption {i}"} for i in range(n)], "image": [{"path": f"{i}.jpg"} for i in range(n)]},
    )


def test_raw_search_returns_one_modality_and_standardized_returns_both():
    index = real_like_index()
    q = unit_rows(np.random.default_rng(5), 4, 32, 4.0)
    raw = index.search(q, "text", 20, raw=True)
    assert set(raw.modalities.ravel()) == {"text"}
    std = Standardizer().fit(index)
    res = index.search(q, "text", 20, standardizer=std)
    assert {"text", "image"} <= set(res.modalities.ravel())
    D, I = res  # faiss-shaped unpacking
    assert D.shape == I.shape == (4, 20) and I.dtype == np.int64


def test_hits_carry_metadata():
    index = real_like_index()
    index.standardizer = Standardizer().fit(index)
    hits = index.search(unit_rows(np.random.default_rng(1), 1, 32, -4.0), "image", 5).hits(0)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    for h in hits:
        key = "text" if h["modality"] == "text" else "path"
        assert key in h["metadata"]


@pytest.mark.parametrize("factory, params", [("IVF8,Flat", "nprobe=8"), ("HNSW16", "efSearch=256"), ("SQfp16", None)])
def test_approximate_factories_build_save_and_search(tmp_path, factory, params):
    index = real_like_index(factory)
    index.standardizer = Standardizer().fit(index)
    index.save(tmp_path / "db.faiss")
    back = MixedIndex.load(tmp_path / "db.faiss")
    if params:
        back.set_search_params(params)
    q = unit_rows(np.random.default_rng(2), 3, 32, 4.0)
    exact = real_like_index("Flat")
    same_stats = copy.copy(back.standardizer)  # the same fit (terms included), not tied to this index
    same_stats.index_fingerprint_ = None
    res = back.search(q, "text", 10)
    ref = exact.search(q, "text", 10, standardizer=same_stats)
    # Searching every list / a wide beam makes these indexes (almost) exact.
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids.tolist(), ref.ids.tolist())])
    assert overlap >= 0.9


def test_save_load_round_trip(tmp_path):
    index = real_like_index()
    index.standardizer = Standardizer().fit(index)
    path = tmp_path / "db.faiss"
    index.save(path)
    assert {p.name for p in tmp_path.iterdir()} == {"db.faiss", "db.faiss.d"}
    # the default's per-item terms are a named file of the version
    assert set(version_files(path)) == {"shards.faiss", "items.sqlite", "standardizer.json", "item_terms.npy"}
    back = MixedIndex.load(path)
    assert back.version == index.version and back.version is not None
    assert back.counts == index.counts and back.fingerprint == index.fingerprint
    q = unit_rows(np.random.default_rng(3), 3, 32)
    a, b = index.search(q, "text", 15), back.search(q, "text", 15)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert b.hits(0)[0]["metadata"] == a.hits(0)[0]["metadata"]


def test_add_appends_ids_and_makes_fit_stale(tmp_path):
    index = real_like_index()
    index.standardizer = std = Standardizer().fit(index)  # attached: new items get their terms on add
    ids = index.add(unit_rows(np.random.default_rng(4), 5, 32, 4.0), "text", [{"text": "new"}] * 5)
    assert ids.tolist() == list(range(600, 605))
    assert index.counts == {"text": 305, "image": 300}
    assert index.modality_of([604, 0, 300]).tolist() == ["text", "text", "image"]
    q = unit_rows(np.random.default_rng(1), 1, 32)
    with pytest.warns(StaleFitWarning, match="stale"):  # a stale fit keeps serving, with a note
        res = index.search(q, "text", 3, standardizer=std)
    assert (res.ids >= 0).all()
    with pytest.raises(FingerprintMismatchError, match="stale"):
        index.search(q, "text", 3, standardizer=std, strict=True)
    # A new modality gets its own shard.
    index.add(unit_rows(np.random.default_rng(6), 4, 32), "audio")
    assert index.modalities == ["text", "image", "audio"]


def test_interleaved_labels_keep_row_order_as_ids():
    rng = np.random.default_rng(0)
    X = unit_rows(rng, 6, 8)
    index = MixedIndex.from_arrays(X, ["a", "b", "b", "a", "c", "a"])
    assert index.modality_of(np.arange(6)).tolist() == ["a", "b", "b", "a", "c", "a"]
    np.testing.assert_allclose(index.reconstruct(np.arange(6)), X, atol=1e-6)


def test_search_like_leaves_the_item_out():
    index = real_like_index()
    index.standardizer = Standardizer().fit(index)
    res = index.search_like([3, 4], 7)
    assert res.ids.shape == (2, 7)
    assert 3 not in res.ids[0] and 4 not in res.ids[1]
    with pytest.raises(SimstdError, match="one modality"):
        index.search_like([3, 400], 7)


# ------------------------------------------------------------------ bad input
def test_bad_embeddings_are_refused_or_normalised():
    rng = np.random.default_rng(0)
    good = unit_rows(rng, 5, 8)
    nan = good.copy()
    nan[2, 1] = np.nan
    with pytest.raises(SimstdError, match="row 2 contains NaN"):
        MixedIndex.from_arrays({"text": nan})
    zero = good.copy()
    zero[4] = 0
    with pytest.raises(SimstdError, match="row 4 is a zero vector"):
        MixedIndex.from_arrays({"text": zero})
    with pytest.raises(SimstdError, match="empty"):
        MixedIndex.from_arrays({"text": good, "image": np.empty((0, 8))})
    with pytest.warns(UserWarning, match="normalised"):
        index = MixedIndex.from_arrays({"text": good * 3})
    np.testing.assert_allclose(np.linalg.norm(index.reconstruct([0, 1]), axis=1), 1, atol=1e-6)
    with pytest.raises(SimstdError, match="2-D"):
        MixedIndex.from_arrays({"text": np.zeros((2, 3, 4))})


def test_bad_queries_and_k():
    index = real_like_index()
    index.standardizer = Standardizer().fit(index)
    q = unit_rows(np.random.default_rng(1), 2, 32)
    with pytest.raises(SimstdError, match="dimension 16 but the index has dimension 32"):
        index.search(unit_rows(np.random.default_rng(1), 2, 16), "text", 3)
    with pytest.raises(SimstdError, match="k=601 is larger"):
        index.search(q, "text", 601)
    with pytest.raises(SimstdError, match="positive integer"):
        index.search(q, "text", 0)
    with pytest.raises(SimstdError, match="'video': the index holds no such modality"):  # refitting cannot help
        index.search(q, "video", 3)
    with pytest.raises(SimstdError, match="did you mean 'text'"):
        index.search(q, "Text", 3)
    with pytest.raises(SimstdError, match="unknown target modality 'audio'"):
        index.search(q, "text", 3, targets=["audio"])
    with pytest.raises(SimstdError, match="empty"):
        index.search(np.empty((0, 32)), "text", 3)
    with pytest.raises(SimstdError, match="id 9999 is not in the index"):
        index.search_like([9999], 3)


def test_search_without_fit_names_the_fix():
    with pytest.raises(NotFittedError, match="simstd fit"):
        real_like_index().search(unit_rows(np.random.default_rng(1), 1, 32), "text", 3)


def test_bad_factory_and_untrainable_ivf():
    with pytest.raises(SimstdError, match="factory string 'Nonsense'"):
        MixedIndex(8, "Nonsense")
    with pytest.raises(SimstdError, match="smaller nlist"):
        real_like_index("IVF1024,Flat", n=100)


def test_missing_and_corrupt_files(tmp_path):
    index = real_like_index()
    index.standardizer = Standardizer().fit(index)
    path = tmp_path / "db.faiss"
    with pytest.raises(SimstdError, match="does not exist"):
        MixedIndex.load(path)
    index.save(path)
    files = version_files(path)
    files["shards.faiss"].write_bytes(files["shards.faiss"].read_bytes()[:1000])  # truncated
    with pytest.raises(CorruptFileError, match="shards.faiss is corrupt"):
        MixedIndex.load(path)
    index.save(path)
    files = version_files(path)
    files["items.sqlite"].unlink()
    files["items.sqlite"].write_bytes(b"garbage" * 100)
    with pytest.raises(CorruptFileError, match="items.sqlite is corrupt"):
        MixedIndex.load(path)
    files["items.sqlite"].unlink()
    with pytest.raises(CorruptFileError, match="items.sqlite is missing"):
        MixedIndex.load(path)


def test_standardizer_of_another_index_is_noted_or_refused_on_search(tmp_path):
    a, b = real_like_index(seed=0), real_like_index(seed=1)
    b.standardizer = Standardizer().fit(a)
    q = unit_rows(np.random.default_rng(1), 1, 32)
    with pytest.warns(StaleFitWarning, match="stale"):
        b.search(q, "text", 3)
    with pytest.raises(FingerprintMismatchError, match="fitted before the index changed"):
        b.search(q, "text", 3, strict=True)


def test_interrupted_save_keeps_the_previous_index(tmp_path, monkeypatch):
    index = real_like_index()
    path = tmp_path / "db.faiss"
    index.save(path)
    before = path.read_bytes()
    folders = sorted(p.name for p in (tmp_path / "db.faiss.d").iterdir())
    index.add(unit_rows(np.random.default_rng(4), 5, 32), "text")

    import faiss

    def crash(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(KeyboardInterrupt):
        index.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.faiss", "db.faiss.d"]
    assert sorted(p.name for p in (tmp_path / "db.faiss.d").iterdir()) == folders
    assert MixedIndex.load(path).ntotal == 600


def test_query_shift_search_equals_brute_force_transform():
    """Standardizer(method="paper", query_shift>0) is applied by search exactly as transform defines it."""
    index = real_like_index(n=80)
    std = Standardizer(method="paper", query_shift=0.5, shift_k=10).fit(index)
    q = unit_rows(np.random.default_rng(7), 5, 32, 1.0)
    ids = np.arange(index.ntotal)
    S = q.astype(np.float64) @ index.reconstruct(ids).T.astype(np.float64)
    Z = std.transform(S, "text", index.modality_of(ids)[None, :])
    expected = np.sort(Z, axis=1)[:, ::-1][:, :7]
    res = index.search(q, "text", 7, standardizer=std)
    np.testing.assert_allclose(res.scores, expected, atol=1e-4)
    plain = index.search(q, "text", 7, standardizer=Standardizer(method="paper").fit(index))
    assert not np.allclose(plain.scores, res.scores)
