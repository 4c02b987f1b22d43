"""Hubness method through a vector database that ranks by raw cosine only.

The engines store no per-item term, so an adapter over-fetches raw hits per
modality until the top by u = s - rho/2 is certified (simstd.engines.base.
certified_candidates). This measures, on the real CLIP mixed split (LanceDB,
250 + 250 items, all 500 queries, k = 20): how many raw hits that takes, and how
far a fixed over-fetch without the certificate lands from MixedIndex's exact
ranking (whose FAISS shards carry the terms as extra dimensions).

Run: python benchmarks/engines_hubness.py [--data ../shared/data/modality-gap-features/features_clip.npy]
"""
from __future__ import annotations

import argparse
import tempfile

import numpy as np
from common import FEATURES  # first: puts this checkout's simstd on sys.path

from simstd import MixedIndex, Standardizer
from simstd.datasets import load_pairs, mixed_split
from simstd.engines.base import gather, merge_topk, plan_search
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
            "m", data=[{"vector": v.tolist(), "modality": m} for v, m in zip(vectors, labels)])
        searcher = LanceDBSearcher(table)
        print(f"CLIP mixed split, {dict(searcher.counts)} items, k={K}, hubness_k={hub.hubness_k}")
        print("| query | target | raw hits fetched (median / mean / max) | of |")
        print("| --- | --- | --- | --- |")
        rows = []
        for qm in ("text", "image"):
            q = split.queries[qm]
            plan = plan_search(searcher, q, qm, K, standardizer=hub)
            Z, S, I, _ = merge_topk(gather(searcher, plan), plan)
            ref = index.search(q, qm, K, standardizer=hub)
            exact = np.mean([set(I[r]) == set(ref.ids[r]) for r in range(len(q))])
            for m, w in plan.fetched.items():
                print(f"| {qm} | {m} | {np.median(w):.0f} / {w.mean():.1f} / {w.max()} | {searcher.counts[m]} |")
            rows.append((qm, exact))
        for qm, exact in rows:
            print(f"certified over-fetch, {qm} queries: top-{K} sets equal to MixedIndex's for {exact:.3f} of queries")
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
