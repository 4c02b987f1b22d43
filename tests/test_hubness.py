"""Hubness-corrected standardization: terms, exact search, add, persistence, search_like."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simstd import MixedIndex, Standardizer
from simstd.errors import CorruptFileError, SimstdError
from simstd.hubness import bank_k, item_terms
from simstd.standardizer import terms_path
from simstd.storage import version_files

from conftest import unit_rows


def all_scores(index, queries):
    ids = np.arange(index.ntotal)
    X = index.reconstruct(ids).astype(np.float64)
    return queries.astype(np.float64) @ X.T, index.modality_of(ids)


def brute_force(index, std, queries, qm, k, leave_out=None):
    """Every item scored by the definition (Standardizer.transform), sorted; ``leave_out``
    removes each query's own item before anything is computed."""
    S, labels = all_scores(index, queries)
    ids = np.broadcast_to(np.arange(index.ntotal), S.shape)
    if leave_out is not None:
        keep = ids != np.asarray(leave_out)[:, None]
        S = S[keep].reshape(len(S), -1)
        ids = ids[keep].reshape(len(S), -1)
    kw = {"ids": ids} if std.method == "hubness" else {}
    Z = std.transform(S, qm, labels[ids], **kw)
    order = np.argsort(-Z, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(Z, order, axis=1), np.take_along_axis(ids, order, axis=1), Z, ids


def exact_terms(X, labels, a, k):
    """rho^a of every row: mean of its k best cosines among the other rows of modality a."""
    S = X.astype(np.float64) @ X[labels == a].T.astype(np.float64)
    own = np.flatnonzero(labels == a)
    S[own, np.arange(len(own))] = -np.inf
    top = -np.sort(-S, axis=1)[:, :k]
    finite = np.isfinite(top)
    return np.where(finite, top, 0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)


@settings(max_examples=50, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=4).filter(lambda c: len(c) > 1 or c[0] > 1),
    dim=st.integers(2, 16),
    nq=st.integers(1, 5),
    data=st.data(),
)
def test_hubness_search_equals_brute_force_on_flat(counts, dim, nq, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    labels = ["text", "image", "audio", "video"][: len(counts)]
    arrays = {m: unit_rows(rng, n, dim, shift=3.0 * i) for i, (m, n) in enumerate(zip(labels, counts))}
    index = MixedIndex.from_arrays(arrays)
    hk = data.draw(st.integers(1, 12))
    std = Standardizer(method="hubness", hubness_k=hk, sample=None).fit(index)
    # Pair statistics with very different scales, as real modality gaps have.
    m = len(labels)
    std.centre_, std.scale_ = rng.uniform(-2, 2, (m, m)), rng.uniform(0.1, 1, (m, m))
    qm = data.draw(st.sampled_from(labels))
    k = data.draw(st.integers(1, sum(counts)))
    queries = unit_rows(rng, nq, dim, shift=float(rng.uniform(-3, 3)))
    res = index.search(queries, qm, k, standardizer=std)
    expected, _, Z, _ = brute_force(index, std, queries, qm, k)
    np.testing.assert_allclose(np.take_along_axis(Z, res.ids, axis=1), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(res.scores, expected, rtol=1e-5, atol=1e-4)
    assert all(len(set(row)) == k for row in res.ids.tolist())
    S, _ = all_scores(index, queries)
    np.testing.assert_allclose(res.raw_scores, np.take_along_axis(S, res.ids, axis=1), atol=1e-5)
    assert (res.modalities == index.modality_of(res.ids)).all()
    # The terms are the definition: each item's hubness_k best cosines among the other items of a.
    X, lab = index.reconstruct(np.arange(index.ntotal)), index.modality_of(np.arange(index.ntotal))
    for a in labels:
        np.testing.assert_allclose(std.item_terms(np.arange(index.ntotal), a), exact_terms(X, lab, a, hk), atol=1e-5)
    # A raw search through the same (augmented) shards is still the plain cosine top-k.
    raw = index.search(queries, qm, k, raw=True)
    np.testing.assert_allclose(raw.scores, -np.sort(-S, axis=1)[:, :k], atol=1e-5)


def two_modalities(n=120, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    return MixedIndex.from_arrays({"text": unit_rows(rng, n, dim, 3.0), "image": unit_rows(rng, n + 7, dim, -3.0)})


@pytest.mark.parametrize("method", ["paper", "hubness"])
def test_search_like_equals_brute_force_with_the_item_left_out(method):
    """Issue 9 item 5: with query_shift, search_like counted the item itself (cosine 1)
    in its own modality's shift before removing it."""
    index = two_modalities()
    kw = {"method": "paper", "query_shift": 0.5} if method == "paper" else {"method": "hubness"}
    std = Standardizer(**kw).fit(index)
    for qm in ("text", "image"):
        ids = index.ids(qm)[::3]
        res = index.search_like(ids, 10, standardizer=std)
        expected, expected_ids, _, _ = brute_force(index, std, index.reconstruct(ids), qm, 10, leave_out=ids)
        np.testing.assert_allclose(res.scores, expected, atol=1e-4)
        assert (res.ids == expected_ids).mean() > 0.99  # up to float ties
        assert not (res.ids == ids[:, None]).any()


def test_item_terms_leave_the_item_out_and_count_duplicates():
    rng = np.random.default_rng(1)
    bank = unit_rows(rng, 50, 8)
    vectors = np.vstack([bank[:3], bank[:1]])
    ids = np.array([0, 1, 2, 99])
    rho = item_terms(vectors, bank, 1, self_ids=ids, bank_ids=np.arange(50))
    S = vectors @ bank.T
    S[np.arange(3), np.arange(3)] = -np.inf  # rows 0-2 are bank items 0-2: never their own neighbour
    np.testing.assert_allclose(rho, S.max(axis=1), atol=1e-6)
    assert rho[3] == pytest.approx(1.0, abs=1e-6)  # id 99 is a copy of bank item 0: that counts
    with pytest.raises(SimstdError, match="together"):
        item_terms(vectors, bank, 1, self_ids=ids)
    assert bank_k(10, 100, 100) == 10 and bank_k(10, 100, 1000) == 1 and bank_k(10, 500, 1000) == 5


def test_sampled_bank_terms_track_the_exact_terms():
    index = two_modalities(n=600, dim=16, seed=3)
    exact = Standardizer(method="hubness", hubness_bank=None, sample=None).fit(index)
    sampled = Standardizer(method="hubness", hubness_bank=200, sample=None).fit(index)
    assert sampled.banks_["text"].size == 200 and sampled.banks_["text"].k == 3
    for a in ("text", "image"):
        r = np.corrcoef(exact.terms_[:, exact.modalities_.index(a)], sampled.terms_[:, sampled.modalities_.index(a)])
        assert r[0, 1] > 0.8


def test_add_gives_new_items_terms_from_the_existing_bank_and_stays_exact():
    index = two_modalities()
    std = Standardizer(method="hubness", sample=None).fit(index)
    index.standardizer = std
    q = unit_rows(np.random.default_rng(9), 4, 24, 3.0)
    index.search(q, "text", 5)  # folds the terms into the shards
    before = std.terms_.copy()
    new = unit_rows(np.random.default_rng(10), 9, 24, 3.0)
    ids = index.add(new, "text")
    assert np.array_equal(std.terms_[: len(before)], before)  # nothing refitted
    bank_ids = {m: std.banks_[m].ids(index.ids(m), std.seed) for m in std.modalities_}
    for a in std.modalities_:
        got = std.item_terms(ids, a)
        want = item_terms(new, index.reconstruct(bank_ids[a]), std.banks_[a].k, self_ids=ids, bank_ids=bank_ids[a])
        np.testing.assert_allclose(got, want, atol=1e-6)
    res = index.search(q, "text", 30)  # the fit keeps serving, and stays exact
    expected, _, _, _ = brute_force(index, std, q, "text", 30)
    np.testing.assert_allclose(res.scores, expected, atol=1e-4)
    assert np.isin(ids, res.ids).any()


def test_save_load_round_trip_and_terms_file(tmp_path):
    index = two_modalities()
    index.standardizer = Standardizer(method="hubness").fit(index)
    q = unit_rows(np.random.default_rng(2), 3, 24, -3.0)
    before = index.search(q, "image", 12)
    index.save(tmp_path / "db.faiss")
    files = version_files(tmp_path / "db.faiss")
    assert "item_terms.npy" in files  # a named file of the index version, not inside the JSON
    data = json.loads(files["standardizer.json"].read_text())
    assert data["settings"]["method"] == "hubness" and data["hubness"]["n_items"] == index.ntotal
    again = MixedIndex.load(tmp_path / "db.faiss")
    assert again.shard_set.term_modalities == index.shard_set.term_modalities  # the folded shards were saved: no refold
    after = again.search(q, "image", 12)
    assert np.array_equal(before.ids, after.ids)
    np.testing.assert_allclose(before.scores, after.scores, atol=1e-6)
    # A refit with the paper's method drops the terms file from the next version.
    again.standardizer = Standardizer(method="paper").fit(again)
    again.save(tmp_path / "db.faiss")
    assert "item_terms.npy" not in version_files(tmp_path / "db.faiss")
    np.testing.assert_allclose(MixedIndex.load(tmp_path / "db.faiss").search(q, "image", 5, raw=True).scores,
                               index.search(q, "image", 5, raw=True).scores, atol=1e-6)


def test_standalone_standardizer_file_keeps_its_terms_beside_it(tmp_path):
    index = two_modalities()
    std = Standardizer(method="hubness").fit(index)
    std.save(tmp_path / "s.json")
    assert terms_path(tmp_path / "s.json") == tmp_path / "s.terms.npy"
    again = Standardizer.load(tmp_path / "s.json")
    np.testing.assert_array_equal(again.terms_, std.terms_)
    np.save(tmp_path / "s.terms.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(CorruptFileError, match="terms"):
        Standardizer.load(tmp_path / "s.json")
    np.save(tmp_path / "s.terms.npy", std.terms_ + 1)
    with pytest.raises(CorruptFileError, match="does not belong"):
        Standardizer.load(tmp_path / "s.json")
    (tmp_path / "s.terms.npy").unlink()
    with pytest.raises(CorruptFileError, match="missing"):
        Standardizer.load(tmp_path / "s.json")


def test_old_standardizer_files_load_as_the_paper_method(tmp_path):
    index = two_modalities()
    paper = Standardizer(method="paper").fit(index)  # files of that time hold paper fits
    data = paper.to_dict()
    del data["settings"]["method"], data["settings"]["hubness_k"], data["settings"]["hubness_bank"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = Standardizer.load(tmp_path / "old.json")
    assert old.method == "paper"
    np.testing.assert_array_equal(old.mean_, paper.mean_)


def test_bad_settings_and_misuse():
    index = two_modalities(n=20)
    for kw, match in [({"method": "csls"}, "method"), ({"method": "hubness", "hubness_k": 0}, "hubness_k"),
                      ({"method": "hubness", "hubness_bank": True}, "hubness_bank"),
                      ({"method": "hubness", "query_shift": 0.5}, "query_shift")]:
        with pytest.raises(SimstdError, match=match):
            Standardizer(**kw).fit(index)
    hub = Standardizer(method="hubness").fit(index)
    with pytest.raises(SimstdError, match="ids"):
        hub.transform(np.zeros(3), "text", "image")
    with pytest.raises(SimstdError, match="merge"):
        hub.merge(hub)
    with pytest.raises(SimstdError, match="fit_scores"):
        Standardizer(method="hubness").fit_scores("text", "image", [0.1, 0.2])


@pytest.mark.parametrize("factory, params", [("IVF4,Flat", "nprobe=4"), ("HNSW8", "efSearch=64")])
def test_approximate_factories_fold_the_terms(factory, params):
    rng = np.random.default_rng(0)
    index = MixedIndex.from_arrays({"text": unit_rows(rng, 300, 16, 3.0), "image": unit_rows(rng, 300, 16, -3.0)},
                                   factory=factory)
    index.set_search_params(params)
    std = Standardizer(method="hubness").fit(index)
    q = unit_rows(rng, 5, 16, 3.0)
    res = index.search(q, "text", 10, standardizer=std)
    index.set_search_params(params)  # the fold rebuilt the shards
    res = index.search(q, "text", 10, standardizer=std)
    expected, expected_ids, _, _ = brute_force(index, std, q, "text", 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids.tolist(), expected_ids.tolist())]) >= 0.9


def test_cli_fit_method_hubness_query_and_add(tmp_path):
    from click.testing import CliRunner

    from simstd.cli import main

    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", unit_rows(rng, 60, 16, 3.0))
    np.save(tmp_path / "i.npy", unit_rows(rng, 50, 16, -3.0))
    np.save(tmp_path / "more.npy", unit_rows(rng, 4, 16, -3.0))
    np.save(tmp_path / "q.npy", unit_rows(rng, 2, 16, 3.0))
    db = tmp_path / "db.faiss"
    run = lambda *a: CliRunner().invoke(main, [str(x) for x in a])  # noqa: E731
    assert run("build", "-e", f"text={tmp_path / 't.npy'}", "-e", f"image={tmp_path / 'i.npy'}", "--out", db).exit_code == 0
    r = run("fit", "--index", db, "--method", "hubness", "--uncertainty")
    assert r.exit_code == 0, r.output
    index = MixedIndex.load(db)
    assert index.standardizer.method == "hubness" and index.shard_set.folded == index.standardizer.terms_digest_
    expected = index.search(np.load(tmp_path / "q.npy"), "text", 5).ids
    r = run("query", "--vector", tmp_path / "q.npy", "--query-modality", "text", "--index", db, "-k", 5,
            "--format", "jsonl")
    assert r.exit_code == 0, r.output
    hits = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    assert [h["id"] for h in hits] == expected.ravel().tolist()
    r = run("query", "--like", 3, "--index", db, "-k", 5, "--rerank", "uncertainty")
    assert r.exit_code == 0, r.output
    r = run("add", "-e", f"image={tmp_path / 'more.npy'}", "--index", db)
    assert r.exit_code == 0 and "terms" in r.output, r.output
    again = MixedIndex.load(db)
    assert len(again.standardizer.terms_) == again.ntotal == 114
    r = run("fit", "--index", db, "--method", "paper")
    assert r.exit_code == 0, r.output
    assert MixedIndex.load(db).standardizer.method == "paper"


def test_fit_with_terms_computed_elsewhere_equals_the_fit():
    """The Spark path: terms from item_terms per block against fit_banks' banks."""
    from simstd.hubness import fit_banks

    index = two_modalities(n=300, dim=16, seed=4)
    ref = Standardizer(method="hubness", hubness_bank=100).fit(index)
    banks = fit_banks(index, 10, 100)
    cols = sorted(index.modalities)
    ids = np.arange(index.ntotal)
    terms = np.zeros((index.ntotal, len(cols)), np.float32)
    for j, a in enumerate(cols):
        b_ids = banks[a].ids(index.ids(a), 0)
        for block in np.array_split(ids, 3):  # three "partitions"
            terms[block, j] = item_terms(index.reconstruct(block), index.reconstruct(b_ids), banks[a].k,
                                         self_ids=block, bank_ids=b_ids)
    std = Standardizer(method="hubness", hubness_bank=100).fit(index, terms=terms)
    np.testing.assert_allclose(std.terms_, ref.terms_, atol=1e-6)
    np.testing.assert_allclose(std.mean_, ref.mean_, atol=1e-9)
    with pytest.raises(SimstdError, match="terms must be"):
        Standardizer(method="hubness").fit(index, terms=terms[:5])
