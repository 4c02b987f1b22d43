"""Reports: several seeds of several protocols on one data set, aggregated and rendered."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import SimstdError
from ..methods import DEFAULT_METHODS, ScoreMethod, make_method
from .frontier import CROSS_K, FRONTIER_BASE, GRID, RECALL_K, excess
from .metrics import CROSS_RECALL, CURVE_K, METRICS, NDCG_K, SAME_RECALL, SHARE_KS, TOPICAL_METRICS
from .run import TaskResult, cross_share, evaluate
from .tasks import Task, mixed_task, plain_tasks, universal_task

#: Protocols on paired data.
PROTOCOLS = ("mixed", "plain", "universal")


@dataclass
class Report:
    """Results of several seeds of several protocols on one data set, aggregated."""

    data: str
    info: dict
    methods: list[str]
    seeds: list[int]
    folds: int
    results: dict[str, list[TaskResult]] = field(default_factory=dict)

    # ---------------------------------------------------------------- stats
    def values(self, protocol: str, method: str, metric: str, *, of_ceiling: bool = False) -> np.ndarray:
        """One value per seed: the mean over queries (``of_ceiling``: divided by the ceiling's).

        ``metric`` is one of the per-query metrics, ``cross@k`` (share of other
        modalities in the top k) or ``excess`` (R@20/ceiling above the
        modality-bias frontier at the method's cross@10, :mod:`.frontier`).
        """
        out = []
        for r in self.results[protocol]:
            if metric.startswith("cross@"):
                v = cross_share(r, method, int(metric[6:]))
            elif metric == "excess":
                if r.frontier is None:
                    raise SimstdError(f"the {protocol!r} protocol has no modality-bias frontier (it needs every "
                                      "gold item in another modality than its query)")
                v = excess(float(r.per_query[method][f"R@{RECALL_K}"].mean()), cross_share(r, method, CROSS_K),
                           r.frontier, float(r.per_query["ceiling"][f"R@{RECALL_K}"].mean()))
            else:
                v = float(np.nanmean(r.per_query[method][metric])) if r.per_query[method][metric].size else math.nan
                if of_ceiling:
                    c = float(r.per_query["ceiling"][metric].mean())
                    v = v / c if c > 0 else math.nan
            out.append(v)
        return np.array(out)

    def has_frontier(self, protocol: str) -> bool:
        """True when every seed of ``protocol`` has a modality-bias frontier (the mixed protocol)."""
        return all(r.frontier is not None for r in self.results[protocol])

    def frontier_curve(self, protocol: str, grid: np.ndarray = GRID) -> np.ndarray:
        """The frontier's R@20/ceiling on a cross@10 ``grid``, averaged over seeds."""
        curves = []
        for r in self.results[protocol]:
            c = float(r.per_query["ceiling"][f"R@{RECALL_K}"].mean())
            curves.append(r.frontier.at(grid) / c if c > 0 else np.full(len(grid), np.nan))
        return np.mean(curves, axis=0)

    def recall_curve(self, protocol: str, method: str, kmax: int = CURVE_K) -> np.ndarray:
        """Recall@k for k = 1..kmax, averaged over seeds."""
        ks = np.arange(1, kmax + 1)
        return np.mean([(r.per_query[method]["first_rank"][:, None] <= ks).mean(axis=0)
                        for r in self.results[protocol]], axis=0)

    def to_dict(self) -> dict:
        protocols = {}
        for protocol, runs in self.results.items():
            rows = {}
            for method in ["ceiling"] + self.methods:
                metrics = {}
                for metric in self.metric_names(protocol) + tuple(f"cross@{k}" for k in SHARE_KS):
                    v = self.values(protocol, method, metric)
                    metrics[metric] = _stat(v)
                    if method != "ceiling" and metric in METRICS and not self.is_topical(protocol):
                        metrics[metric]["of_ceiling"] = _stat(self.values(protocol, method, metric, of_ceiling=True))
                if method != "ceiling" and self.has_frontier(protocol):
                    metrics["excess"] = _stat(self.values(protocol, method, "excess"))
                share = {}
                for k in SHARE_KS:
                    share[str(k)] = {
                        qm: {tm: float(np.mean([r.shares[method][k][qm][tm] for r in runs])) for tm in by}
                        for qm, by in runs[0].shares[method][k].items()
                    }
                rows[method] = {"metrics": metrics, "share": share}
            protocols[protocol] = {"task": runs[0].task, "methods": rows}
            if self.has_frontier(protocol):
                protocols[protocol]["frontier"] = {
                    "base": FRONTIER_BASE,
                    "cross@10": [round(float(x), 4) for x in GRID],
                    "R@20/ceiling": [round(float(y), 5) for y in self.frontier_curve(protocol)],
                }
        return {
            "data": self.data,
            **self.info,
            "seeds": self.seeds,
            "folds": self.folds,
            "spread": "std over seeds (ddof=1); 0 for one seed",
            "protocols": protocols,
        }

    # ----------------------------------------------------------- rendering
    def is_topical(self, protocol: str) -> bool:
        """True for protocols with relevant items in several modalities (:func:`~.tasks.universal_task`)."""
        return all(SAME_RECALL in r.per_query["ceiling"] for r in self.results[protocol])

    def metric_names(self, protocol: str) -> tuple[str, ...]:
        return METRICS + (TOPICAL_METRICS if self.is_topical(protocol) else ())

    def table_rows(self, protocol: str) -> tuple[list[str], list[list[str]]]:
        if self.is_topical(protocol):
            return self._topical_rows(protocol)
        frontier = self.has_frontier(protocol)
        header = ["method"] + list(METRICS) + [f"cross@{SHARE_KS[0]}", "R@20/ceiling"] + (["excess"] if frontier
                                                                                          else [])
        rows = []
        for method in ["ceiling"] + self.methods:
            row = [method] + [f"{self.values(protocol, method, m).mean():.3f}" for m in METRICS]
            row.append(f"{self.values(protocol, method, f'cross@{SHARE_KS[0]}').mean():.2f}")
            if method == "ceiling":
                row += ["1"] + (["-"] if frontier else [])
            else:
                row.append(_pm(self.values(protocol, method, "R@20", of_ceiling=True)))
                if frontier:
                    row.append(_pm(self.values(protocol, method, "excess"), signed=True))
            rows.append(row)
        return header, rows

    def _topical_rows(self, protocol: str) -> tuple[list[str], list[list[str]]]:
        # The ceiling (raw cosine over the positives' modalities, i.e. all of them) is just raw here: not shown.
        metrics = [f"NDCG@{NDCG_K}", "mAP@R", "R-Precision", SAME_RECALL, CROSS_RECALL]
        header = ["method"] + metrics + [f"cross@{SHARE_KS[0]}"]
        rows = []
        for method in self.methods:
            row = [method, _pm(self.values(protocol, method, metrics[0]))]
            row += [f"{self.values(protocol, method, m).mean():.3f}" for m in metrics[1:]]
            row.append(f"{self.values(protocol, method, f'cross@{SHARE_KS[0]}').mean():.2f}")
            rows.append(row)
        return header, rows

    def title(self, protocol: str) -> str:
        t = self.results[protocol][0].task
        corpus = ", ".join(f"{n} {m}" for m, n in t["corpus"].items())
        queries = ", ".join(f"{n} {m}" for m, n in t["queries"].items())
        where = f" (ranking {'/'.join(t['targets'])} only)" if t["targets"] else ""
        return f"{self.data} — {protocol}: index {corpus}; queries {queries}{where}"

    def to_text(self) -> str:
        out = []
        for protocol in self.results:
            header, rows = self.table_rows(protocol)
            out.append(self.title(protocol))
            out.append(_text_table(header, rows))
            out.append("")
        out.append(self.footnote())
        return "\n".join(out)

    def to_markdown(self, level: int = 3) -> str:
        out = []
        for protocol in self.results:
            header, rows = self.table_rows(protocol)
            out.append(f"{'#' * level} {self.title(protocol)}\n")
            out.append(markdown_table(header, rows))
            out.append("")
        out.append(self.footnote() + "\n")
        return "\n".join(out)

    def footnote(self) -> str:
        text = (
            f"Means over {len(self.seeds)} seed(s) {_seed_range(self.seeds)}; ± is the std over seeds. "
            f"cross@{SHARE_KS[0]}: share of the other modality among the top {SHARE_KS[0]}. "
            f"Query-log methods are cross-fitted over {self.folds} folds of the queries."
        )
        if any(self.has_frontier(p) for p in self.results):
            text += (f" excess: R@20/ceiling minus the modality-bias frontier's at the same cross@10 (the paper's "
                     f"{FRONTIER_BASE} plus a constant bonus for other-modality items, swept exactly); about 0 "
                     "means the method only moves the modality mix.")
        if any(self.is_topical(p) for p in self.results):
            text += (f" {SAME_RECALL}/{CROSS_RECALL}: share of the query's relevant items of its own/another "
                     "modality found in the top 10 (queries with such items).")
        return text


def run_pairs(pairs: np.ndarray, *, data: str = "pairs", modalities: tuple[str, str] = ("image", "text"),
              methods: Sequence[str | ScoreMethod] = DEFAULT_METHODS, seeds: Sequence[int] = range(5), folds: int = 2,
              protocols: Sequence[str] = ("mixed", "plain"), relevance: np.ndarray | None = None) -> Report:
    """Run the mixed, plain and/or universal protocols on ``(2, N, D)`` pairs for every seed.

    ``methods`` are names (:func:`~simstd.methods.make_method`) or configured
    :class:`~simstd.methods.ScoreMethod` objects (refitted for every task).
    ``relevance`` ``(N, N)`` bool between pairs (:mod:`.relevance`) is needed
    by the universal protocol only.
    """
    pairs = np.asarray(pairs)
    if pairs.ndim != 3 or pairs.shape[0] != 2:
        raise SimstdError(f"paired embeddings must have shape (2, N, D), got {pairs.shape}")
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown or not protocols:
        raise SimstdError(f"protocols are {', '.join(map(repr, PROTOCOLS))}, got {list(protocols)}")
    if "universal" in protocols and relevance is None:
        raise SimstdError("the universal protocol needs topical relevance between the pairs: caption metadata "
                          "(.json with all_captions) or one label per pair (.npy)")
    for name in methods:
        if not isinstance(name, ScoreMethod):
            make_method(name)  # fail fast on a bad name
    seeds = list(seeds)
    if not seeds:
        raise SimstdError("pass at least one seed")
    report = Report(data, {"n_pairs": int(pairs.shape[1]), "dim": int(pairs.shape[2]),
                           "modalities": list(modalities)}, _names(methods), seeds, folds)
    for seed in seeds:
        tasks = []
        if "mixed" in protocols:
            tasks.append(mixed_task(pairs, modalities, seed=seed))
        if "plain" in protocols:
            tasks.extend(plain_tasks(pairs, modalities))
        if "universal" in protocols:
            tasks.append(universal_task(pairs, relevance, modalities, seed=seed))
        for task in tasks:
            report.results.setdefault(task.name, []).append(evaluate(task, methods, folds=folds, seed=seed))
    return report


def run_task(task: Task, *, data: str = "index", methods: Sequence[str] = DEFAULT_METHODS,
             seeds: Sequence[int] = range(5), folds: int = 2) -> Report:
    """Evaluate one fixed task; the seeds vary only the cross-fitting folds."""
    seeds = list(seeds)
    report = Report(data, {"dim": int(task.corpus.shape[1])}, _names(methods), seeds, folds)
    report.results[task.name] = [evaluate(task, methods, folds=folds, seed=s) for s in seeds]
    return report


def affine_changes(report: Report, protocols: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Modality-affine methods whose per-query ranks differ from raw on the one-modality protocols.

    Empty lists mean that, as they must, every per-modality affine method
    returned exactly the raw ranking (rank of the gold for every query).
    """
    out = {}
    for protocol in protocols or [p for p in report.results if p != "mixed"]:
        bad = []
        for method in report.methods:
            try:
                affine = make_method(method).modality_affine
            except SimstdError:  # a configured object, not a registry name
                continue
            if not affine:
                continue
            for r in report.results[protocol]:
                if not np.array_equal(r.per_query[method]["first_rank"], r.per_query["raw"]["first_rank"]
                                      if "raw" in r.per_query else r.per_query["ceiling"]["first_rank"]):
                    bad.append(method)
                    break
        out[protocol] = bad
    return out


# --------------------------------------------------------------- helpers
def _names(methods: Sequence[str | ScoreMethod]) -> list[str]:
    return [m.name if isinstance(m, ScoreMethod) else m for m in methods]


def _stat(v: np.ndarray) -> dict:
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "per_seed": [float(x) for x in v]}


def _pm(v: np.ndarray, signed: bool = False) -> str:
    sd = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return f"{np.mean(v):{'+' if signed else ''}.3f} ± {sd:.3f}"


def _seed_range(seeds: Sequence[int]) -> str:
    s = list(seeds)
    if len(s) > 2 and s == list(range(s[0], s[0] + len(s))):
        return f"({s[0]}..{s[-1]})"
    return "(" + ", ".join(map(str, s)) + ")"


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cells = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    just = lambda i, c, w: c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
    lines = ["  ".join(just(i, c, w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A Markdown table; ``align`` has one ``l`` or ``r`` per column (default: first left, rest right)."""
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
