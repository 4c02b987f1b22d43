#!/usr/bin/env python3
"""HNSW: standardized recall against raw FAISS recall at equal work (issue 12, item 5).

    python benchmarks/hnsw_budget.py --size 1m

Data: the synthetic CLIP-like vectors of ``benchmarks/run.py`` (``synth.py``),
half text, half image. ``raw``: one FAISS ``HNSW16`` over all N vectors,
searched for its raw top-k; ``simstd``: a ``MixedIndex`` of ``HNSW16`` shards
(one per modality) with a fitted standardizer, searched for the standardized
top-k. Work is FAISS's own counter, ``hnsw_stats.ndis`` (distance computations,
summed over simstd's shards), per query: noise-free, unlike wall time.

Sweeps, on fresh text queries that no tuning step sees:

- raw FAISS at each ``efSearch``: work and raw recall@k;
- simstd with one ``efSearch`` on both shards (the setting before this work);
- simstd with the per-shard split that :mod:`simstd.tuning` picks for the
  raw row's work (``budget``), and the split it picks to reach the raw row's
  recall (``target_recall``); the tables it picks from are measured on stored
  items used as pseudo queries (label-free), never on the evaluation queries.

Built indexes are cached under ``--workdir`` (two 1M HNSW16 graphs take about
70 s each here). Results: ``benchmarks/results/hnsw_budget.json``; the section
of ``docs/performance.md`` is rendered from it by ``benchmarks/run.py``
(this script calls it).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from synth import Synth  # noqa: E402

DIM = 512
CHUNK = 250_000
EFS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
RESULTS = HERE / "results" / "hnsw_budget.json"


def _log(msg: str, t0: list[float] = [time.perf_counter()]) -> None:  # noqa: B006 (start time)
    print(f"[{time.perf_counter() - t0[0]:7.1f}s] {msg}", flush=True)


def build(n: int, workdir: Path, seed: int):
    """The cached MixedIndex (fitted) and raw FAISS index of N synthetic vectors."""
    import faiss

    from simstd import MixedIndex, Standardizer

    synth = Synth(DIM, seed)
    where = workdir / f"n{n}_seed{seed}"
    where.mkdir(parents=True, exist_ok=True)
    mixed_path, raw_path = where / "mixed.faiss", where / "raw.faiss"
    facts = {}
    if not mixed_path.exists():
        t = time.perf_counter()
        mixed = MixedIndex(DIM, "HNSW16")
        for m, i, size in synth.chunks(n, CHUNK):
            mixed.add(synth.chunk(m, i, size), m)
        facts["build_mixed_s"] = time.perf_counter() - t
        t = time.perf_counter()
        mixed.standardizer = Standardizer().fit(mixed)  # default: the paper's method, 10,000 per modality
        facts["fit_s"] = time.perf_counter() - t
        mixed.save(mixed_path)
        _log(f"built and fitted the simstd index ({facts['build_mixed_s']:.0f} s + {facts['fit_s']:.0f} s)")
    if not raw_path.exists():
        t = time.perf_counter()
        raw = faiss.index_factory(DIM, "HNSW16", faiss.METRIC_INNER_PRODUCT)
        for m, i, size in synth.chunks(n, CHUNK):
            raw.add(synth.chunk(m, i, size))
        facts["build_raw_s"] = time.perf_counter() - t
        faiss.write_index(raw, str(raw_path))
        _log(f"built the raw FAISS index ({facts['build_raw_s']:.0f} s)")
    mixed = MixedIndex.load(mixed_path)
    if not mixed.bridges:
        t = time.perf_counter()
        mixed.build_bridges()
        facts["bridges_s"] = time.perf_counter() - t
        mixed.save(mixed_path)
        _log(f"built the cross-modal bridges ({facts['bridges_s']:.0f} s)")
    mixed.clear_search_params()
    return mixed, faiss.read_index(str(raw_path)), facts


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    from simstd.tuning import recall_at

    return recall_at(found, truth)


def run(args) -> dict:
    import faiss

    from simstd import tuning

    mixed, raw, facts = build(args.n, Path(args.workdir), args.seed)
    q_mod, k = args.query_modality, args.k
    Q = Synth(DIM, args.seed).queries(q_mod, args.queries)  # fresh vectors, in no index
    std = mixed.standardizer
    t = time.perf_counter()
    brute = tuning._brute_force(mixed)
    truth_std = mixed._search(Q, q_mod, k, std, False, None, None, None, 1.0, shard_search=brute).ids
    truth_raw = mixed._search(Q, q_mod, k, None, True, None, None, None, 1.0, shard_search=brute).ids
    _log(f"exact top-{k} of {len(Q)} queries by brute force ({time.perf_counter() - t:.0f} s)")
    share = {m: float(np.isin(truth_std, mixed.ids(m)).mean()) for m in mixed.modalities}
    # Control: each shard is a plain FAISS HNSW16 over one modality. Its raw top-k for queries of its own
    # modality (the easy case raw FAISS is measured on) and of the other one (cross-modal: what most of
    # the standardized top-k is made of).
    other = [m for m in mixed.modalities if m != q_mod][0]
    Q_other = Synth(DIM, args.seed).queries(other, args.queries)
    shard_truth = {
        "cross": (Q, other, mixed._search(Q, q_mod, k, None, True, [other], None, None, 1.0, shard_search=brute).ids),
        "own": (Q_other, other,
                mixed._search(Q_other, other, k, None, True, [other], None, None, 1.0, shard_search=brute).ids),
    }

    def shard_row(ef: int) -> dict:
        out = {}
        for case, (queries, target, truth) in shard_truth.items():
            p = faiss.SearchParametersHNSW()
            p.efSearch = ef
            faiss.cvar.hnsw_stats.reset()
            _, I = mixed._shard_search(target, queries, k, p)
            out[case] = {"work": faiss.cvar.hnsw_stats.ndis / len(queries), "recall": recall(I, truth)}
        return out

    def raw_row(ef: int) -> dict:
        p = faiss.SearchParametersHNSW()
        p.efSearch = ef
        faiss.cvar.hnsw_stats.reset()
        _, I = raw.search(Q, k, params=p)
        return {"efSearch": ef, "work": faiss.cvar.hnsw_stats.ndis / len(Q), "recall": recall(I, truth_raw)}

    bridges = dict(mixed._bridges)

    def simstd_row(settings: dict[str, dict[str, int]]) -> dict:
        params = [tuning.search_parameters(mixed.shards[m], settings[m]) for m in mixed.modalities]
        faiss.cvar.hnsw_stats.reset()
        got = mixed._search(Q, q_mod, k, std, False, None, None, None, 1.0, shard_params=params).ids
        # with bridges, the entry points' distances are computed outside FAISS's counter: added here
        work = faiss.cvar.hnsw_stats.ndis / len(Q) + tuning.entry_work(mixed, q_mod)
        return {"params": {m: v["efSearch"] for m, v in settings.items()}, "work": work,
                "recall": recall(got, truth_std)}

    def budget_rows(tables, r: dict) -> dict:
        out = {}
        try:
            split, _, tuned_recall = tuning.pick(tables, total, budget=r["work"])
            out["budget"] = {**simstd_row(split), "tuning_recall": tuned_recall}
        except Exception as exc:  # a budget below every split's work (SimstdError)
            out["budget"] = {"error": str(exc)}
        split, tuned_work, tuned_recall = tuning.pick(tables, total, target_recall=r["recall"])
        out["target"] = {**simstd_row(split), "tuning_recall": tuned_recall, "tuning_work": tuned_work}
        return out

    # The tables the tuner picks from: stored items as pseudo queries (label-free), not the queries above;
    # without bridges (each graph searched from its top) and with them.
    t = time.perf_counter()
    tune_ids, _ = tuning.split_queries(mixed, q_mod, args.tune_queries, 0.0, args.seed)
    total = len(tune_ids) * k
    tables = {}
    for mode in ("plain", "bridged"):
        mixed._bridges = bridges if mode == "bridged" else {}
        tables[mode] = tuning.measure(mixed, q_mod, tune_ids, k, candidates=EFS)[0]
    # A query log instead: fresh vectors of the query modality, disjoint from the evaluation queries.
    log = Synth(DIM, args.seed).chunk(q_mod, 30_000_000 + args.tune_queries, args.tune_queries)
    tables["bridged_log"] = tuning.measure(mixed, q_mod, log, k, candidates=EFS)[0]
    _log(f"per-shard tables on {len(tune_ids)} pseudo queries ({time.perf_counter() - t:.0f} s)")

    rows = []
    for ef in EFS:
        r = raw_row(ef)
        mixed._bridges = {}
        row = {"raw": r, "shard_control": shard_row(ef)}
        row["simstd_same_ef"] = simstd_row({m: {"efSearch": ef} for m in mixed.modalities})
        plain = budget_rows(tables["plain"], r)
        row["simstd_budget"], row["simstd_target"] = plain["budget"], plain["target"]
        mixed._bridges = bridges
        row["bridged_same_ef"] = simstd_row({m: {"efSearch": ef} for m in mixed.modalities})
        bridged = budget_rows(tables["bridged"], r)
        row["bridged_budget"], row["bridged_target"] = bridged["budget"], bridged["target"]
        logged = budget_rows(tables["bridged_log"], r)
        row["bridged_log_budget"], row["bridged_log_target"] = logged["budget"], logged["target"]
        rows.append(row)
        b, bt = row["bridged_budget"], row["bridged_target"]
        _log(f"ef={ef}: raw {r['work']:.0f} -> {r['recall']:.3f}; simstd same ef {row['simstd_same_ef']['work']:.0f}"
             f" -> {row['simstd_same_ef']['recall']:.3f}; bridged at raw's work {b.get('work', 0):.0f} -> "
             f"{b.get('recall', float('nan')):.3f} {b.get('params')}; bridged to reach raw's recall "
             f"{bt['work']:.0f} -> {bt['recall']:.3f} {bt['params']}")
    shard_tables = {mode: [{"target": tb.target, "efSearch": tb.values, "hits": (tb.hits / total).tolist(),
                            "work": tb.work.tolist()} for tb in tabs] for mode, tabs in tables.items()}
    return {
        "n": args.n, "k": k, "query_modality": q_mod, "queries": len(Q), "tune_queries": len(tune_ids),
        "factory": "HNSW16", "date": _dt.date.today().isoformat(), "faiss": faiss.__version__,
        # --no-docs and --results change where the numbers go, not the numbers
        "command": "python benchmarks/hnsw_budget.py " + " ".join(shlex.quote(a) for a in _measuring(args.argv)),
        "build": facts, "standardized_topk_share": share, "control_shard": other, "rows": rows, "shard_tables": shard_tables,
        "fit": std.table(),
    }


def _measuring(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--results":
            skip = True
        elif a != "--no-docs" and not a.startswith("--results="):
            out.append(a)
    return out


def _split_cells(b: dict) -> str:
    if "error" in b:
        return "below every split | – | –"
    return f"{b['params']['text']}, {b['params']['image']} | {b['work']:,.0f} | **{b['recall']:.3f}**"


def markdown(data: dict) -> list[str]:
    """The docs/performance.md section (benchmarks/run.py renders it)."""
    lines = ["## HNSW: standardized recall at equal work\n"]
    n = data["n"]
    label = f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"
    lines.append(
        f"{label} items (half text, half image), `HNSW16`, k={data['k']}, {data['queries']} fresh "
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1m", help="N, e.g. 200k or 1m (default 1m)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--queries", type=int, default=1000, help="fresh evaluation queries (default 1000)")
    p.add_argument("--tune-queries", type=int, default=500, help="stored items used to tune (default 500)")
    p.add_argument("--query-modality", default="text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="/tmp/simstd-hnsw-budget", help="cache of the built indexes")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    size = args.size.lower()
    args.n = int(float(size[:-1]) * {"k": 1e3, "m": 1e6}[size[-1]]) if size[-1] in "km" else int(size)
    data = run(args)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    _log(f"wrote {out}")
    if not args.no_docs and out.resolve() == RESULTS.resolve():
        import run as bench  # benchmarks/run.py renders docs/performance.md, this section included

        bench.main(["--docs-only"])
        _log("rewrote docs/performance.md")
    print("\n".join(markdown(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
