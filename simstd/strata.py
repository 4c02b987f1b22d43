"""Strata: groups inside a modality whose scores get statistics of their own.

A collection often mixes sources within one modality (short captions and long
descriptions, product and user photos, languages), and their score
distributions differ the way modalities do (the sparse/dense caption gap of
D2S-VSE). A stratified fit treats every stratum as a modality *for the
statistics*: the pair statistics of Yamashita, Shirafuji and Saito (2025) and,
with ``method="hubness"``, the CSLS terms (Conneau et al. 2018) are keyed by
(query stratum, target stratum). So each stratum must also be searchable on
its own, the way each modality is a shard: :class:`StrataView` presents the
strata of any :class:`~simstd.engines.base.Searchable` as its modalities,
which is all the backends need, and the index searches each stratum of a
shard as one FAISS search restricted to its rows (exact on ``Flat``).

Strata come from a metadata field (``strata="source"``: one stratum per value
of that field, within each modality whose items carry it) or from a derived
one, ``"text:length"``: the token count (whitespace-separated words) of the
payload's ``text`` field (``caption`` when there is no ``text``) of the
``text`` items, binned by :data:`LENGTH_BINS`.

The sharing rule. A stratum with fewer than ``min_stratum`` items is too small
for statistics of its own: it shares those of its modality's largest stratum
(it joins it). When no stratum of a modality reaches ``min_stratum``, the
modality stays whole, with the statistics an unstratified fit gives it. With
``min_stratum=0`` no stratum shares, and one with fewer than
:data:`MIN_ITEMS` items is an error. Field values first seen after the fit
(items added since) follow the same rule: they had no items, so they join
their modality's largest stratum.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, ContextManager, Mapping, Sequence

import numpy as np

from .engines.base import Searchable, missing_mask, search_session
from .errors import SimstdError

#: ``text:length`` bins: inclusive token counts (``None``: no upper end). Tags
#: and keyword lists, short captions, captions, long captions, dense
#: descriptions and documents.
LENGTH_BINS: tuple[tuple[int, int | None], ...] = ((0, 4), (5, 9), (10, 14), (15, 29), (30, None))
#: The fields a derived ``MODALITY:length`` stratum reads its text from, in order.
TEXT_FIELDS = ("text", "caption")
#: Derived strata: ``MODALITY:NAME``.
DERIVED = ("length",)
#: Default ``min_stratum``: the sampling error of a stratum's mean and std is then
#: at most about 1/sqrt(1000) = 0.03 of its std (one pseudo query per item).
MIN_STRATUM = 1000
#: A stratum standardizes with at least this many items (a spread needs two).
MIN_ITEMS = 2


def length_bin(text: str) -> str:
    """The ``text:length`` bin of a text: its whitespace token count, e.g. ``"10-14"``."""
    n = len(str(text).split())
    for low, high in LENGTH_BINS:
        if high is None or n <= high:
            return f"{low}-{high}" if high is not None else f"{low}+"
    raise AssertionError("the last bin is open")  # pragma: no cover


def bin_labels() -> list[str]:
    """The labels of :data:`LENGTH_BINS` (``"0-4"``, ..., ``"30+"``)."""
    return [f"{lo}-{hi}" if hi is not None else f"{lo}+" for lo, hi in LENGTH_BINS]


@dataclass(frozen=True)
class StrataSpec:
    """What ``strata=`` names: a metadata ``field``, or a derived stratum of one modality."""

    text: str
    field: str | None
    modality: str | None
    derived: str | None

    @classmethod
    def parse(cls, spec: object) -> "StrataSpec":
        if not isinstance(spec, str) or not spec.strip() or spec != spec.strip():
            raise SimstdError(f"strata must name a metadata field (e.g. 'source') or a derived stratum "
                              f"('text:length'), got {spec!r}")
        if ":" in spec:
            modality, _, name = spec.partition(":")
            if not modality or name not in DERIVED:
                raise SimstdError(f"unknown derived stratum {spec!r}: use MODALITY:length (e.g. 'text:length', "
                                  f"token-count bins), or a metadata field name without ':'")
            return cls(spec, None, modality, name)
        return cls(spec, spec, None, None)

    def describe(self) -> str:
        if self.derived == "length":
            bins = ", ".join(bin_labels())
            return f"{self.text} (token-count bins of {self.modality} items: {bins})"
        return f"metadata field {self.field!r}"

    def value(self, modality: str, payload: dict | None) -> object:
        """The stratum value of one item of ``modality`` (``_NONE`` where it has none)."""
        payload = payload or {}
        if self.derived == "length":
            if modality != self.modality:
                return _WHOLE
            for key in TEXT_FIELDS:
                if isinstance(payload.get(key), str):
                    return length_bin(payload[key])
            return _NONE
        if self.field not in payload or payload[self.field] is None:
            return _NONE
        v = payload[self.field]
        if isinstance(v, (dict, list)):
            raise SimstdError(f"strata field {self.field!r} holds a {type(v).__name__} on some {modality!r} items; "
                              "strata need a scalar (string, number, boolean) per item")
        return v


_NONE = object()  # the item has no value
_WHOLE = object()  # the modality is not stratified by this spec


@dataclass
class Strata:
    """A fitted stratification: which stratum each value of each modality belongs to.

    ``labels``: every stratum, ``modality:value`` (or the modality alone when it
    stays whole); ``modality_of``: the modality of each; ``values``: per
    stratified modality, the stratum of each value seen at the fit; ``counts``:
    items per stratum at the fit; ``shared``: the small strata that joined a
    larger one, ``{small label: (stratum label, items)}``.
    """

    spec: StrataSpec
    min_stratum: int
    labels: list[str]
    modality_of: dict[str, str]
    values: dict[str, dict[str, str]]
    counts: dict[str, int]
    shared: dict[str, tuple[str, int]] = field(default_factory=dict)

    # ------------------------------------------------------------- building
    @classmethod
    def build(cls, spec: StrataSpec, min_stratum: int, found: Mapping[str, Sequence[object]],
              ids: Mapping[str, np.ndarray], fields: set[str] | frozenset = frozenset()) -> "Strata":
        """Strata from each modality's item values (``found[m][i]`` of item ``ids[m][i]``),
        with the sharing rule, raising on missing values and unknown names."""
        if spec.derived is not None and spec.modality not in found:
            raise SimstdError(f"strata {spec.text!r} names modality {spec.modality!r}, which the collection does "
                              f"not hold (modalities: {sorted(found)}); use one of them, e.g. "
                              f"'{sorted(found)[0]}:length'")
        labels, modality_of, values, counts, shared = [], {}, {}, {}, {}
        any_field = False
        for m in found:
            vals = list(found[m])
            if vals and vals[0] is _WHOLE:
                labels.append(m)
                modality_of[m], counts[m] = m, len(vals)
                continue
            missing = [i for i, v in enumerate(vals) if v is _NONE]
            if len(missing) == len(vals) and spec.field is not None:
                labels.append(m)  # the field belongs to other modalities: this one stays whole
                modality_of[m], counts[m] = m, len(vals)
                continue
            any_field = True
            if missing:
                what = (f"text field ({' or '.join(repr(f) for f in TEXT_FIELDS)})" if spec.derived else
                        f"metadata field {spec.field!r}")
                first = ids[m][missing[0]]
                verb = "has" if len(missing) == 1 else "have"
                raise SimstdError(f"{len(missing)} of the {len(vals)} {m!r} items {verb} no {what} (e.g. id "
                                  f"{_plain(first)}): strata {spec.text!r} needs it on every {m!r} item; give "
                                  f"those items the field (rebuild with --meta), or fit without --strata")
            tally: dict[str, int] = {}
            for v in vals:
                key = _key(v)
                tally[key] = tally.get(key, 0) + 1
            large = {v: n for v, n in tally.items() if n >= min_stratum} if min_stratum > 0 else dict(tally)
            if min_stratum == 0:
                small = [(v, n) for v, n in tally.items() if n < MIN_ITEMS]
                if small:
                    v, n = small[0]
                    raise SimstdError(f"stratum {m}:{v} has {n} item{'s' * (n != 1)}; a stratum's statistics need "
                                      f"at least {MIN_ITEMS}: let small strata share their modality's statistics "
                                      f"(min_stratum > {n}, CLI --min-stratum), or give it more items")
            if not large:  # no stratum is large enough: the modality stays whole
                labels.append(m)
                modality_of[m], counts[m] = m, len(vals)
                values[m] = {v: m for v in tally}
                for v, n in sorted(tally.items()):
                    shared[f"{m}:{v}"] = (m, n)
                continue
            biggest = max(sorted(large), key=lambda v: large[v])
            values[m] = {}
            for v in sorted(tally):
                label = f"{m}:{v}" if v in large else f"{m}:{biggest}"
                values[m][v] = label
                if v not in large:
                    shared[f"{m}:{v}"] = (label, tally[v])
            for v in sorted(large):
                label = f"{m}:{v}"
                labels.append(label)
                modality_of[label] = m
                counts[label] = sum(n for w, n in tally.items() if values[m][w] == label)
        if spec.field is not None and not any_field:
            raise SimstdError(f"unknown strata field {spec.field!r}: no item's metadata has it (fields found: "
                              f"{', '.join(sorted(fields)) or 'none'}); name a field the items carry, or 'text:length'")
        return cls(spec, int(min_stratum), labels, modality_of, values, counts, shared)

    # -------------------------------------------------------------- applying
    @property
    def modalities(self) -> list[str]:
        """The modalities the fit covers (each stratum's modality, once)."""
        return list(dict.fromkeys(self.modality_of.values()))

    def strata_of(self, modality: str) -> list[str]:
        """The stratum labels of one modality (its own label when it stays whole)."""
        return [s for s in self.labels if self.modality_of[s] == modality]

    def is_stratified(self, modality: str) -> bool:
        return self.strata_of(modality) != [modality]

    def label(self, modality: str, value: object, item: object = None) -> str:
        """The stratum of an item of ``modality`` whose value is ``value``."""
        if modality not in self.values or not self.is_stratified(modality):
            return modality
        if value is _NONE or value is _WHOLE:
            what = "a text" if self.spec.derived else f"metadata field {self.spec.field!r}"
            at = f"item {_plain(item)}" if item is not None else "an item"
            raise SimstdError(f"{at} of modality {modality!r} has no {what}, but the fit is stratified by "
                              f"{self.spec.text!r}: every {modality!r} item needs it; add items with the field, "
                              f"or refit without strata")
        key = _key(value)
        if key in self.values[modality]:
            return self.values[modality][key]
        # A value first seen after the fit had no items then: it shares like any small stratum.
        return self.largest(modality)

    def largest(self, modality: str) -> str:
        own = self.strata_of(modality)
        return max(own, key=lambda s: (self.counts[s], s))

    def labels_of(self, modality: str, payloads: Mapping[Any, dict], ids: np.ndarray) -> np.ndarray:
        """The stratum of every item ``ids`` of ``modality`` from its payload."""
        out = np.empty(len(ids), dtype=object)
        if modality not in self.values:
            out[:] = modality
            return out
        for r, i in enumerate(np.asarray(ids).tolist()):
            out[r] = self.label(modality, self.spec.value(modality, payloads.get(i)), i)
        return out

    def query_label(self, modality: str, stratum: str | None) -> str:
        """The query's stratum: its modality's only one, else ``stratum`` (a label or a value)."""
        own = self.strata_of(modality)
        if not own:
            raise SimstdError(f"the stratified fit has no statistics for modality {modality!r} "
                              f"(fitted: {self.modalities}); refit on data that includes it")
        if stratum is None:
            if len(own) == 1:  # one stratum (the whole modality, or a single value): nothing to choose
                return own[0]
            hint = " or the query text (CLI: a text query)" if self.spec.derived == "length" else ""
            raise SimstdError(f"the fit is stratified by {self.spec.text!r}: a {modality!r} query needs its stratum, "
                              f"one of {own} (query_stratum=..., CLI --query-stratum){hint}")
        if stratum in own:
            return stratum
        if modality in self.values and f"{modality}:{stratum}" in self.values[modality].values():
            return f"{modality}:{stratum}"
        if modality in self.values and stratum in self.values[modality]:
            return self.values[modality][stratum]
        value = stratum[len(modality) + 1:] if stratum.startswith(f"{modality}:") else stratum
        if self.spec.derived == "length" and value in bin_labels():  # a bin no stored item falls in: it shares
            return self.label(modality, value)
        raise SimstdError(f"unknown stratum {stratum!r} for {modality!r} queries; use one of {own}")

    def query_stratum_of_text(self, modality: str, text: str) -> str | None:
        """The stratum of a text query (derived ``length`` strata of its modality), else None."""
        if self.spec.derived != "length" or modality != self.spec.modality:
            return None
        return self.label(modality, length_bin(text))

    # ----------------------------------------------------------- describing
    def notes(self) -> list[str]:
        """The sharing rule's decisions, one line each, for ``fit`` and ``info``."""
        lines = []
        for small, (label, n) in sorted(self.shared.items()):
            whole = label == self.modality_of.get(label) and not self.is_stratified(label)
            target = f"its modality's statistics ({label!r} is not stratified)" if whole else f"{label!r}'s statistics"
            lines.append(f"{small} has {n} item{'s' * (n != 1)} (< min_stratum {self.min_stratum}): shares {target}")
        return lines

    def describe(self) -> str:
        counts = ", ".join(f"{s} ({self.counts[s]})" for s in self.labels)
        return f"{self.spec.describe()}, min_stratum {self.min_stratum}: {counts}"

    def to_dict(self) -> dict:
        return {"spec": self.spec.text, "min_stratum": self.min_stratum, "labels": list(self.labels),
                "modality_of": dict(self.modality_of), "values": {m: dict(v) for m, v in self.values.items()},
                "counts": dict(self.counts),
                "shared": {k: {"stratum": s, "n": n} for k, (s, n) in self.shared.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "Strata":
        return cls(StrataSpec.parse(data["spec"]), int(data["min_stratum"]), [str(s) for s in data["labels"]],
                   {str(k): str(v) for k, v in data["modality_of"].items()},
                   {str(m): {str(k): str(v) for k, v in vals.items()} for m, vals in data["values"].items()},
                   {str(k): int(v) for k, v in data["counts"].items()},
                   {str(k): (str(v["stratum"]), int(v["n"])) for k, v in data["shared"].items()})


def _key(value: object) -> str:
    """A value as the text of its stratum label (JSON's booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain(i: object) -> object:
    return i.item() if isinstance(i, np.generic) else i




# ------------------------------------------------------------------ reading
def read_values(searchable: Searchable, spec: StrataSpec,
            metadata: Sequence[dict | None] | Mapping[Any, dict | None] | None = None
            ) -> tuple[dict[str, list], dict[str, np.ndarray], set[str]]:
    """Each modality's item ids and stratum values, from ``metadata`` (one payload
    per id: a sequence indexed by id, or a mapping) or the searchable's own payload
    store (a :class:`~simstd.MixedIndex`'s SQLite sidecar: ``searchable.store.get``)."""
    source = getattr(searchable, "store", None) if metadata is None else None
    if metadata is None and not callable(getattr(source, "get", None)):
        raise SimstdError(f"strata are read from the items' metadata, which a {type(searchable).__name__} "
                          "does not hold: pass it to fit (fit(..., metadata=[payload per id]))")
    found, ids_of, fields = {}, {}, set()
    for m in searchable.modalities:
        ids = np.asarray(searchable.ids(m))
        if spec.derived is not None and m != spec.modality:
            found[m], ids_of[m] = [_WHOLE] * len(ids), ids
            continue
        payloads = _payloads(metadata, source, ids)
        vals = []
        for i in ids.tolist():
            p = payloads.get(i)
            if isinstance(p, dict) and len(fields) < 50:
                fields.update(p)
            vals.append(spec.value(m, p))
        found[m], ids_of[m] = vals, ids
    return found, ids_of, fields


def _payloads(metadata: Any, source: Any, ids: np.ndarray) -> Mapping[Any, dict]:
    if metadata is None:
        return source.get(ids)
    if isinstance(metadata, Mapping):
        return metadata
    out = {}
    for i in ids.tolist():
        if not isinstance(i, (int, np.integer)) or not 0 <= i < len(metadata):
            raise SimstdError(f"metadata holds {len(metadata)} payloads, indexed by id; id {i!r} has none: pass "
                              "one payload per id (or a mapping id -> payload)")
        out[i] = metadata[i]
    return out


def fit_strata(searchable: Searchable, spec: str, min_stratum: int,
               metadata: Sequence[dict | None] | Mapping[Any, dict | None] | None = None) -> "StrataView":
    """The strata of ``searchable`` by ``spec`` (the sharing rule applied), as a view to fit on."""
    parsed = StrataSpec.parse(spec)
    found, ids, fields = read_values(searchable, parsed, metadata)
    strata = Strata.build(parsed, min_stratum, found, ids, fields)
    members = {}
    for m in found:
        if m in strata.values:
            labels = np.array([strata.values[m][_key(v)] for v in found[m]], dtype=object)
            for s in strata.strata_of(m):
                members[s] = ids[m][labels == s]
        else:
            members[m] = ids[m]
    return StrataView(searchable, strata, members)


def view(searchable: Searchable, strata: Strata,
         metadata: Sequence[dict | None] | Mapping[Any, dict | None] | None = None) -> "StrataView":
    """A fitted stratification applied to the items ``searchable`` holds now."""
    found, ids, _ = read_values(searchable, strata.spec, metadata)
    members = {}
    for m in strata.modalities:
        if m not in found:
            raise SimstdError(f"the stratified fit covers modality {m!r}, which the collection no longer holds")
        if not strata.is_stratified(m):
            members[m] = ids[m]
            continue
        labels = np.array([strata.label(m, v, i) for v, i in zip(found[m], ids[m].tolist())], dtype=object)
        for s in strata.strata_of(m):
            members[s] = ids[m][labels == s]
    return StrataView(searchable, strata, members)


#: First over-fetch of a stratum search on a store that cannot restrict a search
#: to a stratum, as a multiple of ``k`` (then times 4 until the stratum's top-k is in).
OVERFETCH = 4


class StrataView:
    """A :class:`~simstd.engines.base.Searchable` whose modalities are the strata of another.

    ``search_modality(q, stratum, k)`` is the exact raw top-k among the stratum's
    items: the store's ``search_subset`` when it has one (a MixedIndex: one FAISS
    search restricted to the stratum's rows), else the modality's raw top-``W``
    filtered to the stratum, ``W`` widened until every row holds ``k`` of its
    items (exact: the raw order within a modality is the stratum's order).
    """

    def __init__(self, base: Searchable, strata: Strata, members: Mapping[str, np.ndarray]) -> None:
        self.base, self.strata = base, strata
        self.members = {s: np.sort(np.asarray(members[s])) for s in strata.labels}
        empty = [s for s, ids in self.members.items() if len(ids) == 0]
        if empty:
            raise SimstdError(f"stratum {empty[0]!r} holds no items now; refit the strata (simstd fit --strata ...)")

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def modalities(self) -> list[str]:
        return list(self.strata.labels)

    def ids(self, modality: str) -> np.ndarray:
        if modality not in self.members:
            raise SimstdError(f"unknown stratum {modality!r}; the strata are {self.strata.labels}")
        return self.members[modality].copy()

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        return self.base.reconstruct(ids)

    def mining_session(self) -> ContextManager[None]:
        return search_session(self.base) if self.base is not None else contextlib.nullcontext()

    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        members = self.ids(modality)
        m = self.strata.modality_of[modality]
        if not self.strata.is_stratified(m):
            return self.base.search_modality(queries, m, k)
        subset = getattr(self.base, "search_subset", None)
        if callable(subset):
            return subset(queries, m, k, members)
        return self._overfetch(queries, m, k, members)

    def _overfetch(self, queries: np.ndarray, m: str, k: int, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = len(self.base.ids(m))
        k = min(int(k), len(members))
        as_object = members.dtype == object  # string / UUID ids of an engine
        D_out = np.full((len(queries), k), -np.inf, np.float32)
        I_out = np.full((len(queries), k), None if as_object else -1, object if as_object else np.int64)
        pending = np.arange(len(queries))
        width = min(size, max(OVERFETCH * k, k * size // max(len(members), 1)))
        member_set = set(members.tolist()) if as_object else members
        while len(pending):
            D, I = self.base.search_modality(queries[pending], m, width)
            valid = ~missing_mask(I)
            if as_object:
                mine = valid & np.vectorize(member_set.__contains__, otypes=[bool])(I) if I.size else valid
            else:
                mine = valid & np.isin(np.where(valid, I, -1), member_set)
            enough = mine.sum(axis=1) >= k
            done = enough | (width >= size)
            for r in np.flatnonzero(done):
                cols = np.flatnonzero(mine[r])[:k]
                D_out[pending[r], : len(cols)] = D[r, cols]
                I_out[pending[r], : len(cols)] = I[r, cols]
            pending = pending[~done]
            width = min(size, width * OVERFETCH)
        return D_out, I_out
