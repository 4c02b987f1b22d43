"""`MixedIndex.shard_info` / `simstd info` per shard, and the clear errors for
factories FAISS refuses, PQ splits that do not divide the dimension, and
on-disk inverted lists whose file is gone (issue 18, items 4 and 5)."""
from __future__ import annotations

import json
import os

import faiss
import numpy as np
import pytest
from click.testing import CliRunner

from simstd import CorruptFileError, MixedIndex, SimstdError, Standardizer
from simstd.cli import main

from conftest import unit_rows


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(r) -> str:
    """The CLI's error: exit 1, one line, no traceback, no FAISS C++ location."""
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "Error in " not in r.output and ".cpp" not in r.output, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1, r.output
    return lines[0]


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    return {"text": unit_rows(rng, 600, 32, 3.0), "image": unit_rows(rng, 500, 32, -3.0)}


# ----------------------------------------------------------------- shard_info
@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF8,PQ8x4", "IVF8,SQ8"])
def test_shard_info_reports_factory_memory_and_search_params(vectors, factory):
    index = MixedIndex.from_arrays(vectors, factory=factory)
    info = {s["modality"]: s for s in index.shard_info()}
    assert list(info) == ["text", "image"]
    for m, shard in index.shards.items():
        facts = info[m]
        assert facts["count"] == len(vectors[m]) and facts["stored_dim"] == 32
        assert facts["memory_bytes"] == faiss.serialize_index(shard).nbytes  # the serialized size, exactly
        # the reported factory rebuilds the shard's own kind of index
        rebuilt = faiss.index_factory(32, facts["factory"], faiss.METRIC_INNER_PRODUCT)
        assert type(faiss.downcast_index(rebuilt)).__name__ == facts["kind"]
    if factory == "Flat":
        assert info["text"]["memory_bytes"] >= 600 * 32 * 4 and info["text"]["search_params"] == {}
    if factory == "HNSW16":
        assert info["text"]["search_params"] == {"efSearch": 16}
        # graph links cost memory beyond the flat vectors
        assert info["text"]["memory_bytes"] > 600 * 32 * 4 + 600 * 16 * 4
    if factory == "IVF8,PQ8x4":
        assert info["text"]["memory_bytes"] < 600 * 32 * 4 / 2  # codes: 4 bytes per item, not 128
        assert info["text"]["search_params"] == {"nprobe": 1}


def test_shard_info_follows_search_params_set_on_shards_and_per_pair(vectors):
    index = MixedIndex.from_arrays(vectors, factory="IVF8,Flat")
    index.set_search_params("nprobe=4")
    index.set_search_params("nprobe=8", query_modality="text", target="image")
    info = {s["modality"]: s for s in index.shard_info()}
    assert info["text"]["search_params"] == {"nprobe": 4} and info["text"]["pair_params"] == {}
    assert info["image"]["search_params"] == {"nprobe": 4} and info["image"]["pair_params"] == {"text": "nprobe=8"}


def test_shard_info_counts_the_hubness_term_dimensions(vectors):
    index = MixedIndex.from_arrays(vectors, factory="HNSW16")
    index.standardizer = Standardizer(sample=200).fit(index)
    index.fold_terms(index.standardizer)
    info = index.shard_info()
    assert {s["stored_dim"] for s in info} == {34}  # 32 + one term per query modality
    assert all(s["memory_bytes"] == faiss.serialize_index(index.shards[s["modality"]]).nbytes for s in info)


def test_cli_info_shows_every_shard(tmp_path, vectors):
    db = tmp_path / "db.faiss"
    index = MixedIndex.from_arrays(vectors, factory="HNSW16")
    index.set_search_params("efSearch=96", query_modality="text", target="image")
    index.save(db)
    r = run("info", "--index", db)
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line for line in r.output.splitlines() if line.split()[:2] in (["text", "HNSW16"],
                                                                                         ["image", "HNSW16"])}
    assert set(rows) == {"text", "image"}
    assert "efSearch=16" in rows["text"] and "text queries: efSearch=96" in rows["image"]
    assert "KiB" in rows["text"]
    r = run("info", "--index", db, "--format", "json")
    shards = json.loads(r.output)["shards"]
    assert [s["modality"] for s in shards] == ["text", "image"]
    loaded = MixedIndex.load(db)
    assert [s["memory_bytes"] for s in shards] == [faiss.serialize_index(loaded.shards[m]).nbytes
                                                  for m in ("text", "image")]
    assert shards[1]["pair_params"] == {"text": "efSearch=96"} and shards[1]["search_params"] == {"efSearch": 16}


# --------------------------------------------------------------- bad factories
def test_factory_faiss_refuses_is_one_clear_line(tmp_path, vectors):
    with pytest.raises(SimstdError) as err:
        MixedIndex(512, "HNSWfoo")
    msg = str(err.value)
    assert "'HNSWfoo'" in msg and "could not parse" in msg and "HNSW32" in msg and "Error in" not in msg
    np.save(tmp_path / "t.npy", vectors["text"])
    line = one_line_error(run("build", "-e", f"text={tmp_path / 't.npy'}", "--factory", "HNSWfoo",
                              "--out", tmp_path / "db.faiss"))
    assert "'HNSWfoo'" in line and "use e.g." in line


@pytest.mark.parametrize("factory, dim, bad, fix", [
    ("IVF16,PQ7", 512, "PQ7", "'PQ8'"),
    ("PQ48", 512, "PQ48", "'PQ64'"),
    ("IVF16,PQ7x4fs", 512, "PQ7x4fs", "'PQ8x4fs'"),
    ("HNSW16_PQ6", 512, "HNSW16_PQ6", "'HNSW16_PQ8'"),
    ("OPQ16_64,IVF16,PQ12", 512, "PQ12", "'PQ16'"),  # after OPQ's 64 output dimensions
    ("PCA64,IVF16,PQ12", 512, "PQ12", "'PQ16'"),
])
def test_pq_that_does_not_divide_the_dimension_is_refused_before_faiss(factory, dim, bad, fix):
    with pytest.raises(SimstdError) as err:
        MixedIndex(dim, factory)
    msg = str(err.value)
    assert bad in msg and "multiple of" in msg and fix in msg and "Error" not in msg and "\n" not in msg


def test_pq_that_divides_the_dimension_is_accepted():
    for factory in ("IVF16,PQ8", "IVF16,PQ16x4fs", "OPQ16_64,IVF16,PQ16", "PCA64,IVF16,PQ16", "HNSW16_PQ8"):
        MixedIndex(512, factory)


def test_cli_build_refuses_pq_split_in_one_line(tmp_path, vectors):
    np.save(tmp_path / "t.npy", vectors["text"])
    line = one_line_error(run("build", "-e", f"text={tmp_path / 't.npy'}", "--factory", "IVF4,PQ7",
                              "--out", tmp_path / "db.faiss"))
    assert "PQ7" in line and "dimension 32" in line and "'PQ8'" in line


def test_term_padding_lets_every_useful_pq_hold_the_default_s_term_dimensions():
    from simstd.engines.faiss import term_padding

    assert term_padding(512, 2, "Flat") == 0 and term_padding(512, 0, "IVF16,PQ64") == 0
    assert term_padding(512, 2, "IVF1024,PQ64") == 62  # 512 + 2 + 62 = 9 x 64
    assert term_padding(512, 2, "IVF1024,PQ8x4fs") == 6  # 520 = 65 x 8
    assert term_padding(512, 3, "PQ16") == 13
    assert term_padding(512, 2, "OPQ16_64,IVF16,PQ16") == 0  # the PQ sees OPQ's 64 outputs, not the input


def test_the_default_on_pq_pads_its_term_dimensions_and_ranks_as_on_flat(tmp_path, vectors):
    """PQ8 divides 32 but not 32 + 2 term dimensions: the shards store 6 zeros after the
    terms (free for PQ: a code is M indices whatever the width), so the default works on
    PQ shards. Before, FAISS threw at the first search (and then simstd refused PQ8)."""
    queries = vectors["text"][:40]
    flat = MixedIndex.from_arrays(vectors)
    flat.standardizer = Standardizer(sample=200).fit(flat)
    index = MixedIndex.from_arrays(vectors, factory="IVF4,PQ8x8")
    index.standardizer = Standardizer(sample=200).fit(index)
    index.set_search_params("nprobe=4")
    res = index.search(queries, "text", 10)
    assert {s["stored_dim"] for s in index.shard_info()} == {40}  # 32 + 2 terms + 6 zeros
    exact = flat.search(queries, "text", 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res.ids, exact.ids)])
    assert overlap > 0.6, overlap  # PQ's quantisation error, not a broken inner product
    db = tmp_path / "db.faiss"
    index.save(db)
    again = MixedIndex.load(db)
    again.set_search_params("nprobe=4")
    np.testing.assert_array_equal(again.search(queries, "text", 10).ids, res.ids)
    again.add(np.asarray(vectors["image"][:3]), "image")  # new items get their terms, padding stays zero
    assert again.search(queries[:2], "text", 5).ids.shape == (2, 5)
    assert run("fit", "--index", db, "--sample", 200).exit_code == 0  # the CLI no longer refuses it


def test_a_pq_split_no_padding_can_fix_is_refused_before_the_fit(tmp_path, vectors):
    """After PCA24 the PQ sees 24 dimensions whatever is stored: PQ7 cannot split them."""
    db = tmp_path / "db.faiss"
    with pytest.raises(SimstdError, match="PQ7"):
        MixedIndex.from_arrays(vectors, factory="PCA24,IVF4,PQ7")


# ------------------------------------------------------------- on-disk lists
def _on_disk_ivf(folder, x: np.ndarray) -> tuple[faiss.Index, str]:
    folder.mkdir(parents=True, exist_ok=True)
    lists = str(folder / "lists.ivfdata")
    ivf = faiss.index_factory(x.shape[1], "IVF8,Flat", faiss.METRIC_INNER_PRODUCT)
    ivf.train(x)
    invlists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, lists)
    ivf.replace_invlists(invlists, True)
    invlists.this.disown()  # the index owns and frees them now
    ivf.add(x)
    return ivf, lists


def test_on_disk_lists_are_reported_and_a_missing_file_is_named(tmp_path, vectors):
    ivf, lists = _on_disk_ivf(tmp_path, vectors["image"])
    index = MixedIndex(32)
    index.adopt("image", ivf)
    index.add(vectors["text"], "text")
    facts = {s["modality"]: s for s in index.shard_info()}
    assert facts["image"]["lists_file"] == lists and facts["image"]["lists_bytes"] > 0
    assert facts["image"]["memory_bytes"] < 500 * 32 * 4  # the vectors are in the lists file, not in memory
    db = tmp_path / "db.faiss"
    index.save(db)
    del index, ivf
    assert MixedIndex.load(db).counts == {"image": 500, "text": 600}
    os.rename(lists, tmp_path / "elsewhere.ivfdata")
    with pytest.raises(CorruptFileError) as err:
        MixedIndex.load(db)
    msg = str(err.value)
    assert lists in msg and "on-disk lists" in msg and "put that file back" in msg and "Error in" not in msg
    line = one_line_error(run("info", "--index", db))
    assert lists in line and "No such file" in line


def test_truncated_on_disk_lists_are_refused_at_load(tmp_path, vectors):
    ivf, lists = _on_disk_ivf(tmp_path, vectors["image"])
    index = MixedIndex(32)
    index.adopt("image", ivf)
    db = tmp_path / "db.faiss"
    index.save(db)
    del index, ivf
    os.truncate(lists, 100)  # mapped without complaint by FAISS; the first search would read past the end
    with pytest.raises(CorruptFileError) as err:
        MixedIndex.load(db)
    assert lists in str(err.value) and "holds 100 of their" in str(err.value)


def test_adopting_an_autofaiss_index_whose_list_file_is_missing_names_the_file(tmp_path):
    pytest.importorskip("pyarrow")
    from clipfolder import write_clip_folder

    from simstd.laion.build import import_folder

    rng = np.random.default_rng(4)
    pairs = np.stack([unit_rows(rng, 500, 32, 2.0), unit_rows(rng, 500, 32, -2.0)])
    folder = write_clip_folder(tmp_path / "out", pairs)
    x = pairs.astype(np.float16).astype(np.float32)
    for modality, part in (("image", 0), ("text", 1)):
        ivf, lists = _on_disk_ivf(tmp_path / modality, x[part]) if modality == "image" else (None, None)
        if ivf is None:
            ivf = faiss.IndexFlatIP(32)
            ivf.add(x[part])
        faiss.write_index(ivf, str(folder / f"{modality}.index"))
        if lists:
            image_lists = lists
    os.remove(image_lists)
    with pytest.raises(SimstdError) as err:
        import_folder(folder, adopt=folder)
    msg = str(err.value)
    assert "image.index" in msg and image_lists in msg and "put that file back" in msg and "Error in" not in msg
