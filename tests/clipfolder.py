"""A small clip-retrieval output folder, written with the real layout.

``img_emb/img_emb_{N}.npy`` and ``text_emb/text_emb_{N}.npy`` (float16, as
clip-retrieval's writer stores them), ``metadata/metadata_{N}.parquet``
(``image_path``, ``caption``, ``url``, as its writer and webdataset reader
produce), and optionally autofaiss-style per-modality FAISS indexes
``image.index`` / ``text.index`` written by FAISS itself (``index.add`` over
the files in sorted order, as autofaiss does).
"""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

SIZES = (200, 180, 120)  # rows per partition; zero-padded partition names, as clip-retrieval's writer


def write_clip_folder(root: Path, pairs: np.ndarray, sizes=SIZES, indexes: str | None = None,
                      metric: int = faiss.METRIC_INNER_PRODUCT) -> Path:
    """Write ``pairs`` ((2, N, D): images, captions) as a clip-retrieval folder under ``root``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    width = len(str(len(sizes))) + 1
    start = 0
    for n, size in enumerate(sizes):
        name = str(n).zfill(width)
        rows = slice(start, start + size)
        np.save(root / "img_emb" / f"img_emb_{name}.npy", pairs[0, rows].astype(np.float16))
        np.save(root / "text_emb" / f"text_emb_{name}.npy", pairs[1, rows].astype(np.float16))
        ids = range(start, start + size)
        pq.write_table(pa.table({
            "image_path": [f"{i:09d}.jpg" for i in ids],
            "caption": [f"caption number {i}" for i in ids],
            "url": [f"https://example.org/{i}.jpg" for i in ids],
            "width": [float(i) if i % 7 else float("nan") for i in ids],
        }), root / "metadata" / f"metadata_{name}.parquet")
        start += size
    if indexes is not None:
        total = sum(sizes)
        for modality, part in (("image", 0), ("text", 1)):
            index = faiss.index_factory(pairs.shape[2], indexes, metric)
            x = pairs[part, :total].astype(np.float16).astype(np.float32)
            index.train(x)
            index.add(x)
            faiss.write_index(index, str(root / f"{modality}.index"))
    return root
