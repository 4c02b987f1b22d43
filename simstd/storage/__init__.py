"""Crash-safe, concurrency-safe persistence of an index (docs/reliability.md).

An index saved at ``db.faiss`` is a set of immutable versions in
``db.faiss.d/``; ``db.faiss`` itself is the manifest of the current one,
replaced by one atomic rename per commit. One writer at a time (an OS file
lock); readers take no lock and always open one complete version.

Public surface:

- :func:`current_version` -- the version id an index serves now (cheap; for hot reload);
- :func:`writer_lock` -- hold the writer lock across load, change and save;
- :class:`IndexParts` / :func:`save_parts` / :func:`load_parts` -- what an
  index hands over to be committed (facts, shards, store, named files) and
  gets back; storage never imports the index;
- :func:`open_version` / :class:`Version` -- read a version's named files;
- :func:`verify` -- check every file against the manifest; :func:`check_index`
  also checks their content (``simstd check``);
- :func:`rollback` / :func:`recover` -- make the previous version (or a named
  one) current again (``simstd rollback``); :func:`repair` restores damaged
  files from kept versions (``simstd repair``); :func:`list_versions`,
  :func:`set_keep` (``simstd versions``); :func:`read_history`.

``MixedIndex.save`` / ``MixedIndex.load`` use all of this.
"""
from __future__ import annotations

from .layout import (
    CheckReport,
    IndexParts,
    LoadedParts,
    check_index,
    legacy_paths,
    load_parts,
    save_parts,
    version_files,
)
from .lock import DEFAULT_TIMEOUT, holds_lock, store_dir, writer_lock
from .manifest import FileEntry, Manifest, read_manifest
from .history import read_history
from .listing import list_versions
from .recovery import plan_repair, recover, repair, rollback
from .versions import (
    Version,
    VersionWriter,
    commit,
    current_version,
    open_version,
    read_version,
    set_keep,
    verify,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "CheckReport",
    "FileEntry",
    "Manifest",
    "IndexParts",
    "LoadedParts",
    "Version",
    "VersionWriter",
    "check_index",
    "commit",
    "current_version",
    "holds_lock",
    "legacy_paths",
    "list_versions",
    "plan_repair",
    "read_history",
    "recover",
    "repair",
    "set_keep",
    "open_version",
    "load_parts",
    "read_manifest",
    "read_version",
    "save_parts",
    "rollback",
    "store_dir",
    "verify",
    "version_files",
    "writer_lock",
]
