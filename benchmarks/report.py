"""docs/performance.md and its plot, rendered from the results JSON of the benchmarks.

Every markdown section of the page is a function here; each reads what one
benchmark wrote under ``benchmarks/results/`` (``vs_faiss.py``:
``results.json``; ``hnsw_budget.py``: ``hnsw_budget.json``; ``laion_fit.py``:
``laion_fit.json``) and the hand-written notes ``benchmarks/notes.md``. It
measures nothing and imports no benchmark: ``python benchmarks/run.py``
calls :func:`write_plot` and :func:`write_docs`.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from common import CHUNK, DIM, HERE, size_label

#: The order of the index kinds in every table.
KINDS = ("flat", "ivf", "hnsw")
#: Prose under the tables, written by hand (it quotes no measurement).
NOTES = HERE / "notes.md"


# ------------------------------------------------------------------ formatting
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



# -------------------------------------------------------------------- the page
def write_docs(results_dir: Path, docs: Path, img: Path) -> None:
    """Write ``docs`` from the JSON files in ``results_dir`` and ``notes.md``; link ``img`` if it exists."""
    results = json.loads((results_dir / "results.json").read_text())
    lines = [*_header(results), *_machine(results), *_headline(results), *_data(results),
             *_throughput(results), *_recall(results)]
    budget = results_dir / "hnsw_budget.json"
    if budget.exists():
        lines += _hnsw_budget(json.loads(budget.read_text(encoding="utf-8")))
    lines += _fitting(results)
    laion = results_dir / "laion_fit.json"
    if laion.exists():
        lines += _fit_from_files(json.loads(laion.read_text()))
    lines += [*_memory(results), *_cold_start(results)]
    if img.exists():
        lines.append("## Cost against N\n")
        lines.append(f"![cost against N]({os.path.relpath(img, docs.parent)})\n")
    notes = NOTES.read_text(encoding="utf-8") if NOTES.exists() else ""
    if notes:
        lines.append(notes)
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _header(results: dict) -> list[str]:
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
    for n, run, kind, r in _rows(results):
        made_by.setdefault(r.get("command") or run.get("command", "?"), []).append(f"{size_label(n)} {kind}")
    for cmd, rows in made_by.items():
        add(f"Rows {', '.join(rows)}:\n")
        add("```bash")
        add(cmd)
        add("```\n")
    return lines


def _machine(results: dict) -> list[str]:
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


def _headline(results: dict) -> list[str]:
    """One line per index: throughput ratios, recall, fit, cold start, memory."""
    lines: list[str] = []
    add = lines.append
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
    return lines


def _data(results: dict) -> list[str]:
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

    return lines


def _throughput(results: dict) -> list[str]:
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
    return lines


def _recall(results: dict) -> list[str]:
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
    return lines


def _fitting(results: dict) -> list[str]:
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
    return lines


def _memory(results: dict) -> list[str]:
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
    return lines


def _cold_start(results: dict) -> list[str]:
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
    return lines


# ------------------------------------------------------- hnsw_budget.json
def _split_cells(b: dict) -> str:
    if "error" in b:
        return "below every split | – | –"
    return f"{b['params']['text']}, {b['params']['image']} | {b['work']:,.0f} | **{b['recall']:.3f}**"


def _hnsw_budget(data: dict) -> list[str]:
    """HNSW: standardized recall against raw FAISS recall at equal work (``benchmarks/hnsw_budget.py``)."""
    lines = ["## HNSW: standardized recall at equal work\n"]
    lines.append(
        f"{size_label(data['n'])} items (half text, half image), `HNSW16`, k={data['k']}, {data['queries']} fresh "
        f"{data['query_modality']} queries. *work*: distance computations per query, FAISS's `hnsw_stats.ndis` "
        "(simstd: summed over its two shards, plus the entry points' distances with bridges). *raw*: one FAISS "
        "index over all items, raw recall@k against the exact raw top-k. simstd: standardized recall@k against "
        "the exact standardized top-k. *same efSearch*: the raw row's `efSearch` on both shards, each graph "
        "searched from its top; *bridged*: the cross-modal shard entered from the bridges of the query's own "
        "best results (`MixedIndex.build_bridges`). *split at raw's work*: the per-shard `efSearch` "
        "(text shard, image shard) that `simstd.tuning` picks with the raw row's work as budget; *split for "
        "raw's recall*: the cheapest split it expects to reach the raw row's recall. It picks from tables "
        f"measured on {data['tune_queries']} stored {data['query_modality']} items used as pseudo queries "
        "(label-free), never on these queries. Measured by:\n")
    lines.append("```bash")
    lines.append(data["command"])
    lines.append("```\n")
    lines.append("| efSearch | raw work | raw recall | same efSearch: work | recall | bridged, same efSearch: "
                 "work | recall | bridged split at raw's work | work | **recall** | bridged split for raw's recall "
                 "| work | recall | **work / raw work** |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in data["rows"]:
        r, s, bs, t = row["raw"], row["simstd_same_ef"], row["bridged_same_ef"], row["bridged_target"]
        lines.append(
            f"| {r['efSearch']} | {r['work']:,.0f} | {r['recall']:.3f} | {s['work']:,.0f} | {s['recall']:.3f} "
            f"| {bs['work']:,.0f} | {bs['recall']:.3f} | {_split_cells(row['bridged_budget'])} "
            f"| {t['params']['text']}, {t['params']['image']} | {t['work']:,.0f} | {t['recall']:.3f} "
            f"| **{t['work'] / r['work']:.2f}** |")
    split_tables = [("\nThe same splits without bridges (each graph searched from its top):\n",
                     "simstd_target", "simstd_budget")]
    if "bridged_log_target" in data["rows"][0]:
        split_tables.insert(0, (f"\nThe bridged splits tuned on a query log instead ({data['tune_queries']} other "
                                f"fresh {data['query_modality']} vectors, `tune_search_params(queries=...)`), not on "
                                "stored items:\n", "bridged_log_target", "bridged_log_budget"))
    for title, target_key, budget_key in split_tables:
        lines.append(title)
        lines.append("| efSearch | raw work | raw recall | split at raw's work | work | **recall** | split for raw's "
                     "recall | work | recall | **work / raw work** |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for row in data["rows"]:
            r, t = row["raw"], row[target_key]
            lines.append(
                f"| {r['efSearch']} | {r['work']:,.0f} | {r['recall']:.3f} | {_split_cells(row[budget_key])} "
                f"| {t['params']['text']}, {t['params']['image']} | {t['work']:,.0f} | {t['recall']:.3f} "
                f"| **{t['work'] / r['work']:.2f}** |")
    if data["build"].get("bridges_s"):
        lines.append(f"\nBuilding the bridges (`build_bridges()`, efSearch 32, both directions) took "
                     f"{data['build']['bridges_s']:.0f} s on this shared machine"
                     + (f"; building the two shards took {data['build']['build_mixed_s']:.0f} s"
                        if data["build"].get("build_mixed_s") else "") + ".")
    share = ", ".join(f"{m} {v:.0%}" for m, v in data["standardized_topk_share"].items())
    lines.append(f"\nShare of each modality in the exact standardized top-{data['k']}: {share}.\n")
    lines.append("Each shard's part of the exact standardized top-k that it finds (*hits*, share of all top-k "
                 "items) and its work, per `efSearch`, on the pseudo queries (the tables the splits are picked "
                 "from):\n")
    plain, bridged = data["shard_tables"]["plain"], data["shard_tables"]["bridged"]
    own = [tb for tb in plain if tb["target"] == data["query_modality"]][0]
    cross = [tb for tb in plain if tb["target"] != data["query_modality"]][0]
    bcross = [tb for tb in bridged if tb["target"] == cross["target"]][0]
    c = cross["target"]
    lines.append(f"| efSearch | {own['target']} shard: hits | work | {c} shard: hits | work "
                 f"| {c} shard, bridged: hits | work |")
    lines.append("|---|---|---|---|---|---|---|")
    for j, ef in enumerate(own["efSearch"]):
        lines.append(f"| {ef} | {own['hits'][j]:.3f} | {own['work'][j]:,.0f} | {cross['hits'][j]:.3f} "
                     f"| {cross['work'][j]:,.0f} | {bcross['hits'][j]:.3f} | {bcross['work'][j]:,.0f} |")
    c = data["control_shard"]
    lines.append(f"\nControl: the {c} shard alone is a plain FAISS `HNSW16` over the {c} items. Its raw recall@"
                 f"{data['k']} for fresh {c} queries (same modality, the case raw FAISS is measured on above) and "
                 f"for the {data['query_modality']} queries (cross-modal: their raw top-k among the {c} items, "
                 "what most of the standardized top-k is made of), per `efSearch`, searched from the top:\n")
    lines.append(f"| efSearch | {c} queries: work | recall | {data['query_modality']} queries (cross-modal): "
                 "work | recall |")
    lines.append("|---|---|---|---|---|")
    for row in data["rows"]:
        o, x = row["shard_control"]["own"], row["shard_control"]["cross"]
        lines.append(f"| {row['raw']['efSearch']} | {o['work']:,.0f} | {o['recall']:.3f} | {x['work']:,.0f} "
                     f"| {x['recall']:.3f} |")
    lines.append("")
    return lines


# --------------------------------------------------------- laion_fit.json
def _fit_from_files(data: dict) -> list[str]:
    """The 1M fit from clip-retrieval files (``benchmarks/laion_fit.py``): its own JSON, its own command."""
    runs = {k: v for k, v in data.items()
            if v.get("n") == 1_000_000 and v.get("collection") and not k.endswith("-spark")}
    if not runs:
        return []
    lines: list[str] = []
    add = lines.append
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
    return lines


# -------------------------------------------------------------------- the plot
def write_plot(results_dir: Path, img: Path) -> None:
    """The plot of search and fit cost against N, from ``results.json``; skipped without matplotlib."""
    results = json.loads((results_dir / "results.json").read_text())
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

