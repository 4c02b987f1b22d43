"""Crash safety, one writer at a time, readers during writes, and one test per
defect of issue 10 (docs/reliability.md cites these tests by name).

The crash harness runs ``build`` (over an existing index), ``add`` and ``fit``
as subprocesses and kills them with SIGKILL, both at random moments and at each
file-system step of the commit (``SIMSTD_FAULT_AT=N``, simstd/storage/versions.py),
then checks that the index loads, passes ``simstd check`` and equals the state
before or after the write: never a mix.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from simstd import MixedIndex, Standardizer
from simstd.errors import CorruptFileError
from simstd.storage import check_index, current_version, open_version, store_dir, version_files

from conftest import unit_rows

REPO = Path(__file__).resolve().parents[1]
DIM = 16


def simstd(*args, env: dict | None = None, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "simstd", *map(str, args)], env=full_env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def start(*args, env: dict | None = None) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "simstd", *map(str, args)], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", unit_rows(rng, 300, DIM, 3.0))
    np.save(tmp_path / "i.npy", unit_rows(rng, 200, DIM, -3.0))
    np.save(tmp_path / "t2.npy", unit_rows(rng, 120, DIM, 3.0))
    np.save(tmp_path / "more.npy", unit_rows(rng, 80, DIM, -3.0))
    np.save(tmp_path / "more2.npy", unit_rows(rng, 30, DIM, 3.0))
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"text": f"caption {i}"}) + "\n" for i in range(300)))
    return tmp_path


def build_fitted(data: Path, name: str = "db.faiss") -> Path:
    """What `simstd build` + `simstd fit` make (in this process: faster)."""
    db = data / "idx" / name
    db.parent.mkdir(exist_ok=True)
    index = MixedIndex.from_arrays({"text": np.load(data / "t.npy"), "image": np.load(data / "i.npy")},
                                   metadata={"text": [{"text": f"caption {i}"} for i in range(300)]})
    index.standardizer = Standardizer().fit(index)
    index.save(db)
    return db


def wait_for_lock_holder(db: Path, proc: subprocess.Popen) -> None:
    """Until ``proc`` holds the writer lock (the holder writes its pid into the lock file)."""
    lock = store_dir(db) / "writer.lock"
    deadline = time.monotonic() + 60
    while f"pid {proc.pid}:" not in (lock.read_text() if lock.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, "the writer never took the lock"
        time.sleep(0.02)


def state(db: Path) -> tuple | None:
    """What a reader sees: counts, the vectors, payloads, the fit. None: no index."""
    if not db.exists():
        return None
    index = MixedIndex.load(db)
    ids = np.arange(index.ntotal)
    vectors = hashlib.blake2b(index.reconstruct(ids).tobytes(), digest_size=16).hexdigest()
    labels = tuple(index.modality_of(ids).tolist())
    payloads = json.dumps(index.store.get(ids), sort_keys=True)
    fit = None
    if index.standardizer is not None:
        fit = tuple((r["query_modality"], r["target_modality"], r["n"], round(r["mean"], 10), round(r["std"], 10))
                    for r in index.standardizer.table())
    return (tuple(index.counts.items()), vectors, labels, hashlib.md5(payloads.encode()).hexdigest(), fit)


def assert_intact(db: Path) -> None:
    report = check_index(db, MixedIndex)
    assert report.ok, report.problems


OPS = {
    "build": lambda d, db: ["build", "-e", f"text={d / 't2.npy'}", "-e", f"image={d / 'more.npy'}", "--out", db,
                            "--overwrite"],
    "add": lambda d, db: ["add", "--index", db, "-e", f"image={d / 'more.npy'}", "-e", f"text={d / 'more2.npy'}"],
    "fit": lambda d, db: ["fit", "--index", db, "--seed", "3", "--sample", "100"],
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_kill_9_at_every_commit_step_and_at_random_leaves_before_or_after(data, op):
    """At least 20 kills in all: every step of the commit, for build, add and fit, plus random moments."""
    template = build_fitted(data).parent
    work = data / "work"
    db = work / "db.faiss"

    def fresh() -> None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(template, work)

    fresh()
    before = state(db)
    seen, after = [], None
    kills, step = 0, 1
    while True:  # kill at step 1, 2, ... until the write completes without reaching step N
        fresh()
        r = simstd(*OPS[op](data, db), env={"SIMSTD_FAULT_AT": str(step)})
        if r.returncode == 0:
            after = state(db)
            break
        assert r.returncode == -signal.SIGKILL, r.stderr
        kills += 1
        seen.append((step, state(db)))
        assert_intact(db)
        step += 1
    assert after not in (None, before)
    for step, now in seen:
        assert now in (before, after), f"killed at step {step}: a mix of before and after"
    assert after in [now for _, now in seen]  # killed after the commit point too
    assert kills >= 7  # begin, each file, manifest, version folder, pointer, commit
    rng = np.random.default_rng(len(op))
    for delay in rng.uniform(0.3, 1.0, size=2):  # random moments: mostly before the commit, some in it
        fresh()
        proc = start(*OPS[op](data, db))
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert state(db) in (before, after)
        assert_intact(db)
    # The next writer cleans up what the killed ones left, and commits.
    assert simstd(*OPS[op](data, db)).returncode == 0
    leftovers = [p.name for p in store_dir(db).iterdir() if p.name.endswith(".tmp")]
    leftovers += [p.name for p in work.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_killed_writer_leaves_no_temporary_file_behind_after_the_next_write(data):
    db = build_fitted(data)
    r = simstd("add", "--index", db, "-e", f"image={data / 'more.npy'}", env={"SIMSTD_FAULT_AT": "file:shards.faiss"})
    assert r.returncode == -signal.SIGKILL
    tmp = [p for p in store_dir(db).iterdir() if p.name.endswith(".tmp")]
    assert tmp and any((p / "shards.faiss").exists() for p in tmp)  # the killed writer's half-made version
    assert simstd("add", "--index", db, "-e", f"text={data / 'more2.npy'}").returncode == 0
    assert [p for p in store_dir(db).iterdir() if p.name.endswith(".tmp")] == []
    assert len([p for p in store_dir(db).iterdir() if p.is_dir()]) == 2  # current + previous
    assert MixedIndex.load(db).counts == {"text": 330, "image": 200}


def test_two_concurrent_writers_lose_no_batch(data):
    db = build_fitted(data)
    # The first writer pauses inside its commit, holding the lock; the second must wait for it.
    first = start("add", "--index", db, "-e", f"image={data / 'more.npy'}",
                  env={"SIMSTD_FAULT_AT": "begin", "SIMSTD_FAULT_ACTION": "pause:1.0"})
    wait_for_lock_holder(db, first)
    second = start("add", "--index", db, "-e", f"text={data / 'more2.npy'}")
    out1, out2 = first.communicate(timeout=60), second.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, (out1, out2)
    index = MixedIndex.load(db)
    assert index.counts == {"text": 330, "image": 280}  # both batches
    assert index.store.get([0])[0] == {"text": "caption 0"}


def test_a_writer_that_cannot_get_the_lock_fails_clearly_and_writes_nothing(data):
    db = build_fitted(data)
    holder = start("add", "--index", db, "-e", f"image={data / 'more.npy'}",
                   env={"SIMSTD_FAULT_AT": "begin", "SIMSTD_FAULT_ACTION": "pause:30"})
    wait_for_lock_holder(db, holder)
    r = simstd("add", "--index", db, "-e", f"text={data / 'more2.npy'}", "--lock-timeout", "0.2")
    holder.kill()  # the holder dies holding the lock: the kernel releases it
    holder.communicate(timeout=60)
    assert r.returncode == 1 and "another simstd process is writing" in r.stderr and "--lock-timeout" in r.stderr
    assert f"pid {holder.pid}" in r.stderr and "Traceback" not in r.stderr
    assert MixedIndex.load(db).counts == {"text": 300, "image": 200}  # neither batch is in
    assert simstd("add", "--index", db, "-e", f"text={data / 'more2.npy'}", "--lock-timeout", "0").returncode == 0


READER = textwrap.dedent("""
    import sys, time, warnings
    import numpy as np
    from simstd import MixedIndex
    warnings.simplefilter("ignore")  # stale-fit notes
    path, stop = sys.argv[1], sys.argv[2]
    import os
    q = np.ones((1, %d), dtype=np.float32)
    ok = failed = 0
    versions = set()
    while not os.path.exists(stop):
        try:
            index = MixedIndex.load(path)
            res = index.search(q, "text", 5, raw=index.standardizer is None)  # a rebuilt index has no fit
            assert (res.ids >= 0).all() and index.ntotal == index.store.max_id() + 1
            ok += 1
            versions.add(index.version)
        except Exception as exc:
            failed += 1
            print(type(exc).__name__, exc, file=sys.stderr)
    print(ok, failed, len(versions))
""" % DIM)


def test_four_query_loops_during_writes_never_fail(data):
    db = build_fitted(data)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    stop = data / "stop"
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(db), str(stop)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    slow = {"SIMSTD_FAULT_AT": "pointer", "SIMSTD_FAULT_ACTION": "pause:0.2"}  # widen the swap window
    writes = [
        ["add", "--index", db, "-e", f"image={data / 'more.npy'}"],
        ["fit", "--index", db, "--sample", "100"],
        ["build", "-e", f"text={data / 't.npy'}", "-e", f"image={data / 'i.npy'}", "--out", db, "--overwrite"],
        ["add", "--index", db, "-e", f"text={data / 'more2.npy'}"],
    ]
    for args in writes:
        r = simstd(*args, env=slow)
        assert r.returncode == 0, r.stderr
    stop.touch()
    results = [r.communicate(timeout=60) for r in readers]
    for out, err in results:
        ok, failed, versions = map(int, out.split())
        assert failed == 0, err
        assert ok > 0
    assert sum(int(out.split()[2]) for out, _ in results) > 4  # the readers saw several versions


# ----------------------------------------------------------- one per defect
def test_stale_fit_keeps_serving_after_add_and_strict_refuses(data):
    db = build_fitted(data)
    assert simstd("add", "--index", db, "-e", f"image={data / 'more.npy'}").returncode == 0
    r = simstd("query", "--like", "0", "--index", db, "-k", "300", "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("stale") == 1  # noted once
    ids = [json.loads(line)["id"] for line in r.stdout.splitlines()]
    assert any(i >= 500 for i in ids)  # the new images rank, with the image pair's statistics
    info = simstd("info", "--index", db, "--format", "json")
    assert json.loads(info.stdout)["stale"]
    r = simstd("query", "--like", "0", "--index", db, "--strict")
    assert r.returncode == 1 and "stale" in r.stderr


def test_fit_with_a_single_pseudo_query_is_refused_and_writes_nothing(data):
    db = build_fitted(data)
    version = current_version(db)
    r = simstd("fit", "--index", db, "--sample", "1")
    assert r.returncode == 1 and "too few pseudo pairs" in r.stderr and "--sample" in r.stderr
    assert current_version(db) == version


def test_query_log_holding_the_indexed_items_is_noted_and_fits_sanely(data):
    db = build_fitted(data)
    np.save(data / "log.npy", np.load(data / "t.npy")[:100])  # the indexed texts themselves
    r = simstd("fit", "--index", db, "--queries", data / "log.npy", "--query-modality", "text")
    assert r.returncode == 1 and "add --method paper" in r.stderr and "Traceback" not in r.stderr  # the default has none
    r = simstd("fit", "--index", db, "--method", "paper", "--queries", data / "log.npy", "--query-modality", "text",
               "--format", "json")
    assert r.returncode == 0, r.stderr
    assert "100 pseudo queries are stored items themselves" in r.stderr
    pairs = {(p["query_modality"], p["target_modality"]): p for p in json.loads(r.stdout)["pairs"]}
    assert pairs[("text", "text")]["mean"] < 0.99 and pairs[("text", "text")]["std"] > 0.01


def test_nan_in_a_standardizer_file_is_refused_naming_the_file(tmp_path):
    index = MixedIndex.from_arrays({"text": unit_rows(np.random.default_rng(0), 30, DIM, 3.0),
                                    "image": unit_rows(np.random.default_rng(1), 30, DIM, -3.0)})
    data = Standardizer().fit(index).to_dict()
    data["pairs"][0]["mean"] = float("nan")
    path = tmp_path / "standardizer.json"
    path.write_text(json.dumps(data))  # json writes NaN
    with pytest.raises(CorruptFileError, match=r"standardizer.json is invalid: pair .* mean=nan"):
        Standardizer.load(path)


def test_flipped_bytes_are_found_by_check_and_refused_on_load(data):
    db = build_fitted(data)
    shards = version_files(db)["shards.faiss"]
    raw = bytearray(shards.read_bytes())
    for i in range(200):
        raw[-2000 + i * 7] ^= 0xFF  # inside the vectors
    shards.unlink()  # the version's files are hard links: replace, do not edit in place
    shards.write_bytes(bytes(raw))
    r = simstd("check", "--index", db)
    assert r.returncode == 1 and f"{shards} is corrupt" in r.stdout and "checksum" in r.stdout
    r = simstd("query", "--like", "0", "--index", db)
    assert r.returncode == 1 and str(shards) in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert simstd("check", "--index", build_fitted(data, "ok.faiss")).returncode == 0


def test_files_respect_the_umask_and_writes_keep_the_index_mode(data):
    def modes(db: Path) -> set[int]:
        files = [db, *version_files(db).values(), open_version(db).folder / "manifest.json"]
        return {stat.S_IMODE(p.stat().st_mode) for p in files}

    db = data / "m" / "db.faiss"
    db.parent.mkdir()
    r = simstd("build", "-e", f"text={data / 't.npy'}", "-e", f"image={data / 'i.npy'}", "--out", db,
               preexec_fn=lambda: os.umask(0o022))
    assert r.returncode == 0 and modes(db) == {0o644}
    os.chmod(db, 0o640)
    for args in (["fit", "--index", db], ["add", "--index", db, "-e", f"image={data / 'more.npy'}"]):
        assert simstd(*args, preexec_fn=lambda: os.umask(0o022)).returncode == 0
        assert modes(db) == {0o640}


def test_non_utf8_metadata_and_index_names_get_clear_errors(data):
    (data / "latin1.jsonl").write_bytes("".join(json.dumps({"text": "café"}, ensure_ascii=False) + "\n"
                                            for _ in range(300)).encode("latin-1"))
    r = simstd("build", "-e", f"text={data / 't.npy'}", "--meta", f"text={data / 'latin1.jsonl'}",
               "--out", data / "x.faiss")
    assert r.returncode == 1 and "latin1.jsonl:1 is not UTF-8" in r.stderr and "Traceback" not in r.stderr
    bad = os.fsdecode(os.fsencode(str(data)) + b"/d\xffb.faiss")
    r = simstd("build", "-e", f"text={data / 't.npy'}", "--out", bad)
    assert r.returncode == 1 and "not valid UTF-8" in r.stderr and "Traceback" not in r.stderr


def test_query_into_a_closed_pipe_exits_quietly(data):
    db = build_fitted(data)
    proc = start("query", "--like", "0", "-k", "400", "--index", db, "--format", "jsonl")
    proc.stdout.close()  # like `| head -1` that has exited
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 0 and err.strip() == "" or "stale" in err, err
    assert "Broken pipe" not in err and "Traceback" not in err


def test_plot_on_three_pairs_is_an_error_message(tmp_path):
    pairs = np.stack([unit_rows(np.random.default_rng(0), 3, DIM), unit_rows(np.random.default_rng(1), 3, DIM)])
    np.save(tmp_path / "p.npy", pairs)
    r = simstd("plot", tmp_path / "p.npy", "--out", tmp_path)
    assert r.returncode == 1 and "holds 3 pairs" in r.stderr and "Traceback" not in r.stderr


def test_shown_cosines_are_clipped_to_one(tmp_path):
    import faiss

    rng = np.random.default_rng(0)
    X = unit_rows(rng, 40, DIM, 3.0)
    index = MixedIndex.from_arrays({"text": X, "image": unit_rows(rng, 40, DIM, -3.0)})
    index.standardizer = Standardizer().fit(index)
    flat = faiss.downcast_index(index.shards["text"].index)
    xb = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * DIM)
    xb *= np.float32(1.0003)  # what lossy codes or float rounding can store
    index.save(tmp_path / "db.faiss")
    np.save(tmp_path / "q.npy", X[:1])
    assert MixedIndex.load(tmp_path / "db.faiss").search(X[:1], "text", 1).raw_scores[0, 0] > 1.0002  # raw kept
    r = simstd("query", "--vector", tmp_path / "q.npy", "--index", tmp_path / "db.faiss", "-k", "3",
               "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    shown = [json.loads(line)["raw_score"] for line in r.stdout.splitlines()]
    assert max(shown) == 1.0
    r = simstd("query", "--vector", tmp_path / "q.npy", "--index", tmp_path / "db.faiss", "-k", "3")
    assert "1.000" in r.stdout and "1.0003" not in r.stdout


def test_rollback_makes_the_intact_previous_version_current(data):
    db = build_fitted(data)
    before = state(db)
    assert simstd("add", "--index", db, "-e", f"image={data / 'more.npy'}").returncode == 0
    shards = version_files(db)["shards.faiss"]  # the add wrote new shards: damage them
    shards.unlink()
    shards.write_bytes(b"\0" * 100)
    assert simstd("check", "--index", db).returncode == 1
    r = simstd("rollback", "--index", db)
    assert r.returncode == 0 and "back at version" in r.stderr, r.stderr
    assert state(db) == before and simstd("check", "--index", db).returncode == 0
    r = simstd("rollback", "--index", db)  # the first version has no previous one
    assert r.returncode == 1 and "no previous version" in r.stderr
    assert simstd("add", "--index", db, "-e", f"image={data / 'more.npy'}").returncode == 0  # writes go on
    assert MixedIndex.load(db).counts == {"text": 300, "image": 280}


def test_damaged_vectors_in_a_large_shards_file_are_refused_on_load(tmp_path, monkeypatch):
    """A shards file too large to checksum on every load gets its vectors' norms spot-checked."""
    from simstd.storage import layout

    rng = np.random.default_rng(0)
    index = MixedIndex.from_arrays({"text": unit_rows(rng, 3000, DIM, 3.0), "image": unit_rows(rng, 3000, DIM, -3.0)})
    db = tmp_path / "db.faiss"
    index.save(db)
    shards = version_files(db)["shards.faiss"]
    raw = bytearray(shards.read_bytes())
    start = len(raw) // 4  # inside the first shard's vectors
    for i in range(200):
        raw[start + i * 97 * 4 + 3] ^= 0xFF  # the exponent byte of 200 floats
    shards.unlink()
    shards.write_bytes(bytes(raw))
    monkeypatch.setattr(layout, "VERIFY_LIMIT", 1000)  # as if the file were large
    with pytest.raises(CorruptFileError, match=r"shards.faiss is corrupt: stored 'text' vectors have norms"):
        MixedIndex.load(db)


def test_images_with_non_utf8_names_are_skipped_and_reported(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image

    from simstd.ingest import ingest

    class StubEncoder:  # any encoder: the file names are the point
        name, dim = "stub", DIM

        def encode_images(self, images):
            return unit_rows(np.random.default_rng(len(images)), len(images), DIM)

        def encode_texts(self, texts):
            return unit_rows(np.random.default_rng(len(texts)), len(texts), DIM)

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in (b"ok.png", b"caf\xe9.png"):  # the second is Latin-1, not UTF-8
        Image.new("RGB", (8, 8), (200, 10, 10)).save(os.fsdecode(os.fsencode(str(folder)) + b"/" + name))
    index, report = ingest(StubEncoder(), images=folder)
    assert index.counts == {"image": 1}
    assert len(report.skipped) == 1 and "not valid UTF-8" in report.skipped[0][1]
    assert "caf\\xe9.png" in report.skipped[0][0]
    index.save(tmp_path / "db.faiss")  # the payloads are valid UTF-8
    assert MixedIndex.load(tmp_path / "db.faiss").store.get([0])[0]["path"].endswith("ok.png")


def test_a_damaged_manifest_is_repaired_by_rollback_or_replaced_by_build(data):
    db = build_fitted(data)
    assert simstd("add", "--index", db, "-e", f"image={data / 'more.npy'}").returncode == 0
    after = state(db)
    db.write_bytes(b'{"format": "simstd.index", "vers')  # e.g. a disk error in the handle itself
    r = simstd("query", "--like", "0", "--index", db)
    assert r.returncode == 1 and "db.faiss is corrupt" in r.stderr
    r = simstd("rollback", "--index", db)  # the newest intact version is the one it named
    assert r.returncode == 0, r.stderr
    assert state(db) == after
    db.write_bytes(b"garbage")
    r = simstd("info", "--index", db)
    assert r.returncode == 1 and "db.faiss is corrupt" in r.stderr and "simstd repair" in r.stderr
    r = simstd("build", "-e", f"text={data / 't.npy'}", "--out", db, "--overwrite")  # a rebuild replaces it
    assert r.returncode == 0, r.stderr
    assert MixedIndex.load(db).counts == {"text": 300}


# ------------------------------------------------------------ issue 23: recovery
def fix_line(check: subprocess.CompletedProcess) -> list[str]:
    """The command `simstd check` prints after "fix: ", split as a shell would."""
    import shlex

    lines = [line for line in check.stdout.splitlines() if line.startswith("fix: ")]
    assert len(lines) == 1, check.stdout + check.stderr
    command = shlex.split(lines[0][len("fix: "):].split("   (")[0])
    assert command[0] == "simstd"
    return command[1:]


def test_build_over_an_existing_index_refuses_unless_overwrite_which_stays_one_rollback_away(data):
    db = build_fitted(data)
    fitted = state(db)
    r = simstd("build", "-e", f"text={data / 't2.npy'}", "--out", db)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{db} holds an index" in r.stderr and "300 text, 200 image, fitted" in r.stderr
    assert "--overwrite" in r.stderr and state(db) == fitted
    r = simstd("build", "-e", f"text={data / 't2.npy'}", "--out", db, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert "built" in r.stderr and f"simstd rollback --index {db}` brings it back" in r.stderr
    assert MixedIndex.load(db).counts == {"text": 120}
    r = simstd("rollback", "--index", db)
    assert r.returncode == 0, r.stderr
    assert state(db) == fitted
    # Python follows the same rule: a new index never silently replaces one ...
    from simstd.errors import IndexExistsError

    new = MixedIndex.from_arrays({"text": np.load(data / "t2.npy")})
    with pytest.raises(IndexExistsError, match="holds an index.*overwrite=True"):
        new.save(db)
    assert state(db) == fitted
    # ... while saving an index loaded from the path (add, fit) goes on as before
    index = MixedIndex.load(db)
    index.add(np.load(data / "more.npy"), "image")
    index.save(db)
    assert MixedIndex.load(db).counts == {"text": 300, "image": 280}
    new.save(db, overwrite=True)
    assert MixedIndex.load(db).counts == {"text": 120}


def test_a_damaged_handle_after_a_rollback_is_restored_to_the_version_the_user_was_on(data):
    """Issue 23, scenario 2: build + fit, build over it by mistake, rollback, then the handle is damaged."""
    db = build_fitted(data)
    fitted = state(db)
    assert simstd("build", "-e", f"text={data / 't2.npy'}", "--out", db, "--overwrite").returncode == 0
    assert simstd("rollback", "--index", db).returncode == 0
    assert state(db) == fitted
    db.write_bytes(b'{"format": "simstd.index", "vers')  # the handle is damaged
    r = simstd("check", "--index", db)
    assert r.returncode == 1
    r = simstd(*fix_line(r))  # `simstd repair --index db.faiss`, as printed
    assert r.returncode == 0, r.stderr
    assert state(db) == fitted and "the version that was current" in r.stderr
    db.write_bytes(b"garbage")
    r = simstd("rollback", "--index", db)  # what the issue ran: the same repair
    assert r.returncode == 0, r.stderr
    assert state(db) == fitted and "300 text, 200 image, fitted" in r.stderr


def test_rollback_after_rollback_walks_back_and_rollback_to_goes_forward(data):
    db = data / "db.faiss"
    assert simstd("build", "-e", f"text={data / 't.npy'}", "-e", f"image={data / 'i.npy'}", "--out", db,
                  "--keep", "3").returncode == 0
    assert simstd("fit", "--index", db, "--sample", "100").returncode == 0
    fitted = state(db)
    assert simstd("add", "--index", db, "-e", f"image={data / 'more.npy'}").returncode == 0
    added = state(db)
    r = simstd("versions", "--index", db, "--format", "json")
    listed = json.loads(r.stdout)
    assert listed["keep"] == 3 and [v["fitted"] for v in listed["versions"]] == [True, True, False]
    assert [v["current"] for v in listed["versions"]] == [True, False, False]
    assert [v["counts"]["image"] for v in listed["versions"]] == [280, 200, 200]
    assert simstd("rollback", "--index", db).returncode == 0 and state(db) == fitted
    r = simstd("rollback", "--index", db)  # again: further back, to the unfitted build
    assert r.returncode == 0 and "not fitted" in r.stderr and MixedIndex.load(db).standardizer is None
    r = simstd("rollback", "--index", db)
    assert r.returncode == 1 and "no previous version" in r.stderr
    newest = listed["versions"][0]["version"]
    r = simstd("rollback", "--index", db, "--to", newest.split("-")[0])  # by its number
    assert r.returncode == 0, r.stderr
    assert state(db) == added
    r = simstd("rollback", "--index", db, "--to", "999")
    assert r.returncode == 1 and "keeps no version '999'" in r.stderr and "simstd versions" in r.stderr


def test_every_fix_check_prints_works_as_printed(data):
    """Issue 23, scenario 3, and a damaged data file: repaired from a byte-identical copy, or the loss named."""
    db = build_fitted(data)
    fitted = state(db)
    copy = store_dir(db) / current_version(db) / "manifest.json"
    copy.write_text("{not json")  # the version's copy of the manifest
    r = simstd("query", "--like", "0", "--index", db)  # never served silently
    assert r.returncode == 1 and "manifest.json is damaged" in r.stderr and "simstd check" in r.stderr
    r = simstd("check", "--index", db)
    assert r.returncode == 1
    command = fix_line(r)
    assert command == ["repair", "--index", str(db)]
    r = simstd(*command)
    assert r.returncode == 0, r.stderr
    assert simstd("check", "--index", db).returncode == 0 and state(db) == fitted
    # a refit of the paper (no terms to fold) hard-links shards.faiss from the previous version; a damaged copy of it is restored from there
    assert simstd("fit", "--index", db, "--method", "paper", "--sample", "150").returncode == 0
    refitted = state(db)
    shards = version_files(db)["shards.faiss"]
    shards.unlink()  # e.g. a tool rewrote the file in place of the link
    shards.write_bytes(b"\0" * 100)
    r = simstd("check", "--index", db)
    command = fix_line(r)
    assert command[0] == "repair" and "shards.faiss from version" in r.stdout
    assert simstd(*command).returncode == 0
    assert simstd("check", "--index", db).returncode == 0 and state(db) == refitted
    # an add writes new shards: no kept version holds them, so the fix is a rollback that says what is lost
    assert simstd("add", "--index", db, "-e", f"image={data / 'more.npy'}").returncode == 0
    shards = version_files(db)["shards.faiss"]
    shards.unlink()
    shards.write_bytes(b"\0" * 100)
    r = simstd("repair", "--index", db)
    assert r.returncode == 1 and "shards.faiss (the vectors)" in r.stderr and "is lost" in r.stderr
    r = simstd("check", "--index", db)
    command = fix_line(r)
    assert command == ["rollback", "--index", str(db)] and "the vectors" in r.stdout
    assert simstd(*command).returncode == 0
    assert simstd("check", "--index", db).returncode == 0 and state(db) == refitted


def test_keep_is_a_setting_and_info_shows_the_kept_versions_cost(data):
    db = data / "db.faiss"
    assert simstd("build", "-e", f"text={data / 't.npy'}", "--out", db).returncode == 0
    for _ in range(3):
        assert simstd("add", "--index", db, "-e", f"text={data / 'more2.npy'}").returncode == 0
    r = simstd("versions", "--index", db, "--format", "json")
    assert len(json.loads(r.stdout)["versions"]) == 2  # the default: current + previous
    assert simstd("add", "--index", db, "-e", f"text={data / 'more2.npy'}", "--keep", "4").returncode == 0
    for _ in range(3):
        assert simstd("add", "--index", db, "-e", f"text={data / 'more2.npy'}").returncode == 0
    r = simstd("versions", "--index", db)
    assert r.returncode == 0 and r.stdout.count("\n") == 2 + 4 and "keep 4" in r.stderr  # header, rule, 4 rows
    r = simstd("info", "--index", db)
    assert r.returncode == 0 and "4 kept (keep 4)" in r.stdout, r.stdout
    cost = json.loads(simstd("info", "--index", db, "--format", "json").stdout)["versions"]
    sizes = sum(f.stat().st_size for f in store_dir(db).glob("0*/*"))
    assert cost["kept"] == 4 and cost["bytes"] == sizes and 0 < cost["current_bytes"] < cost["bytes"]
    r = simstd("versions", "--index", db, "--keep", "2")  # lower it: the oldest two go now
    assert r.returncode == 0 and len(list(store_dir(db).glob("0*"))) == 2
    r = simstd("add", "--index", db, "-e", f"text={data / 'more2.npy'}", "--keep", "1")
    assert r.returncode == 2 and "1 is not in the range x>=2" in r.stderr
