"""docs/performance.md and its plot, rendered from the results JSON of the benchmarks.

It measures nothing and imports no benchmark. Each module renders what one
benchmark wrote under ``benchmarks/results/``: ``vs_faiss`` (``results.json``),
``hnsw_budget`` (``hnsw_budget.json``), ``laion_fit`` (``laion_fit.json``),
``hubness`` (``hubness_fit.json``, ``hubness_search.json``),
``plot`` (the figure, from ``results.json``); ``cells`` holds the number
formats they share. :func:`write_docs` lays the sections out in the page's
order and appends the hand-written notes ``benchmarks/notes.md``.
``python benchmarks/run.py`` calls :func:`write_plot` and :func:`write_docs`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from common import HERE

from . import hnsw_budget, hubness, laion_fit, vs_faiss
from .plot import write_plot

__all__ = ["write_docs", "write_plot"]

#: Prose under the tables, written by hand (it quotes no measurement).
NOTES = HERE / "notes.md"


def write_docs(results_dir: Path, docs: Path, img: Path) -> None:
    """Write ``docs`` from the JSON files in ``results_dir`` and ``notes.md``; link ``img`` if it exists."""
    results = json.loads((results_dir / "results.json").read_text())
    lines = [*vs_faiss.header(results), *vs_faiss.machine(results), *vs_faiss.headline(results),
             *vs_faiss.data(results), *vs_faiss.throughput(results), *vs_faiss.recall(results)]
    budget = results_dir / "hnsw_budget.json"
    if budget.exists():
        lines += hnsw_budget.section(json.loads(budget.read_text(encoding="utf-8")))
    # the default ranking, one file per query modality (benchmarks/hnsw_budget.py --joint)
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(results_dir.glob("hnsw_budget_*.json"),
                                                                      key=lambda p: ("image" in p.name, p.name))]
    lines += hnsw_budget.default_section(runs)
    lines += vs_faiss.fitting(results)
    laion = results_dir / "laion_fit.json"
    if laion.exists():
        lines += laion_fit.section(json.loads(laion.read_text()))
    lines += hubness.section(results_dir / "hubness_fit.json", results_dir / "hubness_search.json")
    lines += [*vs_faiss.memory(results), *vs_faiss.cold_start(results)]
    if img.exists():
        lines.append("## Cost against N\n")
        lines.append(f"![cost against N]({os.path.relpath(img, docs.parent)})\n")
    notes = NOTES.read_text(encoding="utf-8") if NOTES.exists() else ""
    if notes:
        lines.append(notes)
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text("\n".join(lines) + "\n", encoding="utf-8")
