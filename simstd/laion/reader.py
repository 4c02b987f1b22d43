"""Read the folder layout clip-retrieval writes, shard by shard.

``clip-retrieval inference`` (github.com/rom1504/clip-retrieval,
``clip_inference/writer.py``) writes, per output partition ``N`` (zero-padded):

``img_emb/img_emb_{N}.npy``    image embeddings, float16, L2-normalised rows
``text_emb/text_emb_{N}.npy``  caption embeddings, float16, L2-normalised rows
``metadata/metadata_{N}.parquet``  one row per sample: ``image_path``,
                                   ``caption`` and the webdataset fields
                                   (``url``, ``key``, ...)

Row ``i`` of all three files is one sample (an image and its caption).
``clip-retrieval index`` then runs autofaiss once per modality, which writes
``image.index`` and ``text.index`` (plus ``image.json``/``text.json``, the
chosen factory string and search parameters) into an index folder and copies
``metadata/`` there. autofaiss reads the ``.npy`` files with embedding-reader:
every ``**/*.npy`` under the modality folder, sorted by path, empty files
skipped, and adds them with ``index.add``, so row ``r`` of a modality's
concatenation is id ``r`` of its index. :class:`ClipRetrievalFolder` follows
the same order.

Files are opened memory-mapped and read a piece at a time, so memory stays
bounded by one piece whatever the collection's size.
"""
from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from ..errors import SimstdError
from ..validation import NORM_TOLERANCE, RENORM_TOLERANCE

#: Subfolder and file stem of each modality, as clip-retrieval names them.
LAYOUT = {"image": ("img_emb", "img_emb"), "text": ("text_emb", "text_emb")}
#: File name of each modality's autofaiss index in a clip-retrieval index folder.
INDEX_NAMES = {"image": "image.index", "text": "text.index"}
METADATA_DIR = "metadata"
#: Rows read per piece: 64k rows of 768 float16 dims is 96 MiB as float32.
PIECE_ROWS = 65_536


@dataclass(frozen=True)
class ShardFile:
    """One ``.npy`` file of one modality: where its rows sit in the modality's concatenation."""

    modality: str
    path: str
    shard: str | None  # the partition number N from the file name, if it follows the layout
    offset: int  # global row of its first row within the modality
    rows: int
    dim: int
    dtype: str


@dataclass(frozen=True)
class Piece:
    """Rows ``[start, stop)`` of one shard file: the unit of work of a fit task."""

    modality: str
    path: str
    offset: int  # global row (within the modality) of row ``start``
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


class EmbeddingFiles:
    """Per-modality lists of ``.npy`` files, read as one concatenation per modality.

    The general form of a clip-retrieval folder: build one from
    ``{modality: [paths]}`` (rows follow the list order) or use
    :meth:`ClipRetrievalFolder.open`.
    """

    def __init__(self, files: Mapping[str, Sequence[str | Path]]) -> None:
        self.files: dict[str, list[ShardFile]] = {}
        dim = None
        for modality, paths in files.items():
            shards, offset = [], 0
            for path in paths:
                rows, d, dtype = _npy_header(Path(path))
                if rows == 0:  # embedding-reader skips empty files; so do their ids
                    continue
                if dim is None:
                    dim = d
                elif d != dim:
                    raise SimstdError(f"{path} has dimension {d}, other embedding files have {dim}; "
                                      "all files of a collection must come from one model")
                shards.append(ShardFile(modality, str(path), _shard_number(Path(path)), offset, rows, d, dtype))
                offset += rows
            if shards:
                self.files[modality] = shards
        if not self.files:
            raise SimstdError("no embeddings found: every .npy file is empty (or none was given)")
        self.dim = int(dim)

    @property
    def modalities(self) -> list[str]:
        return list(self.files)

    def count(self, modality: str) -> int:
        shards = self.files[modality]
        return shards[-1].offset + shards[-1].rows

    @property
    def counts(self) -> dict[str, int]:
        return {m: self.count(m) for m in self.files}

    def pieces(self, piece_rows: int = PIECE_ROWS) -> list[Piece]:
        """Every modality's rows cut into pieces of at most ``piece_rows`` (file boundaries kept)."""
        out = []
        for shards in self.files.values():
            for f in shards:
                for start in range(0, f.rows, piece_rows):
                    stop = min(start + piece_rows, f.rows)
                    out.append(Piece(f.modality, f.path, f.offset + start, start, stop))
        return out

    def take(self, modality: str, rows: np.ndarray) -> np.ndarray:
        """Vectors of global ``rows`` (sorted ascending) of one modality as unit float32 rows,
        reading only those rows."""
        rows = np.asarray(rows, dtype=np.int64)
        shards = self.files[modality]
        starts = np.array([f.offset for f in shards])
        which = np.searchsorted(starts, rows, side="right") - 1
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for i in np.unique(which):
            sel = which == i
            f = shards[int(i)]
            local = rows[sel] - f.offset
            out[sel] = unit_rows(_open(f.path)[local], f.path, local)[0]
        return out

    def read(self, piece: Piece) -> np.ndarray:
        """One piece as float32 unit rows."""
        block = np.asarray(_open(piece.path)[piece.start : piece.stop], dtype=np.float32)
        return unit_rows(block, piece.path, np.arange(piece.start, piece.stop))[0]


class ClipRetrievalFolder(EmbeddingFiles):
    """A clip-retrieval output folder: ``img_emb/``, ``text_emb/`` and ``metadata/``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SimstdError(f"{self.root} is not a folder; pass the clip-retrieval output folder "
                              "(the one holding img_emb/, text_emb/ and metadata/)")
        files = {}
        for modality, (sub, _stem) in LAYOUT.items():
            folder = self.root / sub
            if folder.is_dir():
                # embedding-reader's order (get_file_list): every **/*.npy, sorted by path.
                paths = sorted(str(p) for p in folder.glob("**/*.npy"))
                if paths:
                    files[modality] = paths
        if not files:
            raise SimstdError(
                f"{self.root} holds no clip-retrieval embeddings: expected img_emb/img_emb_N.npy and/or "
                "text_emb/text_emb_N.npy (the output folder of `clip-retrieval inference`)"
            )
        super().__init__(files)
        self._check_alignment()

    @classmethod
    def open(cls, root: str | Path) -> "ClipRetrievalFolder":
        return cls(root)

    def _check_alignment(self) -> None:
        """Both modalities (and the metadata) must hold the same partitions with the same row counts."""
        layouts = {m: {f.shard: f.rows for f in shards} for m, shards in self.files.items()}
        if len(layouts) == 2:
            (ma, a), (mb, b) = layouts.items()
            if a != b:
                bad = sorted(set(a.items()) ^ set(b.items()), key=str)[0]
                raise SimstdError(
                    f"{self.root}: {ma} and {mb} embeddings are not row-aligned (partition {bad[0]!r} differs: "
                    f"{a.get(bad[0])} vs {b.get(bad[0])} rows); clip-retrieval writes both for every partition"
                )

    # -------------------------------------------------------------- metadata
    def metadata_path(self, shard: ShardFile) -> Path | None:
        if shard.shard is None:
            return None
        path = self.root / METADATA_DIR / f"metadata_{shard.shard}.parquet"
        return path if path.exists() else None

    @property
    def has_metadata(self) -> bool:
        return (self.root / METADATA_DIR).is_dir() and any((self.root / METADATA_DIR).glob("*.parquet"))

    def metadata(self, shard: ShardFile, batch_rows: int = PIECE_ROWS) -> Iterator[list[dict]]:
        """Yield the metadata records of one embedding file in batches (empty dicts without a parquet file)."""
        path = self.metadata_path(shard)
        if path is None:
            if self.has_metadata:
                warnings.warn(f"no metadata/metadata_{shard.shard}.parquet for {shard.path}; "
                              "its items get no payload", UserWarning, stacklevel=2)
            for start in range(0, shard.rows, batch_rows):
                yield [{} for _ in range(min(batch_rows, shard.rows - start))]
            return
        pq = _pyarrow_parquet()
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise SimstdError(f"cannot read {path} as parquet ({exc}); re-run clip-retrieval or remove it") from None
        if pf.metadata.num_rows != shard.rows:
            raise SimstdError(
                f"{path} has {pf.metadata.num_rows} rows but {shard.path} has {shard.rows}; "
                "metadata and embeddings of a partition must be row-aligned"
            )
        for batch in pf.iter_batches(batch_size=batch_rows):
            yield [_jsonable(r) for r in batch.to_pylist()]


def unit_rows(block: np.ndarray, where: str, rows: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """``block`` as float32 unit rows, and how many rows needed renormalising.

    The rule of :func:`simstd.validation.as_embeddings`, so a fit from files and
    an index built from the same files see the same cosines: float16 rounding
    (about 5e-4 in the norm) is renormalised silently, rows further from unit
    norm than :data:`~simstd.validation.NORM_TOLERANCE` with a warning (counted
    in the return value); NaN, inf and zero rows are refused,
    naming the file (``where``) and the row (``rows`` gives the block's row numbers).
    """
    given, block = block, np.ascontiguousarray(block, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
    bad = ~np.isfinite(norms) | (norms == 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        row = row if rows is None else int(rows[row])
        raise SimstdError(f"{where}: row {row} is NaN, inf or a zero vector ({int(bad.sum())} such rows); "
                          "re-embed or drop those rows")
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        warnings.warn(f"{where}: {int(off.sum())} of {len(block)} rows were not L2-normalised; "
                      "simstd normalised them (cosine similarity needs unit vectors)", UserWarning, stacklevel=3)
    renorm = np.abs(norms - 1.0) > RENORM_TOLERANCE
    if renorm.any():
        if block is given:  # never scale a caller's array in place
            block = block.copy()
        # in place, no fancy-indexed copies: float16 files need it on nearly every row
        np.divide(block, norms[:, None], out=block, where=renorm[:, None], casting="same_kind")
    return block, int(off.sum())


_SHARD = re.compile(r"_(\d+)$")


def _shard_number(path: Path) -> str | None:
    m = _SHARD.search(path.stem)
    return m.group(1) if m else None


def _npy_header(path: Path) -> tuple[int, int, str]:
    try:
        arr = _open(str(path))
    except SimstdError:
        raise
    if arr.ndim != 2:
        raise SimstdError(f"{path} holds an array of shape {arr.shape}; embedding files are (rows, dim)")
    if not np.issubdtype(arr.dtype, np.floating):
        raise SimstdError(f"{path} holds {arr.dtype} values; embedding files hold float16 or float32")
    return int(arr.shape[0]), int(arr.shape[1]), str(arr.dtype)


def _open(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy raises several types for a bad file
        raise SimstdError(f"cannot read {path} as a .npy array ({exc}); re-run the embedding or remove it") from None


def _jsonable(record: dict) -> dict:
    """Parquet values as JSON values: NaN to None, bytes and timestamps to strings."""
    out = {}
    for key, value in record.items():
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif not isinstance(value, (str, int, float, bool, type(None), list, dict)):
            value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        out[str(key)] = value
    try:
        json.dumps(out)
    except (TypeError, ValueError):
        out = json.loads(json.dumps(out, default=str))
    return out


def _pyarrow_parquet():  # noqa: ANN202
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SimstdError('reading clip-retrieval metadata needs pyarrow: pip install "simstd[parquet]"') from None
    return pq
