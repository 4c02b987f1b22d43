"""Immutable versions of an index and the one atomic rename that commits one.

Layout, for the index handle ``db.faiss`` a user passes::

    db.faiss                     the current manifest (small JSON, manifest.py)
    db.faiss.d/writer.lock       the writer lock (lock.py)
    db.faiss.d/<version>/        one folder per version, never changed once written:
        manifest.json            the version's manifest (same text as db.faiss when current)
        shards.faiss, items.sqlite, standardizer.json, ...   its named files

A commit (``commit``), under the writer lock:

1. writes the new version's files into ``db.faiss.d/.<version>.tmp/`` (or hard
   links files that did not change from the current version), fsyncs each,
   writes ``manifest.json``, fsyncs the folder and renames it to ``<version>/``;
2. writes the manifest to a temporary file beside ``db.faiss``, fsyncs it and
   renames it onto ``db.faiss``: **the commit point** (then fsyncs the folder);
3. removes versions older than the previous one, and the temporary files of
   writers that crashed before step 2.

A crash before the rename leaves the previous version current (its files were
never touched); after it, the new one. Readers take no lock: they read the
manifest, then open the files it names. The previous version is kept until the
next commit, so a reader that read the manifest just before a swap still finds
its files; a reader that lost a race with two commits in a row reads the
manifest again (``read_version`` retries). An open file stays readable after
its folder is removed (POSIX), so a loaded index never depends on its folder.

Test hook (the crash harness in tests/test_reliability.py):
``SIMSTD_FAULT_AT=N`` (or a step name such as ``commit``) makes the writer
``kill -9`` itself at the N-th file-system step of a commit;
``SIMSTD_FAULT_ACTION=pause:SECONDS`` sleeps there instead.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from ..errors import ConcurrentWriteError, CorruptFileError, SimstdError
from ..fileio import default_mode, dir_mode, fsync_dir, fsync_file
from .lock import DEFAULT_TIMEOUT, store_dir, writer_lock
from .manifest import MANIFEST_NAME, NAME_RE, FileEntry, Manifest, file_digest, is_manifest, read_manifest

#: Versions kept besides the current one: the previous, for readers that read
#: the manifest just before a commit.
KEEP_PREVIOUS = 1
#: How often a reader re-reads the manifest when its version vanished under it.
READ_RETRIES = 8

T = TypeVar("T")
ANY = object()  # commit(expect=ANY): do not compare the current version


# ---------------------------------------------------------------- fault hook
_steps = 0


def _step(name: str) -> None:
    """A file-system step of a commit: where the crash harness kills or pauses."""
    global _steps
    _steps += 1
    target = os.environ.get("SIMSTD_FAULT_AT")
    if not target or target not in (str(_steps), name):
        return
    action = os.environ.get("SIMSTD_FAULT_ACTION", "kill")
    if action.startswith("pause:"):
        time.sleep(float(action.split(":", 1)[1]))
    else:
        os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------- reading
def current_version(path: str | Path) -> str | None:
    """The version id the index at ``path`` serves now, or None if there is no index.

    Cheap: reads only the small manifest (a server polls it to hot-reload).
    An index in the old single-file layout gets a ``legacy:`` id that changes
    whenever its file does.
    """
    path = Path(path)
    try:
        if not is_manifest(path):
            st = path.stat()
            return f"legacy:{st.st_mtime_ns}:{st.st_size}"
        return read_manifest(path).version
    except FileNotFoundError:
        return None


@dataclass
class Version:
    """One committed version of an index, opened for reading."""

    handle: Path
    manifest: Manifest

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def folder(self) -> Path:
        return store_dir(self.handle) / self.manifest.version

    def has(self, name: str) -> bool:
        return name in self.manifest.files

    def file(self, name: str) -> Path:
        """Path of the named file of this version (raises if the version has none)."""
        if name not in self.manifest.files:
            raise CorruptFileError(f"version {self.version} of {self.handle} has no file {name!r}")
        return self.folder / name

    def check_file(self, name: str, checksum: bool = True) -> None:
        """Raise CorruptFileError (one line, naming the file) unless the file has
        its manifest's size (and, with ``checksum``, its BLAKE2b)."""
        entry = self.manifest.files[name]
        path = self.folder / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise
        if size != entry.size:
            raise CorruptFileError(
                f"{path} is corrupt: {size} bytes, the manifest says {entry.size} ({_fix(self.handle)})"
            )
        if checksum and file_digest(path).blake2b != entry.blake2b:
            raise CorruptFileError(f"{path} is corrupt: its BLAKE2b checksum does not match the manifest "
                                   f"({_fix(self.handle)})")


def _fix(handle: Path) -> str:
    return f"run `simstd check --index {handle}`; restore the file from a backup or rebuild with `simstd build`"


def open_version(path: str | Path) -> Version:
    """Read the manifest of the current version of the index at ``path``."""
    path = Path(path)
    if not path.exists():
        raise SimstdError(f"index {path} does not exist; build it with `simstd build`")
    if not is_manifest(path):
        raise CorruptFileError(f"{path} is an index in the old single-file layout; MixedIndex.load reads it")
    return Version(path, read_manifest(path))


def read_version(path: str | Path, reader: Callable[[Version], T]) -> T:
    """Call ``reader`` on the current version; if a file of that version
    vanished meanwhile (two commits in a row removed it), start again with the
    version that is current then. Readers never take the lock."""
    for attempt in range(READ_RETRIES):
        version = open_version(path)
        try:
            return reader(version)
        except FileNotFoundError as exc:
            if current_version(path) == version.version:  # still current: the file is really missing
                missing = exc.filename or str(exc)
                raise CorruptFileError(f"{missing} is missing (version {version.version} of {path}); "
                                       f"{_fix(Path(path))}") from None
            time.sleep(0.01 * attempt)
    raise SimstdError(f"index {path} changed {READ_RETRIES} times while being opened; try again")


# ------------------------------------------------------------------- writing
class VersionWriter:
    """Collects the named files of a version being committed.

    ``path(name)`` is where to write a new file; ``keep(name)`` carries the
    file over from the version this commit replaces (a hard link: no copy,
    and the checksum is not recomputed).
    """

    def __init__(self, folder: Path, base: Version | None, mode: int) -> None:
        self.folder = folder
        self.base = base
        self.mode = mode
        self.names: dict[str, FileEntry | None] = {}  # None: written here, digest pending

    def _claim(self, name: str) -> Path:
        if not isinstance(name, str) or not NAME_RE.match(name) or name == MANIFEST_NAME:
            raise SimstdError(f"invalid file name {name!r} for an index version: use letters, digits, '.', '_', '-'")
        if name in self.names:
            raise SimstdError(f"file {name!r} was added twice to one index version")
        self.names[name] = None
        return self.folder / name

    def path(self, name: str) -> Path:
        """Where to write the named file of the new version."""
        return self._claim(name)

    def can_keep(self, name: str) -> bool:
        """Whether the replaced version has this file, intact (size and checksum:
        a damaged file is rewritten, never carried into a new version)."""
        if self.base is None or not self.base.has(name):
            return False
        try:
            self.base.check_file(name, checksum=True)
        except (OSError, CorruptFileError):
            return False
        return True

    def keep(self, name: str) -> None:
        """Carry the named file over unchanged from the replaced version."""
        if not self.can_keep(name):
            raise SimstdError(f"the replaced version has no file {name!r} to keep")
        target = self._claim(name)
        source = self.base.folder / name
        try:
            os.link(source, target)
        except OSError:  # no hard links on this file system: copy
            shutil.copyfile(source, target)
        self.names[name] = self.base.manifest.files[name]

    def discard(self, name: str) -> None:
        """Forget a claimed file that turned out to have nothing to write."""
        self.names.pop(name, None)
        (self.folder / name).unlink(missing_ok=True)


def _new_version_id(parent: Manifest | None) -> str:
    seq = 1
    if parent is not None:
        head = parent.version.split("-", 1)[0]
        seq = int(head) + 1 if head.isdigit() else 1
    return f"{seq:06d}-{secrets.token_hex(4)}"


def _current(path: Path) -> Version | None | str:
    """The current version, None when there is no index, "legacy" for the old layout."""
    if not path.exists():
        return None
    if not is_manifest(path):
        return "legacy"
    return Version(path, read_manifest(path))


@contextlib.contextmanager
def _quietly() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


def clean_leftovers(path: str | Path) -> list[Path]:
    """Remove what crashed writers left: temporary folders and manifests, and
    versions that are neither current nor the previous one. Call under the lock."""
    path = Path(path)
    folder = store_dir(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        with _quietly():
            tmp.unlink()
            removed.append(tmp)
    if not folder.is_dir():
        return removed
    try:
        current = _current(path)
    except CorruptFileError:  # a damaged manifest: remove nothing, `simstd rollback` may need the versions
        return removed
    keep = set()
    if isinstance(current, Version):
        keep.add(current.version)
        if current.manifest.parent and KEEP_PREVIOUS:
            keep.add(current.manifest.parent)
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or entry.name in keep:
            continue
        _step("cleanup")
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    fsync_dir(folder)
    return removed


def commit(
    path: str | Path,
    write: Callable[[VersionWriter], dict],
    *,
    expect: object = ANY,
    lock_timeout: float | None = DEFAULT_TIMEOUT,
    after: Callable[[Path, object], None] | None = None,
) -> Manifest:
    """Write a new version of the index at ``path`` and make it current, atomically.

    ``write(writer)`` puts the version's named files in place (``writer.path``,
    ``writer.keep``) and returns the ``index`` facts for the manifest. With
    ``expect`` (a version id, or None for "no index yet"), the commit is
    refused if another writer committed since: the caller's change was made
    on a version that is no longer current. ``after(path)`` runs after the
    commit, still under the lock, with the replaced version (a Version, None,
    or "legacy"), e.g. to remove the files of the old single-file layout.
    """
    path = Path(path)
    with writer_lock(path, lock_timeout):
        try:
            base = _current(path)
        except CorruptFileError:
            if expect is not ANY:
                raise
            base = None  # a new index replaces a damaged one (`simstd build` over it)
        base_id = base.version if isinstance(base, Version) else (None if base is None else current_version(path))
        if expect is not ANY and expect != base_id:
            raise ConcurrentWriteError(
                f"{path} changed since it was loaded (loaded version {expect}, now {base_id}): another writer "
                "committed in between. Load it again and redo the change; hold the writer lock across load "
                "and save to avoid this (simstd.storage.writer_lock)"
            )
        clean_leftovers(path)
        _step("begin")
        try:
            mode = path.stat().st_mode & 0o777 if base is not None else default_mode()
        except OSError:
            mode = default_mode()
        parent = base.manifest if isinstance(base, Version) else None
        vid = _new_version_id(parent)
        folder = store_dir(path)
        staging = folder / f".{vid}.tmp"
        staging.mkdir(mode=dir_mode(mode))
        os.chmod(staging, dir_mode(mode))  # mkdir's mode is masked by the umask
        try:
            writer = VersionWriter(staging, base if isinstance(base, Version) else None, mode)
            facts = write(writer)
            files = {}
            for name in sorted(writer.names):
                target = staging / name
                entry = writer.names[name]
                if entry is None:
                    if not target.is_file():
                        raise SimstdError(f"index file {name!r} was claimed but not written")
                    os.chmod(target, mode)
                    fsync_file(target)
                    entry = file_digest(target)
                elif stat.S_IMODE(target.stat().st_mode) != mode:
                    os.chmod(target, mode)  # a kept (hard-linked) file follows the index's mode too
                files[name] = entry
                _step(f"file:{name}")
            manifest = Manifest(vid, files, facts, None if parent is None else parent.version,
                                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            text = manifest.dumps()
            (staging / MANIFEST_NAME).write_text(text, encoding="utf-8")
            os.chmod(staging / MANIFEST_NAME, mode)
            fsync_file(staging / MANIFEST_NAME)
            fsync_dir(staging)
            _step("manifest")
            os.rename(staging, folder / vid)
            fsync_dir(folder)
            _step("version")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        pointer = path.parent / f".{path.name}.{vid}.tmp"
        try:
            pointer.write_text(text, encoding="utf-8")
            os.chmod(pointer, mode)
            fsync_file(pointer)
            _step("pointer")
            os.replace(pointer, path)  # the commit point
        except BaseException:
            with _quietly():
                pointer.unlink()
            shutil.rmtree(folder / vid, ignore_errors=True)
            raise
        fsync_dir(path.parent)
        _step("commit")
        if after is not None:
            after(path, base)
        clean_leftovers(path)
        return manifest


def rollback(path: str | Path, *, lock_timeout: float | None = DEFAULT_TIMEOUT) -> Manifest:
    """Make the previous version current again (undo the last write), after
    checking every file of it against its manifest. Returns its manifest.

    If the manifest ``path`` itself is damaged, make the newest intact version
    current instead (usually the one it named: a repair, not an undo)."""
    path = Path(path)
    if path.exists() and not is_manifest(path) and not store_dir(path).is_dir():
        raise SimstdError(f"{path} is in the old single-file layout, which keeps no versions to go back to")
    with writer_lock(path, lock_timeout, create=False):
        try:
            current = open_version(path)
        except CorruptFileError:  # the manifest itself is damaged: go back to the newest intact version
            return _restore_newest(path)
        parent = current.manifest.parent
        folder = store_dir(path) / str(parent)
        if not parent or not (folder / MANIFEST_NAME).is_file():
            raise SimstdError(f"{path} has no previous version to go back to (version {current.version} "
                              f"{'was the first' if not parent else 'replaced one that was removed'})")
        previous = Version(path, read_manifest(folder / MANIFEST_NAME))
        for name in previous.manifest.files:
            try:
                previous.check_file(name)
            except FileNotFoundError:
                raise CorruptFileError(f"the previous version {parent} lost {folder / name}; cannot go back") from None
        _point_to(path, previous.manifest)
        return previous.manifest


def _point_to(path: Path, manifest: Manifest) -> None:
    """Make ``manifest``'s version current: one atomic rename, as in a commit."""
    pointer = path.parent / f".{path.name}.{manifest.version}.tmp"
    mode = path.stat().st_mode & 0o777
    pointer.write_text(manifest.dumps(), encoding="utf-8")
    os.chmod(pointer, mode)
    fsync_file(pointer)
    os.replace(pointer, path)
    fsync_dir(path.parent)


def _restore_newest(path: Path) -> Manifest:
    folder = store_dir(path)
    candidates = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                        key=lambda p: p.name, reverse=True) if folder.is_dir() else []
    for candidate in candidates:
        try:
            version = Version(path, read_manifest(candidate / MANIFEST_NAME))
            if version.version != candidate.name:
                continue
            for name in version.manifest.files:
                version.check_file(name)
        except (OSError, CorruptFileError):
            continue
        _point_to(path, version.manifest)
        return version.manifest
    raise SimstdError(f"the manifest {path} is damaged and {folder} holds no intact version; rebuild the index "
                      "with `simstd build`")


def verify(path: str | Path) -> tuple[Version | None, list[str]]:
    """Check every file of the current version against its manifest: existence,
    size and BLAKE2b. Returns the version and one line per problem."""
    path = Path(path)
    problems: list[str] = []
    try:
        version = open_version(path)
    except SimstdError as exc:
        return None, [str(exc)]
    if not version.folder.is_dir():
        return version, [f"{version.folder} (the folder of version {version.version}) is missing"]
    for name in sorted(version.manifest.files):
        try:
            version.check_file(name)
        except FileNotFoundError:
            problems.append(f"{version.folder / name} is missing")
        except CorruptFileError as exc:
            problems.append(str(exc).split(" (run `simstd check")[0])
    copy = version.folder / MANIFEST_NAME
    try:
        if read_manifest(copy).to_dict() != version.manifest.to_dict():
            problems.append(f"{copy} differs from {path} (the current manifest)")
    except FileNotFoundError:
        problems.append(f"{copy} is missing")
    except CorruptFileError as exc:
        problems.append(str(exc))
    return version, problems
