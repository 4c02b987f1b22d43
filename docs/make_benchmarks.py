"""Regenerate docs/benchmarks.md and docs/img/*.png from the real feature files.

Run from the project root:

    python docs/make_benchmarks.py [--data ../shared/data/modality-gap-features]

Every number and figure in docs/benchmarks.md comes from this script; the
claims its prose makes are checked here (the script fails instead of writing
a page that contradicts its own tables).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the simstd of this checkout, not whichever one is installed

from simstd.datasets import load_pairs, topical_pairs  # noqa: E402
from simstd.evaluation import (  # noqa: E402
    affine_changes, caption_relevance, label_relevance, markdown_table, run_pairs,
)
from simstd.evaluation.relevance import MIN_CAPTIONS  # noqa: E402
from simstd.methods import PseudoStandardization, QueryShift, make_method  # noqa: E402
from simstd.plotting import (  # noqa: E402
    plot_frontier, plot_modality_share, plot_recall_curves, plot_score_histograms,
)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "modality-gap-features"
COMMAND = "python docs/make_benchmarks.py"

#: (file key, label, modality names, trained?)
MODELS = [
    ("clip", "CLIP", ("image", "text"), True),
    ("convirt", "ConVIRT", ("image", "text"), True),
    ("videoclip", "VideoCLIP", ("video", "text"), True),
    ("clasp", "CLASP", ("sequence", "text"), True),
    ("clip_random", "CLIP random (control)", ("image", "text"), False),
]
EVAL_SEEDS = list(range(100, 120))  # the reported splits; never used while choosing the method
SELECTION_SEEDS = list(range(0, 5))  # the splits the candidates were chosen on
REPORT_SEEDS = list(range(5, 10))  # issue 9: hubness chosen on 0..4, reported on 5..9 ...
CONFIRM_SEEDS = list(range(200, 220))  # ... and confirmed on 200..219
PLAIN_SEEDS = list(range(100, 102))  # one-modality protocols: seeds only change the query folds
SYNTH_SEEDS = list(range(100, 103))  # universal protocol on generated data (1000 pairs: slower per seed)
PAPER, CANDIDATE, HUBNESS = "simstd-index", "simstd-qshift", "hubness"
LIBRARY = "simstd-hubness"  # the library's Standardizer(method="hubness"), as users get it
#: Hubness settings compared on the selection splits: neighbourhood size K and the per-pair scale beta.
HUB_GRID = [f"hubness[k={k}{b}]" for k in (3, 5, 10, 20, 30) for b in ("", ",q=0.99", ",beta=pseudo")]
HUB_GRID = [n.replace("[k=10]", "").replace("[k=10,", "[") for n in HUB_GRID]
#: Criteria fixed in advance (issue 9) for making a setting the default.
CRIT_MEAN, CRIT_EXCESS, CRIT_UNIVERSAL = 0.88, 0.08, 0.02
METHODS = [
    "raw", "gr-clip", "zscore-all", "per-query",
    "simstd-index", "simstd-index-top10", "simstd-log", "simstd-log-top10", "simstd-labeled",
    "nnn", "nnn+simstd-index", "nnn+simstd-index[index]",
    "qb-norm", "qb-norm+simstd-index", "qb-norm+simstd-index[index]",
    "csls", "csls[index]", "csls+simstd-index", "csls+simstd-index[index]",
    "per-query", "simstd-qshift", "hubness", "simstd-hubness",
]
METHODS = list(dict.fromkeys(METHODS))
PLOT_METHODS = ["raw", "gr-clip", "zscore-all", "per-query", "simstd-index", "simstd-qshift"]
FRONTIER_METHODS = ["raw", "gr-clip", "zscore-all", "per-query", "simstd-index", "simstd-labeled", "simstd-qshift",
                    "csls[index]", "csls+simstd-index[index]", "qb-norm", "hubness", "simstd-hubness"]
UNIVERSAL_METHODS = ["raw", "gr-clip", "zscore-all", "per-query", "simstd-index", "simstd-index-top10",
                     "simstd-labeled", "nnn+simstd-index[index]", "csls[index]", "csls+simstd-index[index]",
                     "simstd-qshift", "hubness", "simstd-hubness"]
#: Files with caption metadata (the random-weight control has the same COCO rows as CLIP).
CAPTIONS = {"clip": "features_clip_coco_val2017_meta.json", "clip_random": "features_clip_coco_val2017_meta.json"}


def needs(name: str) -> str:
    m = make_method(name)
    if m.needs_labels:
        return "gold labels (oracle)"
    if m.needs_log:
        return "query log"
    return "index only"


def pm(v: np.ndarray, digits: int = 3) -> str:
    return f"{np.mean(v):.{digits}f} ± {np.std(v, ddof=1):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of features_*.npy")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="docs folder to write")
    args = parser.parse_args()
    start = time.time()
    img = args.out / "img"
    pairs = {key: load_pairs(args.data / f"features_{key}.npy") for key, *_ in MODELS}
    trained = [key for key, _, _, t in MODELS if t]
    label = {key: lab for key, lab, _, _ in MODELS}

    # ---------------------------------------------------------------- runs
    mixed, plain = {}, {}
    for key, lab, mods, _ in MODELS:
        print(f"evaluating {key} ...", flush=True)
        mixed[key] = run_pairs(pairs[key], data=lab, modalities=mods, methods=METHODS, seeds=EVAL_SEEDS,
                               protocols=["mixed"])
        plain[key] = run_pairs(pairs[key], data=lab, modalities=mods, methods=METHODS, seeds=PLAIN_SEEDS,
                               protocols=["plain"])
    frac = {(k, m): mixed[k].values("mixed", m, "R@20", of_ceiling=True) for k in mixed for m in METHODS}
    cross = {(k, m): mixed[k].values("mixed", m, "cross@10") for k in mixed for m in METHODS}
    exc = {(k, m): mixed[k].values("mixed", m, "excess") for k in mixed for m in METHODS}
    mods_of = {key: mods for key, _, mods, _ in MODELS}

    # Universal protocol: relevance from the COCO reference captions (CLIP rows) and from generated subtopics.
    print("universal protocol ...", flush=True)
    relevance = {key: caption_relevance([r["all_captions"] for r in
                                         json.loads((args.data / name).read_text(encoding="utf-8"))])
                 for key, name in CAPTIONS.items()}
    universal = {key: run_pairs(pairs[key], data=label[key], modalities=mods_of[key], methods=UNIVERSAL_METHODS,
                                seeds=EVAL_SEEDS, protocols=["universal"], relevance=relevance[key])
                 for key in CAPTIONS}
    synth = topical_pairs(1000, 512, n_topics=20, n_subtopics=5, seed=0)
    universal["synthetic"] = run_pairs(synth.pairs, data="generated (1000 pairs, 20 topics x 5 subtopics)",
                                       methods=UNIVERSAL_METHODS, seeds=SYNTH_SEEDS, protocols=["universal"],
                                       relevance=label_relevance(synth.subtopic))

    # Selection splits: sensitivity of the query shift (and full CSLS) and the hubness grid, one run.
    print("selection splits ...", flush=True)
    grid = [(k, w) for k in (1, 3, 10, 30) for w in (0.25, 0.5, 0.75, 1.0)]
    sel_methods = [PAPER, "csls+simstd-index[index]"] + HUB_GRID + [
        QueryShift(PseudoStandardization("index"), k=k, weight=w) for k, w in grid]
    selection = {key: run_pairs(pairs[key], data=label[key], modalities=mods_of[key],
                                methods=sel_methods, seeds=SELECTION_SEEDS, protocols=["mixed"])
                 for key in trained}
    sel_names = selection[trained[0]].methods
    sel_universal = run_pairs(pairs["clip"], data="CLIP", methods=[PAPER] + HUB_GRID, seeds=SELECTION_SEEDS,
                              protocols=["universal"], relevance=relevance["clip"])

    def sel_frac(key: str, name: str) -> np.ndarray:
        return selection[key].values("mixed", name, "R@20", of_ceiling=True)

    # Held-out splits for the default's criteria: reported on 5..9, confirmed on 200..219.
    print("held-out splits ...", flush=True)
    finalists = [PAPER, CANDIDATE, HUBNESS, LIBRARY]
    held = {}
    for name, seeds in (("report", REPORT_SEEDS), ("confirm", CONFIRM_SEEDS)):
        held[name] = {key: run_pairs(pairs[key], data=label[key], modalities=mods_of[key], methods=finalists,
                                     seeds=seeds, protocols=["mixed"]) for key in trained}
        held[name]["universal"] = run_pairs(pairs["clip"], data="CLIP", methods=finalists, seeds=seeds,
                                            protocols=["universal"], relevance=relevance["clip"])

    # ------------------------------------------------------------- figures
    print("plotting ...", flush=True)
    figs = {}
    for key in ("clip", "convirt"):
        mods = dict((m[0], m[2]) for m in MODELS)[key]
        figs[f"hist_{key}"] = plot_score_histograms(pairs[key], img / f"hist_{key}.png", modalities=mods,
                                                    seed=EVAL_SEEDS[0])
        figs[f"share_{key}"] = plot_modality_share(pairs[key], img / f"share_{key}.png", methods=PLOT_METHODS,
                                                   modalities=mods, seed=EVAL_SEEDS[0])
    figs["recall"] = plot_recall_curves([mixed[k] for k, *_ in MODELS], img / "recall_mixed.png",
                                        methods=PLOT_METHODS)
    figs["frontier"] = plot_frontier([mixed[k] for k, *_ in MODELS], img / "frontier.png",
                                     methods=FRONTIER_METHODS)

    # ------------------------------------------------------ derived numbers
    diff = {k: frac[k, CANDIDATE] - frac[k, PAPER] for k in mixed}
    avg = {m: np.mean([frac[k, m].mean() for k in trained]) for m in METHODS}
    gain = avg[CANDIDATE] - avg[PAPER]
    worst = min(diff[k].mean() for k in trained)
    # The claims the prose below makes; fail rather than publish a contradiction.
    assert gain > 0 and worst > -0.01, (gain, worst)
    full_csls = "csls+simstd-index[index]"
    csls_worst_eval = min((frac[k, full_csls] - frac[k, PAPER]).mean() for k in trained)
    csls_worst_sel = min((sel_frac(k, full_csls) - sel_frac(k, PAPER)).mean() for k in trained)
    changed = {lab: affine_changes(plain[k]) for k, lab, *_ in MODELS}
    assert all(not v for d in changed.values() for v in d.values()), changed
    label_free = [m for m in METHODS if not make_method(m).needs_labels]

    def worst_of(m: str) -> str:
        return min(trained, key=lambda k: (frac[k, m] - frac[k, PAPER]).mean())

    def gap_of(m: str) -> float:
        return float((frac[worst_of(m), m] - frac[worst_of(m), PAPER]).mean() * 100)

    meets = [m for m in label_free if m != PAPER and avg[m] > avg[PAPER]
             and min((frac[k, m] - frac[k, PAPER]).mean() for k in trained) >= -0.01]
    assert CANDIDATE in meets, meets
    others_meet = [m for m in meets if m != CANDIDATE]
    raw_zero = [k for k in trained if mixed[k].values("mixed", "raw", "R@20").mean() == 0]
    assert len(raw_zero) == 3, raw_zero
    exc_avg = {m: np.mean([exc[k, m].mean() for k in trained]) for m in METHODS}

    # Hubness: the selection rule, fixed before the held-out splits were run (see the page).
    paper_uni_sel = sel_universal.values("universal", PAPER, "NDCG@10").mean()
    hub_sel = {}
    for name in HUB_GRID:
        hub_sel[name] = {
            "mean": float(np.mean([sel_frac(k, name).mean() for k in trained])),
            "excess": float(np.mean([selection[k].values("mixed", name, "excess").mean() for k in trained])),
            "worst": float(min((sel_frac(k, name) - sel_frac(k, PAPER)).mean() for k in trained)),
            "universal": float(sel_universal.values("universal", name, "NDCG@10").mean() - paper_uni_sel),
        }
        c = hub_sel[name]
        c["ok"] = (c["mean"] >= CRIT_MEAN and c["excess"] >= CRIT_EXCESS and c["worst"] >= 0
                   and c["universal"] >= CRIT_UNIVERSAL)
    eligible = [n for n in HUB_GRID if hub_sel[n]["ok"]]
    chosen = max(eligible, key=lambda n: hub_sel[n]["excess"]) if eligible else None
    assert chosen == HUBNESS, (chosen, hub_sel)  # the registry default is the chosen setting

    def criteria(report: dict, m: str) -> dict:
        fr = {k: report[k].values("mixed", m, "R@20", of_ceiling=True).mean() for k in trained}
        paper = {k: report[k].values("mixed", PAPER, "R@20", of_ceiling=True).mean() for k in trained}
        u = report["universal"]
        return {"mean": float(np.mean(list(fr.values()))),
                "excess": float(np.mean([report[k].values("mixed", m, "excess").mean() for k in trained])),
                "worst": float(min(fr[k] - paper[k] for k in trained)),
                "worst_model": min(trained, key=lambda k: fr[k] - paper[k]),
                "universal": float(u.values("universal", m, "NDCG@10").mean()
                                   - u.values("universal", PAPER, "NDCG@10").mean()),
                "ndcg": float(u.values("universal", m, "NDCG@10").mean())}

    held["main"] = {**{k: mixed[k] for k in trained}, "universal": universal["clip"]}  # the tables' splits
    crit = {(split, m): criteria(held[split], m) for split in held for m in finalists}
    for key in crit:
        c = crit[key]
        c["pass"] = [c["mean"] >= CRIT_MEAN, c["excess"] >= CRIT_EXCESS, c["worst"] >= 0,
                     c["universal"] >= CRIT_UNIVERSAL]
    hub_passes = {split: all(crit[split, HUBNESS]["pass"]) for split in held}
    paper_fails = not any(all(crit[split, PAPER]["pass"]) for split in held)
    better_on_plain = [m for m in METHODS if all(
        plain[k].values(p, m, "R@20").mean() > plain[k].values(p, "raw", "R@20").mean() + 1e-9
        for k in trained for p in plain[k].results)]

    # ----------------------------------------------------------------- page
    out = []
    w = out.append
    w("# Benchmarks: mixed-modality retrieval on real embeddings\n")
    w(f"Generated by `{COMMAND}` (run from the project root; a few minutes on 2 cores). Every number and "
      "figure on this page comes from that command: edit the script, not this file.\n")
    w("## Data\n")
    rows = []
    for key, lab, mods, t in MODELS:
        p = pairs[key]
        ceil = mixed[key].values("mixed", "ceiling", "R@20")
        rows.append([lab, f"features_{key}.npy", f"{mods[0]} / {mods[1]}", p.shape[1], p.shape[2],
                     f"{ceil.mean():.3f}", f"{mixed[key].values('mixed', 'raw', 'R@20').mean():.3f}",
                     "trained" if t else "negative control"])
    w(markdown_table(["model", "file", "modalities [0] / [1]", "pairs", "dim", "ceiling R@20 (mixed)",
                      "raw R@20 (mixed)", "role"], rows, align="lllrrrrl"))
    w("\nThe paired features come from Liang et al., \"Mind the Gap\" (NeurIPS 2022); see the README of the "
      "data folder. Raw cosine finds no gold item in the top 20 for three of the four trained models: every "
      "same-modality item outranks every cross-modal one.\n")

    w("## Protocols and metrics\n")
    w("* **Mixed** (`simstd eval --protocol mixed`): the pairs are split into halves A and B by a seed; the index "
      "holds modality 0 of A and modality 1 of B; the queries are modality 1 of A and modality 0 of B, each "
      "with its partner as the single gold item. Every gold is in the other modality while half the index shares "
      "the query's modality.")
    w("* **One-modality** (`--protocol plain`): the index holds both modalities of every pair; each query "
      "searches only the other modality (`targets=`). A per-modality affine method cannot change a ranking "
      "here.")
    w("* **Ceiling**: raw cosine ranking only the items of the gold's modality, i.e. a perfect merge of the "
      "per-modality rankings. `R@20/ceiling` is a method's Recall@20 divided by the ceiling's, per seed. "
      "Methods that re-rank inside a modality (NNN, QB-Norm, CSLS, GR-CLIP) can exceed 1.")
    w("* Metrics: Recall@k (a hit in the top k), R-Precision and mAP@R (ECCV Caption; with one gold per "
      "query both equal R@1), NDCG@10, and `cross@10`, the share of the other modality in the top 10.")
    w("* **No leakage.** Methods that need a query log (`simstd-log*`, the query bank of NNN/QB-Norm/CSLS) or "
      "gold pairs (`simstd-labeled`, an oracle) are cross-fitted: the queries are split into two folds and each "
      "fold is scored by a method fitted on the other fold's query vectors (and, for the oracle only, their gold "
      "pairs). `[index]` variants use the indexed items as the bank and need no log.")
    w(f"* Seeds: the tables use the {len(EVAL_SEEDS)} A/B splits {EVAL_SEEDS[0]}..{EVAL_SEEDS[-1]}, "
      f"reported as mean ± std over seeds. The hyperparameters of `{CANDIDATE}` and `{HUBNESS}` were chosen on "
      f"splits {SELECTION_SEEDS[0]}..{SELECTION_SEEDS[-1]} only (sections below); `{HUBNESS}` was then reported "
      f"on splits {REPORT_SEEDS[0]}..{REPORT_SEEDS[-1]} and confirmed on {CONFIRM_SEEDS[0]}..{CONFIRM_SEEDS[-1]}, "
      f"and splits {EVAL_SEEDS[0]}..{EVAL_SEEDS[-1]} were run after the choices. Seeds re-split the same items, "
      "so they measure split variance, not new data.")
    w("* Caveat: every gold is in the other modality, so a method that simply prefers the other modality "
      "scores well here. Read `R@20/ceiling` together with `cross@10` and the excess below.")
    w("* **Modality-bias frontier and excess.** Add a constant bonus δ to the paper's score z (`simstd-index`) for "
      "every item of the other modality and sweep δ: from own modality first (cross@10 = 0, nothing found) to "
      "other modality first (cross@10 = 1, the ceiling). The curve of (cross@10, R@20/ceiling) is what modality "
      "bias alone reaches. A method's **excess** is its R@20/ceiling minus the frontier's at the method's own "
      "cross@10 (per split, then averaged): 0 means it only moved the modality mix, > 0 that it ranks better "
      "within the modalities it shows. The sweep is exact (every δ where a query's top 20 or top 10 changes; "
      "`simstd/evaluation/frontier.py`); the paper's method sits on the curve by construction.")
    w("* **Universal** (`--protocol universal`): relevant items exist in both modalities, so preferring one costs "
      "something. Half the pairs (by seed) are indexed with *both* their modalities; the other half are queries "
      "in either modality (a query's own pair is never indexed). An indexed item is relevant when its pair is "
      "topically related to the query's: the same subtopic for generated data; for the CLIP COCO rows, a shared "
      f"*content word* of the human reference captions (a word used by at least {MIN_CAPTIONS} of an image's 5 "
      "captions, not a function word, number, colour, size, people word or -ing/-ed form; "
      "`simstd/evaluation/relevance.py`). Relevance never looks at the embeddings being evaluated. Metrics: "
      "NDCG@10 (binary relevance), and recall of the same-modality and of the cross-modal relevant items in the "
      "top 10 (found / relevant of that kind). ConVIRT, VideoCLIP and CLASP ship no captions or labels, so they "
      "have no universal table: deriving relevance from their own embeddings would grade a method by itself.\n")

    w("## R@20 as a fraction of the ceiling (mixed protocol)\n")
    header = ["method", "uses"] + [label[k] for k, *_ in MODELS] + ["mean of 4 trained", "excess, mean of 4"]
    rows = []
    for m in METHODS:
        rows.append([f"`{m}`", needs(m)] + [pm(frac[k, m]) for k, *_ in MODELS]
                    + [f"{avg[m]:.3f}", f"{exc_avg[m]:+.3f}"])
    w(markdown_table(header, rows, align="ll" + "r" * (len(header) - 2)))
    w(f"\nMean ± std over the {len(EVAL_SEEDS)} splits. Method descriptions: `simstd eval --list-methods`; "
      "papers in the modules of `simstd/methods/`.\n")
    w("Share of the other modality in the top 10 (`cross@10`; the index is half each):\n")
    rows = [[f"`{m}`"] + [f"{cross[k, m].mean():.2f}" for k, *_ in MODELS] for m in METHODS]
    w(markdown_table(["method"] + [label[k] for k, *_ in MODELS], rows))
    w("")

    w("## Above the modality-bias frontier?\n")
    w("Excess of R@20/ceiling over the frontier at the method's own cross@10 (mean ± std over the "
      f"{len(EVAL_SEEDS)} splits; 0 = pure modality bias):\n")
    rows = [[f"`{m}`"] + [pm(exc[k, m]).replace(" ±", " ±") for k, *_ in MODELS] + [f"{exc_avg[m]:+.3f}"]
            for m in METHODS]
    w(markdown_table(["method"] + [label[k] for k, *_ in MODELS] + ["mean of 4 trained"], rows))
    assert abs(exc_avg[PAPER]) < 0.005, exc_avg[PAPER]
    w("\n![Modality-bias frontier](img/frontier.png)\n")
    top_exc = sorted(label_free, key=lambda m: -exc_avg[m])[:4]
    affine = [m for m in label_free if make_method(m).modality_affine and m != PAPER]
    best_affine = max(affine, key=lambda m: exc_avg[m])
    assert all(not make_method(m).modality_affine for m in top_exc), top_exc
    w(f"The paper's method sits on the frontier ({exc_avg[PAPER]:+.3f}). The labeled oracle (`simstd-labeled`, "
      f"{exc_avg['simstd-labeled']:+.3f}) and every label-free modality-affine method (at most "
      f"`{best_affine}`, {exc_avg[best_affine]:+.3f}) stay close to it or below: better per-pair statistics "
      "mostly move the modality mix. The largest label-free excesses: "
      + ", ".join(f"`{m}` ({exc_avg[m]:+.3f})" for m in top_exc)
      + ", all of which reorder items *inside* a modality (mean centring, per-item neighbourhood terms). Excess "
      "is measured at a method's own cross@10: GR-CLIP's sits at cross@10 near 0.1, where the frontier is low, "
      f"so it does more than bias yet still finds little (R@20/ceiling {avg['gr-clip']:.3f}). The random-weight "
      "control has no structure to find; its excesses are noise.\n")

    w("## Universal protocol: relevant items in both modalities\n")
    for key, rep_u in universal.items():
        r0 = rep_u.results["universal"][0].task
        n_rel = np.mean([len(r.per_query["raw"]["NDCG@10"]) for r in rep_u.results["universal"]])
        w(f"### {rep_u.data}\n")
        w(f"Index: {', '.join(f'{n} {m}' for m, n in r0['corpus'].items())}; {int(n_rel)} queries per split "
          f"({r0.get('queries_without_relevant_items', 0)} without any relevant indexed item left out); "
          f"{len(rep_u.seeds)} splits {rep_u.seeds[0]}..{rep_u.seeds[-1]}.\n")
        header, rows = rep_u.table_rows("universal")
        w(markdown_table(["`method`" if h == "method" else h for h in header],
                         [[f"`{r[0]}`"] + r[1:] for r in rows]))
        w("")
    cu = universal["clip"]
    nd = {m: cu.values("universal", m, "NDCG@10").mean() for m in UNIVERSAL_METHODS}
    same = {m: cu.values("universal", m, "same-recall@10").mean() for m in UNIVERSAL_METHODS}
    crs = {m: cu.values("universal", m, "cross-recall@10").mean() for m in UNIVERSAL_METHODS}
    w(f"On CLIP, raw cosine finds only same-modality items (cross-recall {crs['raw']:.3f}); the paper's method "
      f"lifts NDCG@10 from {nd['raw']:.3f} to {nd[PAPER]:.3f}, and `{HUBNESS}` to {nd[HUBNESS]:.3f} "
      f"({nd[HUBNESS] - nd[PAPER]:+.3f} over the paper). It finds more cross-modal relevant items "
      f"({crs[HUBNESS]:.3f} vs {crs[PAPER]:.3f}) and fewer same-modality ones ({same[HUBNESS]:.3f} vs "
      f"{same[PAPER]:.3f}): it shows more of the other modality (cross@10 "
      f"{cu.values('universal', HUBNESS, 'cross@10').mean():.2f} vs {cu.values('universal', PAPER, 'cross@10').mean():.2f}"
      "), and on this protocol that trade is a net gain, not a free one.\n")

    w("## Choosing the default: hubness correction vs the paper (issue 9)\n")
    w("`hubness` (`simstd/methods/hubness.py:HubnessCorrection`) re-scores a query q of modality a against an indexed "
      "item c of modality b as\n")
    w("    score(q, c) = (2 s(q, c) - rho_q^b - rho_c^a) / beta_ab\n")
    w("with `rho_q^b` the mean of q's K best cosines among the items of b, `rho_c^a` the mean of c's K best "
      "cosines among the other indexed items of a (CSLS, Conneau et al. 2018, with the index as bank; close to "
      "NNN, Chowdhury et al. 2024) and `beta_ab` a per-pair scale: `tail` = the mean excess of the (a, b) "
      "cosines over their 99.9% quantile (`q=0.99`: over the 99% quantile), or `pseudo` = the std of the "
      "paper's pseudo-positive cosines (then it equals `csls+simstd-index[index]` exactly). It needs no "
      "labels and no query log. Here it is an evaluation method on score matrices; the exact index "
      "implementation is a `Standardizer` setting (issue 9, item 3).\n")
    w(f"**Criteria, fixed in advance:** mixed R@20/ceiling, mean of the 4 trained models, >= {CRIT_MEAN}; "
      f"excess >= +{CRIT_EXCESS} on that mean, and no trained model below the paper; CLIP universal NDCG@10 >= "
      f"the paper's + {CRIT_UNIVERSAL}. (The other two criteria, confidence tracking failure and `Flat` "
      "exactness at >= 0.95x raw FAISS throughput, concern the index implementation and are measured there.)\n")
    w(f"**Selection rule, fixed before any held-out split was run:** on splits {SELECTION_SEEDS[0]}.."
      f"{SELECTION_SEEDS[-1]}, among the settings that meet all four criteria, take the one with the largest "
      "mean excess (what a method adds beyond modality bias, rather than R@20 itself, which a stronger bias "
      "can buy). Grid: K in {3, 5, 10, 20, 30} x beta in {tail 99.9%, tail 99%, pseudo}:\n")
    rows = []
    for name in HUB_GRID:
        c = hub_sel[name]
        rows.append([f"`{name}`" + (" **chosen**" if name == chosen else ""), f"{c['mean']:.3f}",
                     f"{c['excess']:+.3f}", f"{c['worst'] * 100:+.1f}", f"{c['universal']:+.3f}",
                     "yes" if c["ok"] else "no"])
    w(markdown_table(["setting", "R@20/ceiling, mean of 4", "excess, mean of 4", "worst model vs paper, points",
                      "CLIP universal NDCG@10 vs paper", "meets all"], rows))
    runner_up = [n for n in eligible if n != chosen]
    w(f"\nThe chosen setting, `{chosen}` (K = 10, 99.9% tail scale), is the method's default. Also eligible, with "
      "less excess: " + (", ".join(f"`{n}` ({hub_sel[n]['excess']:+.3f}; R@20/ceiling {hub_sel[n]['mean']:.3f})"
                                   for n in runner_up) or "none")
      + ". Every pseudo-positive scale misses a criterion; so does every K >= 20.\n")
    assert all(not hub_sel[n]["ok"] for n in HUB_GRID if "pseudo" in n or "k=20" in n or "k=30" in n)
    w("**Held-out splits** (reported on 5..9 and confirmed on 200..219, as issue 9 asks, and the 20 splits "
      "100..119 of the tables above; none was looked at during the choice):\n")
    rows = []
    mark = lambda ok: "" if ok else " ✗"  # noqa: E731
    split_sets = (("report", REPORT_SEEDS), ("confirm", CONFIRM_SEEDS), ("main", EVAL_SEEDS))
    for split, seeds in split_sets:
        for m in finalists:
            c = crit[split, m]
            rows.append([f"{seeds[0]}..{seeds[-1]}", f"`{m}`", f"{c['mean']:.3f}{mark(c['pass'][0])}",
                         f"{c['excess']:+.3f}{mark(c['pass'][1])}",
                         "-" if m == PAPER else f"{c['worst'] * 100:+.1f} ({label[c['worst_model']]})"
                         + mark(c["pass"][2]),
                         f"{c['ndcg']:.3f} ({c['universal']:+.3f})" + ("" if m == PAPER else mark(c["pass"][3]))])
    w(markdown_table(["splits", "method", f"R@20/ceiling, mean of 4 (>= {CRIT_MEAN})",
                      f"excess, mean of 4 (>= +{CRIT_EXCESS})", "worst model vs paper, points (>= 0)",
                      f"CLIP universal NDCG@10 (vs paper, >= +{CRIT_UNIVERSAL})"], rows))
    ch, cp = crit["confirm", HUBNESS], crit["confirm", PAPER]
    names_of = {"report": "5..9", "confirm": "200..219", "main": "100..119"}
    missed = [split for split in held if not hub_passes[split]]
    if hub_passes["report"] and hub_passes["confirm"]:
        w(f"\n**Verdict: `{HUBNESS}` meets all four ranking criteria on the splits issue 9 names** (5..9, "
          f"confirmed on 200..219; ✗ marks a miss). On splits {CONFIRM_SEEDS[0]}..{CONFIRM_SEEDS[-1]}: "
          f"R@20/ceiling {ch['mean']:.3f} vs {cp['mean']:.3f} for the paper "
          f"({(ch['mean'] - cp['mean']) * 100:+.1f} points), {ch['excess']:+.3f} above the frontier, the smallest "
          f"per-model gain {ch['worst'] * 100:+.1f} points ({label[ch['worst_model']]}), CLIP universal NDCG@10 "
          f"{ch['universal']:+.3f} over the paper.")
        if missed:
            cm = crit["main", HUBNESS]
            w("On the splits 100..119 of the tables it misses " + ", ".join(
                name for name, ok in zip(("the R@20/ceiling bar", "the excess bar", "the no-loss bar",
                                          "the universal bar"), cm["pass"]) if not ok)
              + f" (R@20/ceiling {cm['mean']:.3f}, excess {cm['excess']:+.3f}, worst model "
              f"{cm['worst'] * 100:+.1f} points, universal {cm['universal']:+.3f}). The three split sets give "
              + ", ".join(f"{crit[sp, HUBNESS]['mean']:.3f}" for sp, _ in split_sets)
              + f": the {CRIT_MEAN} bar sits within their spread (CLASP, 99 pairs, varies by "
              f"{np.std(frac['clasp', HUBNESS], ddof=1):.2f} from split to split), so that margin is thin; the gain "
              "over the paper and above the frontier is not.")
        lib_ok = all(all(crit[sp, LIBRARY]["pass"]) for sp in ("report", "confirm"))
        w("The library's `Standardizer(method=\"hubness\")` (`" + LIBRARY + "`, next section) "
          + ("meets them too: it can be the default if it also meets the two index criteria, with the paper's "
             "method one setting away.\n" if lib_ok else
             "**misses them**: as it stands it should not replace the paper's method as the default.\n"))
    else:
        w(f"\n**Verdict: `{HUBNESS}` misses a criterion** (✗) on " + ", ".join(names_of[m] for m in missed)
          + ", so the paper's method stays the default.\n")
    assert paper_fails

    # The library's implementation, checked against the evaluation method.
    from simstd.evaluation import crossfit_scores, mixed_task

    task = mixed_task(pairs["clip"], mods_of["clip"], seed=EVAL_SEEDS[0])
    via_matrix = crossfit_scores(task, LIBRARY)
    via_search = crossfit_scores(task, LIBRARY + "[search]")
    top = lambda S: np.argsort(-S, axis=1, kind="stable")[:, :10]  # noqa: E731
    same_top = float(np.mean(top(via_matrix) == top(via_search)))
    gap = float(np.abs(via_matrix - via_search).max())
    assert gap < 1e-3, gap
    lib, hub = {sp: crit[sp, LIBRARY] for sp in held}, {sp: crit[sp, HUBNESS] for sp in held}
    w("### The library's `Standardizer(method=\"hubness\")`\n")
    w(f"`{LIBRARY}` runs the library's own fit (`Standardizer(method=\"hubness\")`, default settings; "
      "`docs/default.md`) on the score matrix; `simstd-hubness[search]` runs the same fit through a `Flat` "
      "`MixedIndex` with the terms folded into its shards, i.e. `MixedIndex.search`, what a user's query gets. "
      f"On CLIP split {EVAL_SEEDS[0]} the two agree to {gap:.1e} in score and on {same_top:.2%} of the top-10 "
      "positions (float32 shards). The library differs from the evaluation method in one place, for exactness "
      "with a single search per modality: its query term averages the cosines of the query's K nearest items "
      "*by the corrected similarity*, not by raw cosine. R@20/ceiling, library vs evaluation method: "
      + "; ".join(f"{names_of[sp]} {lib[sp]['mean']:.3f} vs {hub[sp]['mean']:.3f} (excess "
                   f"{lib[sp]['excess']:+.3f} vs {hub[sp]['excess']:+.3f}; universal {lib[sp]['universal']:+.3f} "
                   f"vs {hub[sp]['universal']:+.3f})" for sp, _ in split_sets)
      + ". " + ("They agree within a point on every split set, and the library meets the criteria wherever the "
                "evaluation method does." if all(abs(lib[sp]["mean"] - hub[sp]["mean"]) < 0.01
                                                   and lib[sp]["pass"] == hub[sp]["pass"] for sp in held)
                else "They differ; the table above marks where.") + "\n")

    w(f"## The query shift (`{CANDIDATE}`), an earlier candidate\n")
    w("`Standardizer(query_shift=0.5, shift_k=10)`: after the paper's standardization, subtract half of the mean "
      "of the query's 10 best standardized scores **in each target modality**:\n")
    w("    z'(q, c) = z(q, c) - 1/2 * mean(top-10 z(q, .) among the items of c's modality)\n")
    w("This is the query-side term of CSLS (Conneau et al., ICLR 2018), with CSLS's own constants (K = 10, "
      "weight 1/2) rather than the best cell of the sensitivity grid below. The paper's statistics are global per modality pair; "
      "the shift adds what they cannot see: how strong *this* query's neighbourhood is in each modality. It is "
      "an increasing affine map per (query, target modality), so it never reorders a modality's items and stays "
      "exact on per-modality FAISS shards (each shard's top-k, k >= 10, holds what it needs). It needs no labels, "
      "no query log and no extra fitting; the saved statistics are unchanged.\n")
    rows = []
    for k, *_ in MODELS:
        d = diff[k] * 100
        rows.append([label[k], pm(frac[k, PAPER]), pm(frac[k, CANDIDATE]), f"{d.mean():+.1f} ± {d.std(ddof=1):.1f}",
                     f"{int((d > 0).sum())} / {int((d < 0).sum())}",
                     f"{cross[k, PAPER].mean():.2f} → {cross[k, CANDIDATE].mean():.2f}"])
    w(markdown_table(["model", f"`{PAPER}` (paper)", f"`{CANDIDATE}`", "paired difference, points",
                      "splits better / worse", "cross@10"], rows))
    w(f"\nOn the four trained models R@20/ceiling rises from {avg[PAPER]:.3f} to {avg[CANDIDATE]:.3f} on average "
      f"({gain * 100:+.1f} points); the smallest gain of any trained model is {worst * 100:+.1f} points, so the "
      "criterion \"better on average, no trained model worse by more than a point\" holds. Other label-free "
      "methods that meet it: " + (", ".join(f"`{m}`" for m in others_meet) or "none") + ". Those with a higher "
      "average that lose more than a point on some model (average; worst model, points vs the paper): "
      + ", ".join(f"`{m}` ({avg[m]:.3f}; {label[worst_of(m)]} {gap_of(m):+.1f})"
                  for m in label_free if avg[m] > avg[CANDIDATE] and m not in meets)
      + ". `cross@10` barely moves: the shift does not buy recall by showing more of the other modality overall, "
      "it redistributes per query.\n")
    w("### Sensitivity (selection splits)\n")
    w(f"The candidate was chosen on splits {SELECTION_SEEDS[0]}..{SELECTION_SEEDS[-1]}. Mean R@20/ceiling over the "
      "four trained models, and in brackets the worst per-model difference to the paper (points), for the "
      "neighbourhood size K and the weight w:\n")
    base_sel = {k: sel_frac(k, PAPER) for k in trained}
    cell_worst, cell_worst_model = {}, {}
    rows = []
    for kk in (1, 3, 10, 30):
        row = [f"K = {kk}"]
        for ww in (0.25, 0.5, 0.75, 1.0):
            name = next(n for n in sel_names if n.startswith("qshift") and f"k={kk}," in n and f"w={ww:g}]" in n) \
                if (kk, ww) != (10, 0.5) else "qshift+simstd-index"
            vals = [sel_frac(k, name).mean() for k in trained]
            wd = min((sel_frac(k, name) - base_sel[k]).mean() for k in trained) * 100
            cell_worst[kk, ww] = wd
            cell_worst_model[kk, ww] = min(trained, key=lambda k: (sel_frac(k, name) - base_sel[k]).mean())
            row.append(f"{np.mean(vals):.3f} ({wd:+.1f})")
        rows.append(row)
    w(markdown_table(["", "w = 0.25", "w = 0.5", "w = 0.75", "w = 1"], rows))
    assert all(cell_worst[kk, ww] > 0 for kk in (1, 3, 10) for ww in (0.5, 0.75)), cell_worst
    w(f"\nThe paper's method on these splits: {np.mean([base_sel[k].mean() for k in trained]):.3f}. For "
      "K <= 10 and w in {0.5, 0.75} every trained model gains; a large K with a large w moves towards "
      f"per-query equalisation and loses most on {label[cell_worst_model[30, 1.0]]}, like `per-query`. CSLS's "
      "setting (K = 10, w = 1/2) is inside the safe region but is not its best cell; it was kept, not tuned.\n")
    w("**Overfitting check.** Full CSLS on standardized scores with the index as bank "
      f"(`{full_csls}`) gains more on average ({avg[full_csls]:.3f}) and passed the one-point criterion on the "
      f"selection splits (worst model {csls_worst_sel * 100:+.1f} points) but fails it on the evaluation splits "
      f"(worst model {csls_worst_eval * 100:+.1f} points, ConVIRT). It also reorders items inside a modality, "
      "which per-shard search cannot do exactly without per-item biases in the index.\n")
    w("### Should it have been the default?\n")
    w("The earlier assessment, kept for the record; the universal protocol above now supplies the "
      f"same-modality evaluation it asked for (CLIP NDCG@10 {nd[CANDIDATE]:.3f} vs the paper's {nd[PAPER]:.3f}), "
      f"and `{HUBNESS}` supersedes it on every criterion. For: it beats the paper's method on every trained model on unseen splits, at no cost (no labels, no log, "
      "no refit, same statistics file), and it keeps search exact. Against: (1) the evidence is one protocol in "
      "which every gold is cross-modal, on four small sets (99 to 500 pairs) whose seeds re-split the same items; "
      "(2) by construction the shift lowers the modality in which the query has strong matches, and this protocol "
      "has no same-modality gold, so it cannot see the case where that modality holds the answer; (3) a score "
      "stops being a global z-value (a threshold such as z > 2 means something different per query). "
      "**Recommendation:** ship it as an opt-in setting now (`Standardizer(query_shift=0.5)`), keep the paper's "
      "method as the default, and switch once an evaluation with same-modality relevant items (the paper's "
      "MMQA/WebQA, or MixBench) confirms it. Integrating it into `MixedIndex.search` needs each shard searched to "
      "depth max(k, shift_k).\n")

    w("## One-modality protocols: affine methods change nothing\n")
    w("Every method marked modality-affine (`raw`, `zscore-all`, `per-query`, all `simstd-*`) returns, for every "
      "query, exactly the raw cosine rank of the gold on both one-modality protocols of all five files "
      f"(checked by the script; {len(PLAIN_SEEDS)} fold seeds). The re-scoring methods are not affine and do "
      "change one-modality rankings, mostly for the better (hubness reduction); the ones that raise R@20 over "
      f"raw on every trained model in both directions: {', '.join(f'`{m}`' for m in better_on_plain) or 'none'}. "
      "Recall@20:\n")
    rows = []
    for m in METHODS:
        row = [f"`{m}`"]
        for k, *_ in MODELS:
            row.append(" / ".join(f"{plain[k].values(p, m, 'R@20').mean():.3f}" for p in plain[k].results))
        rows.append(row)
    dirs = {k: " / ".join(plain[k].results) for k, *_ in MODELS}
    w(markdown_table(["method"] + [f"{label[k]} ({dirs[k]})" for k, *_ in MODELS], rows))
    w("")

    w("## Figures\n")
    w("Score distributions per modality pair, raw (top) and standardized (bottom), with the pseudo positives "
      f"the paper's method fits (mixed index, split {EVAL_SEEDS[0]}):\n")
    w("![CLIP score histograms](img/hist_clip.png)\n")
    tt = _duplicate_share(pairs["convirt"])
    w(f"ConVIRT is the hard case: its texts are radiology reports, many nearly identical ({tt:.0%} of the reports "
      "have another report at cosine > 0.99), so text→text pseudo positives pile up near 1:\n")
    w("![ConVIRT score histograms](img/hist_convirt.png)\n")
    w("Share of the other modality among the top k:\n")
    w("![CLIP modality share](img/share_clip.png)\n")
    w("![ConVIRT modality share](img/share_convirt.png)\n")
    w("Recall@k on the mixed protocol, mean over the evaluation splits:\n")
    w("![Recall@k](img/recall_mixed.png)\n")

    w("## What else the numbers say\n")
    better = [k for k in trained if frac[k, "simstd-labeled"].mean() > frac[k, PAPER].mean()]
    gold_gap = {k: _gold_minus_pseudo(pairs[k], dict((m[0], m[2]) for m in MODELS)[k]) for k in trained}
    assert all((gold_gap[k] < 0) == (k in better) for k in trained), (gold_gap, better)
    worse = [k for k in trained if k not in better]
    w("* **Gold-pair statistics** (`simstd-labeled`, an oracle: gold pairs of the other fold; same-modality "
      "pairs, which have no gold, fall back to pseudo pairs) beat the paper on "
      + ", ".join(f"{label[k]} ({frac[k, 'simstd-labeled'].mean():.3f} vs {frac[k, PAPER].mean():.3f})"
                  for k in better)
      + " and lose on " + ", ".join(f"{label[k]} ({frac[k, 'simstd-labeled'].mean():.3f} vs "
                                   f"{frac[k, PAPER].mean():.3f})" for k in worse)
      + ". They are fitted on exactly the pairs this protocol asks for, and move the other modality's share "
      "accordingly (`cross@10` " + ", ".join(f"{label[k]} {cross[k, 'simstd-labeled'].mean():.2f}" for k in trained)
      + "). The mean cosine of gold cross-modal pairs minus that of the cross-modal pseudo positives is "
      + ", ".join(f"{label[k]} {gold_gap[k]:+.3f}" for k in trained)
      + ": where gold partners score below the pseudo positives the oracle lifts the other modality, where they "
      "score above (CLIP; an indexed item's partner is never indexed in this protocol, so its pseudo positive is "
      "always a non-partner) it lowers it.")
    w("* **Query log vs index** (`simstd-log` vs `simstd-index`, top-1): "
      + ", ".join(f"{label[k]} {frac[k, 'simstd-log'].mean():.3f} vs {frac[k, PAPER].mean():.3f}" for k in trained)
      + ". The loss on CLIP is mostly the protocol: a logged query's true partner is indexed, so its cross-modal "
      "top-1 is often the real match (a higher mean than the indexed items', whose partners never are). With "
      "top-10 pseudo positives the two sources agree closely (`simstd-log-top10` "
      + ", ".join(f"{frac[k, 'simstd-log-top10'].mean():.3f}" for k in trained) + " vs `simstd-index-top10` "
      + ", ".join(f"{frac[k, 'simstd-index-top10'].mean():.3f}" for k in trained) + ").")
    w("* **Per-query standardization** (`per-query`, closed form) is strong where score distributions are "
      f"regular (CLIP {frac['clip', 'per-query'].mean():.3f}) and weak on ConVIRT "
      f"({frac['convirt', 'per-query'].mean():.3f}): a Gaussian view of a query's scores cannot see a heavy "
      "tail of duplicate reports, which the pseudo positives measure directly.")
    w("* **GR-CLIP** (mean centring) keeps the top 10 mostly in the query's own modality (`cross@10` "
      + ", ".join(f"{label[k]} {cross[k, 'gr-clip'].mean():.2f}" for k in trained) + "); its R@20/ceiling "
      "ranges from " + f"{min(frac[k, 'gr-clip'].mean() for k in trained):.3f} to "
      f"{max(frac[k, 'gr-clip'].mean() for k in trained):.3f}.")
    best_free = {k: max(label_free, key=lambda m: frac[k, m].mean()) for k in trained}
    w("* **CSLS on raw cosine** (`csls[index]`) has the highest R@20/ceiling of the label-free methods on "
      + ", ".join(label[k] for k in trained if best_free[k] == "csls[index]")
      + " (" + ", ".join(f"{label[k]} {frac[k, 'csls[index]'].mean():.3f}" for k in trained) + ") but loses on "
      "ConVIRT, and it reorders items inside a modality, so it cannot run on per-modality shard search without "
      "per-item biases stored in the index.")
    w("* The **random-weight CLIP** control has a near-chance ceiling; its fractions are noise and every "
      "conclusion above uses the trained models only.\n")
    w("## Full tables (mixed protocol)\n")
    for key, *_ in MODELS:
        w(mixed[key].to_markdown(level=3))
    path = args.out / "benchmarks.md"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    print(f"wrote {path} and {len(figs)} figures in {time.time() - start:.0f} s")


def _gold_minus_pseudo(pairs: np.ndarray, mods: tuple[str, str]) -> float:
    """Mean cosine of gold cross-modal pairs minus the paper's fitted cross-modal mean, over the eval splits."""
    from simstd import Standardizer
    from simstd.evaluation import mixed_task

    out = []
    for seed in EVAL_SEEDS:
        t = mixed_task(pairs, mods, seed=seed)
        std = Standardizer(method="paper", sample=None).fit(t.corpus, t.corpus_modalities)
        q, c = t.queries[t.positives[:, 0]].astype(np.float64), t.corpus[t.positives[:, 1]].astype(np.float64)
        gold = np.einsum("ij,ij->i", q, c)
        qm = t.query_modalities[t.positives[:, 0]]
        for a, b in (mods, mods[::-1]):
            out.append(gold[qm == a].mean() - std.affine(a, b)[0])
    return float(np.mean(out))


def _duplicate_share(pairs: np.ndarray, threshold: float = 0.99) -> float:
    T = pairs[1].astype(np.float64)
    S = T @ T.T
    np.fill_diagonal(S, -1)
    return float((S.max(axis=1) > threshold).mean())


if __name__ == "__main__":
    main()
