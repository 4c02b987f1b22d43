"""The files of an index version, and how they are committed and read back.

Named files of a version (versions.py writes and checksums them):

``shards.faiss``       the FAISS shards, one ``IndexIDMap`` per modality, back to back;
``items.sqlite``       modality and JSON payload per id (store.py);
and any other named file the index hands over (:class:`IndexParts`): the
fitted standardizer (``standardizer.json``), its per-item terms, the
uncertainty model, search parameters, bridges. Storage writes, checksums and
reads them back as files; what they mean is the index's business
(``simstd.index.persistence``), so this module never imports the index.

The manifest's ``index`` section holds the facts a loader checks cheaply:
dimension, factory, model, fingerprint and the count of every shard.

A commit that does not change the vectors (``fit``) hard-links
``shards.faiss`` and ``items.sqlite`` from the version it replaces.

Old single-file layout (``db.faiss`` = FAISS shards, ``db.sqlite``,
``db.standardizer.json``, ``db.uncertainty.json``): still loaded; the first
write converts it, in the same atomic rename (``db.faiss`` becomes the
manifest), then removes the old sidecars.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, TypeVar

import faiss
import numpy as np

from ..engines.faiss import list_file_problem
from ..errors import CorruptFileError, SimstdError
from ..store import MetadataStore
from .lock import DEFAULT_TIMEOUT, store_dir
from .manifest import is_manifest, repair_hint
from .versions import ANY, Version, VersionWriter, commit, current_version, read_version

SHARDS = "shards.faiss"
ITEMS = "items.sqlite"
STANDARDIZER = "standardizer.json"
UNCERTAINTY = "uncertainty.json"
CORE_FILES = (SHARDS, ITEMS)
#: Files up to this size are checksummed on every load (BLAKE2b hashed about
#: 300 MiB/s on a busy 2-core machine: at most ~0.05 s each); larger ones only
#: by ``simstd check`` or ``MixedIndex.load(path, verify=True)``; their sizes
#: are always compared and their vectors spot-checked (SPOT_CHECK_ROWS).
VERIFY_LIMIT = 16 << 20
#: Stored vectors per shard whose norm a load checks when the shards file is
#: too large to checksum: damaged bytes make norms of 75 or NaN; with 200 of
#: 200,000 rows damaged, 4096 sampled rows find one 98% of the time, for ~5 ms.
SPOT_CHECK_ROWS = 4096
LEGACY_FORMAT_VERSION = 1

#: A named file's writer: writes the file at the path and returns True, or
#: returns False when there is nothing to store (the version then has no such file).
Writer = Callable[[Path], bool]
T = TypeVar("T")


# ------------------------------------------------------------- the parts record
@dataclass
class IndexParts:
    """What storage commits of an index; the index side builds it (``simstd.index.persistence``).

    ``facts`` go into the manifest's ``index`` section (``dim``, ``factory``,
    ``model``, ``fingerprint``, ``counts`` as ``[[modality, n], ...]`` in
    shard order, ``ntotal``, and any other small facts). ``shards_key``: the
    facts that fix the shards' bytes; a commit over a version with the same
    ones hard-links its shards file instead of writing it. ``files``: every
    other named file (standardizer, per-item terms, ...) with its writer.
    ``origin``: ``(real path, version)`` the index was loaded from, for the
    lost-update check (None: a new index).
    """

    facts: dict
    shards: list[faiss.Index]
    store: MetadataStore
    files: dict[str, Writer] = field(default_factory=dict)
    shards_key: dict = field(default_factory=dict)
    origin: tuple[str, str | None] | None = None


@dataclass
class LoadedParts:
    """A version read back: its facts, shards (by modality), store, and the paths of its other named files."""

    handle: Path
    version: str | None
    facts: dict
    shards: dict[str, faiss.IndexIDMap]
    store: MetadataStore
    files: dict[str, Path]

    @property
    def origin(self) -> tuple[str, str | None]:
        return os.path.realpath(self.handle), self.version


def check_path(path: str | Path) -> Path:
    """Index paths must be valid UTF-8: FAISS and SQLite open files by UTF-8 name."""
    path = Path(path)
    try:
        str(path.absolute()).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise SimstdError(f"index path {shown} is not valid UTF-8 (FAISS and SQLite need UTF-8 file names); "
                          "use a name (and folder) in UTF-8") from None
    return path


# ------------------------------------------------------------------- saving
def save_parts(parts: IndexParts, path: str | Path, *, lock_timeout: float | None = DEFAULT_TIMEOUT,
               overwrite: bool = False, keep: int | None = None) -> tuple[str, tuple[str, str]]:
    """Commit ``parts`` as a new version of the index at ``path``; returns the version
    id and the new origin ``(real path, version)``.

    If the parts were loaded from ``path`` (``origin``), the commit is refused
    when another writer committed since (no lost update); otherwise it
    replaces an index already there only with ``overwrite`` (``simstd build
    --overwrite``), and the replaced one stays one rollback away. ``keep``:
    versions to keep from now on.
    """
    path = check_path(path)
    here = os.path.realpath(path)
    same = parts.origin is not None and parts.origin[0] == here
    expect = parts.origin[1] if same else ANY

    def write(w: VersionWriter) -> dict:
        base = w.base.manifest.index if (same and w.base is not None) else None
        unchanged = base is not None and base.get("fingerprint") == parts.facts.get("fingerprint")
        shards_unchanged = unchanged and all(base.get(k) == v for k, v in parts.shards_key.items())
        if shards_unchanged and w.can_keep(SHARDS):
            w.keep(SHARDS)
        else:
            writer = faiss.FileIOWriter(str(w.path(SHARDS)))
            for shard in parts.shards:
                faiss.write_index(shard, writer)
            del writer  # closes the file
        if unchanged and not parts.store.modified and w.can_keep(ITEMS):
            w.keep(ITEMS)
        else:
            parts.store.save(w.path(ITEMS))
        for name, save in parts.files.items():
            if name in CORE_FILES:
                raise SimstdError(f"{name!r} is a core file of an index version; choose another name")
            if not save(w.path(name)):
                w.discard(name)
        return dict(parts.facts)

    manifest = commit(path, write, expect=expect, lock_timeout=lock_timeout, after=_drop_legacy_sidecars,
                      overwrite=same or overwrite, keep=keep, action="save" if same else "new index")
    return manifest.version, (here, manifest.version)


def legacy_paths(path: str | Path) -> dict[str, Path]:
    """Files of the old single-file layout saved at ``path``."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix == ".faiss" else path
    return {
        "faiss": path,
        "sqlite": stem.with_name(stem.name + ".sqlite"),
        "standardizer": stem.with_name(stem.name + ".standardizer.json"),
        "uncertainty": stem.with_name(stem.name + ".uncertainty.json"),
    }


def _drop_legacy_sidecars(path: Path, base: object) -> None:
    if base == "legacy":  # this commit converted an old single-file index
        for key in ("sqlite", "standardizer", "uncertainty"):
            legacy_paths(path)[key].unlink(missing_ok=True)


# ------------------------------------------------------------------ loading
def load_parts(path: str | Path, build: Callable[[LoadedParts], T], *, skip: tuple[str, ...] = (),
               verify: bool | None = None) -> T:
    """Open the current version of the index at ``path`` (or an old single-file
    index) and return ``build(parts)``. ``build`` runs inside the reader's retry:
    if two commits remove the version while it is read, it starts again on the
    new one. Named files in ``skip`` are neither verified nor offered.

    ``verify``: None checksums files up to VERIFY_LIMIT bytes, True all, False none.
    """
    path = check_path(path)
    if not path.exists():
        raise SimstdError(f"index file {path} does not exist; build it with `simstd build`")
    for _ in range(3):
        if is_manifest(path):
            return read_version(path, lambda v: _load_version(v, build, skip, verify))
        if store_dir(path).is_dir() and not legacy_paths(path)["sqlite"].exists():
            raise CorruptFileError(f"index manifest {path} is corrupt (not JSON, and no old single-file index "
                                   f"beside it); {repair_hint(path)}")
        try:
            return build(_load_legacy(path, skip))
        except (CorruptFileError, FileNotFoundError):
            if is_manifest(path):  # a writer converted it while we read: read the new layout
                continue
            raise
    raise SimstdError(f"index {path} changed while being opened; try again")


def _facts(version: Version) -> dict:
    facts = version.manifest.index
    dim, factory, counts = facts.get("dim"), facts.get("factory"), facts.get("counts")
    ok = (isinstance(dim, int) and dim > 0 and isinstance(factory, str) and isinstance(counts, list)
          and all(isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and isinstance(c[1], int)
                  and c[1] >= 0 for c in counts))
    if not ok or not isinstance(facts.get("fingerprint"), str):
        raise CorruptFileError(f"{version.handle} has a malformed 'index' section; rebuild the index with "
                               "`simstd build`")
    terms, folded = facts.get("term_modalities") or [], facts.get("folded_terms")
    term_width = facts.get("term_width", len(terms))
    if not (isinstance(terms, list) and all(isinstance(t, str) for t in terms)) or not isinstance(folded, (str, type(None))) \
            or not (isinstance(term_width, int) and term_width >= len(terms)):
        raise CorruptFileError(f"{version.handle} has malformed hubness term facts; refit with `simstd fit`")
    return dict(facts)


def _load_version(version: Version, build: Callable[[LoadedParts], T], skip: tuple[str, ...],
                  verify: bool | None) -> T:
    try:
        return build(_load_version_files(version, skip, verify))
    except CorruptFileError:
        if not version.folder.is_dir():  # removed by two commits while we read: read_version retries
            raise FileNotFoundError(str(version.folder)) from None
        raise


def _load_version_files(version: Version, skip: tuple[str, ...], verify: bool | None) -> LoadedParts:
    facts = _facts(version)
    dim, counts = facts["dim"], facts["counts"]
    for name in (SHARDS, ITEMS):
        if not version.has(name):
            raise CorruptFileError(f"{version.handle}: version {version.version} lists no {name}; rebuild the index")
    for name, entry in version.manifest.files.items():
        if name in skip:
            continue
        checksum = verify if verify is not None else entry.size <= VERIFY_LIMIT
        version.check_file(name, checksum=bool(checksum))
    shards_path = version.file(SHARDS)
    # the stored term dimensions (with any padding); versions written before padding have one per modality
    width = dim + int(facts.get("term_width", len(facts.get("term_modalities") or [])))
    shards = _read_shards(shards_path, counts, width, f"it does not match {version.handle}")
    if not (verify if verify is not None else version.manifest.files[SHARDS].size <= VERIFY_LIMIT):
        _spot_check_vectors(shards, dim, shards_path, version.handle)
    store = MetadataStore.load(version.file(ITEMS))
    ntotal = sum(n for _, n in counts)
    top = store.max_id()
    if (ntotal == 0 and top is not None) or (ntotal > 0 and top != ntotal - 1):
        raise CorruptFileError(f"{version.file(ITEMS)} does not match {shards_path} (its ids end at {top}, "
                               f"the shards hold {ntotal} items); {_rebuild(version.handle)}")
    files = {name: version.file(name) for name in version.manifest.files
             if name not in CORE_FILES and name not in skip}
    return LoadedParts(version.handle, version.version, facts, shards, store, files)


def _rebuild(handle: Path) -> str:
    return f"run `simstd check --index {handle}`; restore from a backup or rebuild with `simstd build`"


def _spot_check_vectors(shards: dict, dim: int, path: Path, handle: Path) -> None:
    """Norms of a random sample of stored vectors must be about 1 (they are stored
    unit-normalised; lossy codes stay within a few percent)."""
    rng = np.random.default_rng()
    for modality, shard in shards.items():
        n = shard.ntotal
        if n == 0:
            continue
        rows = rng.choice(n, size=min(n, SPOT_CHECK_ROWS), replace=False).astype(np.int64)
        try:
            vectors = shard.index.reconstruct_batch(rows)
        except RuntimeError:  # e.g. IVF without a direct map: nothing cheap to check
            continue
        norms = np.linalg.norm(vectors[:, :dim].astype(np.float64), axis=1)
        bad = ~((norms > 0.5) & (norms < 2.0))  # NaN fails too
        if bad.any():
            raise CorruptFileError(
                f"{path} is corrupt: stored {modality!r} vectors have norms such as {norms[bad][0]:.4g} "
                f"(they are stored with norm 1); {_rebuild(handle)}"
            )


_LISTS_FIX = ("put that file back at that path (it is not part of the index's versions: back it up with them), "
              "or rebuild the index with `simstd build`")


def _read_shards(path: Path, counts: list, dim: int, mismatch: str) -> dict[str, faiss.IndexIDMap]:
    """The shards, each checked to store ``dim``-dimensional vectors (hubness term dimensions included)."""
    shards = {}
    try:
        reader = faiss.FileIOReader(str(path))
        for modality, count in counts:
            shard = faiss.read_index(reader)
            if not isinstance(shard, faiss.IndexIDMap) or shard.d != dim or shard.ntotal != count:
                raise RuntimeError(f"shard {modality!r} {mismatch}")
            lists = list_file_problem(None, shard)
            if lists:
                raise CorruptFileError(f"the {modality!r} shard in {path} is unusable: {lists}; {_LISTS_FIX}")
            shards[modality] = shard
        del reader
    except RuntimeError as exc:
        if not path.exists():
            raise FileNotFoundError(str(path)) from None
        lists = list_file_problem(exc)
        if lists:  # the shards file is fine; a file it points to is not
            raise CorruptFileError(f"the shards in {path} cannot be read: {lists}; {_LISTS_FIX}") from None
        reason = str(exc).strip().splitlines()[-1][:200]
        raise CorruptFileError(
            f"index file {path} is corrupt ({reason}); restore it from a backup or rebuild it with `simstd build`"
        ) from None
    return shards


def _load_legacy(path: Path, skip: tuple[str, ...]) -> LoadedParts:
    """The old single-file layout: FAISS shards at ``path`` plus sidecars."""
    paths = legacy_paths(path)
    store = MetadataStore.load(paths["sqlite"])
    fmt, layout, dim = store.get_info("format_version"), store.get_info("shards"), store.get_info("dim")
    if fmt != LEGACY_FORMAT_VERSION or not isinstance(layout, list) or not isinstance(dim, int):
        raise CorruptFileError(
            f"{paths['sqlite']} is not a simstd index sidecar of format version {LEGACY_FORMAT_VERSION}; "
            "rebuild the index with `simstd build`"
        )
    shards = _read_shards(paths["faiss"], layout, dim, f"does not match the sidecar {paths['sqlite']}")
    facts = {"dim": dim, "factory": store.get_info("factory"), "model": store.get_info("model"),
             "fingerprint": store.get_info("fingerprint"), "counts": layout}
    files = {name: paths[key] for name, key in ((STANDARDIZER, "standardizer"), (UNCERTAINTY, "uncertainty"))
             if paths[key].exists() and name not in skip}
    return LoadedParts(path, current_version(path), facts, shards, store, files)


def version_files(path: str | Path) -> dict[str, Path]:
    """``{name: path}`` of the files of the current version (for sizes, backups)."""
    path = Path(path)
    if path.exists() and not is_manifest(path):
        return {k: p for k, p in legacy_paths(path).items() if p.exists()}
    return read_version(path, lambda v: {n: v.file(n) for n in v.manifest.files})


# ------------------------------------------------------------------- checks
@dataclass
class CheckReport:
    """What :func:`check_index` found: one line per problem (empty = intact)."""

    path: str
    version: str | None
    files: dict[str, int]  # name -> size of every verified file
    problems: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


class Checked(Protocol):
    """What a content check reads of an opened index."""

    counts: dict[str, int]
    fit_is_stale: bool


class Opener(Protocol):
    """The index class a check opens with (:class:`~simstd.MixedIndex`)."""

    def load(self, path: str | Path, *, verify: bool | None = None) -> Checked: ...


def check_index(path: str | Path, cls: Opener) -> CheckReport:
    """Verify the index at ``path`` completely: every file of the current version
    against the manifest (exists, size, BLAKE2b), then every file's content
    (FAISS shards deserialize with the manifest's counts and dimension, SQLite
    passes ``PRAGMA integrity_check`` and holds one row per item, fitted models
    parse with finite statistics). ``cls`` is the index class that loads it
    (:class:`~simstd.MixedIndex`). Never modifies anything."""
    from .versions import verify

    path = Path(path)
    report = CheckReport(str(path), None, {}, [], [])
    if not path.exists():
        report.problems.append(f"{path} does not exist")
        return report
    if not is_manifest(path):
        report.version = current_version(path)
        report.notes.append(f"{path} is in the old single-file layout (no checksums); the next write "
                            "(simstd add or fit) converts it")
        files = {k: p for k, p in legacy_paths(path).items() if p.exists()}
        report.files = {p.name: p.stat().st_size for p in files.values()}
        _check_content(cls, path, report, files.get("sqlite"))
        return report
    version, problems = verify(path)
    report.problems.extend(problems)
    if version is None:
        return report
    report.version = version.version
    report.files = {n: e.size for n, e in version.manifest.files.items()}
    if not problems:
        _check_content(cls, path, report, version.folder / ITEMS)
    leftovers = [p for p in path.parent.glob(f".{path.name}.*.tmp")]
    folder = store_dir(path)
    if folder.is_dir():
        leftovers += [p for p in folder.glob(".*.tmp")]
    if leftovers:
        report.notes.append(f"{len(leftovers)} temporary file(s) of an interrupted write (removed by the next write): "
                            + ", ".join(p.name for p in leftovers[:5]))
    return report


def _check_content(cls: Opener, path: Path, report: CheckReport, items: Path | None) -> None:
    import sqlite3

    try:
        index = cls.load(path, verify=True)  # opened like a reader does, every checksum verified
    except SimstdError as exc:
        report.problems.append(str(exc))
        return
    if items is not None:
        try:
            conn = sqlite3.connect(f"file:{items}?mode=ro", uri=True)
            try:
                status = conn.execute("PRAGMA integrity_check").fetchone()[0]
                rows = dict(conn.execute("SELECT modality, count(*) FROM items GROUP BY modality").fetchall())
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            report.problems.append(f"{items} is corrupt ({exc})")
            return
        if status != "ok":
            report.problems.append(f"{items} fails SQLite's integrity check ({status})")
        if rows != index.counts:
            report.problems.append(f"{items} holds {rows} items per modality, the shards {index.counts}")
    if index.fit_is_stale:
        report.notes.append("the fit is stale (items were added since): queries use it until `simstd fit`")
