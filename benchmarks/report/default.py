"""docs/default.md: the held-out table of the default ranking.

Rendered from ``default_candidates_heldout_{5-9,200-219,100-119}.json``
(``benchmarks/default_candidates.py --seeds ... --only ...``; settings chosen on
seeds 0-4, ``default_candidates_select.json``) between the markers
``<!-- held-out table -->`` and ``<!-- end held-out table -->``.
"""
from __future__ import annotations

import json
from pathlib import Path

SETS = ("5-9", "200-219", "100-119")
MODELS = ("clip", "convirt", "videoclip", "clasp")
ROWS = (("paper", "paper (`method=\"paper\"`)"), ("hubness-today", "**hubness (the default)**"),
        ("nicdm[k=20,kq=3]", "NICDM k=20, query K 3 (nearest candidate; M+1 shard copies)"))
#: Issue 17's bars for a new default, on every held-out set.
BARS = {"recall": 0.90, "excess": 0.10, "universal_vs_paper": 0.03}
START, END = "<!-- held-out table -->", "<!-- end held-out table -->"


def table(results_dir: Path) -> list[str]:
    lines = ["| held-out splits | method | " + " | ".join(MODELS) + " | mean R@20/ceiling | excess | "
             "CLIP universal NDCG@10 vs paper |", "|---|---|" + "---|" * (len(MODELS) + 3)]
    for split in SETS:
        path = results_dir / f"default_candidates_heldout_{split}.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text())["summary"]
        for key, label in ROWS:
            if key not in summary:
                continue
            r = summary[key]
            models = " | ".join(f"{r['per_model'][m][0]:.3f}" for m in MODELS)
            universal = "" if key == "paper" else f"{r['universal_vs_paper']:+.3f}"
            lines.append(f"| {split} | {label} | {models} | {r['recall']:.3f} | {r['excess']:+.3f} | {universal} |")
    return lines


def write(results_dir: Path, doc: Path) -> None:
    """Replace the table between the markers of ``doc`` (nothing else changes)."""
    if not doc.exists():
        return
    text = doc.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + START + "\n" + "\n".join(table(results_dir)) + "\n" + END + tail, encoding="utf-8")
