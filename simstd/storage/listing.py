"""``simstd versions`` and ``simstd info``: the kept versions, their counts and their disk cost."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import CorruptFileError
from .lock import store_dir
from .manifest import MANIFEST_NAME, read_manifest
from .history import read_history
from .versions import _folders, current_version


# ------------------------------------------------------------------ listing
@dataclass
class VersionInfo:
    """One kept version, as `simstd versions` lists it."""

    version: str
    created: str | None
    counts: list
    fitted: bool
    size: int  # bytes of its files (shared hard links counted in each version)
    current: bool
    intact: bool  # sizes match the manifest (`simstd check` verifies checksums)
    became_current: str | None  # last time the history records it becoming current


def list_versions(path: str | Path) -> list[VersionInfo]:
    """The kept versions of the index at ``path``, newest first."""
    path = Path(path)
    try:
        current = current_version(path)
    except CorruptFileError:
        current = None
    last = {e.version: e.time for e in read_history(path)}
    out = []
    for name in _folders(path):
        folder = store_dir(path) / name
        try:
            manifest = read_manifest(folder / MANIFEST_NAME)
        except (OSError, CorruptFileError):
            out.append(VersionInfo(name, None, [], False, _du(folder), name == current, False, last.get(name)))
            continue
        intact = manifest.version == name and all(
            (folder / f).is_file() and (folder / f).stat().st_size == e.size for f, e in manifest.files.items())
        out.append(VersionInfo(name, manifest.created, manifest.index.get("counts", []),
                               "standardizer.json" in manifest.files, sum(e.size for e in manifest.files.values()),
                               name == current, intact, last.get(name)))
    return out


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def disk_usage(path: str | Path) -> tuple[int, int]:
    """(bytes of all kept versions, bytes the current version alone needs), each
    file counted once however many versions hard-link it."""
    path = Path(path)
    try:
        current = current_version(path)
    except CorruptFileError:
        current = None
    seen: dict[tuple[int, int], int] = {}
    mine: set[tuple[int, int]] = set()
    for name in _folders(path):
        for p in (store_dir(path) / name).iterdir():
            if not p.is_file():
                continue
            st = p.stat()
            seen[(st.st_dev, st.st_ino)] = st.st_size
            if name == current:
                mine.add((st.st_dev, st.st_ino))
    return sum(seen.values()), sum(seen[k] for k in mine)


