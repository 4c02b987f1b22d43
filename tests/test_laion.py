"""clip-retrieval folders: reading the layout, the fit from files, import and adoption of autofaiss indexes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest

from clipfolder import write_clip_folder
from simstd import MixedIndex, SimstdError, Standardizer
from simstd.engines import ArraySearcher
from simstd.laion import ClipRetrievalFolder, fit_embeddings
from simstd.laion.build import import_folder

pytest.importorskip("pyarrow")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pairs(features):
    return features("clip")  # (2, 500, 512): COCO images and their captions, real CLIP ViT-B/16


@pytest.fixture(scope="module")
def folder(pairs, tmp_path_factory):
    return write_clip_folder(tmp_path_factory.mktemp("clip"), pairs, indexes="Flat")


def _stored(pairs):
    """What the files hold: float16 rows, as float32 (images first, then captions: the files' order)."""
    return np.concatenate([pairs[0], pairs[1]]).astype(np.float16).astype(np.float32)


def test_reader_follows_the_layout(folder):
    f = ClipRetrievalFolder(folder)
    assert f.modalities == ["image", "text"] and f.counts == {"image": 500, "text": 500} and f.dim == 512
    assert [s.shard for s in f.files["text"]] == ["00", "01", "02"]
    assert [s.offset for s in f.files["image"]] == [0, 200, 380]
    assert f.files["image"][0].dtype == "float16"
    records = [r for batch in f.metadata(f.files["image"][1]) for r in batch]
    assert records[0]["image_path"] == "000000200.jpg" and records[0]["caption"] == "caption number 200"
    assert records[3]["width"] is None  # parquet NaN becomes JSON null


@pytest.mark.parametrize("sample,k,piece_rows", [(None, 1, 65_536), (150, 3, 64)])
def test_fit_from_files_equals_the_fit_on_the_same_vectors(folder, pairs, sample, k, piece_rows):
    """Same seed, same pseudo queries, same exact top-k: the same statistics, whatever the pieces."""
    got = fit_embeddings(folder, method="paper", sample=sample, seed=3, n_pseudo=k, piece_rows=piece_rows)
    ref = Standardizer(method="paper", sample=sample, seed=3, n_pseudo=k).fit(ArraySearcher(_stored(pairs), ["image"] * 500 + ["text"] * 500))
    assert got.modalities_ == ref.modalities_ == ["image", "text"]
    np.testing.assert_array_equal(got.n_, ref.n_)
    np.testing.assert_allclose(got.mean_, ref.mean_, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.std_, ref.std_, rtol=0, atol=1e-7)
    assert got.dim_ == 512 and got.index_fingerprint_ is None
    reports = []
    fit_embeddings(folder, method="paper", sample=sample, seed=3, n_pseudo=k, piece_rows=piece_rows, report=reports.append)
    se = reports[0].extra["standard_error"]["text->image"]
    queries = got.n_[1, 0] // k  # the error counts queries: one query's top-k are not independent draws
    assert se["n"] == queries and se["mean"] == pytest.approx(queries**-0.5) and 0 < se["std"] < 1


@pytest.mark.parametrize("search", ["exact", "bfloat16"])
def test_adaptive_fit_from_files_equals_the_adaptive_fit_on_the_same_vectors(folder, pairs, search):
    """sample="auto" draws the same rounds from the files as from any store (streams keyed by modality)."""
    if search == "bfloat16":
        pytest.importorskip("torch")
    reports = []
    got = fit_embeddings(folder, method="paper", sample="auto", target_se=0.06, seed=4, piece_rows=128, search=search,
                         report=reports.append)
    ref = Standardizer(method="paper", sample="auto", target_se=0.06, seed=4).fit(
        ArraySearcher(_stored(pairs), ["image"] * 500 + ["text"] * 500))
    np.testing.assert_array_equal(got.n_, ref.n_)
    np.testing.assert_allclose(got.mean_, ref.mean_, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.std_, ref.std_, rtol=0, atol=1e-7)
    report = reports[0]
    assert report.sample == {"image": got.n_[0, 0], "text": got.n_[1, 1]} and report.extra["target_se"] == 0.06
    assert all(max(e["mean"], e["std"]) <= 0.06 for e in report.extra["standard_error"].values())
    assert report.extra["rounds"] >= 1 and 278 <= got.n_.min() < 500  # 1/0.06^2 = 278 at least, not all


def test_adaptive_fit_stops_at_the_files_end(folder):
    reports = []
    std = fit_embeddings(folder, sample="auto", target_se=0.001, report=reports.append)
    assert std.n_.tolist() == [[500, 500], [500, 500]] and reports[0].sample == {"image": 500, "text": 500}


@pytest.mark.parametrize("candidates", [16, 1])
def test_bfloat16_candidates_give_the_float32_fit(folder, monkeypatch, candidates):
    """Certified: the bfloat16 pass keeps what its error bound proves; the rest is scored again in float32.
    With one candidate per block most queries cannot be certified, so the float32 re-run carries the fit."""
    pytest.importorskip("torch")
    import simstd.laion.topk as topk_module

    monkeypatch.setattr(topk_module, "BF16_CANDIDATES", candidates)
    reports = []
    got = fit_embeddings(folder, method="paper", sample=200, seed=2, n_pseudo=2, search="bfloat16", piece_rows=128,
                         report=reports.append)
    ref = fit_embeddings(folder, method="paper", sample=200, seed=2, n_pseudo=2, piece_rows=128)
    np.testing.assert_array_equal(got.n_, ref.n_)
    np.testing.assert_allclose(got.mean_, ref.mean_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.std_, ref.std_, rtol=0, atol=1e-6)
    recomputed = reports[0].extra["recomputed"]
    assert (recomputed > 200) if candidates == 1 else (recomputed < 200)


def test_ivf_candidates_report_what_they_miss(folder):
    """Probing every list is the exact fit; probing few is measured on the check queries and warned about."""
    ref = fit_embeddings(folder, method="paper", sample=200, seed=1, n_pseudo=2, piece_rows=128)
    reports = []
    full = fit_embeddings(folder, method="paper", sample=200, seed=1, n_pseudo=2, search="ivf", nlist=8, nprobe=8, piece_rows=128,
                          report=reports.append)
    np.testing.assert_allclose(full.mean_, ref.mean_, atol=1e-7)
    np.testing.assert_allclose(full.std_, ref.std_, atol=1e-7)
    assert reports[0].extra["ivf_recall"] == 1.0 and reports[0].extra["nlist"] == {"image": 8, "text": 8}
    with pytest.warns(UserWarning, match="raise nprobe"):
        fit_embeddings(folder, method="paper", sample=200, seed=1, search="ivf", nlist=8, nprobe=1, check=50, report=reports.append)
    assert reports[1].extra["ivf_recall"] < 0.99
    assert reports[1].extra["ivf_check_queries"] == {"image": 50, "text": 50}
    assert max(reports[1].extra["ivf_mean_shift_over_std"].values()) > 0


def test_self_is_never_its_own_pseudo_positive(tmp_path):
    """Two items per modality: each one's only same-modality neighbour is the other one."""
    x = np.eye(4, 8, dtype=np.float32)
    x[1] = np.array([0.6, 0.8, 0, 0, 0, 0, 0, 0], np.float32)
    (tmp_path / "img_emb").mkdir()
    (tmp_path / "text_emb").mkdir()
    np.save(tmp_path / "img_emb" / "img_emb_0.npy", x[:2])
    np.save(tmp_path / "text_emb" / "text_emb_0.npy", x[2:])
    std = fit_embeddings(tmp_path, method="paper", sample=None)
    i = std.modalities_.index("image")
    assert std.n_[i, i] == 2 and std.mean_[i, i] == pytest.approx(0.6, abs=1e-6)


def test_import_and_fit_make_a_searchable_fitted_index(folder, pairs):
    index = import_folder(folder)
    assert index.counts == {"image": 500, "text": 500}
    assert index.store.get([0])[0]["caption"] == "caption number 0"
    assert index.store.get([500])[500]["image_path"] == "000000000.jpg"  # text id 500 is row 0's caption
    from_files = fit_embeddings(folder, sample=200, seed=1)
    on_index = Standardizer(sample=200, seed=1).fit(index)
    np.testing.assert_allclose(from_files.mean_, on_index.mean_, atol=1e-6)
    np.testing.assert_allclose(from_files.std_, on_index.std_, atol=1e-6)
    index.standardizer = from_files  # no fingerprint: applies to any index of its dimension
    res = index.search_like(np.arange(500, 540), k=10)  # captions as queries
    assert 0.2 < (res.modalities == "image").mean() < 0.8  # both modalities in one ranking
    raw = index.search_like(np.arange(500, 540), k=10, raw=True)
    assert (raw.modalities == "image").mean() < 0.05  # raw cosine: captions only (the modality gap)


@pytest.mark.parametrize("key,metric", [("Flat", faiss.METRIC_INNER_PRODUCT), ("Flat", faiss.METRIC_L2),
                                        ("HNSW16", faiss.METRIC_INNER_PRODUCT)])
def test_adopted_autofaiss_indexes_search_like_an_imported_one(tmp_path, pairs, key, metric):
    folder = write_clip_folder(tmp_path, pairs, indexes=key, metric=metric)
    adopted = import_folder(folder, adopt=folder)
    assert adopted.factory == key and adopted.counts == {"image": 500, "text": 500}
    adopted.save(tmp_path / "db.faiss")
    loaded = MixedIndex.load(tmp_path / "db.faiss")
    ref = import_folder(folder)
    q = pairs[1, :20]
    for index in (adopted, loaded):
        got, want = index.search(q, "text", 10, raw=True), ref.search(q, "text", 10, raw=True)
        if metric == faiss.METRIC_L2:
            # 1 - d/2 is the cosine up to the float16 rows' norm error (~1e-4), which reorders near-ties
            np.testing.assert_allclose(got.raw_scores, want.raw_scores, atol=1e-3)
            assert (got.ids == want.ids).mean() > 0.9
        else:
            assert (got.ids == want.ids).mean() > (0.99 if key == "Flat" else 0.9)
            same = got.ids == want.ids
            # An adopted index keeps the float16 rows as stored (norm error up to ~6e-4); an import
            # renormalises them (simstd.validation.as_embeddings), so scores agree to that error.
            np.testing.assert_allclose(got.raw_scores[same], want.raw_scores[same], atol=1e-3)
    assert loaded.store.get([742])[742]["caption"] == "caption number 242"


def _expect(match, **kwargs):
    with pytest.raises(SimstdError, match=match):
        import_folder(**kwargs)


def test_adoption_refuses_indexes_that_do_not_match(tmp_path, pairs):
    folder = write_clip_folder(tmp_path / "a", pairs)
    x = pairs.astype(np.float32)
    faiss.write_index(_flat(x[1], faiss.METRIC_INNER_PRODUCT), str(folder / "text.index"))
    _expect("image.index", source=folder, adopt=folder)  # one missing
    faiss.write_index(_flat(x[0, :400], faiss.METRIC_INNER_PRODUCT), str(folder / "image.index"))
    _expect("holds 400 vectors", source=folder, adopt=folder)
    faiss.write_index(_flat(x[0, ::-1], faiss.METRIC_INNER_PRODUCT), str(folder / "image.index"))
    _expect("in their order", source=folder, adopt=folder)
    faiss.write_index(_flat(x[0, :, :256], faiss.METRIC_INNER_PRODUCT), str(folder / "image.index"))
    _expect("dimension 256", source=folder, adopt=folder)
    # L2 over unnormalised vectors does not rank by cosine
    raw = tmp_path / "b"
    write_clip_folder(raw, pairs * 3.0)
    for m, part in (("image", 0), ("text", 1)):
        faiss.write_index(_flat((pairs[part] * 3.0).astype(np.float16).astype(np.float32), faiss.METRIC_L2),
                          str(raw / f"{m}.index"))
    _expect("not L2-normalised", source=raw, adopt=raw)


def _flat(x, metric):
    index = faiss.IndexFlat(x.shape[1], metric)
    index.add(np.ascontiguousarray(x, dtype=np.float32))
    return index


def test_bad_folders_are_refused_with_the_reason(tmp_path, pairs):
    with pytest.raises(SimstdError, match="not a folder"):
        ClipRetrievalFolder(tmp_path / "missing")
    with pytest.raises(SimstdError, match="no clip-retrieval embeddings"):
        ClipRetrievalFolder(tmp_path)
    folder = write_clip_folder(tmp_path / "f", pairs)
    np.save(folder / "text_emb" / "text_emb_01.npy", pairs[1, :10].astype(np.float16))
    with pytest.raises(SimstdError, match="not row-aligned"):
        ClipRetrievalFolder(folder)
    bad = pairs[:, :200].copy()
    bad[0, 7] = np.nan
    folder = write_clip_folder(tmp_path / "g", bad, sizes=(200,))
    with pytest.raises(SimstdError, match=r"img_emb_00\.npy: row 7 is NaN"):
        fit_embeddings(folder, sample=None)


def _cli(*args, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    env.pop("SIMSTD_INDEX", None)
    return subprocess.run([sys.executable, "-m", "simstd", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT)


def test_cli_two_commands_make_a_fitted_index(folder, tmp_path):
    db = tmp_path / "db.faiss"
    built = _cli("build", "--from", folder, "--adopt-indexes", folder, "--out", db)
    assert built.returncode == 0, built.stderr
    assert "500 image, 500 text" in built.stderr and "simstd fit --embeddings" in built.stderr
    fitted = _cli("fit", "--embeddings", folder, "--index", db, "--out", tmp_path / "std.json", "--sample", "100")
    assert fitted.returncode == 0, fitted.stderr
    assert "fitted on 500 image, 500 text" in fitted.stderr
    std = Standardizer.load(tmp_path / "std.json")
    assert std.n_.tolist() == [[100, 100], [100, 100]]
    index = MixedIndex.load(db)
    np.testing.assert_array_equal(index.standardizer.mean_, std.mean_)  # committed with the index
    hits = _cli("query", "--like", "3", "--index", db, "-k", "5", "--format", "jsonl")
    assert hits.returncode == 0, hits.stderr
    assert '"caption": "caption number' in hits.stdout
    wrong = _cli("fit", "--embeddings", folder)
    assert wrong.returncode == 1 and "--out" in wrong.stderr and "Traceback" not in wrong.stderr
    other = write_clip_folder(tmp_path / "other", np.asarray(index.reconstruct(np.arange(200)))[None].repeat(2, 0),
                              sizes=(200,))
    auto = _cli("fit", "--embeddings", folder, "--out", tmp_path / "auto.json", "--sample", "auto",
                "--target-se", "0.1", "--search", "exact")
    assert auto.returncode == 0, auto.stderr
    assert "with 100 image, 100 text pseudo queries" in auto.stderr and "at most 0.1" in auto.stderr
    on_index = _cli("fit", "--index", db, "--sample", "auto", "--target-se", "0.1")
    assert on_index.returncode == 0, on_index.stderr
    assert "± std" in on_index.stdout and MixedIndex.load(db).standardizer.n_.tolist() == [[100, 100], [100, 100]]
    wrong_search = _cli("fit", "--index", db, "--search", "bfloat16")
    assert wrong_search.returncode == 1 and "--embeddings" in wrong_search.stderr
    bad = _cli("fit", "--embeddings", folder, "--out", tmp_path / "x.json", "--sample", "lots")
    assert bad.returncode == 2 and "'auto'" in bad.stderr and not (tmp_path / "x.json").exists()
    mismatch = _cli("fit", "--embeddings", other, "--index", db, "--sample", "50")
    assert mismatch.returncode == 1 and "build the index from this folder" in mismatch.stderr


def _index_of(pairs):
    """A Flat index of the files' vectors, ids in the files' order (what `simstd build --from` makes)."""
    return MixedIndex.from_arrays({"image": _stored(pairs)[:500], "text": _stored(pairs)[500:]})


def assert_same_hubness_fit(got, ref, atol=1e-6):
    """Everything a hubness fit holds: terms, banks, pseudo-positive pairs, the scale, the cosine moments."""
    assert got.method == ref.method == "hubness" and got.modalities_ == ref.modalities_
    assert got.banks_ == ref.banks_
    np.testing.assert_allclose(got.terms_, ref.terms_, rtol=0, atol=atol)
    np.testing.assert_array_equal(got.n_, ref.n_)
    for name in ("mean_", "std_", "centre_", "scale_"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=0, atol=atol, err_msg=name)
    for a, b in zip(got.cosine_moments_, ref.cosine_moments_):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


@pytest.mark.parametrize("sample,bank,piece_rows", [(150, 100, 64), ("auto", None, 128)])
def test_hubness_fit_from_files_equals_the_index_fit(folder, pairs, sample, bank, piece_rows):
    """Terms (a sampled bank of 100, or every item), pseudo positives of the corrected score and the
    tail scale: the files give the fit the index of the same vectors gives, whatever the pieces."""
    reports = []
    got = fit_embeddings(folder, method="hubness", hubness_bank=bank, sample=sample, target_se=0.06, seed=3,
                         piece_rows=piece_rows, report=reports.append)
    ref = Standardizer(method="hubness", hubness_bank=bank, sample=sample, target_se=0.06, seed=3).fit(_index_of(pairs))
    assert_same_hubness_fit(got, ref)
    assert got.banks_["image"].size == (100 if bank else 500) and got.banks_["image"].k == (2 if bank else 10)
    assert got.dim_ == 512 and got.index_fingerprint_ is None
    report = reports[0]
    assert report.extra["method"] == "hubness" and report.pieces == (18 if piece_rows == 64 else 10)  # files of 200, 180, 120 rows
    assert report.sample == {"image": got.n_[0, 1], "text": got.n_[1, 0]}
    if sample == "auto":
        assert all(max(e["mean"], e["std"]) <= 0.06 for e in report.extra["standard_error"].values())
    with pytest.raises(SimstdError, match='search="exact"'):
        fit_embeddings(folder, method="hubness", search="bfloat16")


def test_fit_from_files_follows_the_default_method(folder, monkeypatch):
    """No method named: the files give what Standardizer() fits, not a hard-coded paper fit."""
    import simstd.laion.fit as laion_fit

    class Corrected(Standardizer):  # a Standardizer whose default is the corrected method
        def __init__(self, method="hubness", **kwargs):
            super().__init__(method, **kwargs)

    monkeypatch.setattr(laion_fit, "Standardizer", Corrected)
    std = fit_embeddings(folder, sample=50, piece_rows=256)
    assert std.method == "hubness" and std.terms_.shape == (1000, 2)
    assert fit_embeddings(folder, sample=50, method="paper").method == "paper"


def test_cli_hubness_fit_from_files_commits_the_terms(folder, pairs, tmp_path):
    db = tmp_path / "db.faiss"
    assert _cli("build", "--from", folder, "--out", db).returncode == 0
    fitted = _cli("fit", "--embeddings", folder, "--index", db, "--out", tmp_path / "std.json", "--method",
                  "hubness", "--sample", "100", "--hubness-bank", "100")
    assert fitted.returncode == 0, fitted.stderr
    assert "fitted on 500 image, 500 text" in fitted.stderr and "with 100 image, 100 text pseudo queries" in fitted.stderr
    std = Standardizer.load(tmp_path / "std.json")  # the JSON and std.terms.npy beside it
    assert (tmp_path / "std.terms.npy").exists() and std.method == "hubness" and std.banks_["text"].size == 100
    index = MixedIndex.load(db)
    assert index.standardizer.method == "hubness"
    np.testing.assert_array_equal(index.standardizer.terms_, std.terms_)  # item_terms.npy of the version
    ref = Standardizer(method="hubness", hubness_bank=100, sample=100).fit(index)
    assert_same_hubness_fit(std, ref)
    res = index.search_like(np.arange(500, 540), k=10)
    assert 0.2 < (res.modalities == "image").mean() < 0.9
    # an index numbering the items otherwise than the files (captions first) cannot take the terms
    other = tmp_path / "other.faiss"
    MixedIndex.from_arrays({"text": _stored(pairs)[500:], "image": _stored(pairs)[:500]}).save(other)
    wrong = _cli("fit", "--embeddings", folder, "--index", other, "--method", "hubness", "--sample", "50")
    assert wrong.returncode == 1 and "numbers its" in wrong.stderr and "Traceback" not in wrong.stderr
