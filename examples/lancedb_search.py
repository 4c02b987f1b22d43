"""simstd inside LanceDB: fit on an existing table, search with one standardized ranking.

Run: python examples/lancedb_search.py   (pip install "simstd[lancedb]")
Uses a LanceDB table in a temporary folder and generated CLIP-like embeddings.
"""
import tempfile

import lancedb
import numpy as np

from simstd import Standardizer
from simstd.datasets import mixed_split, synthetic_pairs
from simstd.engines.lancedb import LanceDBSearcher

# A table like yours: a vector column and a modality column (plus anything else).
split = mixed_split(synthetic_pairs(1000, 512, seed=0), ("image", "text"))
rows = [{"vector": v.tolist(), "modality": "image", "file": f"img{i}.jpg"} for i, v in enumerate(split.corpus["image"])]
rows += [{"vector": v.tolist(), "modality": "text", "file": None} for v in split.corpus["text"]]
with tempfile.TemporaryDirectory() as folder:
    table = lancedb.connect(folder).create_table("photos", data=rows)

    # simstd: wrap, fit (pseudo positives mined through LanceDB), search (per-modality top-k merged exactly).
    searcher = LanceDBSearcher(table, modality_column="modality", vector_column="vector")
    std = Standardizer().fit(searcher)
    queries = split.queries["text"]               # captions whose gold images are row ids 0..499
    raw = searcher.search(queries, "text", k=10, raw=True)
    res = searcher.search(queries, "text", k=10, standardizer=std)

    gold = split.gold["text"][:, None]
    print(f"images among raw top-10:          {np.mean(raw.modalities == 'image'):.0%}")
    print(f"images among standardized top-10: {np.mean(res.modalities == 'image'):.0%}")
    print(f"Recall@10 raw {np.mean((raw.ids == gold).any(1)):.3f} -> standardized {np.mean((res.ids == gold).any(1)):.3f}")
    print("first hit:", res.hits(0)[0])
