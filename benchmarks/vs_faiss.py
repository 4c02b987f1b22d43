#!/usr/bin/env python3
"""simstd against raw FAISS: standardized search, recall, fitting, memory, cold start.

Measures Flat, IVF and HNSW indexes of synthetic CLIP-like vectors at the
given sizes and writes ``benchmarks/results/results.json``; ``python
benchmarks/run.py`` then renders ``docs/performance.md`` and the plot
``docs/img/cost_vs_n.png`` from it:

    python benchmarks/vs_faiss.py --sizes 100k,1m

Every measured phase (build, fit, query, cold start) runs in its own
subprocess so that its peak RSS is its own; the parent watches each child's
RSS and kills it above ``--mem-limit-gb``. Throughput ratios are measured in
one process, with raw FAISS and simstd timed alternately, repeat by repeat,
and reported as medians: the machine is shared and noisy.

Results of earlier runs at other sizes stay in the JSON (a run replaces only
the sizes it measures), so ``--sizes 10m`` adds the 10M row to the tables.

About 590 lines, one file on purpose: the child phases and the parent that
runs them are one protocol (a phase's name, its JSON config, its JSON line
back) that this script speaks to itself with ``--phase``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import CHUNK, DIM, RESULTS, child_env, command, logger, parse_size, peak_rss_kb, sgemm_gflops, size_label
from synth import MODALITIES, TARGET_MEAN_COS, Synth, mean_cosines

KINDS = ("flat", "ivf", "hnsw")
GT_K = 100
QUERY_MODALITY = "text"


# --------------------------------------------------------------------- configs
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

    rss = peak_rss_kb()  # before the matrix-multiply probe below allocates its arrays
    return {
        "maxrss_kb": rss,
        "threads": faiss.omp_get_max_threads(),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "sgemm_gflops": sgemm_gflops(4096, DIM, 16384, 5),
    }


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
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
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


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
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
    p.add_argument("--results", default=str(RESULTS / "results.json"))
    p.add_argument("--phase", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args.phase:
        res = PHASES[args.phase](json.loads(rest[0]))
        res.setdefault("maxrss_kb", peak_rss_kb())
        print(json.dumps(res))
        return 0
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)} (rendering moved: python benchmarks/run.py rewrites "
                "docs/performance.md from the results JSON)")

    results_path = Path(args.results)
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}}
    args.sizes = [parse_size(s) for s in args.sizes.split(",")]
    args.kinds = [k.strip() for k in args.kinds.split(",")]
    args.k = [int(k) for k in args.k.split(",")]
    if args.fit_samples is not None:
        args.fit_samples = [None if s.strip() == "all" else parse_size(s) for s in args.fit_samples.split(",")]
    limit_kb = int(args.mem_limit_gb * 2**20)
    started = time.perf_counter()
    log = logger()

    base = phase("baseline", {"threads": args.threads}, limit_kb, log)
    results["baseline"] = {"maxrss_kb": base["maxrss_kb"]}
    results["machine"] = {
        **machine_info(),
        **{key: base[key] for key in ("threads", "faiss", "numpy", "sgemm_gflops")},
    }
    results["synth"] = {"mean_cosines": mean_cosines(Synth(DIM, args.seed)), "targets": TARGET_MEAN_COS}
    log(f"synthetic mean cosines: {results['synth']['mean_cosines']} (targets {TARGET_MEAN_COS})")
    # --results changes where the numbers go, not the numbers
    cmd = command("vs_faiss.py", argv if argv is not None else sys.argv[1:], drop=["--results"])
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
        results.pop("notes_md", None)  # once a copy of notes.md; the report reads notes.md itself
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))
        log(f"[{size_label(n)}] done in {run['seconds']:.0f}s; wrote {results_path}")
    log(f"total {time.perf_counter() - started:.0f}s; render docs/performance.md with: python benchmarks/run.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
