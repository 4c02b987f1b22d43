"""Persistence: how a :class:`~simstd.MixedIndex` becomes the parts storage writes, and back.

:mod:`simstd.storage` commits versions of named files atomically and reads
them back; it never imports the index. This module hands it one
:class:`~simstd.storage.IndexParts` record (the facts for the manifest, the
shards, the metadata store, and a writer per named file) and builds the
index from the :class:`~simstd.storage.LoadedParts` it returns. Every named
file beyond the shards and the store is a :class:`Part`, listed once here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import CorruptFileError
from ..standardizer import Standardizer
from ..storage import IndexParts, LoadedParts, load_parts, save_parts
from ..storage.layout import STANDARDIZER, UNCERTAINTY
from ..storage.lock import DEFAULT_TIMEOUT
from .bridges import BRIDGES
from .params import SEARCH_PARAMS
from .shards import ShardSet
from .terms import ITEM_TERMS


@dataclass(frozen=True)
class Part:
    """A named file of every index version that has it.

    ``save(index, path)`` writes it and returns True, or returns False when the
    index has nothing to store (no file then); ``load(index, path)`` reads it
    into a freshly built index, in the order parts are listed.
    """

    name: str
    save: Callable[[Any, Path], bool]
    load: Callable[[Any, Path], None]


def _save_standardizer(index: Any, path: Path) -> bool:
    if index.standardizer is None:
        return False
    index.standardizer.save(path, terms=False)  # the terms are a part of their own
    return True


def _load_standardizer(index: Any, path: Path) -> None:
    std = Standardizer.load(path, terms=False)
    if std.dim_ is not None and std.dim_ != index.dim:
        raise CorruptFileError(f"{path} was fitted on dimension {std.dim_}, the index has {index.dim}; refit "
                               "with `simstd fit --index ...`")
    index.standardizer = std


def _save_terms(index: Any, path: Path) -> bool:
    std = index.standardizer
    if std is None or not std.has_item_terms:
        return False
    std.save_terms(path)
    return True


def _load_terms(index: Any, path: Path) -> None:
    std = index.standardizer
    if std is not None and std.has_item_terms:
        std.load_terms(path)


def _save_uncertainty(index: Any, path: Path) -> bool:
    if index.uncertainty is None:
        return False
    index.uncertainty.save(path)
    return True


def _load_uncertainty(index: Any, path: Path) -> None:
    from ..uncertainty.model import UncertaintyModel  # lazy: it imports scipy

    index.uncertainty = UncertaintyModel.load(path)


#: Every named file of a version besides the shards and the store, in load order
#: (a fit's terms load into the fit).
PARTS: dict[str, Part] = {part.name: part for part in (
    Part(STANDARDIZER, _save_standardizer, _load_standardizer),
    Part(ITEM_TERMS, _save_terms, _load_terms),
    Part(UNCERTAINTY, _save_uncertainty, _load_uncertainty),
    Part(SEARCH_PARAMS, lambda index, path: index.pair_params.save(path),
         lambda index, path: index.pair_params.load(index.shard_set, path)),
    Part(BRIDGES, lambda index, path: index.bridge_table.save(path),
         lambda index, path: index.bridge_table.load(index.shard_set, path)),
)}
#: The parts of a fit: skipped by ``load(..., load_standardizer=False)``.
FIT_PARTS = (STANDARDIZER, ITEM_TERMS)


def register_part(part: Part) -> None:
    """Add a named file to every index version (an extension's own state). Registering
    the same name twice replaces it; the storage layer checksums, commits and cleans it."""
    PARTS[part.name] = part


def to_parts(index: Any) -> IndexParts:
    """The record storage commits for ``index``."""
    shards: ShardSet = index.shard_set
    # term_width: the stored dimensions after the vector (terms plus a product quantizer's zero padding)
    terms = ({"term_modalities": list(shards.term_modalities), "folded_terms": shards.folded,
              "term_width": shards.term_width} if shards.term_modalities else {})
    facts = {
        "dim": index.dim,
        "factory": index.factory,
        "model": index.model,
        "fingerprint": index.fingerprint,
        "counts": [[m, int(n)] for m, n in shards.counts.items()],
        "ntotal": int(shards.ntotal),
        **terms,
    }
    # Terms folded into the shards change them without adding items.
    key = {"term_modalities": terms.get("term_modalities"), "folded_terms": terms.get("folded_terms")}
    files = {name: (lambda path, part=part: part.save(index, path)) for name, part in PARTS.items()}
    return IndexParts(facts, list(shards.shards.values()), index.store, files, key, index._origin)


def save(index: Any, path: str | Path, *, lock_timeout: float | None = DEFAULT_TIMEOUT, overwrite: bool = False,
         keep: int | None = None) -> str:
    """Commit ``index`` as a new version at ``path`` (see :meth:`MixedIndex.save`)."""
    if index.standardizer is not None:
        index.standardizer.check_degenerate()  # a saved fit that cannot standardize fails every query
    version, origin = save_parts(to_parts(index), path, lock_timeout=lock_timeout, overwrite=overwrite, keep=keep)
    index.version, index._origin = version, origin
    return version


def load(cls: type, path: str | Path, *, load_standardizer: bool = True, verify: bool | None = None) -> Any:
    """Open the current version of the index at ``path`` as a ``cls`` (see :meth:`MixedIndex.load`)."""

    def build(loaded: LoadedParts) -> Any:
        facts = loaded.facts
        shards = ShardSet.restore(facts["dim"], facts["factory"], loaded.shards, facts.get("term_modalities") or (),
                                  facts.get("folded_terms"))
        index = cls._restore(shards, loaded.store, facts.get("model"), facts["fingerprint"])
        for name, part in PARTS.items():
            if name in loaded.files:
                part.load(index, loaded.files[name])
        index.version, index._origin = loaded.version, loaded.origin
        return index

    return load_parts(path, build, skip=() if load_standardizer else FIT_PARTS, verify=verify)
