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
        (["query", "--like", "0", "-k", "500", "--raw", "--index", "{d}/db.faiss"], "k=500 is larger"),
        (["query", "--vector", "{d}/q.npy", "--query-modality", "video", "--index", "{d}/db.faiss"], "fitted"),
        (["query", "--vector", "{d}/empty.npy", "--raw", "--index", "{d}/db.faiss"], "empty"),
        (["query", "a red bike", "--index", "{d}/db.faiss"], "records no encoder model"),
        (["query", "--index", "{d}/db.faiss"], "exactly one query"),
        (["query", "--like", "0", "--index", "{d}/nothere.faiss"], "does not exist"),
        (["fit", "--index", "{d}/db.faiss", "--queries", "{d}/q.npy"], "--query-modality"),
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
