"""One writer at a time: an OS file lock (``fcntl.flock``) per index.

The lock file ``<index>.d/writer.lock`` is never deleted (deleting a lock file
while someone waits on it would let two writers in). It holds the pid and
command of the current holder, so a waiting writer can say whom it waits for.
The kernel releases a flock when its holder dies, ``kill -9`` included: a
crashed writer never leaves a stale lock.

Readers take no lock: they open the version the pointer names (versions.py).
Within one process the lock is re-entrant, so a command that holds it across
load, change and save can call ``MixedIndex.save``, which takes it again.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from ..errors import LockTimeoutError, SimstdError
from ..fileio import default_mode, dir_mode

#: Default wait for the writer lock, seconds: the one default of MixedIndex.save, every
#: storage write, the CLI's --lock-timeout and the docs (README, docs/reliability.md).
DEFAULT_TIMEOUT = 600.0
_POLL = 0.05

# (lock file, thread) -> [fd, depth]. Re-entrant per thread only: another thread
# opens its own descriptor, and flock makes it wait like another process.
_HELD: dict[tuple[str, int], list] = {}
_HELD_LOCK = threading.RLock()


def store_dir(path: str | Path) -> Path:
    """The folder beside the index handle that holds its versions and lock."""
    path = Path(path)
    return path.with_name(path.name + ".d")


def lock_path(path: str | Path) -> Path:
    return store_dir(path) / "writer.lock"


def _holder(lock_file: Path) -> str:
    try:
        text = lock_file.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return f" (held by {text})" if text else ""


@contextlib.contextmanager
def writer_lock(path: str | Path, timeout: float | None = DEFAULT_TIMEOUT, *, create: bool = True) -> Iterator[None]:
    """Hold the writer lock of the index at ``path``.

    Waits up to ``timeout`` seconds (``None``: forever, ``0``: not at all),
    then raises :class:`~simstd.errors.LockTimeoutError`. With
    ``create=False`` an index that does not exist yet is an error (nothing is
    created beside it).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        raise SimstdError("simstd's writer lock needs fcntl.flock (Linux, macOS); it is not available here") from None
    if timeout is not None and (isinstance(timeout, bool) or not timeout >= 0):
        raise SimstdError(f"lock timeout must be >= 0 seconds (or None to wait forever), got {timeout!r}")
    folder = store_dir(path)
    lock_file = lock_path(path)
    key = (os.path.realpath(lock_file), threading.get_ident())
    with _HELD_LOCK:
        if key in _HELD:  # re-entrant within this process
            _HELD[key][1] += 1
            try:
                yield
            finally:
                _HELD[key][1] -= 1
            return
    if not create and not folder.is_dir() and not Path(path).exists():
        raise SimstdError(f"index {path} does not exist; build it with `simstd build`")
    mode = default_mode()
    folder.mkdir(mode=dir_mode(mode), parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, mode)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"another simstd process is writing {path}{_holder(lock_file)}; gave up after "
                        f"{timeout:g} s: retry when it is done, or wait longer with --lock-timeout SECONDS "
                        "(Python: lock_timeout=...)"
                    ) from None
                time.sleep(_POLL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n".encode(errors="replace"), 0)
        with _HELD_LOCK:
            _HELD[key] = [fd, 1]
        try:
            yield
        finally:
            with _HELD_LOCK:
                del _HELD[key]
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holds_lock(path: str | Path) -> bool:
    """Whether this process holds the writer lock of ``path``."""
    with _HELD_LOCK:
        return (os.path.realpath(lock_path(path)), threading.get_ident()) in _HELD
