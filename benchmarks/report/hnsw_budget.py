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
