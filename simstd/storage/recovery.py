"""Recovery: ``simstd rollback`` (another kept version made current) and ``simstd repair``
(damaged files restored from byte-identical kept copies, or the loss named).

Both check every file of the version they make current and switch with one
atomic rename, as a commit does (docs/reliability.md, the recovery table).
"""
from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CorruptFileError, SimstdError
from ..fileio import default_mode, dir_mode, fsync_dir, fsync_file
from .lock import DEFAULT_TIMEOUT, store_dir, writer_lock
from .manifest import MANIFEST_NAME, Manifest, is_manifest, read_manifest
from .history import _log, read_history
from .versions import ROLES, Version, _folders, _intact, _restore_plan, _seq, version_summary, open_version


@dataclass
class Recovery:
    """What ``recover`` did: ``action`` is "undo" (went to the parent), "to"
    (``to=VERSION``) or "repair" (the handle was damaged); ``replaced`` is the
    version that was current before (None if the handle was unreadable)."""

    manifest: Manifest
    action: str
    replaced: Manifest | None
    note: str = ""


def recover(path: str | Path, *, to: str | None = None, lock_timeout: float | None = DEFAULT_TIMEOUT) -> Recovery:
    """``simstd rollback``: make another kept version current, after checking
    every file of it against its manifest.

    - ``to=None``: the parent of the current version (undo its write). The
      version made current keeps its own parent, so rollback after rollback
      walks further back; ``to`` goes forward again.
    - ``to="000004"`` (a version name or its unique number): that kept version.
    - If the handle ``path`` itself is damaged (and ``to`` is None): restore
      the version that was current by the history (a repair, not an undo).
    """
    path = Path(path)
    if path.exists() and not is_manifest(path) and not store_dir(path).is_dir():
        raise SimstdError(f"{path} is in the old single-file layout, which keeps no versions to go back to")
    with writer_lock(path, lock_timeout, create=False):
        try:
            current = open_version(path)
        except CorruptFileError:
            if to is None:  # the handle itself is damaged: restore the version it named
                manifest, why = _restore_plan(path)
                if manifest is None:
                    raise SimstdError(f"the manifest {path} is damaged and {store_dir(path)} holds no intact "
                                      "version; rebuild the index with `simstd build --overwrite`") from None
                _point_to(path, manifest, "repair")
                return Recovery(manifest, "repair", None, why)
            current = None
        if to is None:
            parent = current.manifest.parent
            if not parent or not (store_dir(path) / parent).is_dir():
                raise SimstdError(f"{path} has no previous version to go back to (version {current.version} "
                                  f"{'was the first' if not parent else 'replaced one that is no longer kept'}; "
                                  f"`simstd versions --index {shlex.quote(str(path))}` lists the kept versions)")
            target, action = parent, "undo"
        else:
            target, action = _resolve(path, to), "to"
        previous = Version(path, read_manifest(store_dir(path) / target / MANIFEST_NAME))
        for name in previous.manifest.files:
            try:
                previous.check_file(name)
            except FileNotFoundError:
                raise CorruptFileError(f"version {target} lost {previous.folder / name}; cannot go back to it") from None
        _point_to(path, previous.manifest, "rollback" if action == "undo" else "rollback --to")
        return Recovery(previous.manifest, action, None if current is None else current.manifest)


def rollback(path: str | Path, *, to: str | None = None, lock_timeout: float | None = DEFAULT_TIMEOUT) -> Manifest:
    """Make the previous version (or ``to``) current again; returns its manifest (see ``recover``)."""
    return recover(path, to=to, lock_timeout=lock_timeout).manifest


def _resolve(path: Path, name: str) -> str:
    """A kept version by its full name or its number (``4``, ``000004``)."""
    names = _folders(path)
    if name in names:
        return name
    hits = [n for n in names if name.isdigit() and _seq(n) == int(name)] or [n for n in names if n.startswith(name)]
    if len(hits) == 1:
        return hits[0]
    listing = ", ".join(names) or "none"
    raise SimstdError(f"{path} keeps no version {name!r} (kept: {listing}); `simstd versions --index "
                      f"{shlex.quote(str(path))}` lists them")


def _point_to(path: Path, manifest: Manifest, action: str) -> None:
    """Make ``manifest``'s version current: one atomic rename, as in a commit."""
    pointer = path.parent / f".{path.name}.{manifest.version}.tmp"
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = default_mode()
    pointer.write_text(manifest.dumps(), encoding="utf-8")
    os.chmod(pointer, mode)
    fsync_file(pointer)
    os.replace(pointer, path)
    fsync_dir(path.parent)
    _log(path, manifest.version, action)


@dataclass
class RepairPlan:
    """What ``repair`` would do (``plan_repair`` only reads)."""

    handle: Path
    version: str | None = None
    restore: Manifest | None = None  # the damaged handle is restored to this version
    restore_note: str = ""
    copies: dict[str, Path] = field(default_factory=dict)  # damaged file -> intact identical copy
    rewrite_copy: bool = False  # the folder's manifest.json is rewritten from the handle
    lost: dict[str, str] = field(default_factory=dict)  # damaged file -> its problem
    fallback: Manifest | None = None  # when something is lost: the version rollback can go to
    fallback_is_parent: bool = False

    @property
    def needed(self) -> bool:
        return bool(self.restore or self.copies or self.rewrite_copy or self.lost)

    def command(self) -> str | None:
        """The one command that fixes it, as `check` prints it (None: rebuild)."""
        index = shlex.quote(str(self.handle))
        if not self.lost and (self.restore or self.copies or self.rewrite_copy):
            return f"simstd repair --index {index}"
        if self.fallback is not None:
            to = "" if self.fallback_is_parent else f" --to {self.fallback.version}"
            return f"simstd rollback --index {index}{to}"
        return None

    def describe(self, done: bool = False) -> str:
        """What the fix does (``done``: did) or what is lost, for `check` and `repair`."""
        verb = "restored" if done else "restores"
        if self.restore is not None:
            return f"{verb} {self.handle} to {version_summary(self.restore)}, {self.restore_note}"
        if not self.lost:
            fixes = [f"{name} from version {src.parent.name} (the same bytes)" for name, src in self.copies.items()]
            if self.rewrite_copy:
                fixes.append(f"{MANIFEST_NAME} from {self.handle}")
            return f"{verb} {' and '.join(fixes)} in version {self.version}"
        lost = "; ".join(f"{name} ({ROLES.get(name, 'a registered part')}): {why}" for name, why in self.lost.items())
        text = (f"version {self.version} has no intact copy of {lost}: no kept version holds the same bytes, "
                "so what the version's write changed in them is lost")
        if self.fallback is not None:
            return text + f"; {self.command()} goes back to {version_summary(self.fallback)}"
        return text + "; no kept version is intact: restore from a backup or rebuild with `simstd build --overwrite`"


def plan_repair(path: str | Path) -> RepairPlan:
    """Find how to repair the index at ``path`` (reads only; checksums every file)."""
    path = Path(path)
    plan = RepairPlan(path)
    try:
        current = open_version(path)
    except CorruptFileError:
        plan.restore, plan.restore_note = _restore_plan(path)
        if plan.restore is None:
            plan.lost[path.name] = "the manifest is damaged and no kept version is intact"
        return plan
    plan.version = current.version
    damaged: dict[str, str] = {}
    for name in sorted(current.manifest.files):
        try:
            current.check_file(name)
        except FileNotFoundError:
            damaged[name] = "missing"
        except CorruptFileError as exc:
            damaged[name] = "checksum or size differs" if "checksum" in str(exc) else str(exc).split(": ", 1)[-1]
    try:
        current.check_copy()
    except (OSError, CorruptFileError):
        plan.rewrite_copy = True
    others = [n for n in _folders(path) if n != current.version]
    for name, why in damaged.items():
        entry = current.manifest.files[name]
        for other in others:
            try:
                manifest = read_manifest(store_dir(path) / other / MANIFEST_NAME)
                if manifest.files.get(name) != entry or manifest.version != other:
                    continue
                Version(path, manifest).check_file(name)
            except (OSError, CorruptFileError):
                continue
            plan.copies[name] = store_dir(path) / other / name
            break
        else:
            plan.lost[name] = why
    if plan.lost:
        parent = current.manifest.parent
        if parent and _intact(path, parent) is not None:
            plan.fallback, plan.fallback_is_parent = _intact(path, parent).manifest, True
        else:
            for entry in reversed(read_history(path)):
                if entry.version != current.version and entry.version in others and _intact(path, entry.version):
                    plan.fallback = _intact(path, entry.version).manifest
                    break
    return plan


def repair(path: str | Path, *, lock_timeout: float | None = DEFAULT_TIMEOUT) -> RepairPlan:
    """Repair the index at ``path`` under the writer lock: restore a damaged
    handle to the version that was current, damaged files of the current
    version from kept versions that hold the same bytes (hard links), and the
    folder's manifest copy from the handle. Refuses, changing nothing, when a
    file has no intact copy: the message says what is lost and which rollback
    goes back to an intact version. Returns what it did."""
    path = Path(path)
    with writer_lock(path, lock_timeout, create=False):
        plan = plan_repair(path)
        if plan.lost:
            raise CorruptFileError(f"cannot repair {path}: {plan.describe()}")
        if plan.restore is not None:
            _point_to(path, plan.restore, "repair")
            return plan
        folder = store_dir(path) / str(plan.version)
        if plan.copies or plan.rewrite_copy:
            folder.mkdir(mode=dir_mode(default_mode()), exist_ok=True)
        for name, source in plan.copies.items():
            tmp = folder / f".{name}.repair.tmp"
            tmp.unlink(missing_ok=True)
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
                fsync_file(tmp)
            os.replace(tmp, folder / name)
        if plan.rewrite_copy:
            tmp = folder / f".{MANIFEST_NAME}.repair.tmp"
            tmp.write_text(open_version(path).manifest.dumps(), encoding="utf-8")
            fsync_file(tmp)
            os.replace(tmp, folder / MANIFEST_NAME)
        fsync_dir(folder)
        return plan


