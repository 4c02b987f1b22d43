"""simstd inside Postgres + pgvector: fit on an existing table, rank in SQL.

Run: python examples/pgvector_search.py   (pip install "simstd[pgvector]")
pgserver starts a throwaway Postgres with pgvector in a temporary folder; with
your own database, pass your connection and table instead.
"""
import tempfile

import numpy as np
import pgserver
import psycopg

from simstd import Standardizer
from simstd.datasets import mixed_split, synthetic_pairs
from simstd.engines.pgvector import PgvectorSearcher

split = mixed_split(synthetic_pairs(400, 512, seed=0), ("image", "text"))
with tempfile.TemporaryDirectory() as folder:
    server = pgserver.get_server(folder, cleanup_mode="stop")
    try:
        conn = psycopg.connect(server.get_uri(), autocommit=True)
        # A table like yours: id, modality, embedding vector(512), payload columns.
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("CREATE TABLE photos (id bigint PRIMARY KEY, modality text, embedding vector(512), caption text)")
        vectors = np.vstack([split.corpus["image"], split.corpus["text"]])
        labels = ["image"] * 200 + ["text"] * 200
        with conn.transaction(), conn.cursor() as cur:   # one commit
            cur.executemany("INSERT INTO photos VALUES (%s, %s, %s::vector, %s)",
                            [(i, m, str(v.tolist()), None if m == "image" else f"caption {i}")
                             for i, (v, m) in enumerate(zip(vectors, labels))])

        # simstd: wrap, fit (pseudo positives mined with pgvector's <=>), search (standardized in SQL).
        searcher = PgvectorSearcher(conn, "photos", vector_column="embedding", modality_column="modality")
        std = Standardizer().fit(searcher)
        queries = split.queries["text"][:100]     # captions whose gold images are ids 0..199
        raw = searcher.search(queries, "text", k=10, raw=True)
        res = searcher.search(queries, "text", k=10, standardizer=std)

        gold = split.gold["text"][:100, None]
        print(f"images among raw top-10:          {np.mean(raw.modalities == 'image'):.0%}")
        print(f"images among standardized top-10: {np.mean(res.modalities == 'image'):.0%}")
        print(f"Recall@10 raw {np.mean((raw.ids == gold).any(1)):.3f} -> standardized {np.mean((res.ids == gold).any(1)):.3f}")
        print("first hit:", res.hits(0)[0])
        conn.close()
    finally:
        server.cleanup()
