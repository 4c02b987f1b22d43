"""Plots of the modality gap and of what standardization does to it (PNG).

Needs matplotlib (``pip install "simstd[plot]"``), imported only when a plot
is drawn. Figures are drawn on matplotlib's Agg canvas through
:class:`matplotlib.figure.Figure`, never through pyplot, so no GUI backend or
global state is touched.

* :func:`plot_score_histograms` - cosine per (query, target) modality pair,
  raw and standardized, with the pseudo-positive scores marked.
* :func:`plot_modality_share` - share of the other modality among the top k as
  k grows, per method.
* :func:`plot_recall_curves` - Recall@k per method on the mixed protocol, with
  the ceiling.
* :func:`plot_frontier` - the modality-bias frontier with every method as a
  point: does a method do more than prefer a modality?
* :func:`plot_reliability_diagram` - the reliability of the match probability
  (``p`` and ``p_match``) of the top-1 hit, with its ECE.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import SimstdError

#: Colours per modality position and per method (colour-blind safe, Okabe-Ito).
MODALITY_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7")
METHOD_STYLES = {
    "raw": ("#7f7f7f", "-"),
    "simstd-index": ("#0072B2", "-"),
    "simstd-qshift": ("#D55E00", "-"),
    "per-query": ("#009E73", "--"),
    "csls+simstd-index": ("#CC79A7", "--"),
    "zscore-all": ("#E69F00", ":"),
    "gr-clip": ("#56B4E9", ":"),
}
DEFAULT_PLOT_METHODS = ("raw", "gr-clip", "zscore-all", "per-query", "simstd-index", "simstd-qshift")


def _figure(*, nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (10, 4), **kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SimstdError('plotting needs matplotlib: pip install "simstd[plot]"') from None
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kwargs)
    return fig, axes


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise SimstdError(f"plots are written as PNG: name the file *.png, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _line(fig, linestyle: str):
    from matplotlib.lines import Line2D

    return Line2D([], [], color="black", linestyle=linestyle, linewidth=1.2)


def _style(name: str, i: int) -> tuple[str, str]:
    if name in METHOD_STYLES:
        return METHOD_STYLES[name]
    extra = ("#000000", "#8c564b", "#bcbd22", "#17becf")
    return extra[i % len(extra)], "-."


# ------------------------------------------------------------ histograms
def plot_score_histograms(pairs: np.ndarray, path: str | Path, *, modalities: tuple[str, str] = ("image", "text"),
                          seed: int = 0, title: str | None = None) -> Path:
    """Histograms of cosine per modality pair, raw (top) and standardized (bottom).

    The index is the mixed protocol's (seed ``seed``); the scores are those of
    every indexed item (as a query) against every other one, the pseudo
    positives are each item's top-1 neighbour per target modality (what
    :class:`~simstd.Standardizer` fits), and the gold pairs of the evaluation
    queries are marked by their mean.
    """
    from .evaluation import mixed_task
    from .standardizer import Standardizer

    task = mixed_task(pairs, modalities, seed=seed)
    X = task.corpus.astype(np.float64)
    cm = task.corpus_modalities
    std = Standardizer(method="paper", sample=None).fit(X, cm)
    S = X @ X.T
    np.fill_diagonal(S, np.nan)
    gold_q, gold_t = task.positives[:, 0], task.positives[:, 1]
    gold_s = np.einsum("ij,ij->i", task.queries[gold_q].astype(np.float64), X[gold_t])
    gold_qm, gold_tm = task.query_modalities[gold_q], cm[gold_t]

    fig, axes = _figure(nrows=2, ncols=2, size=(11, 7.5))
    for col, qm in enumerate(modalities):
        rows = cm == qm
        for row, standardized in enumerate((False, True)):
            ax = axes[row, col]
            for j, tm in enumerate(modalities):
                block = S[np.ix_(rows, cm == tm)]
                pseudo = np.nanmax(block, axis=1)
                allv = block[np.isfinite(block)]
                gold = gold_s[(gold_qm == qm) & (gold_tm == tm)]
                if standardized:
                    mean, sd = std.affine(qm, tm)
                    allv, pseudo, gold = (allv - mean) / sd, (pseudo - mean) / sd, (gold - mean) / sd
                color = MODALITY_COLORS[j]
                bins = np.linspace(allv.min(), max(allv.max(), pseudo.max()), 60)
                ax.hist(allv, bins=bins, density=True, alpha=0.35, color=color,
                        label=f"→ {tm}: all pairs")
                ax.hist(pseudo, bins=bins, density=True, histtype="step", linewidth=2, color=color,
                        label=f"→ {tm}: pseudo positives (top-1)")
                ax.axvline(pseudo.mean(), color=color, linestyle="--", linewidth=1.2)
                if len(gold):
                    ax.axvline(gold.mean(), color=color, linestyle=":", linewidth=2,
                               label=f"→ {tm}: mean of gold pairs")
            kind = "standardized score z (pseudo-positive mean → 0)" if standardized else "raw cosine similarity"
            ax.set_title(f"{qm} queries — {'standardized' if standardized else 'raw cosine'}")
            ax.set_xlabel(kind)
            ax.set_ylabel("density")
    handles = {}
    for ax in axes.ravel():
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    handles["dashed: pseudo-positive mean"] = _line(fig, "--")
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", ncol=4, fontsize=8)
    fig.suptitle(title or (
        "Scores per (query → target) modality pair. Raw: the two targets sit on different scales; "
        "standardized: pseudo positives of both targets at 0\n(dashed: pseudo-positive mean; "
        f"index of the mixed protocol, seed {seed}: {int((cm == modalities[0]).sum())} {modalities[0]}, "
        f"{int((cm == modalities[1]).sum())} {modalities[1]})"
    ), fontsize=10)
    return _save(fig, path)


# ------------------------------------------------------------ modality share
def modality_share_curves(pairs: np.ndarray, methods: Sequence[str], *, modalities: tuple[str, str] = ("image", "text"),
                          seed: int = 0, folds: int = 2) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """``ks, {method: {query modality: share of the other modality among the top k}}`` on the mixed protocol."""
    from .evaluation import crossfit_scores, mixed_task

    task = mixed_task(pairs, modalities, seed=seed)
    ks = np.arange(1, len(task.corpus) + 1)
    out = {}
    for name in methods:
        S = crossfit_scores(task, name, folds=folds, seed=seed)
        order = np.argsort(-S, axis=1, kind="stable")
        other = task.corpus_modalities[order] != task.query_modalities[:, None]
        share = np.cumsum(other, axis=1) / ks[None, :]
        out[name] = {qm: share[task.query_modalities == qm].mean(axis=0) for qm in modalities}
    return ks, out


def plot_modality_share(pairs: np.ndarray, path: str | Path, *, methods: Sequence[str] = DEFAULT_PLOT_METHODS,
                        modalities: tuple[str, str] = ("image", "text"), seed: int = 0,
                        title: str | None = None) -> Path:
    """Share of the other modality among the top k, k = 1..N, per method and query modality."""
    ks, curves = modality_share_curves(pairs, methods, modalities=modalities, seed=seed)
    fig, axes = _figure(ncols=2, size=(11, 5), sharey=True)
    for col, qm in enumerate((modalities[1], modalities[0])):
        ax = axes[0, col]
        other = modalities[0] if qm == modalities[1] else modalities[1]
        for i, name in enumerate(methods):
            color, ls = _style(name, i)
            ax.plot(ks, curves[name][qm], color=color, linestyle=ls, linewidth=2, label=name)
        ax.axhline(0.5, color="black", linewidth=0.8, linestyle=":", label="share in the index (0.5)")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("k (top-k results, log scale)")
        ax.set_ylabel(f"share of {other} items in the top k")
        ax.set_title(f"{qm} queries: how much {other} do they see?")
        ax.grid(alpha=0.3)
    h, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(h, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=8)
    fig.suptitle(title or (
        f"Share of the other modality among the top k (mixed protocol, seed {seed}; the gold item is always "
        "in the other modality)\nRaw cosine returns the query's own modality until that modality is exhausted"
    ), fontsize=10)
    return _save(fig, path)


# ------------------------------------------------------------ recall curves
def plot_recall_curves(reports: Sequence, path: str | Path, *, methods: Sequence[str] | None = None,
                       protocol: str = "mixed", kmax: int = 50, title: str | None = None) -> Path:
    """Recall@k (k = 1..kmax) per method, one panel per report, the ceiling dashed black."""
    reports = list(reports)
    if not reports:
        raise SimstdError("no evaluation results to plot")
    n = len(reports)
    ncols = min(n, 3)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _figure(nrows=nrows, ncols=ncols, size=(4.6 * ncols, 3.9 * nrows))
    for p, report in enumerate(reports):
        ax = axes[p // ncols, p % ncols]
        if protocol not in report.results:
            raise SimstdError(f"{report.data}: no {protocol!r} results to plot")
        names = list(methods or report.methods)
        ks = np.arange(1, kmax + 1)
        ax.plot(ks, report.recall_curve(protocol, "ceiling", kmax), color="black", linestyle="--", linewidth=1.5,
                label="ceiling (other modality only)")
        for i, name in enumerate(names):
            color, ls = _style(name, i)
            ax.plot(ks, report.recall_curve(protocol, name, kmax), color=color, linestyle=ls, linewidth=1.8,
                    label=name)
        ax.set_title(f"{report.data} ({len(report.seeds)} seeds)")
        ax.set_xlabel("k")
        ax.set_ylabel("Recall@k")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if p == 0:
            ax.legend(fontsize=7, loc="lower right")
    for p in range(n, nrows * ncols):
        axes[p // ncols, p % ncols].set_visible(False)
    fig.suptitle(title or f"Recall@k on the {protocol} protocol (mean over seeds)", fontsize=10)
    return _save(fig, path)


# ------------------------------------------------------------ bias frontier
def plot_frontier(reports: Sequence, path: str | Path, *, methods: Sequence[str] | None = None,
                  protocol: str = "mixed", title: str | None = None) -> Path:
    """The modality-bias frontier (:mod:`simstd.evaluation.frontier`) with every method as a point.

    One panel per report: R@20/ceiling against cross@10, the frontier (the
    paper's score plus a swept bonus for the other modality, mean over seeds)
    as a line, each method at its mean (cross@10, R@20/ceiling). A method
    above the line does more than prefer a modality; on the line it only moves
    the modality mix.
    """
    from .evaluation.frontier import FRONTIER_BASE, GRID

    reports = list(reports)
    if not reports:
        raise SimstdError("no evaluation results to plot")
    n = len(reports)
    ncols = min(n, 3)
    nrows = int(np.ceil(n / ncols))
    fig, axes = _figure(nrows=nrows, ncols=ncols, size=(max(5.2 * ncols, 8.0), 4.4 * nrows + 1.2))
    palette = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8c564b",
               "#bcbd22", "#17becf", "#7f7f7f", "#F0E442")
    markers = "osD^vP<>Xph*"
    handles: dict[str, object] = {}
    for p, report in enumerate(reports):
        ax = axes[p // ncols, p % ncols]
        if protocol not in report.results or not report.has_frontier(protocol):
            raise SimstdError(f"{report.data}: no {protocol!r} results with a modality-bias frontier to plot "
                              "(run the mixed protocol)")
        curve = report.frontier_curve(protocol)
        line, = ax.plot(GRID, curve, color="black", linewidth=1.8)
        handles.setdefault(f"frontier: {FRONTIER_BASE} + bonus δ for the other modality", line)
        ax.fill_between(GRID, curve, -0.02, color="black", alpha=0.07, linewidth=0)
        lines = []
        for i, name in enumerate(methods or report.methods):
            x = report.values(protocol, name, "cross@10").mean()
            y = report.values(protocol, name, "R@20", of_ceiling=True).mean()
            ex = report.values(protocol, name, "excess").mean()
            paper = name == FRONTIER_BASE
            h = ax.scatter([x], [y], s=110 if paper else 40, marker="*" if paper else markers[i % len(markers)],
                           color=palette[i % len(palette)], edgecolor="black", linewidth=0.5, zorder=3)
            handles.setdefault(name, h)
            lines.append(f"{name:<26s}{ex:+.3f}")
        ax.text(0.98, 0.03, "excess (mean)\n" + "\n".join(lines), transform=ax.transAxes, ha="right", va="bottom",
                fontsize=6, family="monospace", bbox={"facecolor": "white", "alpha": 0.85, "linewidth": 0.3})
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("cross@10 (share of the other modality in the top 10)")
        ax.set_ylabel("R@20 / ceiling")
        ax.set_title(f"{report.data} ({len(report.seeds)} seeds)", fontsize=10)
        ax.grid(alpha=0.3)
    for p in range(n, nrows * ncols):
        axes[p // ncols, p % ncols].set_visible(False)
    fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center", ncol=4, fontsize=7)
    fig.suptitle(title or (
        "Does a method do more than prefer a modality? Line: the modality-bias frontier (shaded: reachable by "
        "bias alone).\nPoints above it rank better within the modalities they show; excess = height above the line"
    ), fontsize=9)
    return _save(fig, path)


# ---------------------------------------------------------------- reliability
def reliability_curves(pairs: np.ndarray, *, seeds: Sequence[int] = range(5), protocol: str = "mixed",
                       labels: int = 50) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{label: (probability, correct)}`` of every query's top-1 hit, pooled over ``seeds``, on a
    protocol where each query's partner is indexed
    (:func:`simstd.evaluation.uncertainty.partnered_split`): the label-free ``p_match`` (today's
    posterior share ``p``) and, when there are at least ``2 labels`` queries, ``p_match``
    calibrated on ``labels`` gold pairs other than the query's own (rotating folds)."""
    from .evaluation.uncertainty import pmatch_run

    free, fitted, correct = [], [], []
    for seed in seeds:
        run = pmatch_run(pairs, protocol, seed, k=1, label_counts=(labels,) if labels else ())
        free.append(run["p_match"][:, 0])
        correct.append(run["correct"][:, 0])
        if run["labels"].get(labels) is not None:
            fitted.append(run["labels"][labels][0])
    correct = np.concatenate(correct)
    curves = {"p_match, label-free (= p)": (np.concatenate(free), correct)}
    if fitted and len(fitted) == len(free):
        curves[f"p_match, {labels} gold pairs"] = (np.concatenate(fitted), correct)
    return curves


def plot_reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, *,
                             bins: int = 10, title: str = "Reliability of the top-1 hit") -> Path:
    """Reliability diagram: the share of correct hits against the mean probability in each of
    ``bins`` equal-width bins holding at least 5 hits, with the ECE of each curve in the legend
    (Guo et al., 2017, "On calibration of modern neural networks")."""
    from .evaluation.uncertainty import expected_calibration_error, reliability

    fig, axes = _figure(size=(5.4, 5.0))
    ax = axes[0, 0]
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    for i, (label, (prob, correct)) in enumerate(curves.items()):
        rel = reliability(prob, correct, bins)
        seen = rel["count"] >= 5
        ece = expected_calibration_error(prob, correct, bins)
        ax.plot(rel["confidence"][seen], rel["accuracy"][seen], marker="o", color=MODALITY_COLORS[i % 4],
                label=f"{label}: ECE {ece:.3f} (n={len(prob)})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="probability of the hit (bin mean)", ylabel="share of correct hits")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path)
