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


def test_add_is_held_back_until_fit_then_served(tmp_path):
    db = vector_index(tmp_path / "db.faiss")
    more = tmp_path / "more.npy"
    np.save(more, unit_rows(np.random.default_rng(5), 7, 32, -3.0))
    with TestClient(create_app(db, encoder=None, reload_interval=0.05)) as client:
        v0 = client.get("/health").json()["version"]
        cli("add", "--index", db, "-e", f"image={more}")
        # the new items have no fit yet: standardized search would fail, so the old version stays
        health = wait_until(lambda: (h := client.get("/health").json())["pending_version"] and h, 10,
                            "the added version to be reported as pending")
        assert health["version"] == v0 and "simstd fit" in health["pending_reason"]
        assert client.get("/info").json()["counts"]["image"] == 40
        assert client.post("/search", json={"id": 1, "k": 5}).status_code == 200
        cli("fit", "--index", db)
        wait_until(lambda: client.get("/info").json()["counts"]["image"] == 47, 10, "the fitted version")
        health = client.get("/health").json()
        assert health["version"] != v0 and health["pending_version"] is None and health["reloads"] == 1
        assert client.post("/search", json={"id": 75, "k": 5}).status_code == 200  # a new item


def test_damaged_version_is_not_served(tmp_path):
    db = vector_index(tmp_path / "db.faiss")
    with TestClient(create_app(db, encoder=None, reload_interval=0.05)) as client:
        v0 = client.get("/health").json()["version"]
        (tmp_path / "db.standardizer.json").write_text("{broken")
        health = wait_until(lambda: (h := client.get("/health").json())["pending_version"] and h, 10,
                            "the damaged version to be reported")
        assert health["version"] == v0 and "standardizer" in health["pending_reason"]
        assert client.post("/search", json={"id": 1, "k": 5}).status_code == 200


def test_small_load_with_a_reload_loses_no_request(tmp_path):
    out = tmp_path / "load.json"
    cmd = [PY, str(REPO / "benchmarks" / "serve_load.py"), "--clients", "4", "--duration", "3", "--n", "2000",
           "--fit-sample", "300", "--max-fits", "2", "--fit-margin", "0.5", "--json", str(out)]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["requests"] > 0 and r["errors"] == 0, r["error_samples"]
    assert r["fits_committed"] >= 1 and r["fits_failed"] == 0
    assert r["reloads"] >= 1 and r["served_version"] == r["committed_version"] != r["first_version"]
    assert r["server_exit"] == 0
