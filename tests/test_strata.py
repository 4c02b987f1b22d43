"""Strata: statistics per group inside a modality (Standardizer(strata=...), simstd fit --strata)."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from simstd import MixedIndex, Standardizer
from simstd.engines import ArraySearcher
from simstd.errors import SimstdError
from simstd.strata import LENGTH_BINS, length_bin

SCALE = 0.6


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def two_sources(n: int = 600, shared: int = 32, private: int = 32, seed: int = 0):
    """Images and texts of ``n`` concepts; every cosine of a source-b text with anything in
    the shared space is exactly SCALE times that of its source-free twin (benchmarks/strata.py)."""
    rng = np.random.default_rng(seed)
    concept = _unit(rng.normal(size=(n, shared)))
    img = np.zeros((n, shared + private), np.float32)
    img[:, :shared] = _unit(concept + 0.9 * rng.normal(size=(n, shared)) / np.sqrt(shared))
    txt = np.zeros((n, shared + private), np.float32)
    txt[:, :shared] = _unit(concept + 0.9 * rng.normal(size=(n, shared)) / np.sqrt(shared))
    src = np.where(np.arange(n) % 2 == 0, "a", "b")
    b = src == "b"
    txt[b, :shared] *= SCALE
    txt[b, shared:] = np.sqrt(1 - SCALE**2) * _unit(rng.normal(size=(b.sum(), private)))
    return img, txt, [{"source": s, "text": "w " * (3 if s == "a" else 12)} for s in src], src


def fitted_index(method: str, strata: str | None = "source", min_stratum: int = 50, n: int = 600):
    img, txt, meta, src = two_sources(n)
    index = MixedIndex.from_arrays({"image": img, "text": txt}, metadata={"text": meta})
    std = Standardizer(method=method, strata=strata, min_stratum=min_stratum, sample=None).fit(index)
    index.standardizer = std
    if std.has_item_terms:
        index.fold_terms(std)
    return index, src


# ------------------------------------------------------------ known scales
@pytest.mark.parametrize("method", ["paper", "hubness"])
def test_stratified_statistics_recover_two_known_scales(method):
    index, src = fitted_index(method)
    std = index.standardizer
    assert std.modalities_ == ["image", "text:a", "text:b"]
    a_mean, a_std = std.positive_moments("image", "text:a")
    b_mean, b_std = std.positive_moments("image", "text:b")
    assert b_std / a_std == pytest.approx(SCALE, abs=0.06)
    if method == "paper":  # the raw cosine's mean scales too
        assert b_mean / a_mean == pytest.approx(SCALE, abs=0.06)
    else:  # the hubness map's per-pair (tail) scale
        assert std.affine("image", "text:b")[1] / std.affine("image", "text:a")[1] == pytest.approx(SCALE, abs=0.06)


@pytest.mark.parametrize("method", ["paper", "hubness"])
def test_unstratified_ranking_is_biased_to_one_source_and_strata_remove_it(method):
    n = 600
    shares = {}
    for strata in (None, "source"):
        index, src = fitted_index(method, strata)
        res = index.search_like(np.arange(n), 10)
        texts = (res.modalities == "text") & (res.ids >= 0)
        hit_src = src[np.clip(res.ids - n, 0, n - 1)]
        shares[strata] = ((hit_src == "b") & texts).sum() / texts.sum()
    assert shares[None] < 0.25  # source b's scores are 0.6x: one text statistic ranks it low
    assert shares["source"] == pytest.approx(0.5, abs=0.08)


# ------------------------------------------------------------ exact top-k
def _brute_force(index: MixedIndex, queries: np.ndarray, query_label: str, k: int, exclude: int | None = None):
    """Every item's standardized score, by the standardizer's own transform, per stratum
    (``exclude``: an item left out before any query term, as search_like leaves itself out)."""
    std = index.standardizer
    view = std.strata_view(index)
    Z, ids = [], []
    for label in std.modalities_:
        members = view.ids(label)
        members = members[members != exclude]
        S = queries @ index.reconstruct(members).T
        Z.append(std.transform(S, query_label, label, ids=np.broadcast_to(members, S.shape)))
        ids.append(members)
    Z, ids = np.concatenate(Z, axis=1), np.concatenate(ids)
    order = np.argsort(-Z, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(Z, order, axis=1), ids[order]


@pytest.mark.parametrize("method", ["paper", "hubness"])
def test_stratified_topk_equals_brute_force_on_flat(method):
    index, _ = fitted_index(method)
    rng = np.random.default_rng(3)
    queries = _unit(np.concatenate([rng.normal(size=(6, 32)), np.zeros((6, 32))], axis=1))
    for modality, stratum, label in (("image", None, "image"), ("text", "b", "text:b"), ("text", "text:a", "text:a")):
        for k in (1, 10, 40):
            res = index.search(queries, modality, k, query_stratum=stratum)
            Z, ids = _brute_force(index, queries, label, k)
            np.testing.assert_allclose(res.scores, Z, atol=2e-4)
            assert (res.ids == ids).mean() > 0.99  # ties may swap
    # search_like: each item queries as its own stratum, itself left out
    res = index.search_like([601, 602], 5)  # a text:b and a text:a item
    for row, (i, label) in enumerate(((601, "text:b"), (602, "text:a"))):
        Z, ids = _brute_force(index, index.reconstruct([i]), label, 5, exclude=i)
        np.testing.assert_allclose(res.scores[row], Z[0], atol=2e-4)
        assert (res.ids[row] == ids[0]).all()


def test_fit_on_arrays_with_metadata_equals_fit_on_the_index():
    """A stratum of a store that cannot restrict a search to it (arrays: over-fetch and
    filter) gets the same statistics as the index's restricted FAISS search."""
    img, txt, meta, _ = two_sources(300)
    index = MixedIndex.from_arrays({"image": img, "text": txt}, metadata={"text": meta})
    on_index = Standardizer(method="paper", strata="source", min_stratum=10, sample=None).fit(index)
    X = np.concatenate([img, txt])
    on_arrays = Standardizer(method="paper", strata="source", min_stratum=10, sample=None).fit(
        ArraySearcher(X, ["image"] * 300 + ["text"] * 300), metadata=[{}] * 300 + meta)
    assert on_index.modalities_ == on_arrays.modalities_
    np.testing.assert_allclose(on_index.mean_, on_arrays.mean_, atol=1e-6)
    np.testing.assert_allclose(on_index.std_, on_arrays.std_, atol=1e-6)


# ------------------------------------------------------------ text:length and sharing
def test_length_bins():
    assert [length_bin("w " * n) for n in (1, 4, 5, 9, 10, 14, 15, 29, 30, 80)] == \
        ["0-4", "0-4", "5-9", "5-9", "10-14", "10-14", "15-29", "15-29", "30+", "30+"]
    assert LENGTH_BINS[-1][1] is None


def test_text_length_strata_and_the_sharing_rule():
    img, txt, meta, src = two_sources(600)
    meta = [dict(m) for m in meta]
    for i in range(0, 20, 2):  # ten a-texts of 40 words: a bin below min_stratum
        meta[i]["text"] = "w " * 40
    index = MixedIndex.from_arrays({"image": img, "text": txt}, metadata={"text": meta})
    std = Standardizer(method="paper", strata="text:length", min_stratum=50, sample=None).fit(index)
    assert std.modalities_ == ["image", "text:0-4", "text:10-14"]
    # The ten 40-word texts join the largest stratum (10-14: 300 against 290).
    assert std.strata_.counts == {"image": 600, "text:0-4": 290, "text:10-14": 310}
    notes = std.describe()["strata_shared"]
    assert len(notes) == 1 and "text:30+ has 10 items" in notes[0] and "'text:10-14'" in notes[0]
    # No stratum reaches min_stratum: the modality stays whole, and its statistics are the unstratified ones.
    whole = Standardizer(method="paper", strata="text:length", min_stratum=1000, sample=None).fit(index)
    plain = Standardizer(method="paper", sample=None).fit(index)
    assert whole.modalities_ == plain.modalities_ == ["image", "text"]
    np.testing.assert_allclose(whole.mean_, plain.mean_)
    assert any("shares its modality's statistics" in note for note in whole.describe()["strata_shared"])
    # A text query of a length fit gets its own bin.
    assert std.strata_.query_stratum_of_text("text", "a red bike") == "text:0-4"
    assert std.strata_.query_stratum_of_text("text", "w " * 40) == "text:10-14"  # 30+ shares 10-14's statistics
    assert std.strata_.query_label("text", "15-29") == "text:10-14"  # a bin no item falls in shares too
    with pytest.raises(SimstdError, match="unknown stratum '7-8'"):
        std.strata_.query_label("text", "7-8")


# ------------------------------------------------------------ persistence and info
@pytest.mark.parametrize("method", ["paper", "hubness"])
def test_persistence_round_trip(tmp_path, method):
    index, _ = fitted_index(method)
    rng = np.random.default_rng(5)
    queries = _unit(np.concatenate([rng.normal(size=(3, 32)), np.zeros((3, 32))], axis=1))
    before = index.search(queries, "text", 10, query_stratum="a")
    index.save(tmp_path / "db.faiss")
    loaded = MixedIndex.load(tmp_path / "db.faiss")
    std = loaded.standardizer
    assert std.strata == "source" and std.strata_.to_dict() == index.standardizer.strata_.to_dict()
    after = loaded.search(queries, "text", 10, query_stratum="a")
    np.testing.assert_array_equal(before.ids, after.ids)
    np.testing.assert_allclose(before.scores, after.scores, atol=1e-5)
    index.standardizer.save(tmp_path / "std.json")
    again = Standardizer.load(tmp_path / "std.json")
    assert again.strata_.labels == ["image", "text:a", "text:b"]
    np.testing.assert_allclose(again.mean_, index.standardizer.mean_)


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simstd", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def cli_index(tmp_path):
    img, txt, meta, _ = two_sources(300)
    np.save(tmp_path / "img.npy", img)
    np.save(tmp_path / "txt.npy", txt)
    meta = [dict(m) for m in meta]
    meta[0]["source"] = "rare"  # one item of its own value: shares under the rule
    (tmp_path / "txt.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    db = tmp_path / "db.faiss"
    r = _cli("build", "-e", f"image={tmp_path / 'img.npy'}", "-e", f"text={tmp_path / 'txt.npy'}",
             "--meta", f"text={tmp_path / 'txt.jsonl'}", "--out", str(db))
    assert r.returncode == 0, r.stderr
    return tmp_path, db


def test_cli_fit_and_info_show_strata(cli_index):
    tmp, db = cli_index
    r = _cli("fit", "--index", str(db), "--strata", "source", "--min-stratum", "20", "--method", "paper")
    assert r.returncode == 0, r.stderr
    assert "strata" in r.stdout and "text:a (" in r.stdout and "text:b (" in r.stdout
    assert "text:rare has 1 item (< min_stratum 20): shares" in r.stdout
    info = _cli("info", "--index", str(db))
    assert info.returncode == 0, info.stderr
    assert "metadata field 'source', min_stratum 20" in info.stdout and "shares" in info.stdout
    assert "text:a" in info.stdout  # the pairs table is keyed by stratum
    as_json = json.loads(_cli("info", "--index", str(db), "--format", "json").stdout)
    assert as_json["method"]["settings"]["strata"] == "source"
    np.save(tmp / "q.npy", np.zeros(64, np.float32) + 0.125)
    q = _cli("query", "--index", str(db), "--vector", str(tmp / "q.npy"), "--query-stratum", "b", "-k", "3")
    assert q.returncode == 0, q.stderr


# ------------------------------------------------------------ bad input
def _one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line]
    assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_bad_strata_input(cli_index):
    tmp, db = cli_index
    _one_line_error(_cli("fit", "--index", str(db), "--strata", "colour"), "unknown strata field 'colour'",
                    "source")
    _one_line_error(_cli("fit", "--index", str(db), "--strata", "source", "--min-stratum", "0"),
                    "stratum text:rare has 1 item", "--min-stratum")
    _one_line_error(_cli("fit", "--index", str(db), "--strata", "text:size"), "unknown derived stratum")
    _one_line_error(_cli("fit", "--index", str(db), "--min-stratum", "5"), "pass --strata")
    meta = [json.loads(line) for line in (tmp / "txt.jsonl").read_text().splitlines()]
    del meta[7]["source"]
    (tmp / "txt.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    db2 = tmp / "db2.faiss"
    assert _cli("build", "-e", f"image={tmp / 'img.npy'}", "-e", f"text={tmp / 'txt.npy'}",
                "--meta", f"text={tmp / 'txt.jsonl'}", "--out", str(db2)).returncode == 0
    _one_line_error(_cli("fit", "--index", str(db2), "--strata", "source"),
                    "1 of the 300 'text' items has no metadata field 'source'", "id 307")
    # A vector query of a stratified modality must name its stratum; a wrong one is named.
    assert _cli("fit", "--index", str(db), "--strata", "source", "--min-stratum", "20").returncode == 0
    np.save(tmp / "q.npy", np.zeros(64, np.float32) + 0.125)
    _one_line_error(_cli("query", "--index", str(db), "--vector", str(tmp / "q.npy")),
                    "needs its stratum", "--query-stratum")
    _one_line_error(_cli("query", "--index", str(db), "--vector", str(tmp / "q.npy"), "--query-stratum", "zz"),
                    "unknown stratum 'zz'")


def test_python_bad_strata_input():
    img, txt, meta, _ = two_sources(100)
    index = MixedIndex.from_arrays({"image": img, "text": txt}, metadata={"text": meta})
    with pytest.raises(SimstdError, match="strata must name"):
        Standardizer(strata="").fit(index)
    with pytest.raises(SimstdError, match="does not hold: pass it to fit"):
        Standardizer(strata="source").fit(np.concatenate([img, txt]), ["image"] * 100 + ["text"] * 100)
    with pytest.raises(SimstdError, match="metadata is read for strata only"):
        Standardizer().fit(index, metadata=meta)
    with pytest.raises(SimstdError, match="modality 'audio'"):
        Standardizer(strata="audio:length").fit(index)
    std = Standardizer(method="paper", strata="source", min_stratum=10).fit(index)
    index.standardizer = std
    with pytest.raises(SimstdError, match="has no metadata field 'source'"):
        index.add(txt[:1], "text", [{"text": "no source"}])  # refused at add, not at the next search
    with pytest.raises(SimstdError, match="merge pools unstratified fits"):
        std.merge(std)
    with pytest.raises(SimstdError, match="query_stratum applies to a stratified fit"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            index.search(img[:1], "image", 3, standardizer=Standardizer(method="paper").fit(index),
                         query_stratum="a")


@pytest.mark.parametrize("method", ["paper", "hubness"])
def test_items_added_after_a_stratified_fit_are_searched_in_their_stratum(method):
    index, _ = fitted_index(method)
    rng = np.random.default_rng(9)
    new = _unit(np.concatenate([rng.normal(size=(4, 32)), np.zeros((4, 32))], axis=1))
    # two of source a, one of b, one of a value the fit never saw: it shares the largest stratum
    ids = index.add(new, "text", [{"source": "a"}, {"source": "a"}, {"source": "b"}, {"source": "new"}])
    view = index.standardizer.strata_view(index)
    assert set(ids[:2]) <= set(view.ids("text:a").tolist()) and ids[2] in view.ids("text:b")
    assert ids[3] in view.ids(index.standardizer.strata_.largest("text"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fit is stale, and keeps serving
        res = index.search(new, "image", 10)
        Z, found = _brute_force(index, new, "image", 10)
    np.testing.assert_allclose(res.scores, Z, atol=2e-4)
    assert (res.ids == found).mean() > 0.99


@pytest.mark.parametrize("scope", ["shard", "pair"])
def test_strata_on_ivf_shards_follow_their_nprobe(scope):
    """A stratum's restricted search keeps the shard's own nprobe (or the pair's): with
    every list probed, IVF equals the Flat brute force."""
    img, txt, meta, _ = two_sources(600)
    index = MixedIndex.from_arrays({"image": img, "text": txt}, metadata={"text": meta}, factory="IVF8,Flat")
    index.standardizer = Standardizer(method="paper", strata="source", min_stratum=50, sample=None).fit(index)
    if scope == "shard":
        index.set_search_params("nprobe=8")
    else:
        index.set_search_params("nprobe=8", query_modality="image")
    rng = np.random.default_rng(4)
    queries = _unit(np.concatenate([rng.normal(size=(6, 32)), np.zeros((6, 32))], axis=1))
    res = index.search(queries, "image", 10)
    Z, ids = _brute_force(index, queries, "image", 10)
    np.testing.assert_allclose(res.scores, Z, atol=2e-4)


def test_a_modality_of_one_value_needs_no_query_stratum():
    img, txt, meta, _ = two_sources(200)
    index = MixedIndex.from_arrays({"image": img, "text": txt}, metadata={"text": [{"source": "a"}] * 200})
    index.standardizer = Standardizer(method="paper", strata="source", min_stratum=10).fit(index)
    assert index.standardizer.modalities_ == ["image", "text:a"]
    assert index.search(txt[:2], "text", 3).ids.shape == (2, 3)
