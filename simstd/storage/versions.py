"""Immutable versions of an index and the one atomic rename that commits one.

One job, the life of a version (read, write, keep; about 570 lines): rollback and
repair are in recovery.py, the history log in history.py, listings in listing.py;
what a commit must know of recovery (what a new index would replace) stays here.

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
3. appends a line (time, version, action) to ``db.faiss.d/history``, the log of
   which version became current when (rollback and repair append too);
4. removes the versions ``keep`` does not cover (the current one and its
   ancestors, ``--keep N`` in all, default 2; ``db.faiss.d/settings.json``),
   and the temporary files of writers that crashed before step 2.

Recovery (docs/reliability.md, "Recovering"): ``rollback`` goes to the parent
of the current version, so rollback after rollback walks further back;
``rollback(to=...)`` picks any kept version; a damaged handle is restored to
the version the history names as current (not the newest folder); ``repair``
restores damaged files of the current version from kept versions that hold
them byte for byte (same checksum), or says exactly what is lost.

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
import json
import os
import secrets
import shlex
import shutil
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from ..errors import ConcurrentWriteError, CorruptFileError, IndexExistsError, SimstdError
from ..fileio import default_mode, dir_mode, fsync_dir, fsync_file
from .lock import DEFAULT_TIMEOUT, store_dir, writer_lock
from .history import _log, read_history
from .manifest import MANIFEST_NAME, NAME_RE, FileEntry, Manifest, file_digest, is_manifest, read_manifest

#: Versions kept (the current one included) unless the index's settings say
#: otherwise: the previous one is what `rollback` and readers that read the
#: manifest just before a commit need, so at least 2.
DEFAULT_KEEP = 2
MIN_KEEP = 2
SETTINGS = "settings.json"
#: What each core file of a version holds, for "what is lost" messages.
ROLES = {"shards.faiss": "the vectors", "items.sqlite": "the items and their payloads",
         "standardizer.json": "the fit", "uncertainty.json": "the uncertainty model",
         MANIFEST_NAME: "the version's copy of the manifest"}
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

    def check_copy(self) -> None:
        """Raise CorruptFileError unless the folder's ``manifest.json`` equals the handle
        (FileNotFoundError if it is missing: the folder may have been removed meanwhile)."""
        copy = self.folder / MANIFEST_NAME
        try:
            same = read_manifest(copy).to_dict() == self.manifest.to_dict()
        except CorruptFileError:
            same = False
        if not same:
            raise CorruptFileError(f"{copy} is damaged (it differs from {self.handle}, the current manifest); "
                                   f"{_fix(self.handle)}")

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
    return f"`simstd check --index {shlex.quote(str(handle))}` names the repair"


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
            version.check_copy()  # cheap (one small file): a damaged copy never serves silently
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


def _seq(name: str) -> int:
    head = name.lstrip(".").split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _new_version_id(parent: Manifest | None, folder: Path) -> str:
    """Sequence numbers grow past every kept folder: after a rollback the next
    version does not reuse the number of the version it undid."""
    seq = _seq(parent.version) if parent is not None else 0
    if folder.is_dir():
        seq = max([seq, *(_seq(p.name) for p in folder.iterdir() if p.is_dir())])
    return f"{seq + 1:06d}-{secrets.token_hex(4)}"


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


def get_keep(path: str | Path) -> int:
    """How many versions the index at ``path`` keeps (``settings.json``; default DEFAULT_KEEP)."""
    try:
        keep = json.loads((store_dir(path) / SETTINGS).read_text(encoding="utf-8")).get("keep")
    except (OSError, ValueError, AttributeError):
        return DEFAULT_KEEP
    return keep if isinstance(keep, int) and not isinstance(keep, bool) and keep >= MIN_KEEP else DEFAULT_KEEP


def check_keep(keep: object) -> int:
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < MIN_KEEP:
        raise SimstdError(f"keep must be a whole number of versions >= {MIN_KEEP} (the current one and the one "
                          f"`simstd rollback` goes back to), got {keep!r}")
    return keep


def set_keep(path: str | Path, keep: int) -> None:
    """Record how many versions to keep; applied at the next commit (call under the lock)."""
    keep = check_keep(keep)
    folder = store_dir(path)
    tmp = folder / f".{SETTINGS}.tmp"
    tmp.write_text(json.dumps({"keep": keep}) + "\n", encoding="utf-8")
    fsync_file(tmp)
    os.replace(tmp, folder / SETTINGS)
    fsync_dir(folder)


def kept_versions(path: str | Path, current: Version) -> list[str]:
    """The versions retention keeps: the current one, its parent, the parent's
    parent... up to ``get_keep(path)`` in all (what `rollback` can walk back to).
    A version undone by a rollback is not among them: the next write drops it."""
    folder = store_dir(path)
    keep, chain, manifest = get_keep(path), [current.version], current.manifest
    while len(chain) < keep and manifest.parent and manifest.parent not in chain:
        chain.append(manifest.parent)
        try:
            manifest = read_manifest(folder / manifest.parent / MANIFEST_NAME)
        except (OSError, CorruptFileError):
            break
    return chain


def clean_leftovers(path: str | Path) -> list[Path]:
    """Remove what crashed writers left: temporary folders and manifests, and
    versions retention does not keep (``kept_versions``). Call under the lock."""
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
    keep = set(kept_versions(path, current)) if isinstance(current, Version) else set()
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
    overwrite: bool = True,
    keep: int | None = None,
    action: str = "commit",
) -> Manifest:
    """Write a new version of the index at ``path`` and make it current, atomically.

    ``write(writer)`` puts the version's named files in place (``writer.path``,
    ``writer.keep``) and returns the ``index`` facts for the manifest. With
    ``expect`` (a version id, or None for "no index yet"), the commit is
    refused if another writer committed since: the caller's change was made
    on a version that is no longer current. ``after(path)`` runs after the
    commit, still under the lock, with the replaced version (a Version, None,
    or "legacy"), e.g. to remove the files of the old single-file layout.
    With ``overwrite=False`` an existing index (even a damaged one) is not
    replaced: IndexExistsError describes it. ``keep`` records how many
    versions to keep from now on; ``action`` is the word the history records.
    """
    path = Path(path)
    if keep is not None:
        check_keep(keep)
    with writer_lock(path, lock_timeout):
        if not overwrite and (path.exists() or path.is_symlink()):
            raise IndexExistsError(f"{path} holds {describe(path)}; saving a new index there would replace it: "
                                   "pass --overwrite (Python: overwrite=True) to replace it (it stays one "
                                   "`simstd rollback` away), or choose another path")
        damaged = None
        try:
            base = _current(path)
        except CorruptFileError:
            if expect is not ANY:
                raise
            base = None  # a new index replaces a damaged one (`simstd build --overwrite` over it)
            damaged = _restorable(path)  # ...and the version that was current stays one rollback away
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
        if keep is not None:
            set_keep(path, keep)
        parent = base.manifest if isinstance(base, Version) else damaged
        folder = store_dir(path)
        vid = _new_version_id(parent, folder)
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
        _log(path, vid, action)
        if after is not None:
            after(path, base)
        clean_leftovers(path)
        return manifest


# ------------------------------------------------------------------ recovery
def version_summary(manifest: Manifest) -> str:
    """``version 000004-... (2026-..., 300 text, 200 image, fitted)``."""
    counts = ", ".join(f"{n} {m}" for m, n in manifest.index.get("counts", [])) or "empty"
    fitted = "fitted" if "standardizer.json" in manifest.files else "not fitted"
    return f"version {manifest.version} ({manifest.created}: {counts}, {fitted})"


def describe(path: str | Path) -> str:
    """What the index at ``path`` holds, as a phrase: "an index: version 000004-... (time: 300 text, fitted)"."""
    path = Path(path)
    try:
        current = _current(path)
    except CorruptFileError:
        return (f"an index whose manifest is damaged (`simstd repair --index {shlex.quote(str(path))}` "
                "restores it)")
    if current == "legacy":
        return "an index in the old single-file layout (it keeps no versions: replacing it cannot be undone)"
    if current is None:
        return "no index"
    return f"an index: {version_summary(current.manifest)}"


def _intact(path: Path, name: str) -> Version | None:
    """The kept version ``name`` if its manifest and every file check out (checksums), else None."""
    try:
        version = Version(path, read_manifest(store_dir(path) / name / MANIFEST_NAME))
        if version.version != name:
            return None
        for file in version.manifest.files:
            version.check_file(file)
    except (OSError, CorruptFileError):
        return None
    return version


def _folders(path: Path) -> list[str]:
    folder = store_dir(path)
    names = [p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")] if folder.is_dir() else []
    return sorted(names, key=lambda n: (_seq(n), n), reverse=True)


def _restorable(path: Path) -> Manifest | None:
    """When the handle is damaged: the version it named, by the history (the
    last version that became current and is intact), else the newest intact folder."""
    return _restore_plan(path)[0]


def _restore_plan(path: Path) -> tuple[Manifest | None, str]:
    history = read_history(path)
    seen: list[str] = []
    for entry in reversed(history):
        if entry.version not in seen:
            seen.append(entry.version)
    for i, name in enumerate(seen):
        version = _intact(path, name)
        if version is not None:
            note = "" if i == 0 else (f"; version {seen[0]}, current after it, is damaged or removed: what it "
                                      f"changed is lost")
            return version.manifest, f"the version that was current{note}"
    for name in _folders(path):
        if name in seen:
            continue
        version = _intact(path, name)
        if version is not None:
            why = "no history was recorded" if not history else "no version in the history is intact"
            return version.manifest, f"the newest intact version ({why})"
    return None, ""


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
