"""The section of docs/performance.md measured by ``benchmarks/hnsw_budget.py`` (``hnsw_budget.json``)."""
from __future__ import annotations

from common import size_label


def _split_cells(b: dict) -> str:
    if "error" in b:
        return "below every split | – | –"
    return f"{b['params']['text']}, {b['params']['image']} | {b['work']:,.0f} | **{b['recall']:.3f}**"


def section(data: dict) -> list[str]:
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


def _best_within(rows: list[dict], budget: float) -> dict | None:
    """The row with the best recall among those costing at most ``budget`` work."""
    ok = [r for r in rows if r["work"] <= budget + 1e-9]
    return max(ok, key=lambda r: (r["recall"], -r["work"])) if ok else None


def _within_cell(rows: list[dict], budget: float) -> str:
    best = _best_within(rows, budget)
    return "below every setting | –" if best is None else f"{best['work']:,.0f} | **{best['recall']:.3f}**"


def default_section(runs: list[dict]) -> list[str]:
    """The default ranking on HNSW at equal work, per query modality, with the joint graph
    (``benchmarks/hnsw_budget.py --joint``, one ``hnsw_budget_hubness_*.json`` per run)."""
    if not runs:
        return []
    first = runs[0]
    lines = [f"## HNSW at equal work: the default ranking, {size_label(first['n'])}, text and image queries\n"]
    lines.append(
        f"The section above, for the default (`method=\"{first['method']}\"`, its per-item terms folded into the "
        f"shards) at {size_label(first['n'])} items (half text, half image, `HNSW16`), k={first['k']}, "
        f"{first['queries']} fresh queries of each modality, with one more design: the *joint graph*, one FAISS "
        "inner-product `HNSW16` graph over every item for each query modality, in the standardized space "
        "(`simstd.index.joint`: item `[2c/std, -rho/std, -mean/std, -e_b/std]`, query `[q, 1, 1, r_q]`, searched "
        "as maximum inner product). Its *prior* rows search it once with each `r_q^b` at its mean over stored "
        "items and compute `r_q^b` from the candidates (then rescore them exactly); its *r_q from shards* rows "
        f"first search each modality's shard for the query's K nearest by `u` (`efSearch` {first['joint']['term_ef'] if first.get('joint') else '-'}) "
        "and count that work too. *from the top*: one HNSW search; *bridged*: a first search (`efSearch` "
        f"{first['joint']['term_ef'] if first.get('joint') else '-'}) finds the query's 3 best items, and the bottom layer is searched from them "
        "and their bridges into the other modality (`build_bridges`), all work counted. *at raw's work*: the best "
        "recall among the rows of that design that cost at most the raw row's work (the frontier read at 1.0x). "
        "Measured by:\n")
    lines.append("```bash")
    lines += [run["command"] for run in runs]
    lines.append("```\n")
    for run in runs:
        q, joint = run["query_modality"], run.get("joint")
        share = ", ".join(f"{m} {v:.0%}" for m, v in run["standardized_topk_share"].items())
        lines.append(f"**{q} queries** (exact standardized top-{run['k']}: {share}):\n")
        bridged = [dict(r["bridged_same_ef"]) for r in run["rows"]]
        tuned = [dict(r["bridged_target"]) for r in run["rows"]]
        header = ("| efSearch | raw work | raw recall | bridged, same efSearch: work | recall | bridged split for "
                  "raw's recall | work | recall | work / raw work | bridged at raw's work: work | recall")
        sep = "|---|---|---|---|---|---|---|---|---|---|---"
        if joint:
            variants = [v for v in ("graph", "graph_bridged", "shards_bridged") if v in joint["rows"][0]]
            names = {"graph": "joint, prior, from the top", "graph_bridged": "joint, prior, bridged",
                     "shards_bridged": f"joint, r_q from shards, bridged"}
            for v in variants:
                header += f" | {names[v]}: work | recall | at raw's work: work | recall"
                sep += "|---|---|---|---"
        lines += [header + " |", sep + "|"]
        for j, row in enumerate(run["rows"]):
            r, b, t = row["raw"], row["bridged_same_ef"], row["bridged_target"]
            p = t["params"]
            cells = (f"| {r['efSearch']} | {r['work']:,.0f} | {r['recall']:.3f} | {b['work']:,.0f} | {b['recall']:.3f} "
                     f"| {', '.join(str(v) for v in p.values())} | {t['work']:,.0f} | {t['recall']:.3f} "
                     f"| **{t['work'] / r['work']:.2f}** | {_within_cell(bridged + tuned, r['work'])}")
            if joint:
                for v in variants:
                    jr = joint["rows"][j][v]
                    cells += f" | {jr['work']:,.0f} | {jr['recall']:.3f} | " + _within_cell(
                        [x[v] for x in joint["rows"]], r["work"])
            lines.append(cells + " |")
        if joint:
            mem = joint["bytes_per_item"]
            lines.append(f"\nJoint graph for {q} queries: {joint['dim']} dimensions, built in {joint['build_s']:.0f} s "
                         f"(raw FAISS's `HNSW16` over the same items, built right after it: {joint['raw_build_s']:.0f} s; "
                         "wall times on shared cores); memory per item (`faiss.write_index` size / N): joint graph "
                         f"{mem['joint']:,.0f} B, raw FAISS {mem['raw']:,.0f} B, simstd's shards {mem['shards']:,.0f} B "
                         f"(the joint graph comes on top of the shards: {(mem['joint'] + mem['shards']) / mem['raw']:.1f}x "
                         "raw's memory for one query modality).\n")
        else:
            lines.append("")
    return lines
