import json

import numpy as np
import pytest
from click.testing import CliRunner

from simstd import MixedIndex
from simstd.cli import main
from simstd.storage import version_files

from conftest import unit_rows


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", unit_rows(rng, 40, 16, 4.0))
    np.save(tmp_path / "i.npy", unit_rows(rng, 30, 16, -4.0))
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"text": f"caption {i}"}) + "\n" for i in range(40)))
    np.save(tmp_path / "q.npy", unit_rows(rng, 2, 16, 4.0))
    return tmp_path


def run(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    return result


@pytest.fixture
def built(files):
    db = files / "db.faiss"
    r = run("build", "-e", f"text={files / 't.npy'}", "-e", f"image={files / 'i.npy'}",
            "--meta", f"text={files / 't.jsonl'}", "--out", db)
    assert r.exit_code == 0, r.output
    return db


def test_build_fit_query_info_end_to_end(files, built):
    r = run("fit", "--index", built)
    assert r.exit_code == 0, r.output
    assert "text   image" in r.output and "standardizer.json" in version_files(built)
    r = run("query", "--vector", files / "q.npy", "--query-modality", "text", "--index", built, "-k", "12",
            "--format", "jsonl")
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.output.splitlines()]
    assert len(lines) == 24 and {"query", "rank", "id", "modality", "score", "raw_score"} <= set(lines[0])
    assert {x["modality"] for x in lines} == {"text", "image"}
    assert all("text" in x for x in lines if x["modality"] == "text")  # metadata fields are flattened in
    raw = [json.loads(x) for x in run("query", "--vector", files / "q.npy", "--index", built, "-k", "12",
                                      "--raw", "--format", "jsonl").output.splitlines()]
    assert {x["modality"] for x in raw} == {"text"}
    r = run("query", "--like", 45, "--index", built, "-k", 5)
    assert r.exit_code == 0 and "z-score" in r.output and "like:45" in r.output
    r = run("info", "--index", built)
    assert r.exit_code == 0 and "text: 40" in r.output and "image: 30" in r.output and "fitted" in r.output


def test_index_path_from_environment(files, built):
    assert run("fit", env={"SIMSTD_INDEX": str(built)}).exit_code == 0
    r = run("query", "--like", 0, "--format", "jsonl", env={"SIMSTD_INDEX": str(built)})
    assert r.exit_code == 0 and len(r.output.splitlines()) == 10


def test_add_keeps_the_stale_fit_serving(files, built):
    assert run("fit", "--index", built).exit_code == 0
    np.save(files / "i2.npy", unit_rows(np.random.default_rng(7), 30, 16, -4.0))
    r = run("add", "--index", built, "-e", f"image={files / 'i2.npy'}")
    assert r.exit_code == 0 and "stale" in r.output
    assert MixedIndex.load(built, load_standardizer=False).counts == {"text": 40, "image": 60}
    r = run("query", "--like", 0, "--index", built, "--format", "jsonl")
    assert r.exit_code == 0 and r.output.count("note: the standardizer is stale") == 1
    assert any(json.loads(x)["id"] >= 70 for x in r.output.splitlines() if x.startswith("{"))  # new items rank
    r = run("query", "--like", 0, "--index", built, "--strict")
    assert r.exit_code == 1 and "stale" in r.output and "Traceback" not in r.output
    r = run("info", "--index", built)
    assert "STALE" in r.output
    assert run("fit", "--index", built).exit_code == 0
    r = run("query", "--like", 0, "--index", built, "--strict")
    assert r.exit_code == 0 and "stale" not in r.output


def test_rebuild_removes_the_old_fit(files, built):
    assert run("fit", "--index", built).exit_code == 0
    assert run("build", "-e", f"text={files / 't.npy'}", "--out", built).exit_code == 1  # refused: it holds an index
    assert "standardizer.json" in version_files(built)
    assert run("build", "-e", f"text={files / 't.npy'}", "--out", built, "--overwrite").exit_code == 0
    assert "standardizer.json" not in version_files(built)
    assert MixedIndex.load(built).standardizer is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["build", "-e", "text", "--out", "{d}/x.faiss"], "MODALITY=FILE"),
        (["build", "-e", "text={d}/missing.npy", "--out", "{d}/x.faiss"], "does not exist"),
        (["build", "-e", "text={d}/nan.npy", "--out", "{d}/x.faiss"], "NaN"),
        (["build", "-e", "text={d}/zero.npy", "--out", "{d}/x.faiss"], "zero vector"),
        (["build", "-e", "text={d}/empty.npy", "--out", "{d}/x.faiss"], "empty"),
        (["build", "-e", "text={d}/t.npy", "--meta", "text={d}/bad.jsonl", "--out", "{d}/x.faiss"], "bad.jsonl:2"),
        (["build", "-e", "text={d}/t.npy", "--meta", "text={d}/short.jsonl", "--out", "{d}/x.faiss"], "exactly one"),
        (["build", "-e", "text={d}/t.npy", "--factory", "IVF4096,Flat", "--out", "{d}/x.faiss"], "smaller nlist"),
        (["query", "--like", "0", "--index", "{d}/db.faiss"], "no fitted standardizer"),
        (["query", "--vector", "{d}/q8.npy", "--index", "{d}/db.faiss", "--raw"], "dimension 8"),
        (["query", "--like", "0", "--raw", "--target", "audio", "--index", "{d}/db.faiss"], "unknown target"),
        (["query", "--vector", "{d}/empty.npy", "--raw", "--index", "{d}/db.faiss"], "empty"),
        (["query", "a red bike", "--index", "{d}/db.faiss"], "records no encoder model"),
        (["query", "--index", "{d}/db.faiss"], "exactly one query"),
        (["query", "--like", "0", "--index", "{d}/nothere.faiss"], "does not exist"),
        (["fit", "--index", "{d}/db.faiss", "--method", "paper", "--queries", "{d}/q.npy"], "--query-modality"),
    ],
)
def test_bad_input_gives_message_and_exit_code(files, built, args, message):
    np.save(files / "nan.npy", np.full((3, 16), np.nan, dtype=np.float32))
    np.save(files / "zero.npy", np.zeros((3, 16), dtype=np.float32))
    np.save(files / "empty.npy", np.zeros((0, 16), dtype=np.float32))
    np.save(files / "q8.npy", unit_rows(np.random.default_rng(0), 1, 8))
    (files / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    (files / "short.jsonl").write_text('{"a": 1}\n')
    r = run(*[a.format(d=files) for a in args])
    assert r.exit_code != 0
    assert message in r.output, r.output
    assert "Traceback" not in r.output
    assert not (files / "x.faiss").exists()  # nothing half-written


def test_corrupt_sidecar_is_reported(files, built):
    items = version_files(built)["items.sqlite"]
    items.write_bytes(b"not a database" * 50)
    r = run("info", "--index", built)
    assert r.exit_code == 1 and "items.sqlite is corrupt" in r.output and "simstd check" in r.output


def test_unnormalised_input_is_normalised_with_a_note(files):
    np.save(files / "big.npy", 5 * unit_rows(np.random.default_rng(0), 10, 16))
    r = CliRunner().invoke(main, ["build", "-e", f"text={files / 'big.npy'}", "--out", str(files / "n.faiss")])
    assert r.exit_code == 0 and "note:" in r.output and "normalised" in r.output


def test_demo_runs_offline_on_generated_data():
    r = run("demo")
    assert r.exit_code == 0, r.output
    assert "ranked by raw cosine" in r.output and "ranked by standardized score" in r.output
    row = next(line for line in r.output.splitlines() if line.startswith("generated"))
    r20_raw, r20_std = map(float, row.split()[-2:])
    assert r20_raw == 0.0 and r20_std > 0.8


def test_fit_mining_modes_on_an_hnsw_index(files):
    db = files / "hnsw.faiss"
    r = run("build", "-e", f"text={files / 't.npy'}", "-e", f"image={files / 'i.npy'}", "--factory", "HNSW8",
            "--out", db)
    assert r.exit_code == 0, r.output
    exhaustive = run("fit", "--index", db)
    assert exhaustive.exit_code == 0, exhaustive.output
    graph = run("fit", "--index", db, "--mining", "graph", "--format", "json")
    assert graph.exit_code == 0, graph.output
    bad = run("fit", "--index", db, "--mining", "fast")
    assert bad.exit_code == 2 and "exhaustive" in bad.output
    wrong = run("fit", "--embeddings", files, "--out", files / "s.json", "--mining", "graph")
    assert wrong.exit_code == 1 and "--mining" in wrong.output and not (files / "s.json").exists()


# ---------------------------------------------------------------- issue 21: what a new user reads
def test_fit_and_info_name_the_fitted_method_and_its_settings(files, built):
    r = run("fit", "--index", built, "--method", "hubness", "--hubness-k", 7, "--sample", 25)
    assert r.exit_code == 0, r.output
    method_line = next(line for line in r.output.splitlines() if line.startswith("method"))
    assert "hubness" in method_line and "K=7" in method_line and "25 pseudo queries" in method_line
    assert "CSLS (Conneau et al. 2018)" in r.output
    assert "± std: sampling error" in r.output  # the legend under the table
    header = next(line for line in r.output.splitlines() if line.startswith("query"))
    assert header.split()[-3:] == ["scale", "±", "scale"]  # what the ranking divides by, and its error
    assert "± scale: its sampling error" in r.output
    r = run("info", "--index", built)
    assert r.exit_code == 0 and "K=7" in r.output and "CSLS" in r.output and "± std: sampling error" in r.output
    info = json.loads(run("info", "--index", built, "--format", "json").output)
    assert info["method"]["method"] == "hubness"
    assert info["method"]["settings"] == {"hubness_k": 7, "sample": 25, "target_se": 0.01}
    r = run("fit", "--index", built, "--method", "paper", "--sample", "auto", "--target-se", "0.05")
    assert "paper" in r.output and "± std <= 0.05" in r.output and "Yamashita, Shirafuji and Saito 2025" in r.output
    assert "CSLS" not in r.output and "± scale" not in r.output  # the paper ranks by its mean and std alone
    info = json.loads(run("info", "--index", built, "--format", "json").output)
    assert info["method"]["settings"] == {"sample": "auto", "target_se": 0.05}


def test_a_text_file_passed_as_npy_is_named_without_advising_unpickling(files):
    (files / "notnpy.npy").write_text("hello world\n")
    np.save(files / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name in ("notnpy.npy", "objects.npy"):
        r = run("build", "-e", f"text={files / name}", "--out", files / "x.faiss")
        assert r.exit_code == 1 and name in r.output, r.output
        assert "pickle" not in r.output.lower() and "Traceback" not in r.output
    assert "is not a NumPy array file" in run("build", "-e", f"text={files / 'notnpy.npy'}",
                                              "--out", files / "x.faiss").output


@pytest.mark.parametrize("given, hint", [("Text", "did you mean 'text'?"), ("imgae", "did you mean 'image'?"),
                                         ("audio", "pass one of those")])
def test_an_unknown_query_modality_lists_the_index_and_suggests_the_close_one(files, built, given, hint):
    assert run("fit", "--index", built).exit_code == 0
    r = run("query", "--vector", files / "q.npy", "--query-modality", given, "--index", built)
    assert r.exit_code == 1 and f"unknown query modality {given!r}" in r.output and hint in r.output, r.output
    assert "refit" not in r.output and "['image', 'text']" in r.output


def test_like_refuses_a_query_modality_that_contradicts_the_item(files, built):
    assert run("fit", "--index", built).exit_code == 0
    r = run("query", "--like", 0, "--query-modality", "image", "--index", built)  # item 0 is a text
    assert r.exit_code == 1 and "item 0 is a text item" in r.output and "--query-modality" in r.output
    assert run("query", "--like", 0, "--query-modality", "text", "--index", built).exit_code == 0  # no contradiction


def test_unfitted_index_points_to_the_raw_flag_not_python(files, built):
    r = run("query", "--like", 0, "--index", built)
    assert r.exit_code == 1 and "--raw" in r.output and "raw=True" not in r.output, r.output


def test_build_with_files_of_two_dimensions_names_both_before_any_note(files):
    np.save(files / "big.npy", 5 * unit_rows(np.random.default_rng(0), 10, 16))  # not normalised: would get a note
    np.save(files / "wrongdim.npy", unit_rows(np.random.default_rng(1), 10, 8))
    r = run("build", "-e", f"text={files / 'big.npy'}", "-e", f"image={files / 'wrongdim.npy'}",
            "--out", files / "x.faiss")
    assert r.exit_code == 1, r.output
    assert "big.npy (text) has dimension 16" in r.output and "wrongdim.npy (image) has dimension 8" in r.output
    assert "the index has dimension" not in r.output  # no index exists yet
    assert "normalised" not in r.output and not (files / "x.faiss").exists()


def test_k_above_the_searchable_items_is_capped_with_a_note(files, built):
    # The one rule for k, shared with simstd serve (tests/test_serve_api.py): capped, and said so.
    r = CliRunner().invoke(main, ["query", "--like", "0", "-k", "500", "--raw", "--index", str(built),
                                  "--format", "jsonl"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 69 and 0 not in {x["id"] for x in lines}  # 70 items, the query item left out
    assert "note: k=500 is more than the 69 items" in r.stderr
    r = CliRunner().invoke(main, ["query", "--like", "0", "-k", "500", "--raw", "--target", "image",
                                  "--index", str(built), "--format", "jsonl"])
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 30 and "the 30 items" in r.stderr
    r = CliRunner().invoke(main, ["query", "--like", "0", "-k", "5", "--raw", "--index", str(built)])
    assert r.exit_code == 0 and "note:" not in r.stderr
