#!/usr/bin/env python3
"""HNSW: standardized recall against raw FAISS recall at equal work (issue 12, item 5; issue 18).

    python benchmarks/hnsw_budget.py --size 1m --method paper        # the stored 1M run
    python benchmarks/hnsw_budget.py --size 200k --joint --query-modality image   # the default's

The fit is ``--method`` (default: the default ranking, ``method="hubness"``,
whose per-item terms are folded into the shards as ``simstd fit`` does).
With ``--joint`` it also measures one inner-product HNSW16 graph over every
item for the query modality (:mod:`simstd.index.joint`): build time, memory
per item beside raw FAISS's, and its recall-vs-work rows.

Data: the synthetic CLIP-like vectors of ``benchmarks/vs_faiss.py`` (``synth.py``),
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
70 s each here). Results: ``benchmarks/results/hnsw_budget.json``; its section
of ``docs/performance.md`` is rendered from it by ``python benchmarks/run.py``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

import numpy as np
from common import CHUNK, DIM, RESULTS, command, logger, parse_size, size_label
from synth import Synth

EFS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
_log = logger()


def build(n: int, workdir: Path, seed: int, method: str = "paper"):
    """The cached MixedIndex (fitted by ``method``) and raw FAISS index of N synthetic vectors."""
    import faiss

    from simstd import MixedIndex, Standardizer

    synth = Synth(DIM, seed)
    where = workdir / (f"n{n}_seed{seed}" if method == "paper" else f"n{n}_seed{seed}_{method}")
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
        mixed.standardizer = Standardizer(method=method).fit(mixed)  # 10,000 pseudo queries per modality
        facts["fit_s"] = time.perf_counter() - t
        if mixed.standardizer.has_item_terms:  # the terms go into the shards once (new graphs), as `simstd fit` does
            t = time.perf_counter()
            mixed.fold_terms(mixed.standardizer)
            facts["fold_s"] = time.perf_counter() - t
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
    if (where / "facts.json").exists():  # build times of a cached index
        facts = {**json.loads((where / "facts.json").read_text()), **facts}
    mixed = MixedIndex.load(mixed_path)
    if not mixed.bridges:
        t = time.perf_counter()
        mixed.build_bridges()
        facts["bridges_s"] = time.perf_counter() - t
        mixed.save(mixed_path)
        _log(f"built the cross-modal bridges ({facts['bridges_s']:.0f} s)")
    (where / "facts.json").write_text(json.dumps(facts))
    mixed.clear_search_params()
    return mixed, faiss.read_index(str(raw_path)), facts


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    from simstd.tuning import recall_at

    return recall_at(found, truth)


def run(args) -> dict:
    import faiss

    from simstd import tuning
    from simstd.index import search as pipeline

    mixed, raw, facts = build(args.n, Path(args.workdir), args.seed, args.method)
    q_mod, k = args.query_modality, args.k
    Q = Synth(DIM, args.seed).queries(q_mod, args.queries)  # fresh vectors, in no index
    std = mixed.standardizer
    t = time.perf_counter()
    brute = tuning.brute_force_search(mixed)
    truth_std = pipeline.search(mixed, Q, q_mod, k, standardizer=std, shard_search=brute).ids
    truth_raw = pipeline.search(mixed, Q, q_mod, k, raw=True, shard_search=brute).ids
    _log(f"exact top-{k} of {len(Q)} queries by brute force ({time.perf_counter() - t:.0f} s)")
    share = {m: float(np.isin(truth_std, mixed.ids(m)).mean()) for m in mixed.modalities}
    # Control: each shard is a plain FAISS HNSW16 over one modality. Its raw top-k for queries of its own
    # modality (the easy case raw FAISS is measured on) and of the other one (cross-modal: what most of
    # the standardized top-k is made of).
    other = [m for m in mixed.modalities if m != q_mod][0]
    Q_other = Synth(DIM, args.seed).queries(other, args.queries)
    shard_truth = {
        "cross": (Q, other, pipeline.search(mixed, Q, q_mod, k, raw=True, targets=[other], shard_search=brute).ids),
        "own": (Q_other, other,
                pipeline.search(mixed, Q_other, other, k, raw=True, targets=[other], shard_search=brute).ids),
    }

    def shard_row(ef: int) -> dict:
        out = {}
        for case, (queries, target, truth) in shard_truth.items():
            p = faiss.SearchParametersHNSW()
            p.efSearch = ef
            faiss.cvar.hnsw_stats.reset()
            _, I = mixed.shard_set.search(target, queries, k, p)
            out[case] = {"work": faiss.cvar.hnsw_stats.ndis / len(queries), "recall": recall(I, truth)}
        return out

    def raw_row(ef: int) -> dict:
        p = faiss.SearchParametersHNSW()
        p.efSearch = ef
        faiss.cvar.hnsw_stats.reset()
        _, I = raw.search(Q, k, params=p)
        return {"efSearch": ef, "work": faiss.cvar.hnsw_stats.ndis / len(Q), "recall": recall(I, truth_raw)}

    bridges = dict(mixed.bridge_table.rows)

    def simstd_row(settings: dict[str, dict[str, int]]) -> dict:
        params = [tuning.search_parameters(mixed.shards[m], settings[m]) for m in mixed.modalities]
        faiss.cvar.hnsw_stats.reset()
        got = pipeline.search(mixed, Q, q_mod, k, standardizer=std, shard_params=params).ids
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
        mixed.bridge_table.rows = bridges if mode == "bridged" else {}
        tables[mode] = tuning.measure(mixed, q_mod, tune_ids, k, candidates=EFS)[0]
    # A query log instead: fresh vectors of the query modality, disjoint from the evaluation queries.
    log = Synth(DIM, args.seed).chunk(q_mod, 30_000_000 + args.tune_queries, args.tune_queries)
    tables["bridged_log"] = tuning.measure(mixed, q_mod, log, k, candidates=EFS)[0]
    _log(f"per-shard tables on {len(tune_ids)} pseudo queries ({time.perf_counter() - t:.0f} s)")

    rows = []
    for ef in EFS:
        r = raw_row(ef)
        mixed.bridge_table.rows = {}
        row = {"raw": r, "shard_control": shard_row(ef)}
        row["simstd_same_ef"] = simstd_row({m: {"efSearch": ef} for m in mixed.modalities})
        plain = budget_rows(tables["plain"], r)
        row["simstd_budget"], row["simstd_target"] = plain["budget"], plain["target"]
        mixed.bridge_table.rows = bridges
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
    joint = measure_joint(mixed, raw, Q, q_mod, k, truth_std, args) if args.joint else None
    shard_tables = {mode: [{"target": tb.target, "efSearch": tb.values, "hits": (tb.hits / total).tolist(),
                            "work": tb.work.tolist()} for tb in tabs] for mode, tabs in tables.items()}
    return {
        "n": args.n, "k": k, "query_modality": q_mod, "queries": len(Q), "tune_queries": len(tune_ids),
        "factory": "HNSW16", "date": _dt.date.today().isoformat(), "faiss": faiss.__version__,
        # --results changes where the numbers go, not the numbers
        "command": command("hnsw_budget.py", args.argv, drop=["--results"]),
        "build": facts, "standardized_topk_share": share, "control_shard": other, "rows": rows, "shard_tables": shard_tables,
        "fit": std.table(), "method": std.method, "joint": joint,
    }


def measure_joint(mixed, raw, Q: np.ndarray, q_mod: str, k: int, truth: np.ndarray, args) -> dict:
    """One inner-product HNSW16 graph over every item for queries of ``q_mod`` (simstd.index.joint):
    its build time, memory beside raw FAISS's and the shards', and its recall-vs-work rows."""
    import faiss

    from simstd.engines.faiss import serialized_bytes
    from simstd.index.bridges import BRIDGE_ENTRIES
    from simstd.index.joint import JointGraph

    t = time.perf_counter()
    graph = JointGraph.build(mixed, q_mod, M=16)
    build_s = time.perf_counter() - t
    _log(f"built the joint graph for {q_mod} queries ({build_s:.0f} s)")
    # raw FAISS's graph over the same vectors, built again beside it: wall times here are noisy (shared cores)
    t = time.perf_counter()
    again = faiss.index_factory(DIM, "HNSW16", faiss.METRIC_INNER_PRODUCT)
    for start in range(0, mixed.ntotal, CHUNK):
        again.add(mixed.reconstruct(np.arange(start, min(start + CHUNK, mixed.ntotal))))
    raw_build_s = time.perf_counter() - t
    del again
    _log(f"built raw FAISS's HNSW16 again beside it ({raw_build_s:.0f} s)")
    n = mixed.ntotal
    memory = {"joint": serialized_bytes(graph.graph) / n, "raw": serialized_bytes(raw) / n,
              "shards": sum(serialized_bytes(s) for s in mixed.shards.values()) / n}
    # (terms, bridged): r_q^b from the graph's candidates (prior) or from the shards; searched from the
    # graph's top, or from the query's best items and their bridges into the other modality
    variants = {"graph": ("graph", False), "graph_bridged": ("graph", True)}
    if graph.prior is not None:
        variants["shards_bridged"] = ("shards", True)
    entry_work = BRIDGE_ENTRIES * len(mixed.modalities)  # entry distances computed outside FAISS's counter
    rows = []
    for ef in EFS:
        row = {"efSearch": ef}
        for name, (terms, bridged) in variants.items():
            faiss.cvar.hnsw_stats.reset()
            _, I = graph.search(mixed, Q, k, ef, terms=terms, term_ef=args.term_ef, bridged=bridged,
                                entry_ef=args.term_ef)
            work = faiss.cvar.hnsw_stats.ndis / len(Q) + (entry_work if bridged else 0)
            row[name] = {"work": work, "recall": recall(I, truth)}
        rows.append(row)
        _log(f"joint ef={ef}: " + "; ".join(f"{v} {row[v]['work']:.0f} -> {row[v]['recall']:.3f}" for v in variants))
    return {"build_s": build_s, "raw_build_s": raw_build_s, "bytes_per_item": memory, "term_ef": args.term_ef, "dim": int(graph.graph.d),
            "prior": None if graph.prior is None else graph.prior.tolist(), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1m", help="N, e.g. 200k or 1m (default 1m)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--queries", type=int, default=1000, help="fresh evaluation queries (default 1000)")
    p.add_argument("--tune-queries", type=int, default=500, help="stored items used to tune (default 500)")
    p.add_argument("--query-modality", default="text")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default=None,
                   help="the fit's method (default: the default, Standardizer().method; the stored 1M run: paper)")
    p.add_argument("--joint", action="store_true",
                   help="also measure one inner-product HNSW16 graph over every item (simstd.index.joint)")
    p.add_argument("--term-ef", type=int, default=16,
                   help="with --joint: efSearch of the per-shard searches that find r_q^b, and of the first "
                        "search that finds the bridged search's entries (default 16)")
    p.add_argument("--workdir", default="/tmp/simstd-hnsw-budget", help="cache of the built indexes")
    p.add_argument("--results", default=None,
                   help="default: results/hnsw_budget.json for --method paper, else "
                        "results/hnsw_budget_METHOD_SIZE_QUERYMODALITY.json")
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.n = parse_size(args.size)
    if args.method is None:
        from simstd import Standardizer

        args.method = Standardizer().method
    if args.results is None:
        name = ("hnsw_budget.json" if args.method == "paper"
                else f"hnsw_budget_{args.method}_{size_label(args.n).lower()}_{args.query_modality}.json")
        args.results = str(RESULTS / name)
    data = run(args)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    _log(f"wrote {out}; render docs/performance.md with: python benchmarks/run.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
