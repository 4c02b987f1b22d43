"""How well the label-free confidence tracks failure: uncertainty deciles with
Recall@1 and Pearson r, expected calibration error, Platt calibration,
reliability diagrams, and the mixed-protocol benchmark behind
``python -m simstd.evaluation.uncertainty`` (docs/uncertainty.md).

Research code: it builds indexes to measure the model, so it lives with the
evaluation, above the index; the model itself (:mod:`simstd.uncertainty`) does not.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import SimstdError
from ..uncertainty.model import UncertaintyModel, logit

def decile_recall(uncertainty: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict:
    """Queries sorted by uncertainty (ascending, stable) and cut into ``bins``
    equal-count groups; Recall@1 of each group and the Pearson r between the
    group number (1 = most certain) and its Recall@1."""
    u = np.asarray(uncertainty, dtype=np.float64).ravel()
    c = np.asarray(correct, dtype=np.float64).ravel()
    if u.shape != c.shape or len(u) < bins:
        raise SimstdError(f"need one uncertainty per query and at least {bins} queries, got {u.shape} and {c.shape}")
    groups = np.array_split(np.argsort(u, kind="stable"), bins)
    recall = np.array([c[g].mean() for g in groups])
    r = float(np.corrcoef(np.arange(1, bins + 1), recall)[0, 1]) if recall.std() > 0 else float("nan")
    return {"recall": recall, "r": r, "mean_uncertainty": np.array([u[g].mean() for g in groups])}


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> dict:
    """Equal-width confidence bins on [0, 1]: count, mean confidence and accuracy per bin."""
    p = np.asarray(confidence, dtype=np.float64).ravel()
    c = np.asarray(correct, dtype=np.float64).ravel()
    which = np.clip(np.floor(p * bins).astype(int), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        conf = np.bincount(which, weights=p, minlength=bins) / count
        acc = np.bincount(which, weights=c, minlength=bins) / count
    return {"edges": np.linspace(0, 1, bins + 1), "count": count, "confidence": conf, "accuracy": acc}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """``ECE = sum_b (n_b / n) |accuracy_b - confidence_b|`` over equal-width bins."""
    rel = reliability(confidence, correct, bins)
    seen = rel["count"] > 0
    gap = np.abs(rel["accuracy"][seen] - rel["confidence"][seen])
    return float(np.sum(rel["count"][seen] * gap) / rel["count"].sum())


def fit_platt(confidence: np.ndarray, correct: np.ndarray, iters: int = 50) -> tuple[float, float]:
    """Platt scaling with gold labels: ``P = sigmoid(a * logit(conf) + b)`` by Newton's method
    (a little ridge keeps it finite on separable data). Returns ``(a, b)``."""
    x = logit(np.asarray(confidence, dtype=np.float64).ravel())
    y = np.asarray(correct, dtype=np.float64).ravel()
    X = np.stack([x, np.ones_like(x)], axis=1)
    w = np.array([1.0, 0.0])
    ridge = 1e-6 * len(x)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(X @ w)))
        grad = X.T @ (p - y) + ridge * np.r_[w[0] - 1, w[1]]
        hess = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def platt(confidence: np.ndarray, a: float, b: float) -> np.ndarray:
    """Apply :func:`fit_platt`'s map."""
    return 1 / (1 + np.exp(-(a * logit(np.asarray(confidence, dtype=np.float64)) + b)))


def plot_reliability(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, bins: int = 10,
                     title: str = "Reliability of the top-1 confidence") -> Path:
    """Reliability diagram of ``{label: (confidence, correct)}`` as a PNG: accuracy against mean
    confidence in each equal-width bin holding at least 5 queries; the legend gives each curve's ECE."""
    try:
        import matplotlib
    except ImportError:  # pragma: no cover - optional dependency
        raise SimstdError("plotting needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    for label, (conf, corr) in curves.items():
        rel = reliability(conf, corr, bins)
        seen = rel["count"] >= 5
        ece = expected_calibration_error(conf, corr, bins)
        ax.plot(rel["confidence"][seen], rel["accuracy"][seen], marker="o",
                label=f"{label} (ECE {ece:.3f}, n={len(conf)})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence of the top-1 result (bin mean)")
    ax.set_ylabel("Recall@1 in the bin")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------- mixed-protocol runs
def mixed_protocol_run(pairs: np.ndarray, seed: int = 0, k: int = 20, weights: Sequence[float] = (1.0,),
                       modalities: tuple[str, str] = ("image", "text"), method: str | None = None) -> dict:
    """One seed of the mixed protocol (:func:`simstd.datasets.mixed_split`), no labels used for fitting.

    Returns per query (both query modalities stacked): ``gold``, the plain
    standardized ``ids`` (top ``k``), their ``uncertainty`` and
    ``confidence``, ``cross`` (True where a hit's modality is not the
    query's), ``confidence_all_items`` (the top-1 confidence when every
    item is a candidate: no tail model), and ``reranked[w]`` /
    ``reranked_cross[w]``: the ids and ``cross`` with
    ``rerank="uncertainty", rerank_weight=w``.
    """
    from ..datasets import mixed_split
    from ..index import MixedIndex
    from ..standardizer import Standardizer

    split = mixed_split(pairs, modalities, seed=seed)
    index = MixedIndex.from_arrays(split.corpus)
    index.standardizer = (Standardizer() if method is None else Standardizer(method=method)).fit(index)
    model = UncertaintyModel().fit(index)
    out: dict = {"gold": [], "ids": [], "uncertainty": [], "confidence": [], "cross": [], "confidence_all_items": [],
                 "reranked": {w: [] for w in weights}, "reranked_cross": {w: [] for w in weights}}
    for qm, q in split.queries.items():
        res = index.search(q, qm, k, uncertainty=model)
        out["gold"].append(split.gold[qm])
        out["ids"].append(res.ids)
        out["uncertainty"].append(res.uncertainty)
        out["confidence"].append(res.confidence)
        out["cross"].append(res.modalities != qm)
        # the same top-1 confidence with every item a candidate (no tail model)
        out["confidence_all_items"].append(index.search(q, qm, index.ntotal, uncertainty=model).confidence[:, 0])
        for w in weights:
            rr = index.search(q, qm, k, uncertainty=model, rerank="uncertainty", rerank_weight=w)
            out["reranked"][w].append(rr.ids)
            out["reranked_cross"][w].append(rr.modalities != qm)
    return {key: ({w: np.concatenate(v) for w, v in value.items()} if isinstance(value, dict)
                  else np.concatenate(value)) for key, value in out.items()}


def recall_at(ids: np.ndarray, gold: np.ndarray, k: int) -> float:
    return float((ids[:, :k] == gold[:, None]).any(axis=1).mean())


FEATURE_FILES = ("clip", "convirt", "videoclip", "clasp", "clip_random")
TRAINED = ("clip", "convirt", "videoclip", "clasp")


def benchmark(features_dir: str | Path, names: Sequence[str] = FEATURE_FILES, seeds: Sequence[int] = range(10),
              weights: Sequence[float] = (0.5, 1.0, 2.0), method: str | None = None) -> dict:
    """Decile analysis, ECE (raw and Platt-calibrated with 2-fold CV) and rerank vs plain, per feature file."""
    from ..datasets import load_pairs

    report: dict = {"seeds": list(seeds), "weights": list(weights), "files": {}}
    for name in names:
        pairs = load_pairs(Path(features_dir) / f"features_{name}.npy")
        rows = {"r": [], "r_cross": [], "deciles": [], "first_cross": [], "last_cross": [], "depth_gap": [],
                "ece": [], "ece_platt": [], "mean_conf": [], "acc": [],
                "plain": [], "rerank": {w: [] for w in weights}, "conf_all": [], "correct_all": []}
        for seed in seeds:
            run = mixed_protocol_run(pairs, seed, weights=weights, method=method)
            correct = run["ids"][:, 0] == run["gold"]
            conf = run["confidence"][:, 0]
            dec = decile_recall(run["uncertainty"][:, 0], correct)
            rows["r"].append(dec["r"])
            top_cross = run["cross"][:, 0]  # the gold is always cross-modal: same-modality rank-1s are misses
            rows["r_cross"].append(decile_recall(run["uncertainty"][top_cross, 0], correct[top_cross])["r"]
                                   if top_cross.sum() >= 10 else np.nan)  # too few cross-modal rank-1s for deciles
            groups = np.array_split(np.argsort(run["uncertainty"][:, 0], kind="stable"), 10)
            rows["first_cross"].append(top_cross[groups[0]].mean())
            rows["last_cross"].append(top_cross[groups[-1]].mean())
            rows["depth_gap"].append(np.abs(conf - run["confidence_all_items"]).mean())
            rows["deciles"].append(dec["recall"])
            rows["ece"].append(expected_calibration_error(conf, correct))
            rows["mean_conf"].append(conf.mean())
            rows["acc"].append(correct.mean())
            rows["ece_platt"].append(_cv_platt_ece(conf, correct, seed))
            rows["conf_all"].append(conf)
            rows["correct_all"].append(correct)
            rows["plain"].append([recall_at(run["ids"], run["gold"], k) for k in (1, 10, 20)]
                                 + [run["cross"][:, :10].mean()])
            for w in weights:
                rows["rerank"][w].append([recall_at(run["reranked"][w], run["gold"], k) for k in (1, 10, 20)]
                                         + [run["reranked_cross"][w][:, :10].mean()])
        report["files"][name] = rows
    return report


def _cv_platt_ece(conf: np.ndarray, correct: np.ndarray, seed: int) -> float:
    """ECE of Platt scaling fitted on one half of the queries and applied to the other (both ways)."""
    fold = np.random.default_rng(1000 + seed).permutation(len(conf)) % 2 == 0
    out = np.empty_like(conf)
    for part in (fold, ~fold):
        a, b = fit_platt(conf[~part], correct[~part])
        out[part] = platt(conf[part], a, b)
    return expected_calibration_error(out, correct)


def _fmt(v: Sequence[float], digits: int = 3) -> str:
    v = np.asarray(v, dtype=np.float64)
    return f"{np.nanmean(v):.{digits}f} ± {np.nanstd(v):.{digits}f}"


def report_markdown(report: dict) -> str:
    """The tables of docs/uncertainty.md."""
    seeds = report["seeds"]
    lines = [f"Mixed protocol, Flat index, seeds {seeds[0]}-{seeds[-1]} ({len(seeds)} A/B splits); "
             "mean ± std over seeds.", "",
             "Uncertainty deciles (per-query u of the rank-1 result; decile 1 = most certain):", "",
             "| file | R@1 | Pearson r (decile, R@1) | seed r min / max | r, rank-1 cross-modal only "
             "| rank-1 cross-modal, decile 1 / 10 | R@1 per decile (mean over seeds) |",
             "|---|---|---|---|---|---|---|"]
    for name, rows in report["files"].items():
        dec = np.nanmean(np.array(rows["deciles"]), axis=0)
        lo, hi = (np.nanmin(rows["r"]), np.nanmax(rows["r"])) if np.isfinite(rows["r"]).any() else (np.nan,) * 2
        shares = f"{np.mean(rows['first_cross']):.2f} / {np.mean(rows['last_cross']):.2f}"
        lines.append(f"| {name} | {_fmt(rows['acc'])} | {_fmt(rows['r'])} | {lo:+.3f} / {hi:+.3f} | "
                     f"{_fmt(rows['r_cross'])} | {shares} | " + " ".join(f"{x:.2f}" for x in dec) + " |")
    gaps = ", ".join(f"{name} {np.mean(rows['depth_gap']):.4f}" for name, rows in report["files"].items())
    lines += ["", f"Mean |top-1 confidence (depth 20 + tail model) - confidence over all items|: {gaps}."]
    lines += ["", "Calibration of the top-1 confidence p (10 equal-width bins):", "",
              "| file | mean p | R@1 | ECE (label-free p) | ECE after Platt (gold labels, 2-fold CV) |",
              "|---|---|---|---|---|"]
    for name, rows in report["files"].items():
        lines.append(f"| {name} | {_fmt(rows['mean_conf'])} | {_fmt(rows['acc'])} | {_fmt(rows['ece'])} | "
                     f"{_fmt(rows['ece_platt'])} |")
    lines += ["", "Rerank (`rerank=\"uncertainty\"`, order by z - w u) vs plain standardization:", "",
              "| file | setting | R@1 | R@10 | R@20 | other-modality share of top 10 |", "|---|---|---|---|---|---|"]
    for name, rows in report["files"].items():
        plain = np.array(rows["plain"])
        lines.append(f"| {name} | plain | " + " | ".join(_fmt(plain[:, i]) for i in range(3))
                     + f" | {_fmt(plain[:, 3], 2)} |")
        for w in report["weights"]:
            rr = np.array(rows["rerank"][w])
            diff = (rr - plain).mean(axis=0)
            lines.append(f"| {name} | w = {w:g} | " + " | ".join(
                f"{_fmt(rr[:, i])} ({diff[i]:+.3f})" for i in range(3)) + f" | {_fmt(rr[:, 3], 2)} |")
    return "\n".join(lines)


# ------------------------------------------------------ match probabilities
PROTOCOLS = ("mixed", "paired")
LABEL_COUNTS = (10, 20, 50, 100, 200)


def partnered_split(pairs: np.ndarray, protocol: str, seed: int,
                    modalities: tuple[str, str] = ("image", "text")) -> tuple[dict, dict, dict]:
    """``(corpus, queries, gold)`` of a protocol where every query's partner is indexed.

    ``"mixed"`` is :func:`simstd.datasets.mixed_split`: corpus = modality 0 of half A and
    modality 1 of half B, queries = the other modality of each (no stored item has its
    partner indexed). ``"paired"`` splits the pairs into quarters A, B and a half C: the
    corpus holds modality 0 of A, modality 1 of B and both modalities of C, the queries are
    modality 1 of A and modality 0 of B, so the stored items of C have their partners
    indexed as well (what the label-free fit sees is then made of real matches too).
    """
    from ..datasets import mixed_split

    m0, m1 = modalities
    if protocol == "mixed":
        split = mixed_split(pairs, modalities, seed=seed)
        return split.corpus, split.queries, split.gold
    if protocol != "paired":
        raise SimstdError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    n = pairs.shape[1]
    perm = np.random.default_rng(seed).permutation(n)
    a, b, c = np.sort(perm[: n // 4]), np.sort(perm[n // 4: n // 2]), np.sort(perm[n // 2:])
    corpus = {m0: np.concatenate([pairs[0][a], pairs[0][c]]), m1: np.concatenate([pairs[1][b], pairs[1][c]])}
    n0 = len(a) + len(c)  # ids: modality 0 first (MixedIndex.from_arrays), then modality 1
    queries = {m1: pairs[1][a], m0: pairs[0][b]}
    gold = {m1: np.arange(len(a)), m0: n0 + np.arange(len(b))}
    return corpus, queries, gold


def pmatch_run(pairs: np.ndarray, protocol: str, seed: int, calibration: str = "identity", k: int = 10,
               label_counts: Sequence[int] = (), method: str | None = None) -> dict:
    """One seed of a partnered protocol: the top-``k`` ``confidence`` (p), ``p_match`` and
    ``correct`` (hit is the gold partner) of every query, label-free; and for each ``n`` in
    ``label_counts`` the top-1 ``p_match`` and correctness of the other queries after
    :meth:`UncertaintyModel.calibrate` on ``n`` random labelled queries (``None`` when fewer
    than ``2 n`` queries exist)."""
    from ..index import MixedIndex
    from ..standardizer import Standardizer

    corpus, queries, gold = partnered_split(pairs, protocol, seed)
    index = MixedIndex.from_arrays(corpus)
    index.standardizer = (Standardizer() if method is None else Standardizer(method=method)).fit(index)
    model = UncertaintyModel(calibration=calibration).fit(index)
    conf, pm, correct, ids = [], [], [], []
    for qm, q in queries.items():
        res = index.search(q, qm, k, uncertainty=model)
        conf.append(res.confidence)
        pm.append(res.p_match)
        correct.append(res.ids == gold[qm][:, None])
    out = {"confidence": np.concatenate(conf), "p_match": np.concatenate(pm), "correct": np.concatenate(correct),
           "labels": {}}
    Q = np.concatenate(list(queries.values()))
    QM = np.repeat(list(queries), [len(v) for v in queries.values()])
    G = np.concatenate([gold[m] for m in queries])
    rng = np.random.default_rng(2000 + seed)
    for n in label_counts:
        # Rotate over disjoint folds of n labelled queries: fold i's map predicts fold i+1, so every
        # query gets a p_match from n labels not its own, over all queries like the floor's 2-fold.
        m = len(Q) // n
        if m < 2:
            out["labels"][n] = None
            continue
        perm = rng.permutation(len(Q))
        folds = [perm[i * n:(i + 1) * n] for i in range(m)]
        folds[0] = np.concatenate([folds[0], perm[m * n:]])  # the remainder is predicted with fold 0
        pred = np.empty(len(Q))
        for i in range(m):
            train = folds[(i + 1) % m][:n]
            fitted = UncertaintyModel.from_dict(model.to_dict()).calibrate(index, G[train], queries=Q[train],
                                                                           query_modality=QM[train])
            pred[folds[i]] = fitted.p_match(out["confidence"][folds[i], 0])
        out["labels"][n] = (pred, out["correct"][:, 0])
    return out


def pmatch_benchmark(features_dir: str | Path, names: Sequence[str] = TRAINED, seeds: Sequence[int] = range(5, 10),
                     calibrations: Sequence[str] = ("identity", "mutual"), protocols: Sequence[str] = PROTOCOLS,
                     label_counts: Sequence[int] = LABEL_COUNTS, method: str | None = None) -> dict:
    """ECE (10 bins) of the top-1 ``p`` and of ``p_match`` per label-free map, per protocol and
    file; the ECE after calibrating on ``n`` gold pairs; and today's floor, 2-fold Platt of the
    top-1 ``p`` with every query's label."""
    from ..datasets import load_pairs

    report: dict = {"seeds": list(seeds), "calibrations": list(calibrations), "label_counts": list(label_counts),
                    "rows": {}}
    for name in names:
        pairs = load_pairs(Path(features_dir) / f"features_{name}.npy")
        for protocol in protocols:
            row: dict = {"acc": [], "ece_p": [], "ece_all_p": [], "floor": [], "conf_all": [], "correct_all": [],
                         **{f"ece_{c}": [] for c in calibrations}, **{f"ece_all_{c}": [] for c in calibrations},
                         **{f"pm_{c}": [] for c in calibrations}, "labels": {n: [] for n in label_counts}}
            for seed in seeds:
                for j, cal in enumerate(calibrations):
                    run = pmatch_run(pairs, protocol, seed, cal, label_counts=label_counts if j == 0 else ())
                    top_ok = run["correct"][:, 0]
                    row[f"ece_{cal}"].append(expected_calibration_error(run["p_match"][:, 0], top_ok))
                    row[f"ece_all_{cal}"].append(expected_calibration_error(run["p_match"], run["correct"]))
                    row[f"pm_{cal}"].append(run["p_match"][:, 0])
                    if j == 0:
                        conf = run["confidence"][:, 0]
                        row["acc"].append(top_ok.mean())
                        row["ece_p"].append(expected_calibration_error(conf, top_ok))
                        row["ece_all_p"].append(expected_calibration_error(run["confidence"], run["correct"]))
                        row["floor"].append(_cv_platt_ece(conf, top_ok, seed))
                        row["conf_all"].append(conf)
                        row["correct_all"].append(top_ok)
                        for n, got in run["labels"].items():
                            row["labels"][n].append(np.nan if got is None else expected_calibration_error(*got))
                            if got is not None:
                                row.setdefault(f"pm_labels_{n}", []).append(got[0])
            report["rows"][(name, protocol)] = row
    return report


def pmatch_markdown(report: dict) -> str:
    """The p_match tables of docs/uncertainty.md."""
    seeds, cals = report["seeds"], report["calibrations"]
    lines = [f"Seeds {seeds[0]}-{seeds[-1]}, mean ± std over seeds; ECE over 10 equal-width bins.", "",
             "Label-free, top-1 hit of every query (and, after the slash, every top-10 hit):", "",
             "| file | protocol | R@1 | ECE p (today) | " + " | ".join(f"ECE p_match, {c}" for c in cals) + " |",
             "|---|---|---|---|" + "---|" * len(cals)]
    for (name, protocol), row in report["rows"].items():
        cells = [f"{_fmt(row[f'ece_{c}'])} / {np.mean(row[f'ece_all_{c}']):.3f}" for c in cals]
        lines.append(f"| {name} | {protocol} | {_fmt(row['acc'])} | {_fmt(row['ece_p'])} / "
                     f"{np.mean(row['ece_all_p']):.3f} | " + " | ".join(cells) + " |")
    counts = report["label_counts"]
    lines += ["", f"Calibrated on n gold pairs (`calibrate`, from the label-free {cals[0]} map; ECE of the top-1 "
              "p_match of the other queries) against today's floor, 2-fold Platt of p with every label:", "",
              "| file | protocol | " + " | ".join(f"n = {n}" for n in counts) + " | floor: 2-fold Platt, all labels |",
              "|---|---|" + "---|" * (len(counts) + 1)]
    for (name, protocol), row in report["rows"].items():
        cells = [_fmt(row["labels"][n]) if np.isfinite(row["labels"][n]).any() else "–" for n in counts]
        lines.append(f"| {name} | {protocol} | " + " | ".join(cells) + f" | {_fmt(row['floor'])} |")
    return "\n".join(lines)


def pmatch_main(argv: Sequence[str] | None = None) -> int:
    """``python -m simstd.evaluation.uncertainty pmatch``: the p_match tables and the reliability diagram."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m simstd.evaluation.uncertainty pmatch", description=pmatch_main.__doc__)
    default_dir = Path(__file__).resolve().parents[3] / "shared" / "data" / "modality-gap-features"
    parser.add_argument("--features-dir", default=str(default_dir), help="folder of features_*.npy")
    parser.add_argument("--files", default=",".join(TRAINED), help="comma-separated feature file names")
    parser.add_argument("--seeds", default="5-9", help="seed range a-b (0-4 choose, 5-9 report)")
    parser.add_argument("--calibrations", default="identity,mutual", help="label-free maps to measure")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--labels", default=",".join(map(str, LABEL_COUNTS)), help="numbers of gold pairs")
    parser.add_argument("--plot", default="docs/img/pmatch_reliability.png", help="reliability diagram PNG")
    args = parser.parse_args(argv)
    lo, hi = (int(x) for x in args.seeds.split("-"))
    split = lambda v: [x.strip() for x in v.split(",") if x.strip()]  # noqa: E731
    report = pmatch_benchmark(args.features_dir, split(args.files), range(lo, hi + 1), split(args.calibrations),
                              split(args.protocols), [int(x) for x in split(args.labels)])
    print(pmatch_markdown(report))
    if args.plot:  # CLIP's top-1: the label-free p against p_match calibrated on 50 gold pairs
        curves = {}
        n = 50
        for (name, protocol), row in report["rows"].items():
            if name == "clip":
                correct = np.concatenate(row["correct_all"])
                curves[f"{protocol}: p, label-free"] = (np.concatenate(row["conf_all"]), correct)
                if f"pm_labels_{n}" in row:
                    curves[f"{protocol}: p_match, {n} gold pairs"] = (np.concatenate(row[f"pm_labels_{n}"]), correct)
        title = f"CLIP top-1, seeds {lo}-{hi} pooled"
        print(f"\nwrote {plot_reliability(curves, args.plot, title=title)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m simstd.evaluation.uncertainty``: reproduce the numbers and the plot of docs/uncertainty.md."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m simstd.evaluation.uncertainty", description=main.__doc__)
    default_dir = Path(__file__).resolve().parents[3] / "shared" / "data" / "modality-gap-features"
    parser.add_argument("--features-dir", default=str(default_dir), help="folder of features_*.npy")
    parser.add_argument("--files", default=",".join(FEATURE_FILES), help="comma-separated feature file names")
    parser.add_argument("--seeds", type=int, default=10, help="number of A/B splits (seeds 0..n-1)")
    parser.add_argument("--method", choices=("paper", "hubness"), default=None,
                        help="the Standardizer method (default: the Standardizer's default)")
    parser.add_argument("--plot", default="docs/img/uncertainty_reliability.png", help="reliability diagram PNG")
    args = parser.parse_args(argv)
    names = [x.strip() for x in args.files.split(",") if x.strip()]
    report = benchmark(args.features_dir, names, range(args.seeds), method=args.method)
    print(report_markdown(report))
    if args.plot:
        curves = {name: (np.concatenate(rows["conf_all"]), np.concatenate(rows["correct_all"]))
                  for name, rows in report["files"].items() if name in TRAINED}
        title = f"Top-1 confidence, mixed protocol, {args.seeds} seeds pooled"
        print(f"\nwrote {plot_reliability(curves, args.plot, title=title)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
