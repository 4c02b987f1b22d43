"""The metadata store: one SQLite database beside the FAISS file.

Table ``items`` holds, per global id, its modality label and its payload
(caption, image path or URL, user fields) as JSON text; table ``info`` holds
index-level facts (dimension, factory, model, fingerprint, shard layout).

An index object is a value: a loaded store reads its file read-only (cold
start stays cheap for large stores), the first change copies it into memory
(copy on write), and it reaches disk only through :meth:`MetadataStore.save`,
atomically (SQLite's online backup into a temporary file, then a rename).
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import CorruptFileError, SimstdError
from .fileio import atomic_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    modality TEXT NOT NULL,
    meta TEXT
);
CREATE TABLE IF NOT EXISTS info (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

#: SQLite limits the number of bound parameters per statement.
_CHUNK = 900


class MetadataStore:
    """Per-id modality labels and JSON payloads, in SQLite."""

    def __init__(self, conn: sqlite3.Connection | None = None) -> None:
        self._readonly = conn is not None
        self._conn = conn or sqlite3.connect(":memory:")
        if not self._readonly:
            self._conn.executescript(SCHEMA)

    @property
    def modified(self) -> bool:
        """Whether the store changed since it was loaded (a new store counts as changed)."""
        return not self._readonly

    def max_id(self) -> int | None:
        """The largest id (cheap: the primary key's b-tree), None when empty."""
        return self._conn.execute("SELECT max(id) FROM items").fetchone()[0]

    def _writable(self) -> sqlite3.Connection:
        if self._readonly:
            mem = sqlite3.connect(":memory:")
            self._conn.backup(mem)
            self._conn.close()
            self._conn, self._readonly = mem, False
        return self._conn

    @classmethod
    def load(cls, path: str | Path) -> "MetadataStore":
        """Open the database at ``path`` read-only; it is copied on first change."""
        path = Path(path)
        if not path.exists():
            raise CorruptFileError(
                f"metadata sidecar {path} is missing; it is written beside the index by "
                "`simstd build` / MixedIndex.save: rebuild the index"
            )
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("SELECT id, modality, meta FROM items LIMIT 1").fetchall()
            conn.execute("SELECT key, value FROM info LIMIT 1").fetchall()
        except sqlite3.DatabaseError as exc:
            raise CorruptFileError(
                f"metadata sidecar {path} is corrupt ({exc}); rebuild the index with `simstd build`"
            ) from None
        return cls(conn)

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            disk = sqlite3.connect(tmp)
            try:
                self._conn.backup(disk)
            finally:
                disk.close()

    # ---------------------------------------------------------------- items
    def add(self, ids: np.ndarray, modality: str, metadata: Sequence[dict | None] | None = None) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if metadata is None:
            metas: Iterable[str | None] = [None] * len(ids)
        else:
            if len(metadata) != len(ids):
                raise SimstdError(
                    f"got {len(metadata)} metadata records for {len(ids)} {modality!r} vectors; "
                    "pass exactly one record (JSON object) per vector"
                )
            metas = [None if m is None else json.dumps(m, ensure_ascii=False) for m in metadata]
        conn = self._writable()
        with conn:
            conn.executemany(
                "INSERT INTO items (id, modality, meta) VALUES (?, ?, ?)",
                zip(ids.tolist(), [modality] * len(ids), metas),
            )

    def get(self, ids: Iterable[int]) -> dict[int, dict]:
        """Return ``{id: payload}`` for the given ids (empty dict for no payload)."""
        wanted = sorted({int(i) for i in ids if int(i) >= 0})
        out: dict[int, dict] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for i, meta in self._conn.execute(f"SELECT id, meta FROM items WHERE id IN ({marks})", chunk):
                out[i] = json.loads(meta) if meta else {}
        return out

    def field_values(self, modality: str, key: str, where: tuple[str, object] | None = None) -> set:
        """Distinct values of payload field ``key`` among items of ``modality``
        (optionally only where payload field ``where[0]`` equals ``where[1]``)."""
        sql = "SELECT DISTINCT json_extract(meta, ?) FROM items WHERE modality = ?"
        args: list = [f"$.{key}", modality]
        if where is not None:
            sql += " AND json_extract(meta, ?) = ?"
            args += [f"$.{where[0]}", where[1]]
        return {v for (v,) in self._conn.execute(sql, args) if v is not None}

    def modality_counts(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT modality, count(*) FROM items GROUP BY modality ORDER BY modality")
        return {m: n for m, n in rows}

    def __len__(self) -> int:
        return self._conn.execute("SELECT count(*) FROM items").fetchone()[0]

    # ----------------------------------------------------------------- info
    def set_info(self, key: str, value: object) -> None:
        conn = self._writable()
        with conn:
            conn.execute(
                "INSERT INTO info (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def get_info(self, key: str, default: object = None) -> object:
        row = self._conn.execute("SELECT value FROM info WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])
