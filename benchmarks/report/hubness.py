"""docs/performance.md: the corrected method's fit (per-item terms) and its Flat search cost.

Rendered from ``hubness_fit.json`` (``benchmarks/laion_fit.py --methods *hubness-*``)
and ``hubness_search.json`` (``benchmarks/hubness.py --only-search``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def section(fits: Path, search: Path | None = None) -> list[str]:
    """docs/performance.md rows of the hubness fit (``--methods *hubness-*`` runs of this script, e.g.
    ``benchmarks/results/hubness_fit.json``) and, with ``search``, the Flat search ratio of
    ``benchmarks/hubness.py --only-search``. Returns the markdown lines."""
    lines: list[str] = []
    add = lines.append
    if not fits.exists():
        return lines
    runs = {k: v for k, v in json.loads(fits.read_text()).items() if v.get("hubness_files_vs_index") is not None}
    names = {"hubness-files": "from files", "hubness-index": "Flat MixedIndex"}
    add("### The corrected method's fit (per-item terms)\n")
    add("`method=\"hubness\"` on the index and from the files (`benchmarks/laion_fit.py`, synthetic CLIP-like "
        "vectors, float16 files, half per modality). Terms against a bank of `hubness_bank` items per modality; "
        "*CPU time / cores*: the process's CPU seconds over the machine's cores, what an idle machine's wall "
        "time would be; *load*: 1-minute load average after each fit (2 = this job alone on 2 cores). "
        "*files vs index*: largest absolute difference of the two fits' terms and pair statistics.\n")
    for key, r in runs.items():
        add(f"Key `{key}`, {r['n']:,} items, bank {r.get('hubness_bank')}:\n")
        add("```bash")
        add(r["command"])
        add("```\n")
        add("| fit | pseudo queries per modality | stated error (pseudo positives) | tail scale's error "
            "| time, median | CPU time / cores | load |")
        add("|---|---|---|---|---|---|---|")
        pairs = r.get("pairs") or []
        # the index fit reports no sample: its pairs' counts are the pseudo queries (one positive each)
        fitted = {p["query_modality"]: p["n"] for p in pairs}
        scale_se = [p["scale_se"] for p in pairs if "scale_se" in p]
        for name, secs in r["seconds"].items():
            auto = name.startswith("auto-")
            label = names.get(name.removeprefix("auto-"), name) + (', `sample="auto"`' if auto else "")
            rep = (r.get("reports", {}).get(name) or [{}])[0]
            drawn = " / ".join(f"{v:,}" for v in (rep.get("sample") or fitted or {}).values()) or (
                "auto" if auto else f"{r['sample']:,}")
            tail = f"{max(scale_se):.3f}" if scale_se else "–"
            cpu = float(np.median(r["cpu_seconds"][name])) / r["cores"]
            load = ", ".join(f"{x:.1f}" for x in r.get("load_average_per_repeat", {}).get(name, []))
            add(f"| {label} | {drawn} | {r['stated_se'][name]:.3f} | {tail} | {float(np.median(secs)):.1f} s "
                f"| {cpu:.1f} s | {load} |")
        for pair, gap in r["hubness_files_vs_index"].items():
            add(f"\n*{pair}*: terms {gap['terms']:.1e}, mean {gap['mean']:.1e}, std {gap['std']:.1e}, "
                f"scale {gap['scale']:.1e}, same pseudo-positive counts: {'yes' if gap['n_equal'] else 'no'}.")
        add("")
    if search is None or not search.exists():
        return lines
    add("Flat search with the term dimensions against raw FAISS on the same vectors "
        "(`benchmarks/hubness.py --only-search`; k=10, text queries; ratio = raw time / hubness time per "
        "repeat, median; raw FAISS per modality = one `IndexFlatIP` per modality, each searched for k):\n")
    runs = json.loads(search.read_text())
    add("```bash")
    add("\n".join(sorted({r["command"] for r in runs.values()})))
    add("```\n")
    add("| N | queries | vs raw FAISS per modality | vs one IndexFlatIP over all | repeats | load |")
    add("|---|---|---|---|---|---|")
    for key, r in runs.items():
        for kind, s in r["search"].items():
            add(f"| {r['n']:,} | {kind} ({s['queries']}) | **{s['hubness_over_raw_faiss_per_modality_median']:.2f}x** "
                f"| {s['hubness_over_one_flat_median']:.2f}x | {len(s['load_average'])} "
                f"| {min(s['load_average']):.1f}-{max(s['load_average']):.1f} |")
    add("")
    return lines
