#!/usr/bin/env python3
"""Render docs/performance.md, docs/img/cost_vs_n.png and the held-out table of docs/default.md
from the benchmarks' results JSON.

    python benchmarks/run.py

It measures nothing: each benchmark writes its own file under
``benchmarks/results/`` (``python benchmarks/vs_faiss.py --sizes 100k,1m``,
``python benchmarks/hnsw_budget.py --size 1m``, ``python benchmarks/laion_fit.py ...``),
and ``benchmarks/report/`` owns every rendered section. Needs
``pip install matplotlib`` for the plot (without it the page is written, the
plot kept as it is).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import RESULTS, ROOT
from report import default, write_docs, write_plot


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results-dir", default=str(RESULTS), help="where the benchmarks wrote their JSON")
    p.add_argument("--docs", default=str(ROOT / "docs" / "performance.md"))
    p.add_argument("--img", default=str(ROOT / "docs" / "img" / "cost_vs_n.png"))
    p.add_argument("--docs-only", action="store_true", help=argparse.SUPPRESS)  # what run.py always does now
    args, rest = p.parse_known_args(argv)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}. run.py only renders; measure with the benchmark "
                "itself, e.g. python benchmarks/vs_faiss.py --sizes 100k,1m")
    results_dir = Path(args.results_dir)
    if not (results_dir / "results.json").exists():
        p.error(f"no results.json in {results_dir}: measure first (python benchmarks/vs_faiss.py --sizes 100k,1m) "
                "or pass --results-dir")
    write_plot(results_dir, Path(args.img))
    write_docs(results_dir, Path(args.docs), Path(args.img))
    default.write(results_dir, ROOT / "docs" / "default.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
