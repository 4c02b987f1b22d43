"""Cells and rows shared by the sections: number formats, and the (N, index kind) rows of results.json."""
from __future__ import annotations

#: The order of the index kinds in every table.
KINDS = ("flat", "ivf", "hnsw")


def fmt(x, digits=3):
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.2f}"


def work_cell(w: dict | None) -> str:
    return "all N" if w is None else f"{w['faiss']:,.0f} / {w['simstd']:,.0f}"


def best_ratio(v: dict) -> float:
    """min FAISS time / min simstd time: the speeds each reached when the machine let it."""
    return min(v["times_s"]["faiss"]) / min(v["times_s"]["simstd"])


def best_ms(v: dict, mode: str, nq: int) -> float:
    return 1e3 * min(v["times_s"][mode]) / nq


def mib(b):
    return f"{b / 2**20:,.0f} MiB" if b < 10 * 2**30 else f"{b / 2**30:,.1f} GiB"


def index_rows(results):
    for n in sorted(results["runs"], key=int):
        run = results["runs"][n]
        for kind in KINDS:
            r = run["kinds"].get(kind)
            if r is not None:
                yield int(n), run, kind, r
