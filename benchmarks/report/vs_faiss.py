"""The sections of docs/performance.md measured by ``benchmarks/vs_faiss.py`` (``results.json``)."""
from __future__ import annotations

import numpy as np
from common import CHUNK, DIM, size_label

from .cells import best_ratio, fmt, index_rows, mib, work_cell


def header(results: dict) -> list[str]:
    """The title, and the commands that measured the rows."""
    lines: list[str] = []
    add = lines.append
    add("# Performance\n")
    add(
        "Everything on this page is rendered by `python benchmarks/run.py` from the benchmarks' results "
        "(raw numbers: `benchmarks/results/*.json`, prose below the tables: `benchmarks/notes.md`; "
        "`pip install matplotlib` for the plot). Do not edit it by hand: rerun the command written with "
        "a table (it rewrites that benchmark's JSON), then `python benchmarks/run.py`. The tables up to "
        "*Recall*, and those of fitting, memory and cold start, are measured by `benchmarks/vs_faiss.py`:\n"
    )
    made_by: dict[str, list[str]] = {}
    for n, run, kind, r in index_rows(results):
        made_by.setdefault(r.get("command") or run.get("command", "?"), []).append(f"{size_label(n)} {kind}")
    for cmd, rows in made_by.items():
        add(f"Rows {', '.join(rows)}:\n")
        add("```bash")
        add(cmd)
        add("```\n")
    return lines


def machine(results: dict) -> list[str]:
    """The machine and the load it was measured under."""
    lines: list[str] = []
    add = lines.append
    m = results["machine"]
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
    return lines


def headline(results: dict) -> list[str]:
    """One line per index: throughput ratios, recall, fit, cold start, memory."""
    lines: list[str] = []
    add = lines.append
    add("## Headline\n")
    for n, run, kind, r in index_rows(results):
        if r.get("skipped"):
            continue
        t = r["throughput"]["k"]
        ratios = ", ".join(
            f"k={k}: {v['batch']['ratio_simstd']:.2f} batch / {v['single']['ratio_simstd']:.2f} single"
            for k, v in t.items()
        )
        fit_main = next((f for f in r["fit"] if f["sample"] == 10_000), r["fit"][0])
        fit_text = f"fit ({fit_main['sample']:,} per modality) {fmt(fit_main['fit_s'])} s"
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
            f"{mib(qpeak)} for a {mib(r['size_bytes']['raw_faiss'])} raw FAISS index."
        )
    add("")
    return lines


def data(results: dict) -> list[str]:
    """The synthetic vectors and the indexes compared."""
    lines: list[str] = []
    add = lines.append
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
    for key, target in syn.get("targets", {}).items():
        add(f"| {key} | {target} | {fmt(syn.get('mean_cosines', {}).get(key))} |")
    add("")
    add(
        "Queries: a batch of fresh text vectors (not in the index). Indexes: `flat` is exhaustive "
        "(`Flat`; at 10M `SQ8`, 8-bit scalar quantization, because two float32 10M x 512 indexes "
        "would need 40 GB and even `SQfp16` would need 20 GB for the two compared indexes); `ivf` "
        "is `IVFn,Flat` (`IVF4096,SQ8` at 10M); `hnsw` is `HNSW16`. The raw FAISS reference is "
        "one plain index of the same factory string over all N vectors; simstd's `MixedIndex` holds "
        "one shard of that factory per modality.\n"
    )

    return lines


def throughput(results: dict) -> list[str]:
    """Search throughput, batch and single queries, against raw FAISS."""
    lines: list[str] = []
    add = lines.append
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
    for n, run, kind, r in index_rows(results):
        if r.get("skipped"):
            add(f"| {size_label(n)} | {kind} | not run at this size (see below) | | | | | | | | | |")
            continue
        t = r["throughput"]
        for k, v in t["k"].items():
            b, s = v["batch"], v["single"]
            add(
                f"| {size_label(n)} | {r['spec']['factory']} | {r['spec']['params'] or ''} | {k} | {t['batch']} "
                f"| {fmt(b['qps']['faiss'])} | {fmt(b['qps']['simstd'])} | {fmt(b['qps']['simstd_raw'])} "
                f"| **{b['ratio_simstd']:.2f}** | {best_ratio(b):.2f} | {fmt(s['qps']['faiss'])} "
                f"| {fmt(s['qps']['simstd'])} | **{s['ratio_simstd']:.2f}** | {best_ratio(s):.2f} |"
            )
    add("")
    return lines


def recall(results: dict) -> list[str]:
    """Recall against brute force, and FAISS's work counters."""
    lines: list[str] = []
    add = lines.append
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
    for n, run, kind, r in index_rows(results):
        if r.get("skipped"):
            continue
        for k, v in r["throughput"]["k"].items():
            add(
                f"| {size_label(n)} | {r['spec']['factory']} | {k} | {v['recall_standardized']:.4f} "
                f"| {v['identical_rankings']:.3f} | {v['recall_raw_faiss']:.4f} | {v['recall_simstd_raw']:.4f} "
                f"| {work_cell(v.get('distance_computations_per_query'))} |"
            )
    add("")
    return lines


def fitting(results: dict) -> list[str]:
    """Fit time, its error against the exact fit, sampling spread, fitted statistics."""
    lines: list[str] = []
    add = lines.append
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

    for n, run, kind, r in index_rows(results):
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
                f"| {size_label(n)} | {r['spec']['factory']} | {sample} | {f['fit_s']:.1f} s | {fmt(gflops)} | {fmt(floor)} "
                f"| {mib(f['maxrss_kb'] * 1024)} | {fmt(fz)} | {fmt(fs)} | {fmt(qz)} | {fmt(qs)} |"
            )
    add("")
    spreads = [(n, r) for n, run, kind, r in index_rows(results) if not r.get("skipped")
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
                    f"| {size_label(n)} | {r['spec']['factory']} | {int(size):,} | {fmt(v['mean_shift_over_std_median'])} "
                    f"| {fmt(v['mean_shift_over_std_p95'])} | {fmt(v['abs_std_diff_median'])} | {fmt(v['abs_std_diff_p95'])} |"
                )
        add("")
    add("Fitted statistics at the default sample (10,000 per modality):\n")
    add("| N | index | query | target | n | mean | std |")
    add("|---|---|---|---|---|---|---|")
    for n, run, kind, r in index_rows(results):
        if r.get("skipped"):
            continue
        f = next((f for f in r["fit"] if f["sample"] == 10_000), None)
        for p in (f or {}).get("table", []):
            add(
                f"| {size_label(n)} | {r['spec']['factory']} | {p['query_modality']} | {p['target_modality']} "
                f"| {p['n']:,} | {p['mean']:.4f} | {p['std']:.4f} |"
            )
    add("")
    return lines


def memory(results: dict) -> list[str]:
    """Peak RSS per phase, file sizes, build time."""
    lines: list[str] = []
    add = lines.append
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
    for n, run, kind, r in index_rows(results):
        if r.get("skipped"):
            continue
        sz = r["size_bytes"]
        fit10 = next((f for f in r["fit"] if f["sample"] == 10_000), r["fit"][0])
        qpeak = max(c["maxrss_kb"] for c in r["cold_start"]["simstd"])
        bm, br = r["build_mixed"], r["build_raw"]
        add(
            f"| {size_label(n)} | {r['spec']['factory']} | {mib(sz['raw_faiss'])} | {mib(sz['simstd_faiss'])} "
            f"| {mib(sz['simstd_sqlite'])} | {mib(bm['maxrss_kb'] * 1024)} | {mib(br['maxrss_kb'] * 1024)} "
            f"| {mib(fit10['maxrss_kb'] * 1024)} | {mib(qpeak * 1024)} "
            f"| {bm['add_s'] + bm['save_s']:.0f} s | {br['train_s'] + br['add_s'] + br['save_s']:.0f} s |"
        )
    if base_kb:
        add(f"\nBaseline RSS (imports only): {mib(base_kb * 1024)}.")
    add("")
    return lines


def cold_start(results: dict) -> list[str]:
    """A fresh process: import, load, first query."""
    lines: list[str] = []
    add = lines.append
    add("## Cold start\n")
    add(
        "A CLI query is a fresh process. Each row is the median of fresh subprocesses that import, "
        "load the saved index (FAISS shards, SQLite sidecar opened read-only, fitted standardizer) and "
        "answer one query (k=10); the *query peak* RSS above is the same process after 8 more queries at k=100. The index files were just written, so they are in the page cache: "
        "this is a warm-disk cold start.\n"
    )
    add("| N | index | simstd import | simstd load | simstd first query | **simstd total** | FAISS import | FAISS load | FAISS first query | **FAISS total** |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    for n, run, kind, r in index_rows(results):
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
    return lines
