"""What a version of a :class:`~simstd.MixedIndex` holds, and how it is read back.

Named files of a version (versions.py writes and checksums them):

``shards.faiss``       the FAISS shards, one ``IndexIDMap`` per modality, back to back;
``items.sqlite``       modality and JSON payload per id (store.py);
``standardizer.json``  the fitted :class:`~simstd.Standardizer`, if any;
``uncertainty.json``   the fitted uncertainty model, if any;
plus any file registered with :func:`register_part` (e.g. per-item terms).

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import faiss
import numpy as np

from ..errors import CorruptFileError, SimstdError
from ..standardizer import Standardizer
from ..store import MetadataStore
from .lock import DEFAULT_TIMEOUT, store_dir
from .manifest import is_manifest, repair_hint
from .versions import ANY, Version, VersionWriter, commit, current_version, read_version

if TYPE_CHECKING:  # pragma: no cover
    from ..index import MixedIndex

SHARDS = "shards.faiss"
ITEMS = "items.sqlite"
STANDARDIZER = "standardizer.json"
UNCERTAINTY = "uncertainty.json"
CORE_FILES = (SHARDS, ITEMS, STANDARDIZER, UNCERTAINTY)
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


# -------------------------------------------------------------- extra parts
@dataclass(frozen=True)
class Part:
    """An extra named file of every index version that has it.

    ``save(index, path)`` writes the file for ``index`` at ``path`` and returns
    True, or returns False when the index has nothing to store (no file then).
    ``load(index, path)`` reads it into a freshly loaded index. Both run for
    every save/load; ``load`` runs after the core files are loaded.
    """

    name: str
    save: Callable[[Any, Path], bool]
    load: Callable[[Any, Path], None]


_PARTS: dict[str, Part] = {}


def register_part(part: Part) -> None:
    """Add a named file to every index version (e.g. ``item_terms.npy``).

    The storage layer checksums, commits and cleans it like the core files;
    nothing else needs to change. Registering the same name twice replaces it.
    """
    if part.name in CORE_FILES:
        raise SimstdError(f"{part.name!r} is a core file of an index version; choose another name")
    _PARTS[part.name] = part


def parts() -> dict[str, Part]:
    return dict(_PARTS)


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
def save_index(index: "MixedIndex", path: str | Path, *, lock_timeout: float | None = DEFAULT_TIMEOUT,
               overwrite: bool = False, keep: int | None = None) -> str:
    """Commit ``index`` as a new version of the index at ``path``; returns the version id.

    If ``index`` was loaded from ``path``, the commit is refused when another
    writer committed since (no lost update); otherwise it replaces an index
    already there only with ``overwrite`` (``simstd build --overwrite``), and
    the replaced one stays one rollback away. ``keep``: versions to keep.
    """
    path = check_path(path)
    if index.standardizer is not None:
        index.standardizer.check_degenerate()  # a saved fit that cannot standardize fails every query
    here = os.path.realpath(path)
    origin = getattr(index, "_origin", None)
    same = origin is not None and origin[0] == here
    expect = origin[1] if same else ANY

    def write(w: VersionWriter) -> dict:
        base = w.base.manifest.index if (same and w.base is not None) else None
        unchanged = base is not None and base.get("fingerprint") == index.fingerprint
        # Hubness terms folded into the shards change them without adding items.
        shards_unchanged = unchanged and _terms_facts(base) == _terms_facts(_index_terms(index))
        if shards_unchanged and w.can_keep(SHARDS):
            w.keep(SHARDS)
        else:
            writer = faiss.FileIOWriter(str(w.path(SHARDS)))
            for shard in index.shards.values():
                faiss.write_index(shard, writer)
            del writer  # closes the file
        if unchanged and not index.store.modified and w.can_keep(ITEMS):
            w.keep(ITEMS)
        else:
            index.store.save(w.path(ITEMS))
        if index.standardizer is not None:
            index.standardizer.save(w.path(STANDARDIZER), terms=False)  # terms: a registered part
        if getattr(index, "uncertainty", None) is not None:
            index.uncertainty.save(w.path(UNCERTAINTY))
        for part in _PARTS.values():
            if not part.save(index, w.path(part.name)):
                w.discard(part.name)
        return {
            "dim": index.dim,
            "factory": index.factory,
            "model": index.model,
            "fingerprint": index.fingerprint,
            "counts": [[m, int(n)] for m, n in index.counts.items()],
            "ntotal": int(index.ntotal),
            **_index_terms(index),
        }

    manifest = commit(path, write, expect=expect, lock_timeout=lock_timeout, after=_drop_legacy_sidecars,
                      overwrite=same or overwrite, keep=keep, action="save" if same else "new index")
    index.version = manifest.version
    index._origin = (here, manifest.version)
    return manifest.version


def _index_terms(index: "MixedIndex") -> dict:
    """Which hubness terms the shards hold as extra dimensions (engines/faiss.py)."""
    modalities = list(getattr(index, "_term_modalities", []))
    return {"term_modalities": modalities, "folded_terms": getattr(index, "_folded", None)} if modalities else {}


def _terms_facts(facts: dict) -> tuple:
    return tuple(facts.get("term_modalities") or ()), facts.get("folded_terms")


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
def load_index(cls: type, path: str | Path, *, load_standardizer: bool = True,
               verify: bool | None = None) -> "MixedIndex":
    """Open the current version of the index at ``path`` (or an old single-file index).

    ``verify``: None checksums files up to VERIFY_LIMIT bytes, True all, False none.
    """
    path = check_path(path)
    if not path.exists():
        raise SimstdError(f"index file {path} does not exist; build it with `simstd build`")
    for _ in range(3):
        if is_manifest(path):
            return read_version(path, lambda v: _load_version(cls, v, load_standardizer, verify))
        if store_dir(path).is_dir() and not legacy_paths(path)["sqlite"].exists():
            raise CorruptFileError(f"index manifest {path} is corrupt (not JSON, and no old single-file index "
                                   f"beside it); {repair_hint(path)}")
        try:
            return _load_legacy(cls, path, load_standardizer)
        except (CorruptFileError, FileNotFoundError):
            if is_manifest(path):  # a writer converted it while we read: read the new layout
                continue
            raise
    raise SimstdError(f"index {path} changed while being opened; try again")


def _facts(version: Version) -> tuple[int, str, str | None, str, list, list, str | None]:
    facts = version.manifest.index
    dim, factory, counts = facts.get("dim"), facts.get("factory"), facts.get("counts")
    ok = (isinstance(dim, int) and dim > 0 and isinstance(factory, str) and isinstance(counts, list)
          and all(isinstance(c, list) and len(c) == 2 and isinstance(c[0], str) and isinstance(c[1], int)
                  and c[1] >= 0 for c in counts))
    if not ok or not isinstance(facts.get("fingerprint"), str):
        raise CorruptFileError(f"{version.handle} has a malformed 'index' section; rebuild the index with "
                               "`simstd build`")
    terms, folded = facts.get("term_modalities") or [], facts.get("folded_terms")
    if not (isinstance(terms, list) and all(isinstance(t, str) for t in terms)) or not isinstance(folded, (str, type(None))):
        raise CorruptFileError(f"{version.handle} has malformed hubness term facts; refit with `simstd fit`")
    return dim, factory, facts.get("model"), facts["fingerprint"], counts, terms, folded


def _load_version(cls: type, version: Version, load_standardizer: bool, verify: bool | None) -> "MixedIndex":
    try:
        return _load_version_files(cls, version, load_standardizer, verify)
    except CorruptFileError:
        if not version.folder.is_dir():  # removed by two commits while we read: read_version retries
            raise FileNotFoundError(str(version.folder)) from None
        raise


def _load_version_files(cls: type, version: Version, load_standardizer: bool, verify: bool | None) -> "MixedIndex":
    dim, factory, model, fingerprint, counts, terms, folded = _facts(version)
    for name in (SHARDS, ITEMS):
        if not version.has(name):
            raise CorruptFileError(f"{version.handle}: version {version.version} lists no {name}; rebuild the index")
    for name, entry in version.manifest.files.items():
        if name == STANDARDIZER and not load_standardizer:
            continue
        checksum = verify if verify is not None else entry.size <= VERIFY_LIMIT
        version.check_file(name, checksum=bool(checksum))
    shards_path = version.file(SHARDS)
    shards = _read_shards(shards_path, counts, dim + len(terms), f"it does not match {version.handle}")
    if not (verify if verify is not None else version.manifest.files[SHARDS].size <= VERIFY_LIMIT):
        _spot_check_vectors(shards, dim, shards_path, version.handle)
    store = MetadataStore.load(version.file(ITEMS))
    ntotal = sum(n for _, n in counts)
    top = store.max_id()
    if (ntotal == 0 and top is not None) or (ntotal > 0 and top != ntotal - 1):
        raise CorruptFileError(f"{version.file(ITEMS)} does not match {shards_path} (its ids end at {top}, "
                               f"the shards hold {ntotal} items); {_rebuild(version.handle)}")
    index = cls._restore(dim, factory, model, store, shards, fingerprint, terms, folded)
    if load_standardizer and version.has(STANDARDIZER):
        std = Standardizer.load(version.file(STANDARDIZER), terms=False)  # terms: a registered part
        if std.dim_ is not None and std.dim_ != dim:
            raise CorruptFileError(f"{version.file(STANDARDIZER)} was fitted on dimension {std.dim_}, the index "
                                   f"has {dim}; refit with `simstd fit --index {version.handle}`")
        index.standardizer = std
    if version.has(UNCERTAINTY):
        from ..uncertainty.model import UncertaintyModel  # lazy: it imports scipy

        index.uncertainty = UncertaintyModel.load(version.file(UNCERTAINTY))
    for name, part in _PARTS.items():
        if version.has(name):
            part.load(index, version.file(name))
    index.version = version.version
    index._origin = (os.path.realpath(version.handle), version.version)
    return index


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


def _read_shards(path: Path, counts: list, dim: int, mismatch: str) -> dict[str, faiss.IndexIDMap]:
    """The shards, each checked to store ``dim``-dimensional vectors (hubness term dimensions included)."""
    shards = {}
    try:
        reader = faiss.FileIOReader(str(path))
        for modality, count in counts:
            shard = faiss.read_index(reader)
            if not isinstance(shard, faiss.IndexIDMap) or shard.d != dim or shard.ntotal != count:
                raise RuntimeError(f"shard {modality!r} {mismatch}")
            shards[modality] = shard
        del reader
    except RuntimeError as exc:
        if not path.exists():
            raise FileNotFoundError(str(path)) from None
        reason = str(exc).strip().splitlines()[-1][:200]
        raise CorruptFileError(
            f"index file {path} is corrupt ({reason}); restore it from a backup or rebuild it with `simstd build`"
        ) from None
    return shards


def _load_legacy(cls: type, path: Path, load_standardizer: bool) -> "MixedIndex":
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
    index = cls._restore(dim, store.get_info("factory"), store.get_info("model"), store, shards,
                         store.get_info("fingerprint"))
    if load_standardizer and paths["standardizer"].exists():
        index.standardizer = Standardizer.load(paths["standardizer"])
    if paths["uncertainty"].exists():
        from ..uncertainty.model import UncertaintyModel

        index.uncertainty = UncertaintyModel.load(paths["uncertainty"])
    version = current_version(path)
    index.version = version
    index._origin = (os.path.realpath(path), version)
    return index


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


def check_index(path: str | Path, cls: type) -> CheckReport:
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


def _check_content(cls: type, path: Path, report: CheckReport, items: Path | None) -> None:
    import sqlite3

    try:
        index = load_index(cls, path, verify=True)  # opened like a reader does, every checksum verified
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
