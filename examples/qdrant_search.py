"""simstd inside Qdrant: fit on an existing collection, search with one standardized ranking.

Run: python examples/qdrant_search.py   (pip install "simstd[qdrant]")
Uses Qdrant's local mode (no server; it filters payloads in Python, so it is
kept small here) and generated CLIP-like embeddings. With
a server, pass QdrantClient(url=...) and your collection's name instead.
"""
import numpy as np
from qdrant_client import QdrantClient, models

from simstd import Standardizer
from simstd.datasets import mixed_split, synthetic_pairs
from simstd.engines.qdrant import QdrantSearcher

# A collection like yours: one vector per point, its modality in the payload.
split = mixed_split(synthetic_pairs(400, 512, seed=0), ("image", "text"))
vectors = np.vstack([split.corpus["image"], split.corpus["text"]])
payloads = [{"modality": "image", "file": f"img{i}.jpg"} for i in range(200)] + \
           [{"modality": "text", "caption": f"caption {i}"} for i in range(200)]
client = QdrantClient(":memory:")
client.create_collection("photos", vectors_config=models.VectorParams(size=512, distance=models.Distance.COSINE))
client.upload_collection("photos", vectors=vectors, payload=payloads, ids=list(range(400)))

# simstd: wrap, fit (pseudo positives mined through Qdrant), store the per-item terms, search
# (Qdrant ranks by the corrected similarity on its named vector: one engine search per modality).
searcher = QdrantSearcher(client, "photos", modality_key="modality")
std = Standardizer(sample=60).fit(searcher)       # the default, hubness-corrected; 60 pseudo queries per modality
searcher.store_terms(std)                         # rewrite after every refit
queries = split.queries["text"][:100]             # captions whose gold images are ids 0..199
raw = searcher.search(queries, "text", k=10, raw=True)
res = searcher.search(queries, "text", k=10, standardizer=std)

gold = split.gold["text"][:100, None]
print(f"images among raw top-10:          {np.mean(raw.modalities == 'image'):.0%}")
print(f"images among standardized top-10: {np.mean(res.modalities == 'image'):.0%}")
print(f"Recall@10 raw {np.mean((raw.ids == gold).any(1)):.3f} -> standardized {np.mean((res.ids == gold).any(1)):.3f}")
print("ranked by:", res.route, "| first hit:", res.hits(0)[0])
