"""Hubness method through a vector database: raw hits fetched per query, before and after storing the terms.

Before ``searcher.store_terms(std)`` the engine ranks by raw cosine only, so
the adapter over-fetches raw hits per modality until the top by
u = s - rho/2 is certified (simstd.engines.base.certified_candidates). After
it, the engine ranks by u on the stored vector [x, -rho/2 per query modality]
(one search of depth max(k, hubness_k) per modality). This measures, on the
real CLIP mixed split (LanceDB, 250 + 250 items, all 500 queries, k = 20): the
hits each path fetches, that both equal MixedIndex's exact ranking (whose
FAISS shards carry the terms as extra dimensions), and how far a fixed
over-fetch without the certificate lands from it.

Run: python benchmarks/engines_hubness.py [--data ../shared/data/modality-gap-features/features_clip.npy]
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
from common import FEATURES  # first: puts this checkout's simstd on sys.path

from simstd import MixedIndex, Standardizer
from simstd.datasets import load_pairs, mixed_split
from simstd.engines.base import merge_topk, plan_search
from simstd.engines.lancedb import LanceDBSearcher

K = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FEATURES / "features_clip.npy"))
    args = parser.parse_args()
    import lancedb

    pairs = load_pairs(args.data)
    pairs = (pairs / np.linalg.norm(pairs, axis=2, keepdims=True)).astype(np.float32)
    split = mixed_split(pairs)
    index = MixedIndex.from_arrays(split.corpus)
    hub = Standardizer(method="hubness", sample=150).fit(index)
    vectors = np.vstack([split.corpus["image"], split.corpus["text"]])
    labels = ["image"] * len(split.corpus["image"]) + ["text"] * len(split.corpus["text"])
    with tempfile.TemporaryDirectory() as folder:
        table = lancedb.connect(folder).create_table(
            "m", data=[{"vector": v.tolist(), "modality": m, "key": i} for i, (v, m) in enumerate(zip(vectors, labels))])
        searcher = LanceDBSearcher(table, id_column="key")
        print(f"CLIP mixed split, {dict(searcher.counts)} items, k={K}, hubness_k={hub.hubness_k}")
        print("| query | target | over-fetch: raw hits fetched (median / mean / max) | terms stored: hits fetched "
              "(median / mean / max) | of |")
        print("| --- | --- | --- | --- | --- |")
        fetched, exact = {}, []
        for route in ("over-fetch", "engine"):
            if route == "engine":
                searcher.store_terms(hub)
            for qm in ("text", "image"):
                q = split.queries[qm]
                res = searcher.search(q, qm, K, standardizer=hub)
                assert res.route == route, res.route
                ref = index.search(q, qm, K, standardizer=hub)
                exact.append((route, qm, np.mean([set(res.ids[r]) == set(ref.ids[r]) for r in range(len(q))])))
                for m, w in res.fetched.items():
                    fetched.setdefault((qm, m), []).append(f"{np.median(w):.0f} / {w.mean():.1f} / {w.max()}")
        for (qm, m), (before, after) in fetched.items():
            print(f"| {qm} | {m} | {before} | {after} | {searcher.counts[m]} |")
        for route, qm, share in exact:
            print(f"{route}, {qm} queries: top-{K} sets equal to MixedIndex's for {share:.3f} of queries")
        for mult in (2, 4, 10):
            for qm in ("text", "image"):
                q = split.queries[qm]
                plan = plan_search(searcher, q, qm, K, standardizer=hub)
                Z, S, I, _ = merge_topk([searcher.search_modality(q, m, mult * plan.depth) for m in plan.targets], plan)
                ref = index.search(q, qm, K, standardizer=hub)
                overlap = np.mean([len(set(I[r]) & set(ref.ids[r])) / K for r in range(len(q))])
                same = np.mean([list(I[r]) == list(ref.ids[r]) for r in range(len(q))])
                print(f"fixed over-fetch {mult * plan.depth} per modality, {qm} queries: top-{K} overlap "
                      f"{overlap:.4f}, identical lists {same:.3f}")


if __name__ == "__main__":
    main()
