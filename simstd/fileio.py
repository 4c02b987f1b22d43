"""Durable, atomic file writing: write a temporary file beside the target,
fsync it, rename it onto the target, fsync the directory.

``os.replace`` is atomic on POSIX and Windows when source and target are on
the same file system, so an interrupted write never leaves a half-written file
where a good one was (or was expected). The fsyncs make the rename survive a
power cut, not only a killed process: first the file's data, then the
directory entry that names it.

Modes: ``tempfile.mkstemp`` creates files with mode 0600 whatever the umask;
files written here get the mode a plain ``open()`` would give them (0666
minus the umask), or the mode of the file they replace.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


def umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def default_mode() -> int:
    """Mode of a new file under the current umask (0644 with the usual 022)."""
    return 0o666 & ~umask()


def dir_mode(file_mode: int) -> int:
    """Mode of a folder holding files of ``file_mode``: whoever may read them may list it."""
    return (file_mode | ((file_mode & 0o444) >> 2)) & 0o777


def fsync_file(path: str | Path) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a directory's entries (renames, new and removed files) to disk."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows cannot open directories; renames are durable there anyway
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s directory; on success fsync it, give
    it ``mode`` (default: the replaced file's mode, else the umask's) and rename
    it onto ``path``, then fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            mode = default_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)
        fsync_file(tmp_path)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
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


def dump_json(obj: object, what: str = "JSON file") -> str:
    """Indented, human-readable JSON text (one trailing newline); NaN and inf are
    refused (JSON has no such numbers, and a fit holding one is broken)."""
    from .errors import SimstdError

    try:
        return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n"
    except ValueError as exc:
        raise SimstdError(f"refusing to write a {what} that holds NaN or inf ({exc}); refit on valid data") from None


def write_json_atomic(path: str | Path, obj: object) -> None:
    """Write ``obj`` as indented, human-readable JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(dump_json(obj, path.name if isinstance(path, Path) else str(path)), encoding="utf-8")
