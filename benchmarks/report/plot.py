"""docs/img/cost_vs_n.png: search and fit cost against N, from ``results.json``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .cells import KINDS, best_ms, index_rows


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
        pts = [(n, r) for n, run, kd, r in index_rows(results) if kd == kind and not r.get("skipped")]
        if not pts:
            continue
        ns = [n for n, _ in pts]
        for ax, key in ((axes[0], "batch"), (axes[1], "single")):
            for mode, style in (("faiss", "--"), ("simstd", "-")):
                nq = {"batch": "batch", "single": "singles"}[key]
                ms = [best_ms(r["throughput"]["k"]["10"][key], mode, r["throughput"][nq]) for _, r in pts]
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
