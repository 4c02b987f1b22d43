"""Import a clip-retrieval folder into a :class:`~simstd.MixedIndex`.

Both modalities become shards (``image`` ids first, then ``text``, each in the
files' order), each item's payload is its row of ``metadata_{N}.parquet``
(``image_path``, ``caption``, ``url``, ...). float16 embeddings are
renormalised as they are read (float16 rounding leaves norms off by up to
~6e-4), so scores are true cosines; adopted indexes keep the rows as stored.

With ``adopt``, the per-modality indexes autofaiss built (``image.index``,
``text.index``, as ``clip-retrieval index`` writes them) become the shards as
they are: no vector is added again. Before adopting, simstd checks each
index against the files: dimension, number of vectors, metric (inner
product; L2 only over unit vectors, where it ranks as cosine does) and, on a
sample of rows, that the index holds these vectors in the files' order.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import faiss
import numpy as np

from ..engines.faiss import faiss_message, list_file_problem
from ..errors import SimstdError
from ..index import MixedIndex
from ..validation import NORM_TOLERANCE
from .reader import INDEX_NAMES, PIECE_ROWS, ClipRetrievalFolder

logger = logging.getLogger(__name__)

#: Rows searched to check that an adopted index holds the files' vectors in order.
CHECK_ROWS = 64
#: Share of those rows that must find themselves among their CHECK_K nearest
#: neighbours (compressed indexes blur vectors, so not all of them need to).
CHECK_SHARE = 0.8
CHECK_K = 10


def import_folder(
    source: str | Path | ClipRetrievalFolder,
    *,
    factory: str = "Flat",
    adopt: str | Path | None = None,
    model: str | None = None,
    piece_rows: int = PIECE_ROWS,
) -> MixedIndex:
    """Build a MixedIndex from a clip-retrieval output folder.

    ``adopt`` is the folder holding autofaiss's ``image.index`` and
    ``text.index`` (often the clip-retrieval index folder; may be ``source``
    itself): those indexes become the shards unchanged and ``factory`` is not
    used. Otherwise every modality is added, piece by piece, to a new shard
    built from ``factory`` (an IVF or PQ shard trains on its first piece).
    """
    folder = source if isinstance(source, ClipRetrievalFolder) else ClipRetrievalFolder(source)
    if adopt is not None:
        return _adopt(folder, Path(adopt), model)
    index = MixedIndex(folder.dim, factory, model)
    for modality in folder.modalities:
        for shard in folder.files[modality]:
            records = _records(folder, shard, piece_rows)
            for _f, _start, vectors in _rows_of(folder, shard, piece_rows):
                index.add(vectors, modality, [next(records) for _ in range(len(vectors))])
        logger.info("imported %d %s items", folder.count(modality), modality)
    return index


def _rows_of(folder: ClipRetrievalFolder, shard, piece_rows: int) -> Iterator[tuple[object, int, np.ndarray]]:  # noqa: ANN001
    from .reader import Piece

    for start in range(0, shard.rows, piece_rows):
        stop = min(start + piece_rows, shard.rows)
        yield shard, start, folder.read(Piece(shard.modality, shard.path, shard.offset + start, start, stop))


def _records(folder: ClipRetrievalFolder, shard, piece_rows: int) -> Iterator[dict]:  # noqa: ANN001
    for batch in folder.metadata(shard, piece_rows):
        yield from batch


def _all_records(folder: ClipRetrievalFolder, modality: str) -> Iterator[dict]:
    for shard in folder.files[modality]:
        yield from _records(folder, shard, PIECE_ROWS)


def _adopt(folder: ClipRetrievalFolder, where: Path, model: str | None) -> MixedIndex:
    if not where.is_dir():
        raise SimstdError(f"--adopt-indexes {where} is not a folder; pass the folder holding autofaiss's "
                          "image.index and text.index (the clip-retrieval index folder)")
    shards = {}
    for modality in folder.modalities:
        path = where / INDEX_NAMES[modality]
        if not path.exists():
            raise SimstdError(f"{path} does not exist: the folder has {modality} embeddings but no {INDEX_NAMES[modality]} "
                              "to adopt; build it with autofaiss (clip-retrieval index) or import without adopting")
        try:
            shard = faiss.read_index(str(path))
        except RuntimeError as exc:
            lists = list_file_problem(exc)
            if lists:
                raise SimstdError(f"cannot adopt {path}: {lists}; put that file back at that path, or rebuild "
                                  "the index with autofaiss") from None
            raise SimstdError(f"cannot read {path} as a FAISS index ({faiss_message(exc)}); "
                              "rebuild it with autofaiss") from None
        lists = list_file_problem(None, shard)
        if lists:
            raise SimstdError(f"cannot adopt {path}: {lists}; put the whole file back, or rebuild the index "
                              "with autofaiss")
        _check_adoptable(folder, modality, shard, path)
        shards[modality] = shard
    keys = {_factory_of(s) for s in shards.values()}
    factory = keys.pop() if len(keys) == 1 else " | ".join(f"{m}:{_factory_of(s)}" for m, s in shards.items())
    index = MixedIndex(folder.dim, "Flat", model)
    index.factory = factory  # what the adopted shards are (new modalities would need a factory of their own)
    for modality, shard in shards.items():
        index.adopt(modality, shard, _all_records(folder, modality))
        logger.info("adopted %s (%d %s vectors, %s)", where / INDEX_NAMES[modality], shard.ntotal, modality, factory)
    return index


def _check_adoptable(folder: ClipRetrievalFolder, modality: str, shard: faiss.Index, path: Path) -> None:
    """Dimension, count, metric and row order of an autofaiss index against the files."""
    n = folder.count(modality)
    if shard.d != folder.dim:
        raise SimstdError(f"{path} has dimension {shard.d} but the {modality} embeddings have {folder.dim}: "
                          "it was built from other embeddings; rebuild it or import without adopting")
    if shard.ntotal != n:
        raise SimstdError(f"{path} holds {shard.ntotal} vectors but the {modality} files hold {n}: it was built "
                          "from another set of files; rebuild it with autofaiss over these files")
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(n, size=min(CHECK_ROWS, n), replace=False))
    raw = _raw_rows(folder, modality, rows)
    norms = np.linalg.norm(raw, axis=1)
    if shard.metric_type == faiss.METRIC_L2:
        if np.abs(norms - 1).max() > NORM_TOLERANCE:
            raise SimstdError(f"{path} is an L2 index over vectors that are not L2-normalised (norms "
                              f"{norms.min():.3f}..{norms.max():.3f}): its ranking is not by cosine. Rebuild it with "
                              "metric_type='ip' over normalised embeddings, or import without adopting")
    elif shard.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise SimstdError(f"{path} uses FAISS metric {shard.metric_type}; simstd needs inner product "
                          "(autofaiss metric_type='ip') or L2 over unit vectors")
    # The index must hold the files' rows in the files' order (autofaiss: sorted paths, index.add).
    _, I = shard.search(np.ascontiguousarray(raw, dtype=np.float32), min(CHECK_K, n))
    found = float((I == rows[:, None]).any(axis=1).mean())
    if found < CHECK_SHARE:
        raise SimstdError(
            f"{path} does not hold the {modality} files' vectors in their order: only {found:.0%} of "
            f"{len(rows)} sampled rows find themselves among their {CHECK_K} nearest neighbours. autofaiss adds "
            "the files sorted by path; rebuild the index over this folder, or import without adopting"
        )


def _raw_rows(folder: ClipRetrievalFolder, modality: str, rows: np.ndarray) -> np.ndarray:
    """Rows as stored (not renormalised), for the checks."""
    from .reader import _open

    out = []
    for r in rows:
        f = next(s for s in folder.files[modality] if s.offset <= r < s.offset + s.rows)
        out.append(np.asarray(_open(f.path)[r - f.offset], dtype=np.float32))
    return np.stack(out)


def _factory_of(shard: faiss.Index) -> str:
    try:
        from faiss.contrib.factory_tools import reverse_index_factory

        return str(reverse_index_factory(shard))
    except Exception:  # not every index type has a factory string
        return type(faiss.downcast_index(shard)).__name__
