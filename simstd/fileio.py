"""Atomic file writing: write to a temporary file beside the target, then rename.

``os.replace`` is atomic on POSIX and Windows when source and target are on
the same file system, so an interrupted write never leaves a half-written file
where a good one was (or was expected).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def read_json(path: str | Path, what: str, fix: str) -> object:
    """Parse a JSON file, raising CorruptFileError that names ``what`` and ``fix``."""
    from .errors import CorruptFileError

    path = Path(path)
    if not path.exists():
        raise CorruptFileError(f"{what} {path} does not exist; {fix}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"cannot read {what} {path} ({exc}); {fix}") from None


def check_format(data: object, source: str, fmt: str, version: int, what: str, fix: str) -> dict:
    """Return ``data`` if it is a dict in format ``fmt`` of ``version``, else raise CorruptFileError."""
    from .errors import CorruptFileError

    if not isinstance(data, dict) or data.get("format") != fmt:
        raise CorruptFileError(f"{source} is not a {what} file; {fix}")
    if data.get("format_version") != version:
        raise CorruptFileError(
            f"{source} has format version {data.get('format_version')!r}, this simstd reads version {version}; {fix}"
        )
    return data


def write_json_atomic(path: str | Path, obj: object) -> None:
    """Write ``obj`` as indented, human-readable JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
