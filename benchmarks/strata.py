"""Strata (statistics per group inside a modality): do they help? docs/strata.md.

Three measurements, printed as the markdown tables of docs/strata.md and
written to ``benchmarks/results/strata.json``:

1. **stats** - real CLIP ViT-B/16 COCO features (500 image/caption pairs; the
   caption text of each row from the metadata file): the pseudo-positive
   cosine statistics of each caption length bin (``text:length``), fitted on
   all 500 pairs with the paper's method, beside the gold pairs' cosines.
2. **heldout** - the mixed protocol on the same features (half the pairs index
   their image, the other half their caption; queries are the other halves):
   unstratified against ``strata="text:length"`` with ``min_stratum`` chosen on
   seeds 0-4 (by mean R@20), reported on seeds 5-9, for both methods.
3. **synthetic** - two text sources, the second's cosines to everything in the
   shared space exactly ``SCALE`` times the first's (its vectors carry a private
   component): the stratified fit should recover that scale and the
   unstratified ranking should be biased to the first source.

Run (about a minute on 2 cores)::

    python benchmarks/strata.py
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from common import FEATURES, RESULTS, command  # first: puts this checkout's simstd on sys.path

from simstd import MixedIndex, Standardizer
from simstd.datasets import mixed_split
from simstd.strata import length_bin

METHODS = ("paper", "hubness")
#: min_stratum candidates of the held-out choice; 250 (all indexed captions) leaves
#: every bin below the threshold, so the modality stays whole: "off" is a candidate too.
CHOICES = (0, 10, 25, 50, 100, 250)
SCALE = 0.6


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _fit(index: MixedIndex, method: str, strata: str | None, min_stratum: int = 0) -> Standardizer:
    std = Standardizer(method=method, strata=strata, min_stratum=min_stratum, sample=None).fit(index)
    index.standardizer = std
    if std.has_item_terms:
        index.fold_terms(std)
    return std


# ------------------------------------------------------------------ 1. stats
def real_stats(pairs: np.ndarray, captions: list[str]) -> dict:
    """Pseudo-positive cosine statistics per caption length bin, all 500 pairs indexed."""
    meta = [{"caption": c} for c in captions]
    index = MixedIndex.from_arrays({"image": pairs[0], "text": pairs[1]}, metadata={"text": meta})
    plain = _fit(index, "paper", None)
    std = _fit(index, "paper", "text:length", 0)
    bins = np.array([length_bin(c) for c in captions])
    gold = np.einsum("ij,ij->i", pairs[0].astype(np.float64), pairs[1].astype(np.float64))
    rows = []

    def row(pair: str, fit: Standardizer, q: str, t: str, gold_of: np.ndarray | None) -> None:
        i, j = fit.modalities_.index(q), fit.modalities_.index(t)
        n, mean, std_ = int(fit.n_[i, j]), float(fit.mean_[i, j]), float(fit.std_[i, j])
        rows.append({"pair": pair, "n": n, "mean": mean, "std": std_, "se_mean": std_ / np.sqrt(n),
                     "gold_mean": None if gold_of is None else float(gold_of.mean()),
                     "gold_std": None if gold_of is None else float(gold_of.std())})

    row("image → text (unstratified)", plain, "image", "text", gold)
    for s in sorted(set(bins.tolist()), key=lambda b: int(b.split("-")[0].rstrip("+"))):
        row(f"image → text:{s}", std, "image", f"text:{s}", gold[bins == s])
    row("text → image (unstratified)", plain, "text", "image", gold)
    for s in sorted(set(bins.tolist()), key=lambda b: int(b.split("-")[0].rstrip("+"))):
        row(f"text:{s} → image", std, f"text:{s}", "image", gold[bins == s])
    # Welch's t of the short-long difference of the pseudo-positive means (5-9 against 10-14).
    def welch(short: str, long: str) -> float:
        x, y = (next(r for r in rows if r["pair"] == p) for p in (short, long))
        return (x["mean"] - y["mean"]) / float(np.hypot(x["se_mean"], y["se_mean"]))

    tests = {"image → text": welch("image → text:5-9", "image → text:10-14"),
             "text → image": welch("text:5-9 → image", "text:10-14 → image")}
    # The pseudo positive of image -> stratum is a maximum over the stratum's items, which falls
    # with the stratum's size: compare the two large bins at one size (200 captions each, 50
    # draws), per image (paired), with the standard error over the 500 images.
    rng = np.random.default_rng(0)
    img = pairs[0].astype(np.float64)
    per_image = {}
    for s in ("5-9", "10-14"):
        members = np.flatnonzero(bins == s)
        per_image[s] = np.mean([(img @ pairs[1][rng.choice(members, 200, replace=False)].T.astype(np.float64))
                                .max(axis=1) for _ in range(50)], axis=0)
    diff = per_image["5-9"] - per_image["10-14"]
    matched = {"5-9": float(per_image["5-9"].mean()), "10-14": float(per_image["10-14"].mean()),
               "difference": float(diff.mean()), "se": float(diff.std(ddof=1) / np.sqrt(len(diff)))}
    short, long = gold[bins == "5-9"], gold[bins == "10-14"]
    tests["gold pairs"] = float((short.mean() - long.mean()) / np.hypot(short.std(ddof=1) / np.sqrt(len(short)),
                                                                      long.std(ddof=1) / np.sqrt(len(long))))
    return {"rows": rows, "welch_t_short_minus_long": tests, "size_matched_image_to_text": matched,
            "bins": {s: int((bins == s).sum()) for s in sorted(set(bins.tolist()))}}


# ---------------------------------------------------------------- 2. heldout
def heldout(pairs: np.ndarray, captions: list[str], seeds: list[int], method: str, min_stratum: int | None) -> dict:
    """Mixed-protocol recall of the gold partner: R@1, R@20 and MRR over all queries, per seed."""
    out = {"R@1": [], "R@20": [], "MRR": []}
    for seed in seeds:
        split = mixed_split(pairs, ("image", "text"), seed=seed)
        meta = [{"caption": captions[i]} for i in split.rows_b]
        index = MixedIndex.from_arrays(split.corpus, metadata={"text": meta})
        std = _fit(index, method, None if min_stratum is None else "text:length", min_stratum or 0)
        n = index.ntotal
        ranks = []
        # Image queries (gold: their caption), one search; caption queries per length bin.
        r = index.search(split.queries["image"], "image", n)
        ranks.append(_ranks(r.ids, split.gold["image"]))
        qtext = [captions[i] for i in split.rows_a]
        strata = std.strata_
        groups = {}
        for row, c in enumerate(qtext):
            key = strata.query_stratum_of_text("text", c) if strata is not None else None
            groups.setdefault(key, []).append(row)
        text_ranks = np.empty(len(qtext))
        for key, rows in groups.items():
            rows = np.array(rows)
            r = index.search(split.queries["text"][rows], "text", n, query_stratum=key)
            text_ranks[rows] = _ranks(r.ids, split.gold["text"][rows])
        ranks.append(text_ranks)
        ranks = np.concatenate(ranks)
        out["R@1"].append(float((ranks <= 1).mean()))
        out["R@20"].append(float((ranks <= 20).mean()))
        out["MRR"].append(float((1.0 / ranks).mean()))
    return out


def _ranks(ids: np.ndarray, gold: np.ndarray) -> np.ndarray:
    hit = ids == np.asarray(gold)[:, None]
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, ids.shape[1] + 1).astype(np.float64)


# -------------------------------------------------------------- 3. synthetic
def synthetic(n: int = 2000, shared: int = 64, private: int = 64, noise: float = 0.9, seed: int = 0,
              scale: float = SCALE, fits: tuple = (None, "source")) -> dict:
    """Images and texts of ``n`` concepts; the texts of source b are ``[SCALE x, sqrt(1 - SCALE^2) e]``
    with ``e`` in dimensions no other vector uses, so every cosine of a b text with an image
    or an a text is exactly ``SCALE`` times that of its ``x``, drawn like the a texts."""
    rng = np.random.default_rng(seed)
    concept = _unit(rng.normal(size=(n, shared)))
    img = _unit(concept + noise * rng.normal(size=(n, shared)) / np.sqrt(shared))
    x = _unit(concept + noise * rng.normal(size=(n, shared)) / np.sqrt(shared))
    src = np.where(np.arange(n) % 2 == 0, "a", "b")
    txt = np.zeros((n, shared + private), np.float32)
    txt[:, :shared] = x
    b = src == "b"
    txt[b, :shared] *= scale
    txt[b, shared:] = np.sqrt(1 - scale**2) * _unit(rng.normal(size=(b.sum(), private)))
    images = np.zeros((n, shared + private), np.float32)
    images[:, :shared] = img
    meta = [{"source": s} for s in src]
    out = {}
    for method in METHODS:
        for strata in fits:
            index = MixedIndex.from_arrays({"image": images, "text": txt}, metadata={"text": meta})
            std = _fit(index, method, strata, 100)
            res = index.search_like(np.arange(n), 10)  # every image as a query, itself left out
            text_hits = (res.modalities == "text") & (res.ids >= 0)
            hit_src = np.where(text_hits, src[np.clip(res.ids - n, 0, n - 1)], "")
            share_b = float((hit_src == "b").sum() / max(text_hits.sum(), 1))
            r1 = res.ids[:, 0] == n + np.arange(n)
            r10 = (res.ids == (n + np.arange(n))[:, None]).any(axis=1)
            entry = {"share_b_top10_texts": share_b,
                     "R@1_gold_a": float(r1[src == "a"].mean()), "R@1_gold_b": float(r1[src == "b"].mean()),
                     "R@10_gold_a": float(r10[src == "a"].mean()), "R@10_gold_b": float(r10[src == "b"].mean())}
            if strata is not None:
                if method == "paper":
                    a = std.positive_moments("image", "text:a")
                    bb = std.positive_moments("image", "text:b")
                else:  # the hubness map's per-pair scale (its tail), and the pseudo positives' std
                    a = (std.affine("image", "text:a")[1], std.positive_moments("image", "text:a")[1])
                    bb = (std.affine("image", "text:b")[1], std.positive_moments("image", "text:b")[1])
                entry["fitted_a"], entry["fitted_b"] = list(map(float, a)), list(map(float, bb))
                entry["ratio"] = [float(v / w) for v, w in zip(bb, a)]
            out[f"{method}/{strata or 'unstratified'}"] = entry
    return out


# ---------------------------------------------------------------- 4. latency
def latency(n: int = 20_000, dim: int = 512, strata: int = 4, repeats: int = 15) -> dict:
    """Median time of a standardized Flat search, unstratified against ``strata`` equal strata
    of the text shard (each searched as a FAISS search restricted to its rows), side by side."""
    import time

    rng = np.random.default_rng(0)
    index = MixedIndex.from_arrays({"image": _unit(rng.normal(size=(n, dim))),
                                    "text": _unit(rng.normal(size=(n, dim)))},
                                   metadata={"text": [{"source": str(i % strata)} for i in range(n)]})
    fits = {"unstratified": Standardizer(method="paper", sample=2000).fit(index),
            f"{strata} strata": Standardizer(method="paper", sample=2000, strata="source").fit(index)}
    out: dict = {}
    for nq in (1, 64):
        q = _unit(rng.normal(size=(nq, dim)))
        times: dict = {name: [] for name in fits}
        for _ in range(repeats):  # interleaved, so both see the same machine load
            for name, std in fits.items():
                t = time.perf_counter()
                index.search(q, "image", 10, standardizer=std)
                times[name].append(time.perf_counter() - t)
        out[str(nq)] = {name: float(np.median(v)) * 1e3 for name, v in times.items()}
    return out


# ------------------------------------------------------------------- report
def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select-seeds", default="0,1,2,3,4")
    parser.add_argument("--report-seeds", default="5,6,7,8,9")
    args = parser.parse_args(argv)
    select = [int(s) for s in args.select_seeds.split(",")]
    report = [int(s) for s in args.report_seeds.split(",")]
    pairs = np.load(FEATURES / "features_clip.npy")
    captions = [r["caption"] for r in json.loads((FEATURES / "features_clip_coco_val2017_meta.json").read_text())]
    results: dict = {"command": command("strata.py", sys.argv[1:] if argv is None else argv)}

    stats = real_stats(pairs, captions)
    results["stats"] = stats
    print("## 1. CLIP COCO: pseudo-positive cosines per caption length (paper's method, all 500 pairs)\n")
    print(_table(["pair", "n", "mean", "std", "± mean", "gold-pair cosine (mean ± std)"],
                 [[r["pair"], str(r["n"]), f"{r['mean']:.4f}", f"{r['std']:.4f}", f"{r['se_mean']:.4f}",
                   f"{r['gold_mean']:.4f} ± {r['gold_std']:.4f}"] for r in stats["rows"]]))
    print("\nWelch t of the 5-9 minus 10-14 mean (pseudo positives; gold pairs): "
          + ", ".join(f"{k}: {v:+.2f}" for k, v in stats["welch_t_short_minus_long"].items()))
    m = stats["size_matched_image_to_text"]
    print(f"Size-matched image → text pseudo-positive mean (200 captions of each bin, 50 draws, paired per image): "
          f"5-9 {m['5-9']:.4f}, 10-14 {m['10-14']:.4f}, difference {m['difference']:+.4f} ± {m['se']:.4f} (se over "
          f"the 500 images)")

    held = {}
    print("\n## 2. CLIP COCO, mixed protocol: unstratified against text:length\n")
    rows = []
    for method in METHODS:
        chosen = {c: heldout(pairs, captions, select, method, c) for c in CHOICES}
        best = max(CHOICES, key=lambda c: (np.mean(chosen[c]["R@20"]), np.mean(chosen[c]["MRR"])))
        # The best candidate that does stratify (min_stratum below the 250 indexed captions), reported too.
        split_best = max(CHOICES[:-1], key=lambda c: (np.mean(chosen[c]["R@20"]), np.mean(chosen[c]["MRR"])))
        base = heldout(pairs, captions, report, method, None)
        strat = heldout(pairs, captions, report, method, best)
        forced = heldout(pairs, captions, report, method, split_best)
        held[method] = {"selection": {str(c): {k: float(np.mean(v)) for k, v in chosen[c].items()} for c in CHOICES},
                        "chosen_min_stratum": best, "unstratified": base, "stratified": strat,
                        "best_stratifying_min_stratum": split_best, "best_stratifying": forced}
        chosen_name = f"text:length, min_stratum {best} (chosen" + (": no bin reaches it, unstratified)"
                                                                    if best == CHOICES[-1] else ")")
        for name, res in (("unstratified", base), (chosen_name, strat),
                          (f"text:length, min_stratum {split_best} (best that stratifies)", forced)):
            rows.append([method, name] + [f"{np.mean(res[m]):.3f}" for m in ("R@1", "R@20", "MRR")])
        strat = forced  # the difference shown: what stratifying does
        d = np.array(strat["R@20"]) - np.array(base["R@20"])
        rows.append([method, "stratifying minus unstratified (R@20 per seed: better/worse/same)",
                     f"{np.mean(np.array(strat['R@1']) - np.array(base['R@1'])):+.3f}", f"{d.mean():+.3f} "
                     f"({(d > 0).sum()}/{(d < 0).sum()}/{(d == 0).sum()})",
                     f"{np.mean(np.array(strat['MRR']) - np.array(base['MRR'])):+.3f}"])
    results["heldout"] = held
    print(_table(["method", "fit", "R@1", "R@20", "MRR"], rows))
    print("\nSelection on seeds " + args.select_seeds + " (mean R@20 by min_stratum): " + "; ".join(
        f"{m}: " + ", ".join(f"{c}: {held[m]['selection'][str(c)]['R@20']:.3f}" for c in CHOICES) for m in METHODS))

    syn = synthetic()
    # The control: the same collection without the scale gap (b's cosines 1.0 x a's).
    syn.update({k.replace("/", " (no scale gap)/"): v for k, v in synthetic(scale=1.0).items()})
    results["synthetic"] = syn
    print(f"\n## 3. Synthetic: two text sources, b's cosines exactly {SCALE} x a's\n")
    rows = []
    for key, e in syn.items():
        method, fit = key.split("/")
        ratio = "–" if "ratio" not in e else " / ".join(f"{v:.3f}" for v in e["ratio"])
        rows.append([method, fit, f"{e['share_b_top10_texts']:.3f}", f"{e['R@1_gold_a']:.3f}",
                     f"{e['R@1_gold_b']:.3f}", f"{e['R@10_gold_a']:.3f}", f"{e['R@10_gold_b']:.3f}", ratio])
    print(_table(["method", "fit", "share of b in top-10 texts", "R@1 gold a", "R@1 gold b", "R@10 gold a",
                  "R@10 gold b", "fitted b / a (paper: mean / std; hubness: scale / std)"], rows))
    lat = latency()
    results["latency_ms"] = lat
    print("\n## 4. Latency: Flat, 20k images + 20k texts (512-d), text shard in 4 strata (median ms)\n")
    names = list(next(iter(lat.values())))
    print(_table(["queries per call", *names, "ratio"],
                 [[nq, *(f"{v[m]:.2f}" for m in names), f"{v[names[1]] / v[names[0]]:.2f}x"] for nq, v in lat.items()]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "strata.json").write_text(json.dumps(results, indent=1))
    print(f"\n{results['command']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
