"""Hubness-corrected standardization at scale: fit cost, term error, search speed.

For each size N (synthetic CLIP-like vectors, benchmarks/synth.py, half text
and half image) this measures, in one process:

* **fit cost**: wall and CPU seconds of the per-item terms
  (``simstd.hubness.compute_terms``, the sampled bank) and of the whole
  ``Standardizer(method="hubness").fit``, next to the paper's fit; plus this
  machine's matrix-multiply speed and load average, since the machine is shared;
* **term error**: the fitted (sampled-bank) term against the exact term
  (each item's K best cosines among *all* other items of the modality) for a
  seeded sample of items: mean absolute error in cosine units and relative to
  the exact terms' spread, and their Pearson correlation;
* **search speed**: raw FAISS (one ``IndexFlatIP`` over all N) against
  ``MixedIndex.search`` with the hubness fit (terms folded into the shards),
  batch and single-query, k=10, alternating in one process; the ratio is FAISS
  time / simstd time per repeat, median over repeats (1.0 = as fast);
* **exactness**: with ``--check`` (small N), the hubness top-10 against brute
  force over every item;
* **flat search with the term dimensions** (``--only-search``): the hubness
  search (``MixedIndex.search`` on two Flat shards with the terms folded in,
  one more dimension per query modality, and the corrected score) against
  raw FAISS on the same vectors: one ``IndexFlatIP`` per modality (512 dims)
  searched for the same k each, and one ``IndexFlatIP`` over all N;
  alternating in one process; ratio = raw time / hubness time per repeat,
  median over repeats. The fit is a cheap one (bank 256, 500 pseudo queries):
  search cost does not depend on the terms' values.

Run (bounded: about 2 min at 100k, 15-30 min at 1M on 2 shared cores)::

    python benchmarks/hubness.py --sizes 100k
    python benchmarks/hubness.py --sizes 1m --out benchmarks/results/hubness_1m.json
    python benchmarks/hubness.py --sizes 1m --only-search --repeats 9 --out benchmarks/results/hubness_search.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from common import FEATURES, sgemm_gflops  # first: puts this checkout's simstd on sys.path
from synth import Synth

from simstd import MixedIndex, Standardizer
from simstd.hubness import compute_terms, fit_banks

SIZES = {"100k": 100_000, "1m": 1_000_000}
K = 10


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn):
    t, c = time.perf_counter(), cpu()
    out = fn()
    return out, time.perf_counter() - t, cpu() - c


def build(n: int, chunk: int = 50_000):
    synth = Synth(512, 0)
    parts = {"text": [], "image": []}
    for m, i, size in synth.chunks(n, chunk):
        parts[m].append(synth.chunk(m, i, size))
    arrays = {m: np.vstack(p) for m, p in parts.items()}
    index = MixedIndex.from_arrays(arrays, factory="Flat")
    flat = faiss.IndexFlatIP(512)
    for m in ("text", "image"):
        flat.add(arrays[m])
    return synth, index, flat


def term_error(index: MixedIndex, std: Standardizer, n_items: int, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(index.ntotal, size=min(n_items, index.ntotal), replace=False))
    X = index.reconstruct(ids)
    out = {}
    for a in std.modalities_:
        bank = index.ids(a)
        exact = np.empty(len(ids), np.float64)
        best = np.full((len(ids), K + 1), -np.inf)
        for start in range(0, len(bank), 200_000):  # exact: every other item of a, in blocks
            b = bank[start : start + 200_000]
            D, I = faiss.knn(X, index.reconstruct(b), K + 1, metric=faiss.METRIC_INNER_PRODUCT)
            D = np.where(b[I] == ids[:, None], -np.inf, D)
            best = -np.sort(-np.hstack([best, D]), axis=1)[:, : K + 1]
        exact[:] = best[:, :K].mean(axis=1)
        fitted = std.item_terms(ids, a).astype(np.float64)
        err = fitted - exact
        out[a] = {
            "bank": std.banks_[a].size, "population": std.banks_[a].population, "k_bank": std.banks_[a].k,
            "mean_abs_error": float(np.abs(err).mean()), "mean_error": float(err.mean()),
            "exact_std": float(exact.std()), "relative_mae": float(np.abs(err - err.mean()).mean() / exact.std()),
            "pearson_r": float(np.corrcoef(exact, fitted)[0, 1]),
        }
    return out


def throughput(index: MixedIndex, flat: faiss.Index, std: Standardizer, q: np.ndarray, repeats: int) -> dict:
    index.search(q[:8], "text", K, standardizer=std)  # warm: folds the terms once
    rows = {"batch": [], "single": []}
    single = q[:32]
    for _ in range(repeats):
        t = time.perf_counter(); flat.search(q, K); f = time.perf_counter() - t
        t = time.perf_counter(); index.search(q, "text", K, standardizer=std); s = time.perf_counter() - t
        rows["batch"].append((f, s))
        t = time.perf_counter()
        for row in single:
            flat.search(row[None], K)
        f = time.perf_counter() - t
        t = time.perf_counter()
        for row in single:
            index.search(row[None], "text", K, standardizer=std)
        s = time.perf_counter() - t
        rows["single"].append((f, s))
    out = {}
    for kind, pairs in rows.items():
        nq = len(q) if kind == "batch" else len(single)
        out[kind] = {
            "ratio_median": float(np.median([f / s for f, s in pairs])),
            "faiss_qps": float(nq / np.median([f for f, _ in pairs])),
            "simstd_qps": float(nq / np.median([s for _, s in pairs])),
        }
    return out


def search_ratio(index: MixedIndex, flat: faiss.Index, std: Standardizer, q: np.ndarray, repeats: int) -> dict:
    """Batch and single-query k=10 time of the hubness search (term dimensions) against the raw
    search of the same shards and one FAISS IndexFlatIP over all items, alternating repeat by repeat."""
    shards = {}
    for m in index.modalities:  # raw FAISS per modality: the vectors alone, 512 dims
        shards[m] = faiss.IndexFlatIP(index.dim)
        shards[m].add(index.reconstruct(index.ids(m)))

    def raw_shards(x: np.ndarray) -> None:
        for shard in shards.values():
            shard.search(x, K)

    index.fold_terms(std)
    index.search(q[:8], "text", K, standardizer=std)
    raw_shards(q[:8])
    single = q[:64]
    runs: dict = {"batch": [], "single": []}
    for _ in range(repeats):
        for kind, batches in (("batch", [q]), ("single", [row[None] for row in single])):
            times = []
            for fn in (lambda x: flat.search(x, K), raw_shards,
                       lambda x: index.search(x, "text", K, standardizer=std)):
                t = time.perf_counter()
                for x in batches:
                    fn(x)
                times.append(time.perf_counter() - t)
            runs[kind].append(times + [os.getloadavg()[0]])
    out = {}
    for kind, rows in runs.items():
        a = np.array(rows)
        out[kind] = {
            "hubness_over_raw_faiss_per_modality_median": float(np.median(a[:, 1] / a[:, 2])),
            "hubness_over_one_flat_median": float(np.median(a[:, 0] / a[:, 2])),
            "raw_faiss_per_modality_over_one_flat_median": float(np.median(a[:, 0] / a[:, 1])),
            "seconds_one_flat_per_modality_hubness": a[:, :3].tolist(),
            "load_average": a[:, 3].tolist(),
            "queries": len(q) if kind == "batch" else len(single),
        }
    return out


def run_search(name: str, n: int, repeats: int) -> dict:
    res: dict = {"n": n, "load_before": os.getloadavg()[0], "cores": os.cpu_count()}
    (synth, index, flat), res["build_s"], _ = timed(lambda: build(n))
    std = Standardizer(method="hubness", hubness_bank=256, sample=500).fit(index)
    res["search"] = search_ratio(index, flat, std, synth.queries("text", 256), repeats)
    res["load_after"] = os.getloadavg()[0]
    print(json.dumps({name: res}, indent=1), flush=True)
    return res


def check_exact(index: MixedIndex, std: Standardizer, q: np.ndarray) -> float:
    ids = np.arange(index.ntotal)
    S = q.astype(np.float64) @ index.reconstruct(ids).T.astype(np.float64)
    Z = std.transform(S, "text", index.modality_of(ids)[None, :], ids=ids[None, :])
    expected = np.argsort(-Z, axis=1, kind="stable")[:, :K]
    got = index.search(q, "text", K, standardizer=std).ids
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(got.tolist(), expected.tolist())]))


def factories(features: Path, specs: list[tuple[str, str]], n_queries: int = 500) -> dict:
    """Top-10 overlap of the hubness search on approximate factories with the exact
    (Flat) hubness top-10, on real CLIP embeddings (texts and images of the
    first half of the pairs indexed, captions of the second half as queries)."""
    from simstd.datasets import load_pairs

    pairs = load_pairs(features)
    half = pairs.shape[1] // 2
    corpus = {"image": pairs[0][:half], "text": pairs[1][:half]}
    q = np.ascontiguousarray(pairs[1][half : half + n_queries])
    flat = MixedIndex.from_arrays(corpus)
    std = Standardizer(method="hubness").fit(flat)
    exact = flat.search(q, "text", K, standardizer=std).ids
    out = {}
    for factory, params in specs:
        index = MixedIndex.from_arrays(corpus, factory=factory)
        index.fold_terms(std)  # the same fit (its terms), folded into these shards
        index.set_search_params(params)
        got = index.search(q, "text", K, standardizer=std).ids
        out[f"{factory} {params}"] = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(got.tolist(), exact.tolist())]))
    print(json.dumps({"factories": out}, indent=1), flush=True)
    return out


def run(name: str, n: int, repeats: int, error_items: int, bank: int | None, check: bool) -> dict:
    res: dict = {"n": n, "bank": bank, "hubness_k": K, "gemm_gflops": sgemm_gflops(4096, 512, 8192, 3), "load_before": os.getloadavg()[0]}
    (synth, index, flat), t, _ = timed(lambda: build(n))
    res["build_s"] = t
    cols = sorted(index.modalities)
    banks = fit_banks(index, K, bank)
    _, res["terms_wall_s"], res["terms_cpu_s"] = timed(lambda: compute_terms(index, cols, banks, 0))
    std, res["fit_hubness_wall_s"], res["fit_hubness_cpu_s"] = timed(
        lambda: Standardizer(method="hubness", hubness_bank=bank).fit(index))
    _, res["fit_paper_wall_s"], res["fit_paper_cpu_s"] = timed(lambda: Standardizer(method="paper").fit(index))
    res["term_error"] = term_error(index, std, error_items)
    q = synth.queries("text", 256)
    res["throughput"] = throughput(index, flat, std, q, repeats)
    if check:
        res["exact_top10_overlap"] = check_exact(index, std, q[:64])
    res["load_after"] = os.getloadavg()[0]
    print(json.dumps({name: res}, indent=1), flush=True)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100k", help="comma-separated: 100k, 1m")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--error-items", type=int, default=1000, help="items whose exact term is computed")
    p.add_argument("--bank", type=int, default=Standardizer().hubness_bank, help="hubness_bank (0 = exact)")
    p.add_argument("--check", action="store_true", help="also compare the top-10 with brute force")
    p.add_argument("--factories", action="store_true",
                   help="only: top-10 overlap of approximate factories with Flat on real CLIP embeddings")
    p.add_argument("--only-search", action="store_true",
                   help="only: flat search with the term dimensions against raw search, side by side")
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    if args.factories:
        features = FEATURES / "features_clip.npy"
        report = {"factories": factories(features, [("IVF32,Flat", "nprobe=4"), ("IVF32,Flat", "nprobe=16"),
                                                    ("HNSW32", "efSearch=64"), ("HNSW32", "efSearch=256"),
                                                    ("SQ8", ""), ("IVF32,SQ8", "nprobe=16")])}
    elif args.only_search:
        command = "python benchmarks/hubness.py " + " ".join(argv if argv is not None else sys.argv[1:])
        report = {s: {**run_search(s, SIZES[s], args.repeats), "command": command} for s in args.sizes.split(",")}
    else:
        report = {s: run(s, SIZES[s], args.repeats, args.error_items, args.bank or None, args.check)
                  for s in args.sizes.split(",")}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
