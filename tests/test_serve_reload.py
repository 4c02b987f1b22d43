"""Hot reload: a committed `fit` is picked up while serving, requests hold their
snapshot to the end, a version that would serve less is held back, and a small
load test with a reload under load loses no request."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

pytest.importorskip("fastapi")
from click.testing import CliRunner  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from serve_support import PY, REPO, subprocess_env, unit_rows, vector_index, wait_until  # noqa: E402

from simstd import SimstdError  # noqa: E402
from simstd.cli import main  # noqa: E402
from simstd.serve import create_app  # noqa: E402
from simstd.serve.config import Settings  # noqa: E402
from simstd.serve.deps import IndexHolder  # noqa: E402


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def test_requests_in_flight_keep_their_version(tmp_path):
    db = vector_index(tmp_path / "db.faiss")
    holder = IndexHolder(Settings(index_path=db, reload_interval=0), encoder=None)
    old = holder.current()  # what a request takes when it starts
    before = old.index.search_like([0], 5).ids.copy()
    assert holder.check() is False  # nothing new
    cli("fit", "--index", db, "--seed", "7", "--sample", "20")
    assert holder.check() is True
    new = holder.current()
    assert new.version != old.version and holder.status.reloads == 1
    # the old snapshot still answers, from its own files and fit
    np.testing.assert_array_equal(old.index.search_like([0], 5).ids, before)
    assert old.index.standardizer is not new.index.standardizer


def test_add_is_served_with_the_stale_fit_then_the_refit(tmp_path):
    db = vector_index(tmp_path / "db.faiss")
    more = tmp_path / "more.npy"
    np.save(more, unit_rows(np.random.default_rng(5), 7, 32, -3.0))
    with TestClient(create_app(db, encoder=None, reload_interval=0.05)) as client:
        v0 = client.get("/health").json()["version"]
        cli("add", "--index", db, "-e", f"image={more}")
        # the fit made before the add keeps serving (its pair statistics apply to the new items)
        wait_until(lambda: client.get("/info").json()["counts"]["image"] == 47, 10, "the added version")
        info = client.get("/info").json()
        assert info["stale"] is True and info["standardized"] is True and info["version"] != v0
        r = client.post("/search", json={"id": 75, "k": 5})  # a new item, standardized
        assert r.status_code == 200 and r.json()["query"]["standardized"] is True
        cli("fit", "--index", db)
        wait_until(lambda: client.get("/info").json()["stale"] is False, 10, "the refitted version")
        health = client.get("/health").json()
        assert health["reloads"] == 2 and health["pending_version"] is None


def test_versions_that_serve_less_or_are_damaged_are_held_back(tmp_path, monkeypatch):
    from simstd import MixedIndex
    from simstd.storage import open_version

    db = vector_index(tmp_path / "db.faiss")
    holder = IndexHolder(Settings(index_path=db, reload_interval=0), encoder=None)
    v0 = holder.current().version
    # a version without a fit (say, a rebuild) would turn standardized search off: held back
    index = MixedIndex.load(db)
    index.standardizer = None
    index.save(db)
    assert holder.check() is False and holder.current().version == v0
    assert holder.status.pending_version == index.version and "simstd fit" in holder.status.pending_reason
    # the next commit is a fit: served
    cli("fit", "--index", db, "--sample", "20")
    assert holder.check() is True and holder.status.pending_version is None
    served = holder.current().version
    # a committed version whose file was damaged afterwards is not served
    cli("fit", "--index", db, "--sample", "20", "--seed", "3")
    damaged = open_version(db)
    good = damaged.file("standardizer.json").read_bytes()
    damaged.file("standardizer.json").write_text("{broken")
    assert holder.check() is False and holder.current().version == served
    assert holder.status.pending_version == damaged.version and holder.status.pending_reason
    with pytest.raises(SimstdError, match="corrupt"):  # a server started now refuses to start on it
        create_app(db, encoder=None)
    # repaired (say, restored from a backup): tried again after PENDING_RETRY seconds, then served
    damaged.file("standardizer.json").write_bytes(good)
    assert holder.check() is False  # not retried at once
    monkeypatch.setattr("simstd.serve.deps.PENDING_RETRY", 0.0)
    assert holder.check() is True and holder.current().version == damaged.version


def test_small_load_with_a_reload_loses_no_request(tmp_path):
    out = tmp_path / "load.json"
    cmd = [PY, str(REPO / "benchmarks" / "serve_load.py"), "--clients", "4", "--duration", "3", "--n", "2000",
           "--fit-sample", "300", "--max-fits", "2", "--fit-margin", "0.5", "--baseline-seconds", "0.3",
           "--json", str(out)]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["requests"] > 0 and r["errors"] == 0, r["error_samples"]
    assert r["fits_committed"] >= 1 and r["fits_failed"] == 0
    assert r["reloads"] >= 1 and r["served_version"] == r["committed_version"] != r["first_version"]
    assert r["server_exit"] == 0


def test_rollback_is_followed_too(tmp_path):
    db = vector_index(tmp_path / "db.faiss")
    holder = IndexHolder(Settings(index_path=db, reload_interval=0), encoder=None)
    v1 = holder.current().version
    cli("fit", "--index", db, "--seed", "9", "--sample", "20")
    assert holder.check() is True and holder.current().version != v1
    cli("rollback", "--index", db)  # the previous version is current again: serve it
    assert holder.check() is True and holder.current().version == v1
