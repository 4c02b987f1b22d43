#!/usr/bin/env python3
"""Load test of `simstd serve` on the loopback while `simstd fit` commits new versions.

Builds a synthetic two-modality index (benchmarks/synth.py, CLIP-like modality
gap), fits it, starts ``python -m simstd serve --no-encoder`` on a free
127.0.0.1 port, and runs ``--clients`` concurrent clients for ``--duration``
seconds, each sending ``POST /search`` requests back to back over a keep-alive
connection (vector queries and indexed-id queries, alternately, k=10). Meanwhile
``simstd fit`` runs again and again (a new seed each time), so the server
reloads under load. Reported: requests, errors (any non-200 answer or failed
connection; must be 0), latency p50/p90/p99/max, throughput, fits committed,
reloads and index versions seen by the clients.

    python benchmarks/serve_load.py                                  # 32 clients, 30 s, 20k items
    python benchmarks/serve_load.py --clients 4 --duration 3 --n 2000 --json out.json   # the CI-sized run

Everything is bounded: the run ends after ``--duration`` seconds (each client
also stops after ``--max-requests``), the fit loop after ``--max-fits``, and the
server is stopped at the end. Only the loopback address is used.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common import child_env
from synth import Synth

HOST = "127.0.0.1"


def build_index(path: Path, n: int, dim: int, factory: str) -> None:
    from simstd import MixedIndex, Standardizer

    synth = Synth(dim=dim, seed=0)
    half = n // 2
    arrays = {m: synth.chunk(m, 0, size) for m, size in (("text", half), ("image", n - half))}
    metadata = {"text": [{"text": f"synthetic caption {i}"} for i in range(half)]}
    index = MixedIndex.from_arrays(arrays, factory=factory, metadata=metadata)
    index.standardizer = Standardizer(sample=2000, seed=0).fit(index)
    index.save(path, overwrite=True)  # --work may hold the last run's index


def in_process_rate(db: Path, queries: np.ndarray, k: int, seconds: float = 3.0) -> float:
    """Queries per second of ``MixedIndex.search`` called in a loop in this process (one query
    at a time): the ceiling a server's throughput is compared with."""
    from simstd import MixedIndex

    index = MixedIndex.load(db)
    done, deadline = 0, time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < deadline and done < 1_000_000:
        index.search(queries[done % len(queries)][None], "text", k)
        done += 1
    return done / (time.perf_counter() - t0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def get_json(port: int, path: str, timeout: float = 5.0) -> dict:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def start_server(db: Path, port: int, reload_interval: float, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "simstd", "serve", "--index", str(db), "--host", HOST, "--port", str(port),
           "--no-encoder", "--reload-interval", str(reload_interval), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=child_env(), stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            get_json(port, "/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not answer /health within 60 s")


def stop_server(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


class Client(threading.Thread):
    """Sends pre-encoded requests back to back until ``deadline``; keeps every latency."""

    def __init__(self, port: int, bodies: list[bytes], deadline: float, max_requests: int) -> None:
        super().__init__(daemon=True)
        self.port, self.bodies, self.deadline, self.max_requests = port, bodies, deadline, max_requests
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.versions: set[str] = set()

    def run(self) -> None:
        conn = None
        headers = {"Content-Type": "application/json"}
        i = 0
        while time.monotonic() < self.deadline and i < self.max_requests:
            body = self.bodies[i % len(self.bodies)]
            i += 1
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
                conn.request("POST", "/search", body, headers)
                response = conn.getresponse()
                data = response.read()
                elapsed = time.perf_counter() - t0
                if response.status != 200:
                    self.errors.append(f"HTTP {response.status}: {data[:200]!r}")
                    continue
                self.latencies.append(elapsed)
                self.versions.add(json.loads(data)["version"])
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def fit_loop(db: Path, deadline: float, max_fits: int, sample: int, log: list) -> None:
    """Refit (a new seed each time) until the deadline: each fit commits a new version."""
    seed = 1
    while time.monotonic() < deadline and seed <= max_fits:
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "simstd", "fit", "--index", str(db), "--seed", str(seed),
                                   "--sample", str(sample)], env=child_env(), capture_output=True, text=True,
                                  timeout=max(60.0, deadline - time.monotonic() + 60))
            code, err = proc.returncode, proc.stderr[-300:] if proc.returncode else ""
        except subprocess.TimeoutExpired:
            code, err = -1, "fit timed out"
        log.append({"seed": seed, "seconds": round(time.perf_counter() - t0, 3), "exit": code,
                    "ended_at": time.monotonic(), "stderr": err})
        seed += 1


def run(args: argparse.Namespace) -> dict:
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="simstd-load-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "db.faiss"
    t0 = time.perf_counter()
    build_index(db, args.n, args.dim, args.factory)
    build_s = time.perf_counter() - t0

    rng = np.random.default_rng(1)
    queries = Synth(dim=args.dim, seed=0).queries("text", 64)
    bodies = []
    for i, q in enumerate(queries):
        bodies.append(json.dumps({"vector": q.tolist(), "k": args.k}).encode())
        bodies.append(json.dumps({"id": int(rng.integers(0, args.n)), "k": args.k}).encode())

    baseline = in_process_rate(db, queries, args.k, args.baseline_seconds)
    load_before = os.getloadavg()[0]
    port = free_port()
    log = work / "server.log"
    server = start_server(db, port, args.reload_interval, log)
    fits: list[dict] = []
    try:
        version0 = get_json(port, "/health")["version"]
        start = time.monotonic()
        deadline = start + args.duration
        clients = [Client(port, bodies[i % 2 :] + bodies[: i % 2], deadline, args.max_requests)
                   for i in range(args.clients)]
        for c in clients:
            c.start()
        # let the clients warm up, then refit again and again while they run
        fitter = threading.Thread(target=fit_loop,
                                  args=(db, deadline - args.fit_margin, args.max_fits, args.fit_sample, fits),
                                  daemon=True)
        time.sleep(min(1.0, args.duration / 4))
        if args.max_fits > 0:
            fitter.start()
        for c in clients:
            c.join(args.duration + 60)
        if fitter.is_alive():
            fitter.join(120)
        wall = time.monotonic() - start
        # one last look: the server must switch to the last committed fit
        from simstd.serve.deps import index_version

        committed = index_version(db)
        settle = time.monotonic() + 10
        health = get_json(port, "/health")
        while health["version"] != committed and time.monotonic() < settle:
            time.sleep(0.1)
            health = get_json(port, "/health")
    finally:
        exit_code = stop_server(server)

    lat = np.array([x for c in clients for x in c.latencies]) * 1000
    errors = [e for c in clients for e in c.errors]
    versions = set().union(*(c.versions for c in clients))
    pct = (lambda p: round(float(np.percentile(lat, p)), 2)) if len(lat) else (lambda p: None)
    result = {
        "n": args.n, "dim": args.dim, "factory": args.factory, "k": args.k, "clients": args.clients,
        "duration_s": args.duration, "wall_s": round(wall, 2), "build_s": round(build_s, 2),
        "requests": int(len(lat)) + len(errors), "errors": len(errors), "error_samples": errors[:5],
        "throughput_rps": round(len(lat) / wall, 1) if wall else None,
        "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
        "max_ms": round(float(lat.max()), 2) if len(lat) else None,
        "fits_committed": sum(f["exit"] == 0 for f in fits), "fits_failed": sum(f["exit"] != 0 for f in fits),
        "fit_seconds": [f["seconds"] for f in fits], "fit_errors": [f["stderr"] for f in fits if f["exit"]],
        "reloads": health["reloads"], "versions_seen_by_clients": len(versions),
        "first_version": version0, "served_version": health["version"], "committed_version": committed, "server_exit": exit_code,
        "in_process_qps": round(baseline, 1),
        "throughput_vs_in_process": round(len(lat) / wall / baseline, 3) if wall and baseline else None,
        "cpus": os.cpu_count(), "loadavg_1min_before": round(load_before, 2),
    }
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return result


def markdown(r: dict) -> str:
    return (
        "| clients | duration | items | requests | errors | p50 | p90 | p99 | max | throughput | vs in-process | fits | reloads |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        f"| {r['clients']} | {r['duration_s']} s | {r['n']:,} x {r['dim']} ({r['factory']}) | {r['requests']:,} | "
        f"{r['errors']} | {r['p50_ms']} ms | {r['p90_ms']} ms | {r['p99_ms']} ms | {r['max_ms']} ms | "
        f"{r['throughput_rps']} req/s | {r['throughput_vs_in_process']} | {r['fits_committed']} | {r['reloads']} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    p.add_argument("--n", type=int, default=20_000, help="indexed items (half text, half image)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--factory", default="Flat")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--fit-sample", type=int, default=5000, help="pseudo queries per modality in each refit")
    p.add_argument("--max-fits", type=int, default=50, help="0: no refit during the run (a baseline)")
    p.add_argument("--fit-margin", type=float, default=2.0,
                   help="start no refit in the last seconds, so the last one is served before the end")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="per client")
    p.add_argument("--baseline-seconds", type=float, default=3.0,
                   help="length of the in-process search loop the throughput is compared with")
    p.add_argument("--reload-interval", type=float, default=0.5)
    p.add_argument("--work", default=None, help="keep the index and server log here")
    p.add_argument("--json", default=None, help="write the result here")
    args = p.parse_args()
    if args.clients < 1 or args.duration <= 0 or args.duration > 600:
        raise SystemExit("--clients must be >= 1 and --duration in (0, 600] seconds")
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
