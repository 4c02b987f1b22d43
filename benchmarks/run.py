#!/usr/bin/env python3
"""simstd performance benchmark: standardized search vs raw FAISS, fitting, memory, cold start.

One command runs everything and writes the results JSON, the markdown tables
of ``docs/performance.md`` and the plot ``docs/img/cost_vs_n.png``:

    python benchmarks/run.py --sizes 100k,1m

Every measured phase (build, fit, query, cold start) runs in its own
subprocess so that its peak RSS is its own; the parent watches each child's
RSS and kills it above ``--mem-limit-gb``. Throughput ratios are measured in
one process, with raw FAISS and simstd timed alternately, repeat by repeat,
and reported as medians: the machine is shared and noisy.

Results of earlier runs at other sizes stay in the JSON (a run replaces only
the sizes it measures), so ``--sizes 10m`` adds the 10M row to the tables.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from synth import MODALITIES, TARGET_MEAN_COS, Synth, mean_cosines  # noqa: E402

DIM = 512
CHUNK = 250_000
KINDS = ("flat", "ivf", "hnsw")
GT_K = 100
QUERY_MODALITY = "text"


# --------------------------------------------------------------------- configs
def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "km" else text) * mult)


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1_000}k"


def spec_for(kind: str, n: int) -> dict | None:
    """Factory string and search parameters of one index kind at size n (None: not run)."""
    big = n > 2_000_000  # 10M: float32 vectors would be 20 GB per index, too much twice on 24 GB
    if kind == "flat":
        # Exhaustive SQ8 at 10M decodes 5 GB per query: a smaller batch keeps the run bounded.
        return {"kind": kind, "factory": "SQ8" if big else "Flat", "params": None, **({"batch": 8} if big else {})}
    if kind == "ivf":
        nlist = 256 if n <= 200_000 else 1024 if n <= 2_000_000 else 4096
        nprobe = {256: 16, 1024: 32, 4096: 64}[nlist]
        return {"kind": kind, "factory": f"IVF{nlist},{'SQ8' if big else 'Flat'}", "params": f"nprobe={nprobe}"}
    if kind == "hnsw":
        if big:
            return None  # building two 10M-node graphs takes hours on 2 cores (see docs)
        return {"kind": kind, "factory": "HNSW16", "params": "efSearch=128"}
    raise ValueError(kind)


def fit_samples_for(kind: str, n: int, override: list | None) -> list:
    if override is not None:
        return override
    if n <= 200_000:
        # None: every item is a pseudo query. The exact full fit (Flat) is the
        # reference every kind's sampled fits are compared with.
        return [10_000, 1_000, None] if kind == "flat" else [10_000, 1_000]
    if n <= 2_000_000:
        return [10_000, 1_000]
    # Exhaustive SQ8 at 10M decodes 5 GB per query and shard: a small sample.
    return [10_000, 1_000] if kind == "ivf" else [100]


# --------------------------------------------------------------- child phases
def _rss_kb() -> int:
    """Peak RSS of this process (VmHWM). Not ``ru_maxrss``: Linux carries the
    parent's peak into a child across fork and exec."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _setup_child(cfg: dict):
    import faiss

    if cfg.get("threads"):
        faiss.omp_set_num_threads(int(cfg["threads"]))
    return faiss


def _set_raw_params(faiss, index, params):
    if params:
        faiss.ParameterSpace().set_index_parameters(index, params)


def phase_baseline(cfg: dict) -> dict:
    faiss = _setup_child(cfg)
    import simstd  # noqa: F401

    rss = _rss_kb()  # before the matrix-multiply probe below allocates its arrays
    a = np.random.default_rng(0).standard_normal((4096, DIM), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((DIM, 16384), dtype=np.float32)
    best = min(_timed(lambda: a @ b) for _ in range(5))
    return {
        "maxrss_kb": rss,
        "threads": faiss.omp_get_max_threads(),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "sgemm_gflops": 2 * 4096 * DIM * 16384 / best / 1e9,
    }


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def phase_build_mixed(cfg: dict) -> dict:
    _setup_child(cfg)
    from simstd import MixedIndex

    synth = Synth(DIM, cfg["seed"])
    index = MixedIndex(DIM, cfg["factory"])
    gen = add = 0.0
    for m, i, size in synth.chunks(cfg["n"], cfg["chunk"]):
        t0 = time.perf_counter()
        x = synth.chunk(m, i, size)
        t1 = time.perf_counter()
        index.add(x, m)
        add += time.perf_counter() - t1
        gen += t1 - t0
        del x
    if cfg["params"]:
        index.set_search_params(cfg["params"])
    t0 = time.perf_counter()
    index.save(cfg["path"], overwrite=True)  # a rerun rebuilds it
    save = time.perf_counter() - t0
    return {"generate_s": gen, "add_s": add, "save_s": save, "counts": index.counts}


def phase_build_raw(cfg: dict) -> dict:
    faiss = _setup_child(cfg)
    synth = Synth(DIM, cfg["seed"])
    index = faiss.index_factory(DIM, cfg["factory"], faiss.METRIC_INNER_PRODUCT)
    gen = add = train = 0.0
    chunks = list(synth.chunks(cfg["n"], cfg["chunk"]))
    if not index.is_trained:
        # Train on the first chunk of each modality, like the shards of MixedIndex.
        t0 = time.perf_counter()
        first = np.vstack([synth.chunk(m, i, s) for m, i, s in chunks if i == 0])
        t1 = time.perf_counter()
        index.train(first)
        train = time.perf_counter() - t1
        gen += t1 - t0
        del first
    for m, i, size in chunks:
        t0 = time.perf_counter()
        x = synth.chunk(m, i, size)
        t1 = time.perf_counter()
        index.add(x)
        add += time.perf_counter() - t1
        gen += t1 - t0
        del x
    _set_raw_params(faiss, index, cfg["params"])
    t0 = time.perf_counter()
    faiss.write_index(index, cfg["raw_path"])
    return {"generate_s": gen, "train_s": train, "add_s": add, "save_s": time.perf_counter() - t0}


def phase_ground_truth(cfg: dict) -> dict:
    """Exact per-modality raw top-GT_K of the query batch, by brute force on regenerated data."""
    synth = Synth(DIM, cfg["seed"])
    q = synth.queries(QUERY_MODALITY, cfg["batch"])
    np.save(cfg["queries_path"], q)
    best = {m: (np.full((len(q), 0), -np.inf, np.float32), np.zeros((len(q), 0), np.int64)) for m in MODALITIES}
    offset = 0
    t0 = time.perf_counter()
    for m, i, size in synth.chunks(cfg["n"], cfg["chunk"]):
        x = synth.chunk(m, i, size)
        s = q @ x.T
        ids = np.broadcast_to(np.arange(offset, offset + size, dtype=np.int64), s.shape)
        S = np.hstack([best[m][0], s])
        I = np.hstack([best[m][1], ids])
        if S.shape[1] > GT_K:
            top = np.argpartition(-S, GT_K - 1, axis=1)[:, :GT_K]
            S, I = np.take_along_axis(S, top, 1), np.take_along_axis(I, top, 1)
        best[m] = (S, I)
        offset += size
    np.savez(cfg["path"], **{f"S_{m}": best[m][0] for m in MODALITIES}, **{f"I_{m}": best[m][1] for m in MODALITIES})
    return {"seconds": time.perf_counter() - t0}


def phase_fit(cfg: dict) -> dict:
    _setup_child(cfg)
    from simstd import MixedIndex, Standardizer

    t0 = time.perf_counter()
    index = MixedIndex.load(cfg["path"], load_standardizer=False)
    if cfg["params"]:
        index.set_search_params(cfg["params"])
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    if cfg["sample"] is not None:
        st = Standardizer(method="paper", sample=cfg["sample"]).fit(index)
        fit = time.perf_counter() - t0
        spread = None
    else:
        # The full fit, as Standardizer.fit does it, keeping the mined scores:
        # a sampled fit's scores are a subset of them (each pseudo query's top-1
        # does not depend on the other queries), so the sampling error of any
        # sample size can be measured over many random samples at no search cost.
        from simstd.mining import mine_pseudo_positives

        qm, tm, scores = mine_pseudo_positives(index, k=1, sample=None)
        st = Standardizer(method="paper", sample=None).fit_scores(qm, tm, scores)
        fit = time.perf_counter() - t0
        spread = _sampling_spread(qm, tm, scores, cfg.get("spread_samples", [1_000, 10_000]), 50)
    if cfg.get("save"):
        index.standardizer = st
        index.save(cfg["path"])  # a new version: shards and items are hard-linked, not rewritten
    return {"load_s": load, "fit_s": fit, "table": st.table(), "sampling_spread": spread}


def _sampling_spread(qm, tm, scores, sizes, draws: int) -> dict:
    """Per sample size: over ``draws`` random samples, the worst |mean shift| / std
    over the modality pairs, as median and 95th percentile."""
    rng = np.random.default_rng(12345)
    pairs = {}
    for q, t in set(zip(qm.tolist(), tm.tolist())):
        pairs[(q, t)] = scores[(qm == q) & (tm == t)]
    out = {}
    for size in sizes:
        if size >= min(len(x) for x in pairs.values()):
            continue  # that sample is the whole set
        worst_z, worst_std = [], []
        for _ in range(draws):
            z = sd = 0.0
            for x in pairs.values():
                pick = x[rng.choice(len(x), size, replace=False)]
                z = max(z, abs(pick.mean() - x.mean()) / x.std())
                sd = max(sd, abs(pick.std() - x.std()))
            worst_z.append(z)
            worst_std.append(sd)
        out[str(size)] = {
            "mean_shift_over_std_median": float(np.median(worst_z)),
            "mean_shift_over_std_p95": float(np.percentile(worst_z, 95)),
            "abs_std_diff_median": float(np.median(worst_std)),
            "abs_std_diff_p95": float(np.percentile(worst_std, 95)),
        }
    return out


def _merge_exact(gt, st, k):
    """Exact standardized top-k ids from per-modality exact raw top-k."""
    zs, ids = [], []
    for m in MODALITIES:
        mean, std = st.affine(QUERY_MODALITY, m)
        zs.append((gt[f"S_{m}"][:, :] - np.float32(mean)) / np.float32(std))
        ids.append(gt[f"I_{m}"])
    Z, I = np.hstack(zs), np.hstack(ids)
    order = np.argsort(-Z, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(I, order, 1)


def _merge_exact_raw(gt, k):
    S = np.hstack([gt[f"S_{m}"] for m in MODALITIES])
    I = np.hstack([gt[f"I_{m}"] for m in MODALITIES])
    return np.take_along_axis(I, np.argsort(-S, axis=1, kind="stable")[:, :k], 1)


def _recall(found, truth):
    k = truth.shape[1]
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(found[:, :k], truth)]))


def _work_per_query(faiss, kind: str, modes: dict, Q: np.ndarray, k: int) -> dict | None:
    """FAISS's own counters: codes scanned (IVF) or distances computed (HNSW) per query."""
    stats = {"ivf": "indexIVF_stats", "hnsw": "hnsw_stats"}.get(kind)
    if stats is None:
        return None  # exhaustive: every query scores all N items
    out = {}
    for name in ("faiss", "simstd"):
        counter = getattr(faiss.cvar, stats)
        counter.reset()
        modes[name](Q, k)
        out[name] = float(getattr(faiss.cvar, stats).ndis) / len(Q)
    return out


def phase_throughput(cfg: dict) -> dict:
    faiss = _setup_child(cfg)
    from simstd import MixedIndex

    raw = faiss.read_index(cfg["raw_path"])
    _set_raw_params(faiss, raw, cfg["params"])
    mixed = MixedIndex.load(cfg["path"])
    if cfg["params"]:
        mixed.set_search_params(cfg["params"])
    Q = np.load(cfg["queries_path"])[: cfg["batch"]]
    gt = {key: a[: len(Q)] for key, a in np.load(cfg["gt_path"]).items()}
    singles = Q[: cfg["singles"]]
    modes = {
        "faiss": lambda q, k: raw.search(q, k),
        "simstd": lambda q, k: mixed.search(q, QUERY_MODALITY, k),
        "simstd_raw": lambda q, k: mixed.search(q, QUERY_MODALITY, k, raw=True),
    }
    names = list(modes)
    out = {"batch": cfg["batch"], "singles": len(singles), "threads": faiss.omp_get_max_threads(), "k": {}}
    for k in cfg["ks"]:
        times = {"batch": {m: [] for m in names}, "single": {m: [] for m in names}}
        for m in names:  # warm-up (first-touch of pages, thread pools)
            modes[m](Q[:4], k)
        for rep in range(cfg["repeats"]):
            order = names[rep % 3 :] + names[: rep % 3]
            for m in order:
                t0 = time.perf_counter()
                modes[m](Q, k)
                times["batch"][m].append(time.perf_counter() - t0)
            for m in order:
                t0 = time.perf_counter()
                for j in range(len(singles)):
                    modes[m](singles[j : j + 1], k)
                times["single"][m].append(time.perf_counter() - t0)
        res = {}
        for kind, nq in (("batch", len(Q)), ("single", len(singles))):
            t = {m: np.asarray(v) for m, v in times[kind].items()}
            res[kind] = {
                "qps": {m: nq / float(np.median(v)) for m, v in t.items()},
                "times_s": {m: v.tolist() for m, v in t.items()},
                # Paired per repeat (same moment of the noisy machine), then the median.
                "ratio_simstd": float(np.median(t["faiss"] / t["simstd"])),
                "ratio_simstd_raw": float(np.median(t["faiss"] / t["simstd_raw"])),
            }
        res["distance_computations_per_query"] = _work_per_query(faiss, cfg["kind"], modes, Q, k)
        truth = _merge_exact(gt, mixed.standardizer, k)
        got = mixed.search(Q, QUERY_MODALITY, k).ids
        truth_raw = _merge_exact_raw(gt, k)
        got_raw = raw.search(Q, k)[1]
        res["recall_standardized"] = _recall(got, truth)
        res["identical_rankings"] = float(np.mean((got == truth).all(axis=1)))
        res["recall_raw_faiss"] = _recall(got_raw, truth_raw)
        res["recall_simstd_raw"] = _recall(mixed.search(Q, QUERY_MODALITY, k, raw=True).ids, truth_raw)
        out["k"][str(k)] = res
    return out


COLD_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
cfg = json.loads(sys.argv[1])
if cfg["mode"] == "simstd":
    import faiss
    from simstd import MixedIndex
else:
    import faiss
if cfg.get("threads"):
    faiss.omp_set_num_threads(int(cfg["threads"]))
t1 = time.perf_counter()
q = np.load(cfg["queries_path"])
if cfg["mode"] == "simstd":
    index = MixedIndex.load(cfg["path"])
    t2 = time.perf_counter()
    index.search(q[:1], "text", 10)
else:
    index = faiss.read_index(cfg["raw_path"])
    t2 = time.perf_counter()
    index.search(q[:1], 10)
t3 = time.perf_counter()
if cfg["mode"] == "simstd":  # a small batch at k=100, for the query-time peak RSS
    index.search(q[:8], "text", 100)
else:
    index.search(q[:8], 100)
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_query_s": t3 - t2,
                  "total_s": t3 - t0, "maxrss_kb": hwm}))
"""

PHASES = {
    "baseline": phase_baseline,
    "build_mixed": phase_build_mixed,
    "build_raw": phase_build_raw,
    "ground_truth": phase_ground_truth,
    "fit": phase_fit,
    "throughput": phase_throughput,
}


# -------------------------------------------------------------------- parent
class MemoryLimitExceeded(RuntimeError):
    pass


def _child_rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_child(argv: list[str], limit_kb: int, log) -> dict:
    """Run a child, watch its RSS, return the JSON on its last stdout line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _child_rss_kb(proc.pid))
        if peak > limit_kb:
            proc.kill()
            proc.wait()
            raise MemoryLimitExceeded(f"child {argv[2:4]} exceeded {limit_kb / 2**20:.1f} GiB RSS; killed")
        time.sleep(0.1)
    out, err = proc.communicate()
    if proc.returncode != 0:
        log(err[-3000:])
        raise RuntimeError(f"child {argv[1:4]} failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result.setdefault("maxrss_kb", peak)
    return result


def phase(name: str, cfg: dict, limit_kb: int, log) -> dict:
    t0 = time.perf_counter()
    res = run_child([sys.executable, str(Path(__file__).resolve()), "--phase", name, json.dumps(cfg)], limit_kb, log)
    res["wall_s"] = time.perf_counter() - t0
    # 1-minute load average after the phase: above the core count, other jobs competed.
    res["loadavg_1m"] = os.getloadavg()[0]
    return res


def machine_info() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        keep = ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L2 cache", "L3 cache", "Flags")
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in keep:
                value = value.strip()
                if key.strip() == "Flags":
                    value = " ".join(f for f in value.split() if f.startswith(("avx", "amx", "fma")))
                info[key.strip()] = value
    except OSError:
        pass
    with open("/proc/meminfo") as fh:
        info["MemTotal_GiB"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    return info


def run_size(n: int, args, limit_kb: int, log) -> dict:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    base = {"n": n, "seed": args.seed, "chunk": args.chunk, "threads": args.threads}
    label = size_label(n)
    qpath, gtpath = str(workdir / f"queries-{label}.npy"), str(workdir / f"gt-{label}.npz")
    batch = args.batch if args.batch else (256 if n <= 2_000_000 else 32)
    singles = args.singles if args.singles else (16 if n <= 2_000_000 else 2)
    log(f"[{label}] ground truth")
    out: dict = {"n": n, "batch": batch, "singles": singles, "kinds": {}}
    out["ground_truth"] = phase("ground_truth", {**base, "batch": batch, "queries_path": qpath, "path": gtpath}, limit_kb, log)
    for kind in args.kinds:
        spec = spec_for(kind, n)
        if spec is None:
            log(f"[{label}] {kind}: skipped at this size")
            out["kinds"][kind] = {"skipped": True}
            continue
        path, raw_path = str(workdir / f"mixed-{kind}-{label}.faiss"), str(workdir / f"raw-{kind}-{label}.faiss")
        cfg = {**base, **spec, "path": path, "raw_path": raw_path, "queries_path": qpath, "gt_path": gtpath}
        r: dict = {"spec": spec}
        log(f"[{label}] {kind} {spec['factory']}: build simstd")
        r["build_mixed"] = phase("build_mixed", cfg, limit_kb, log)
        log(f"[{label}] {kind}: build raw FAISS  (simstd build {r['build_mixed']['wall_s']:.0f}s)")
        r["build_raw"] = phase("build_raw", cfg, limit_kb, log)
        from simstd.storage import version_files  # light import: reads the manifest

        side = version_files(path)
        r["size_bytes"] = {
            "raw_faiss": os.path.getsize(raw_path),
            "simstd_faiss": os.path.getsize(side["shards.faiss"]),
            "simstd_sqlite": os.path.getsize(side["items.sqlite"]),
        }
        r["fit"] = []
        samples = fit_samples_for(kind, n, args.fit_samples)
        # The fit saved with the index (used for search and recall): the default
        # sample if measured, else the first one measured.
        keep = 10_000 if 10_000 in samples else samples[0]
        for sample in samples:
            log(f"[{label}] {kind}: fit sample={sample}")
            res = phase("fit", {**cfg, "sample": sample, "save": sample == keep}, limit_kb, log)
            res["sample"] = sample
            r["fit"].append(res)
            log(f"[{label}] {kind}:   fit {res['fit_s']:.1f}s")
        log(f"[{label}] {kind}: throughput and recall")
        r["throughput"] = phase(
            "throughput",
            {**cfg, "ks": args.k, "repeats": args.repeats, "singles": singles, "batch": spec.get("batch", batch)},
            limit_kb,
            log,
        )
        for k, v in r["throughput"]["k"].items():
            log(
                f"[{label}] {kind}:   k={k} batch ratio {v['batch']['ratio_simstd']:.3f} "
                f"single ratio {v['single']['ratio_simstd']:.3f} recall {v['recall_standardized']:.4f}"
            )
        r["cold_start"] = {"simstd": [], "faiss": []}
        for rep in range(args.cold_repeats):
            for mode in ("simstd", "faiss"):
                res = run_child([sys.executable, "-c", COLD_CHILD, json.dumps({**cfg, "mode": mode})], limit_kb, log)
                r["cold_start"][mode].append(res)
        log(f"[{label}] {kind}: cold start {np.median([c['total_s'] for c in r['cold_start']['simstd']]):.2f}s")
        out["kinds"][kind] = r
        if not args.keep:
            for p in (raw_path, *side.values()):
                Path(p).unlink(missing_ok=True)
    for p in (qpath, gtpath):
        if not args.keep:
            Path(p).unlink(missing_ok=True)
    return out


# ---------------------------------------------------------------------- docs
def _fmt(x, digits=3):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.2f}"


def _work(w: dict | None) -> str:
    return "all N" if w is None else f"{w['faiss']:,.0f} / {w['simstd']:,.0f}"


def _best_ratio(v: dict) -> float:
    """min FAISS time / min simstd time: the speeds each reached when the machine let it."""
    return min(v["times_s"]["faiss"]) / min(v["times_s"]["simstd"])


def _best_ms(v: dict, mode: str, nq: int) -> float:
    return 1e3 * min(v["times_s"][mode]) / nq


def _mib(b):
    return f"{b / 2**20:,.0f} MiB" if b < 10 * 2**30 else f"{b / 2**30:,.1f} GiB"


def _rows(results):
    for n in sorted(results["runs"], key=int):
        run = results["runs"][n]
        for kind in KINDS:
            r = run["kinds"].get(kind)
            if r is not None:
                yield int(n), run, kind, r


def write_docs(results: dict, docs: Path, img: Path) -> None:
    lines: list[str] = []
    add = lines.append
    m = results["machine"]
    add("# Performance\n")
    add(
        "Everything on this page is written by `benchmarks/run.py` from its own measurements "
        "(raw numbers: `benchmarks/results/results.json`, prose below the tables: "
        "`benchmarks/notes.md`). Do not edit the tables by hand; rerun (needs simstd installed and "
        "`pip install matplotlib` for the plot; `--docs-only` rewrites this page from the JSON):\n"
    )
    made_by: dict[str, list[str]] = {}
    for n, run, kind, r in _rows(results):
        made_by.setdefault(r.get("command") or run.get("command", "?"), []).append(f"{size_label(n)} {kind}")
    for cmd, rows in made_by.items():
        add(f"Rows {', '.join(rows)}:\n")
        add("```bash")
        add(cmd)
        add("```\n")
    add("## Machine\n")
    add("| | |\n|---|---|")
    for key in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "L2 cache", "L3 cache", "Flags"):
        if key in m:
            add(f"| {key} | {m[key]} |")
    add(f"| RAM | {m.get('MemTotal_GiB')} GiB |")
    add(f"| Python / numpy / FAISS | {m['python']} / {m['numpy']} / faiss-cpu {m['faiss']} |")
    add(f"| FAISS OpenMP threads | {m['threads']} |")
    walls = ", ".join(
        f"{size_label(int(n))}: {r['seconds'] / 60:.1f} min wall"
        + (f", {r['cpu_seconds'] / 60:.1f} min CPU" if "cpu_seconds" in r else "")
        + "".join(
            f" (rerun of some kinds: {x['seconds'] / 60:.1f} min wall, {x['cpu_seconds'] / 60:.1f} min CPU)"
            for x in r.get("reruns", [])
        )
        for n, r in sorted(results["runs"].items(), key=lambda x: int(x[0]))
        if "seconds" in r
    )
    dates = ", ".join(f"{size_label(int(n))}: {r.get('date', '?')}" for n, r in sorted(results["runs"].items(), key=lambda x: int(x[0])))
    add(f"| measured | {dates} |")
    add(f"| benchmark run time per size | {walls} |")
    loads = [
        v["loadavg_1m"]
        for run in results["runs"].values()
        for r in run["kinds"].values()
        for v in r.values()
        if isinstance(v, dict) and "loadavg_1m" in v
    ]
    if loads:
        add(
            f"| 1-minute load average after each phase (2 cores) | median {np.median(loads):.1f}, "
            f"max {max(loads):.1f} |"
        )
    add("")
    add(
        "The machine is shared with other jobs: every speed is a median of repeats, and every "
        "ratio is the median of ratios taken repeat by repeat, raw FAISS and simstd alternating "
        "in one process.\n"
    )
    if "sgemm_gflops" in m:
        add(
            f"Matrix-multiply speed of this machine (numpy float32 4096x512 by 512x16384, best of 5, "
            f"measured by the command): **{m['sgemm_gflops']:.0f} GFLOP/s**.\n"
        )
    add("## Headline\n")
    for n, run, kind, r in _rows(results):
        if r.get("skipped"):
            continue
        t = r["throughput"]["k"]
        ratios = ", ".join(
            f"k={k}: {v['batch']['ratio_simstd']:.2f} batch / {v['single']['ratio_simstd']:.2f} single"
            for k, v in t.items()
        )
        fit_main = next((f for f in r["fit"] if f["sample"] == 10_000), r["fit"][0])
        fit_text = f"fit ({fit_main['sample']:,} per modality) {_fmt(fit_main['fit_s'])} s"
        cold = float(np.median([c["total_s"] for c in r["cold_start"]["simstd"]]))
        qpeak = max(c["maxrss_kb"] for c in r["cold_start"]["simstd"]) * 1024
        rec = "exact (identical rankings: " if r["spec"]["factory"] == "Flat" else "standardized recall "
        rec += ", ".join(
            f"k={k} {v['identical_rankings'] if r['spec']['factory'] == 'Flat' else v['recall_standardized']:.3f}"
            for k, v in t.items()
        ) + (")" if r["spec"]["factory"] == "Flat" else "")
        add(
            f"- **{size_label(n)} {r['spec']['factory']}**: simstd/FAISS throughput {ratios}; {rec}; "
            f"{fit_text}; cold start {cold:.2f} s; query peak RSS "
            f"{_mib(qpeak)} for a {_mib(r['size_bytes']['raw_faiss'])} raw FAISS index."
        )
    add("")
    syn = results.get("synth", {})
    add("## Data\n")
    add(
        f"Synthetic CLIP-like vectors (`benchmarks/synth.py`), D={DIM}, half text and half image; "
        "each vector is a modality direction, plus topic and subtopic directions shared by both "
        "modalities, plus a modality-specific leaf direction, plus noise in a low-dimensional "
        "subspace: text and image form two offset clusters (the modality gap), cross-modal "
        "neighbours exist but are farther than same-modality ones, and approximate indexes work "
        "as on real embeddings. Achieved mean cosines against the targets (real CLIP):\n"
    )
    add("| pair | target | achieved |\n|---|---|---|")
    for key, target in TARGET_MEAN_COS.items():
        add(f"| {key} | {target} | {_fmt(syn.get('mean_cosines', {}).get(key))} |")
    add("")
    add(
        "Queries: a batch of fresh text vectors (not in the index). Indexes: `flat` is exhaustive "
        "(`Flat`; at 10M `SQ8`, 8-bit scalar quantization, because two float32 10M x 512 indexes "
        "would need 40 GB and even `SQfp16` would need 20 GB for the two compared indexes); `ivf` "
        "is `IVFn,Flat` (`IVF4096,SQ8` at 10M); `hnsw` is `HNSW16`. The raw FAISS reference is "
        "one plain index of the same factory string over all N vectors; simstd's `MixedIndex` holds "
        "one shard of that factory per modality.\n"
    )

    add("## Search throughput: simstd vs raw FAISS\n")
    add(
        "`faiss`: one plain FAISS index over all N, `index.search(q, k)`. `simstd`: "
        "`MixedIndex.search(q, 'text', k)`, standardized merged ranking. `simstd raw`: the same "
        "with `raw=True` (merged by raw cosine). Batch: all queries in one call; single: one query "
        "per call, in a loop (the latency case). qps are medians over the repeats; *ratio* = FAISS time / "
        "simstd time per repeat (1.0 = as fast, above 1 = simstd faster), median over repeats; "
        "*best-of ratio* = fastest FAISS repeat / fastest simstd repeat. On a machine shared with "
        "other jobs a repeat can be several times slower than the next (OpenMP threads wait for a "
        "core), so the best-of ratio is the steadier estimate of what each can do; the plot uses "
        "best-of times too.\n"
    )
    add(
        "| N | index | params | k | batch | FAISS qps | simstd qps | simstd raw qps | **ratio** | best-of ratio "
        "| single FAISS qps | single simstd qps | **single ratio** | single best-of ratio |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, run, kind, r in _rows(results):
        if r.get("skipped"):
            add(f"| {size_label(n)} | {kind} | not run at this size (see below) | | | | | | | | | |")
            continue
        t = r["throughput"]
        for k, v in t["k"].items():
            b, s = v["batch"], v["single"]
            add(
                f"| {size_label(n)} | {r['spec']['factory']} | {r['spec']['params'] or ''} | {k} | {t['batch']} "
                f"| {_fmt(b['qps']['faiss'])} | {_fmt(b['qps']['simstd'])} | {_fmt(b['qps']['simstd_raw'])} "
                f"| **{b['ratio_simstd']:.2f}** | {_best_ratio(b):.2f} | {_fmt(s['qps']['faiss'])} "
                f"| {_fmt(s['qps']['simstd'])} | **{s['ratio_simstd']:.2f}** | {_best_ratio(s):.2f} |"
            )
    add("")
    add("## Recall\n")
    add(
        "Exact answers come from brute force over the regenerated float32 vectors. "
        "*standardized recall*: simstd's standardized top-k against the exact standardized top-k "
        "(same fitted standardizer); *identical*: share of queries whose ranked id list is "
        "identical to the exact one (FAISS and numpy sum the 512 products in different orders, so "
        "two float32 scores within rounding of each other can swap places; `SQ8` stores 8-bit codes, "
        "so its scores are not the float32 ones and its orders differ); *raw FAISS recall*: the plain FAISS index's raw top-k against "
        "the exact raw top-k; *simstd raw recall*: the same for `raw=True`.\n"
    )
    add(
        "*work per query*: FAISS's own counters, codes scanned (IVF) or distances computed (HNSW) "
        "per query, raw FAISS vs simstd (all shards).\n"
    )
    add("| N | index | k | standardized recall | identical | raw FAISS recall | simstd raw recall | work per query FAISS / simstd |")
    add("|---|---|---|---|---|---|---|---|")
    for n, run, kind, r in _rows(results):
        if r.get("skipped"):
            continue
        for k, v in r["throughput"]["k"].items():
            add(
                f"| {size_label(n)} | {r['spec']['factory']} | {k} | {v['recall_standardized']:.4f} "
                f"| {v['identical_rankings']:.3f} | {v['recall_raw_faiss']:.4f} | {v['recall_simstd_raw']:.4f} "
                f"| {_work(v.get('distance_computations_per_query'))} |"
            )
    add("")
    budget = HERE / "results" / "hnsw_budget.json"
    if budget.exists():  # written by benchmarks/hnsw_budget.py, which renders its section
        from hnsw_budget import markdown as budget_markdown

        lines.extend(budget_markdown(json.loads(budget.read_text(encoding="utf-8"))))
    add("## Fitting\n")
    add(
        "`Standardizer(sample=s).fit(index)`: pseudo-positive mining with s pseudo queries per "
        "modality (top-1 neighbour per target modality, the item itself excluded), searched with the "
        "index's own shards (so IVF and HNSW fits also carry their search misses). Load time excluded. "
        "Two comparisons, each the largest over the four (query, target) pairs: *vs full* compares "
        "with the exact full fit (Flat, every item a pseudo query; measured where affordable), so it "
        "holds sampling error plus search misses; *vs Flat, same queries* compares with the Flat fit of "
        "the same sample size, which draws the very same pseudo queries (same seed, same ids), so it "
        "holds the approximate index's search misses only. *|Δ mean|/std* is the mean shift in units "
        "of the pair's exact std (what moves z-scores); *|Δ std|/std* the relative std error.\n"
    )
    add(
        "For exhaustive (`Flat`) shards the work is fixed: every pseudo query scores every item, "
        "2·D·(pseudo queries)·N floating-point operations; *GFLOP/s* is that work over the fit time, "
        "and *time at matrix-multiply speed* is that work at the machine's float32 matrix-multiply "
        "speed measured above: the floor for an exact float32 fit.\n"
    )
    add(
        "| N | index | sample per modality | fit time | GFLOP/s | time at matrix-multiply speed | fit peak RSS "
        "| vs full: |Δ mean|/std | vs full: |Δ std|/std | vs Flat, same queries: |Δ mean|/std | vs Flat, same queries: |Δ std|/std |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    sgemm = results["machine"].get("sgemm_gflops")

    def _dev(table, ref_table):
        if ref_table is None:
            return None, None
        ref = {(p["query_modality"], p["target_modality"]): p for p in ref_table}
        dz = max(abs(p["mean"] - ref[(p["query_modality"], p["target_modality"])]["mean"])
                 / ref[(p["query_modality"], p["target_modality"])]["std"] for p in table)
        ds = max(abs(p["std"] - ref[(p["query_modality"], p["target_modality"])]["std"])
                 / ref[(p["query_modality"], p["target_modality"])]["std"] for p in table)
        return dz, ds

    for n, run, kind, r in _rows(results):
        if r.get("skipped"):
            continue
        flat = run["kinds"].get("flat") or {}
        flat_fits = flat.get("fit", []) if flat.get("spec", {}).get("factory") == "Flat" else []
        full = next((f for f in flat_fits if f["sample"] is None), None)
        for f in r["fit"]:
            fz, fs = _dev(f["table"], full["table"] if full is not None and f is not full else None)
            same = next((g for g in flat_fits if g["sample"] == f["sample"]), None) if kind != "flat" else None
            qz, qs = _dev(f["table"], same["table"] if same is not None else None)
            sample = "all (full fit)" if f["sample"] is None else f"{f['sample']:,}"
            gflops = floor = None
            if r["spec"]["factory"] == "Flat":
                counts = r["build_mixed"]["counts"]
                queries = sum(c if f["sample"] is None else min(c, f["sample"]) for c in counts.values())
                gflops = 2 * DIM * queries * n / f["fit_s"] / 1e9
                floor = f"{2 * DIM * queries * n / sgemm / 1e9:.1f} s" if sgemm else None
            add(
                f"| {size_label(n)} | {r['spec']['factory']} | {sample} | {f['fit_s']:.1f} s | {_fmt(gflops)} | {_fmt(floor)} "
                f"| {_mib(f['maxrss_kb'] * 1024)} | {_fmt(fz)} | {_fmt(fs)} | {_fmt(qz)} | {_fmt(qs)} |"
            )
    add("")
    spreads = [(n, r) for n, run, kind, r in _rows(results) if not r.get("skipped")
               for f in r["fit"] if f.get("sampling_spread")]
    if spreads:
        add(
            "Sampling error alone, over 50 random samples drawn from the exact full fit's mined scores "
            "(a sampled fit's scores are a subset of the full fit's): the worst mean shift over the "
            "pairs in units of std, and the worst absolute std difference, median and 95th percentile "
            "over the draws.\n"
        )
        add("| N | index | sample per modality | mean shift / std, median | 95th pct | abs std diff, median | 95th pct |")
        add("|---|---|---|---|---|---|---|")
        for n, r in spreads:
            f = next(f for f in r["fit"] if f.get("sampling_spread"))
            for size, v in f["sampling_spread"].items():
                add(
                    f"| {size_label(n)} | {r['spec']['factory']} | {int(size):,} | {_fmt(v['mean_shift_over_std_median'])} "
                    f"| {_fmt(v['mean_shift_over_std_p95'])} | {_fmt(v['abs_std_diff_median'])} | {_fmt(v['abs_std_diff_p95'])} |"
                )
        add("")
    add("Fitted statistics at the default sample (10,000 per modality):\n")
    add("| N | index | query | target | n | mean | std |")
    add("|---|---|---|---|---|---|---|")
    for n, run, kind, r in _rows(results):
        if r.get("skipped"):
            continue
        f = next((f for f in r["fit"] if f["sample"] == 10_000), None)
        for p in (f or {}).get("table", []):
            add(
                f"| {size_label(n)} | {r['spec']['factory']} | {p['query_modality']} | {p['target_modality']} "
                f"| {p['n']:,} | {p['mean']:.4f} | {p['std']:.4f} |"
            )
    add("")
    _fit_from_files_section(add, HERE / "results" / "laion_fit.json")
    add("## Memory and build\n")
    add(
        "Peak RSS of each phase in its own process (its `VmHWM`). *baseline* is "
        "Python with numpy, FAISS and simstd imported. Build includes generating the vectors in "
        f"chunks of {CHUNK:,} per modality (the same for both). *raw FAISS index* is the size of the "
        "plain FAISS index file; simstd stores the same vectors in its shards plus ids "
        "(`IndexIDMap`) and the SQLite sidecar.\n"
    )
    add(
        "| N | index | raw FAISS index | simstd .faiss | simstd .sqlite | build peak (simstd) | build peak (FAISS) "
        "| fit peak (10k, else the sample run) | query peak | build time simstd | build time FAISS |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    base_kb = results.get("baseline", {}).get("maxrss_kb")
    for n, run, kind, r in _rows(results):
        if r.get("skipped"):
            continue
        sz = r["size_bytes"]
        fit10 = next((f for f in r["fit"] if f["sample"] == 10_000), r["fit"][0])
        qpeak = max(c["maxrss_kb"] for c in r["cold_start"]["simstd"])
        bm, br = r["build_mixed"], r["build_raw"]
        add(
            f"| {size_label(n)} | {r['spec']['factory']} | {_mib(sz['raw_faiss'])} | {_mib(sz['simstd_faiss'])} "
            f"| {_mib(sz['simstd_sqlite'])} | {_mib(bm['maxrss_kb'] * 1024)} | {_mib(br['maxrss_kb'] * 1024)} "
            f"| {_mib(fit10['maxrss_kb'] * 1024)} | {_mib(qpeak * 1024)} "
            f"| {bm['add_s'] + bm['save_s']:.0f} s | {br['train_s'] + br['add_s'] + br['save_s']:.0f} s |"
        )
    if base_kb:
        add(f"\nBaseline RSS (imports only): {_mib(base_kb * 1024)}.")
    add("")
    add("## Cold start\n")
    add(
        "A CLI query is a fresh process. Each row is the median of fresh subprocesses that import, "
        "load the saved index (FAISS shards, SQLite sidecar opened read-only, fitted standardizer) and "
        "answer one query (k=10); the *query peak* RSS above is the same process after 8 more queries at k=100. The index files were just written, so they are in the page cache: "
        "this is a warm-disk cold start.\n"
    )
    add("| N | index | simstd import | simstd load | simstd first query | **simstd total** | FAISS import | FAISS load | FAISS first query | **FAISS total** |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for n, run, kind, r in _rows(results):
        if r.get("skipped"):
            continue
        med = {mode: {key: float(np.median([c[key] for c in cs])) for key in ("import_s", "load_s", "first_query_s", "total_s")}
               for mode, cs in r["cold_start"].items()}
        s, f = med["simstd"], med["faiss"]
        add(
            f"| {size_label(n)} | {r['spec']['factory']} | {s['import_s']:.2f} s | {s['load_s']:.2f} s "
            f"| {s['first_query_s'] * 1e3:.0f} ms | **{s['total_s']:.2f} s** | {f['import_s']:.2f} s "
            f"| {f['load_s']:.2f} s | {f['first_query_s'] * 1e3:.0f} ms | **{f['total_s']:.2f} s** |"
        )
    add("")
    if img.exists():
        add("## Cost against N\n")
        add(f"![cost against N]({os.path.relpath(img, docs.parent)})\n")
    notes = results.get("notes_md")
    if notes:
        add(notes)
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fit_from_files_section(add, path: Path) -> None:  # noqa: ANN001
    """The 1M fit from clip-retrieval files (``benchmarks/laion_fit.py``): its own JSON, its own command."""
    if not path.exists():
        return
    runs = {k: v for k, v in json.loads(path.read_text()).items()
            if v.get("n") == 1_000_000 and v.get("collection") and not k.endswith("-spark")}
    if not runs:
        return
    names = {"float32": "exact float32", "bfloat16": "bfloat16 candidates, certified",
             "auto-float32": "`sample=\"auto\"`, exact float32", "auto-bfloat16": "`sample=\"auto\"`, bfloat16 certified",
             "index": "`Standardizer().fit(index)`, Flat MixedIndex (FAISS)",
             "auto-index": "`Standardizer(sample=\"auto\").fit(index)`, Flat MixedIndex (FAISS)", "ivf": "IVF candidates"}
    add("### 1M items in under a minute\n")
    add(
        "`simstd.laion.fit_embeddings` on a clip-retrieval folder of the same 1M synthetic vectors (float16 "
        "files, 500k per modality; `benchmarks/laion_fit.py`), and the fit on a Flat `MixedIndex` of them. "
        "Per table, the fits alternate repeat by repeat in one process; *time* is the median, *vs exact 10k* "
        "the median of the per-repeat ratios (the run's exact float32 fit on 10,000 pseudo queries per "
        "modality over this fit). Errors are the largest over the four pairs, in units of the pair's std: "
        "*CPU time / cores* is the process's CPU seconds over the machine's cores (the wall time an idle "
        "machine would show; the wall time grows with other jobs' load). "
        "*vs same queries* against the exact float32 fit of the same pseudo queries (what the search method "
        "costs; bfloat16 also says how many queries its bound could not certify); *vs the collection* against an exact fit on many other pseudo queries (seed 1000; its own "
        "standard error is given), so it holds the fit's sampling error; *stated* is the largest standard error "
        "the fit reports for itself (`Standardizer.standard_error_`). Raw JSON: "
        "`benchmarks/results/laion_fit.json`.\n"
    )
    # the quietest run first: its wall times are the ones an idle machine shows
    for key, r in sorted(runs.items(), key=lambda kv: (kv[1].get("load_average_after") or [99.0])[0]):
        c = r["collection"]
        add(f"Key `{key}`, reference: {c['reference_sample']:,} pseudo queries per modality "
            f"(standard error {c['reference_own_se']:.3f}); load average after the run "
            f"{', '.join(f'{x:.1f}' for x in r.get('load_average_after', [])) or 'not recorded'}:\n")
        add("```bash")
        add(r.get("command") or "python benchmarks/laion_fit.py --n 1m --sample 10000 --repeats 3 "
            "--methods float32,bfloat16,auto-float32,auto-bfloat16 --reference-sample 40000 --error-seeds 1,2,3,4")
        add("```\n")
        cpu = r.get("cpu_seconds") or {}
        add("| fit | pseudo queries per modality | time | CPU time / cores | vs exact 10k "
            "| vs same queries: |Δ mean|/std, |Δ std|/std | vs the collection: |Δ mean|/std, |Δ std|/std "
            "| stated standard error |")
        add("|---|---|---|---|---|---|---|---|")
        for name, secs in r["seconds"].items():
            rep = (r.get("reports", {}).get(name) or [{}])[0]
            sample = rep.get("sample") or {}
            drawn = " / ".join(f"{v:,}" for v in sample.values()) if sample else (
                "auto" if name.startswith("auto") else f"{r['sample']:,}")
            same = r["error_vs_reference"].get(name)
            drawn_alike = name.startswith("auto") == r["reference"].startswith("auto")  # else other queries
            same_txt = "(reference)" if name == r["reference"] else (
                f"{_fmt(same['mean_shift_over_std'])}, {_fmt(same['std_rel_error'])}" if same and drawn_alike else "–")
            redone = rep.get("recomputed")
            if redone is not None:
                same_txt += f" ({redone} queries re-scored in float32)"
            coll = c["error_vs_reference"].get(name)
            se = rep.get("standard_error")
            stated = max(max(e["mean"], e["std"]) for e in se.values()) if se else r.get("stated_se", {}).get(name)
            per_core = f"{np.median(cpu[name]) / r['cores']:.1f} s" if name in cpu else "not recorded"
            add(f"| {names.get(name, name)} | {drawn} | {np.median(secs):.1f} s | {per_core} "
                f"| {r['ratios_reference_over'][name]:.2f}x | {same_txt} "
                f"| {_fmt(coll['mean_shift_over_std'])}, {_fmt(coll['std_rel_error'])} | {_fmt(stated)} |")
        add("")
        seeds = c.get("auto_bfloat16_seeds") or []
        if seeds:
            worst = [max(s["mean_shift_over_std"], s["std_rel_error"]) for s in seeds]
            add(f"The adaptive bfloat16 fit again with seeds {', '.join(str(s['seed']) for s in seeds)}: the largest "
                f"error against the collection over the pairs was {', '.join(_fmt(w) for w in worst)} "
                f"(median {_fmt(float(np.median(worst)))}), each fit stating "
                f"{', '.join(_fmt(s['predicted_se']) for s in seeds)} per pair.\n")


def write_plot(results: dict, img: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    colors = {"flat": "C0", "ivf": "C1", "hnsw": "C2"}
    for kind in KINDS:
        pts = [(n, r) for n, run, kd, r in _rows(results) if kd == kind and not r.get("skipped")]
        if not pts:
            continue
        ns = [n for n, _ in pts]
        for ax, key in ((axes[0], "batch"), (axes[1], "single")):
            for mode, style in (("faiss", "--"), ("simstd", "-")):
                nq = {"batch": "batch", "single": "singles"}[key]
                ms = [_best_ms(r["throughput"]["k"]["10"][key], mode, r["throughput"][nq]) for _, r in pts]
                face = colors[kind] if mode == "simstd" else "none"
                ax.plot(ns, ms, style, marker="o", markerfacecolor=face, color=colors[kind], label=f"{kind} {mode}")
        fit = [next((f["fit_s"] for f in r["fit"] if f["sample"] == 10_000), np.nan) for _, r in pts]
        axes[2].plot(ns, fit, "-", marker="o", color=colors[kind], label=kind)
    titles = (
        "batch search, k=10: ms per query (best of repeats)",
        "single-query search, k=10: ms per query (best of repeats)",
        "fit time, 10k pseudo queries per modality (s)",
    )
    for ax, title in zip(axes, titles):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N (vectors in the index)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        "simstd (solid, filled) vs raw FAISS (dashed, hollow); flat = Flat (SQ8 at 10M), ivf = IVF,Flat (IVF4096,SQ8 at 10M)",
        fontsize=10,
    )
    fig.tight_layout()
    img.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(img, dpi=110)


# ---------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100k,1m", help="comma-separated N, e.g. 100k,1m or 10m (default 100k,1m)")
    p.add_argument("--kinds", default="flat,ivf,hnsw", help="index kinds: flat, ivf, hnsw")
    p.add_argument("--k", default="10,100", help="k values (default 10,100)")
    p.add_argument("--repeats", type=int, default=5, help="timing repeats per mode and k (default 5)")
    p.add_argument("--cold-repeats", type=int, default=3, help="cold-start subprocesses per mode (default 3)")
    p.add_argument("--batch", type=int, default=0, help="queries per batch (default 256; 32 above 2M)")
    p.add_argument("--singles", type=int, default=0, help="single queries timed per repeat (default 16; 2 above 2M)")
    p.add_argument("--fit-samples", default=None, help="pseudo queries per modality, e.g. 1000,10000,all")
    p.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (default: FAISS's default)")
    p.add_argument("--chunk", type=int, default=CHUNK, help="vectors generated and added per chunk")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mem-limit-gb", type=float, default=20.0, help="kill a phase whose RSS exceeds this")
    p.add_argument("--workdir", default="/tmp/simstd-bench", help="where indexes are written (deleted after)")
    p.add_argument("--keep", action="store_true", help="keep the index files in --workdir")
    p.add_argument("--results", default=str(HERE / "results" / "results.json"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "performance.md"))
    p.add_argument("--img", default=str(ROOT / "docs" / "img" / "cost_vs_n.png"))
    p.add_argument("--docs-only", action="store_true", help="rewrite docs and plot from the results JSON")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args.phase:
        res = PHASES[args.phase](json.loads(rest[0]))
        res.setdefault("maxrss_kb", _rss_kb())
        print(json.dumps(res))
        return 0

    results_path, docs, img = Path(args.results), Path(args.docs), Path(args.img)
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}}
    notes = HERE / "notes.md"
    results["notes_md"] = notes.read_text(encoding="utf-8") if notes.exists() else ""
    if args.docs_only:
        write_plot(results, img)
        write_docs(results, docs, img)
        return 0

    args.sizes = [parse_size(s) for s in args.sizes.split(",")]
    args.kinds = [k.strip() for k in args.kinds.split(",")]
    args.k = [int(k) for k in args.k.split(",")]
    if args.fit_samples is not None:
        args.fit_samples = [None if s.strip() == "all" else parse_size(s) for s in args.fit_samples.split(",")]
    limit_kb = int(args.mem_limit_gb * 2**20)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    base = phase("baseline", {"threads": args.threads}, limit_kb, log)
    results["baseline"] = {"maxrss_kb": base["maxrss_kb"]}
    results["machine"] = {
        **machine_info(),
        **{key: base[key] for key in ("threads", "faiss", "numpy", "sgemm_gflops")},
    }
    results["synth"] = {"mean_cosines": mean_cosines(Synth(DIM, args.seed)), "targets": TARGET_MEAN_COS}
    log(f"synthetic mean cosines: {results['synth']['mean_cosines']} (targets {TARGET_MEAN_COS})")
    cmd = "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    for n in args.sizes:
        t0 = time.perf_counter()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = run_size(n, args, limit_kb, log)
        run["seconds"] = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds of all phases: on an idle machine the wall time is about this over the cores.
        run["cpu_seconds"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        run["date"] = _dt.date.today().isoformat()
        run["command"] = cmd
        for r in run["kinds"].values():
            r["command"] = cmd
        old = results["runs"].get(str(n))
        if old is not None and set(args.kinds) != set(KINDS):
            # A partial rerun (--kinds): replace those kinds, keep the others.
            old["kinds"].update(run["kinds"])
            old.setdefault("reruns", []).append({k: run[k] for k in ("seconds", "cpu_seconds", "date", "command")})
            run = old
        results["runs"][str(n)] = run
        results.pop("commands", None)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))
        write_plot(results, img)
        write_docs(results, docs, img)
        log(f"[{size_label(n)}] done in {run['seconds']:.0f}s; wrote {results_path}, {docs}")
    log(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
