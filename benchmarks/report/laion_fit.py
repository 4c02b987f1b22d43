"""The section of docs/performance.md measured by ``benchmarks/laion_fit.py`` (``laion_fit.json``)."""
from __future__ import annotations

import numpy as np

from .cells import fmt


def section(data: dict) -> list[str]:
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
                f"{fmt(same['mean_shift_over_std'])}, {fmt(same['std_rel_error'])}" if same and drawn_alike else "–")
            redone = rep.get("recomputed")
            if redone is not None:
                same_txt += f" ({redone} queries re-scored in float32)"
            coll = c["error_vs_reference"].get(name)
            se = rep.get("standard_error")
            stated = max(max(e["mean"], e["std"]) for e in se.values()) if se else r.get("stated_se", {}).get(name)
            per_core = f"{np.median(cpu[name]) / r['cores']:.1f} s" if name in cpu else "not recorded"
            add(f"| {names.get(name, name)} | {drawn} | {np.median(secs):.1f} s | {per_core} "
                f"| {r['ratios_reference_over'][name]:.2f}x | {same_txt} "
                f"| {fmt(coll['mean_shift_over_std'])}, {fmt(coll['std_rel_error'])} | {fmt(stated)} |")
        add("")
        seeds = c.get("auto_bfloat16_seeds") or []
        if seeds:
            worst = [max(s["mean_shift_over_std"], s["std_rel_error"]) for s in seeds]
            add(f"The adaptive bfloat16 fit again with seeds {', '.join(str(s['seed']) for s in seeds)}: the largest "
                f"error against the collection over the pairs was {', '.join(fmt(w) for w in worst)} "
                f"(median {fmt(float(np.median(worst)))}), each fit stating "
                f"{', '.join(fmt(s['predicted_se']) for s in seeds)} per pair.\n")
    return lines
