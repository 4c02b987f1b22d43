"""`simstd serve` as a command: starts on a loopback port, answers, stops on Ctrl-C;
bad input is a one-line error with exit code 1; the missing extra is named."""
from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import urllib.request

import pytest

pytest.importorskip("fastapi")
from serve_support import PY, free_port, subprocess_env, vector_index, wait_until  # noqa: E402

from simstd import SimstdError  # noqa: E402


def test_serve_command_starts_answers_and_stops(tmp_path):
    db = vector_index(tmp_path / "db.faiss")
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "simstd", "serve", "--index", str(db), "--port", str(port), "--no-encoder",
                             "--log-level", "warning"], env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        health = wait_until(lambda: json.load(urllib.request.urlopen(base + "/health", timeout=2)), 60,
                            "the server to answer")
        assert health["status"] == "ok"
        req = urllib.request.Request(base + "/search", data=json.dumps({"id": 2, "k": 4}).encode(),
                                     headers={"Content-Type": "application/json"})
        body = json.load(urllib.request.urlopen(req, timeout=10))
        assert len(body["hits"]) == 4 and body["query"]["standardized"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"on http://127.0.0.1:{port}/" in err and "30 text, 40 image" in err
    assert "text and image queries are off" in err


def test_serve_command_bad_input(tmp_path):
    r = subprocess.run([PY, "-m", "simstd", "serve", "--index", str(tmp_path / "none.faiss"), "--no-encoder"],
                       env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    db = vector_index(tmp_path / "db.faiss")
    r = subprocess.run([PY, "-m", "simstd", "serve", "--index", str(db), "--cors-origin", "example.org"],
                       env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "CORS origin" in r.stderr and "Traceback" not in r.stderr


def test_missing_serve_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if not installed
    for name in [m for m in sys.modules if m.startswith("simstd.serve")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(SimstdError, match=r'pip install "simstd\[serve\]"'):
        importlib.import_module("simstd.serve")
