"""simstd from Python: build a mixed index, fit without labels, search, save.

Run: python examples/python_api.py
Uses generated CLIP-like embeddings, so it needs no model and no network.
"""
import tempfile
from pathlib import Path

import numpy as np

from simstd import MixedIndex, Standardizer
from simstd.datasets import mixed_split, synthetic_pairs

pairs = synthetic_pairs(1000, 512, seed=0)           # (2, N, D): [0] images, [1] captions, row i paired
split = mixed_split(pairs, ("image", "text"))          # corpus: images of half A + captions of half B
index = MixedIndex.from_arrays(split.corpus, factory="Flat")
index.standardizer = Standardizer().fit(index)         # pseudo positives mined from the items themselves

queries = split.queries["text"]                       # captions of half A; gold = their images
raw = index.search(queries, "text", k=10, raw=True)
std = index.search(queries, "text", k=10)
gold = split.gold["text"][:, None]
print(f"images among raw top-10:          {np.mean(raw.modalities == 'image'):.0%}")
print(f"images among standardized top-10: {np.mean(std.modalities == 'image'):.0%}")
print(f"Recall@10 raw {np.mean((raw.ids == gold).any(1)):.3f} -> standardized {np.mean((std.ids == gold).any(1)):.3f}")

with tempfile.TemporaryDirectory() as tmp:
    index.save(Path(tmp) / "db.faiss")
    again = MixedIndex.load(Path(tmp) / "db.faiss")    # the fit is loaded with it
    D, I = again.search(queries[:1], "text", k=5)      # FAISS-shaped (D, I)
    print("top-5 ids of the first query:", I[0].tolist())
