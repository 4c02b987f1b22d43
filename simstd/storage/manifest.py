"""The manifest: a small JSON file naming one version of an index.

It lists the version's named files with their size and BLAKE2b checksum, the
facts a loader validates cheaply (``index``: dimension, counts per modality,
...), the version it replaced (``parent``) and the format version::

    {"format": "simstd.index", "format_version": 2, "version": "000007-9f2c41d0",
     "parent": "000006-1b7e0a55", "created": "2026-11-23T19:02:11Z",
     "files": {"shards.faiss": {"size": 1048612, "blake2b": "..."}, ...},
     "index": {"dim": 512, "factory": "Flat", "counts": [["text", 40], ...], ...}}

The index handle the user passes (``db.faiss``) *is* the current manifest:
replacing it by one ``rename`` is the commit (versions.py).
"""
from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CorruptFileError

FORMAT = "simstd.index"
FORMAT_VERSION = 2
#: Names a version's files may have: plain file names, no folders.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    """Size in bytes and BLAKE2b-256 hex digest of one file of a version."""

    size: int
    blake2b: str


@dataclass
class Manifest:
    version: str
    files: dict[str, FileEntry]
    index: dict = field(default_factory=dict)
    parent: str | None = None
    created: str | None = None

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "parent": self.parent,
            "created": self.created,
            "files": {n: {"size": e.size, "blake2b": e.blake2b} for n, e in sorted(self.files.items())},
            "index": self.index,
        }

    @classmethod
    def from_dict(cls, data: object, source: str) -> "Manifest":
        fix = "restore it from a backup, or rebuild the index with `simstd build`"
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CorruptFileError(f"{source} is not a simstd index manifest; {fix}")
        if data.get("format_version") != FORMAT_VERSION:
            raise CorruptFileError(
                f"{source} has index format version {data.get('format_version')!r}, this simstd reads "
                f"version {FORMAT_VERSION}; upgrade simstd or rebuild the index"
            )
        try:
            version = data["version"]
            files = {}
            for name, entry in data["files"].items():
                if not NAME_RE.match(name) or name == MANIFEST_NAME:
                    raise ValueError(f"bad file name {name!r}")
                size, digest = entry["size"], entry["blake2b"]
                if not isinstance(size, int) or size < 0 or not isinstance(digest, str):
                    raise ValueError(f"bad entry for {name!r}")
                files[name] = FileEntry(size, digest)
            if not isinstance(version, str) or not NAME_RE.match(version) or not isinstance(data["index"], dict):
                raise ValueError("bad version or index section")
            return cls(version, files, data["index"], data.get("parent"), data.get("created"))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise CorruptFileError(f"{source} is a malformed simstd index manifest ({exc}); {fix}") from None

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def file_digest(path: str | Path) -> FileEntry:
    """Size and BLAKE2b-256 of a file, read in 1 MiB blocks."""
    h = hashlib.blake2b(digest_size=32)
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
            size += len(block)
    return FileEntry(size, h.hexdigest())


def is_manifest(path: str | Path) -> bool:
    """Whether ``path`` starts like a JSON manifest (a FAISS file of the old
    single-file layout starts with a binary four-letter code)."""
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    return head.startswith(b"{")


def read_manifest(path: str | Path) -> Manifest:
    """Parse the manifest at ``path``; a damaged one raises CorruptFileError naming it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        data = json.loads(text)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"index manifest {path} is corrupt ({exc}); {repair_hint(path)}") from None
    return Manifest.from_dict(data, str(path))


def repair_hint(path: str | Path) -> str:
    """The command that repairs a damaged manifest: always run on the handle
    (``db.faiss``), also when ``path`` is a version's copy inside ``db.faiss.d/``."""
    path = Path(path)
    copy = path.name == MANIFEST_NAME and path.parent.parent.name.endswith(".d")
    handle = path.parent.parent.with_name(path.parent.parent.name[:-2]) if copy else path
    what = f"rewrites it from {handle}" if copy else "restores the version that was current"
    return f"`simstd repair --index {shlex.quote(str(handle))}` {what}"
