"""FAISS modality shards that carry per-item terms as extra dimensions.

Hubness-corrected standardization (:mod:`simstd.hubness`) ranks the items of
a modality by ``u(q, c) = s(q, c) - rho_c^a / 2``, where ``rho_c^a`` is a
fitted term of item ``c`` for queries of modality ``a``. With ``M`` query
modalities a shard stores ``[c, -rho_c^1 / 2, ..., -rho_c^M / 2]`` (``dim + M``
dimensions) and a query of modality ``a`` is ``[q, e_a]`` (one-hot ``e_a``):
the inner product FAISS computes is ``u`` itself, so a ``Flat`` shard returns
the exact top-k by ``u`` for the price of one raw search (``M`` of ``dim``
extra multiply-adds per item). A raw search sends ``[q, 0]`` and gets the
cosine ``s`` exactly (the extra products are exact zeros).

Approximate factories index the augmented vectors: IVF assigns and scans them
as any vectors (the term coordinates are small next to the unit vector part),
HNSW builds its graph on them; SQ/PQ encode the term coordinates like any
other, so ``u`` carries their quantisation error.
"""
from __future__ import annotations

import functools
import os
import re

import faiss
import numpy as np

from ..errors import SimstdError


def stored_dim(shard: faiss.Index) -> int:
    """Dimension of the vectors a shard stores (``dim`` plus its term dimensions)."""
    return int(shard.d)


def augment(queries: np.ndarray, width: int, column: int | None = None) -> np.ndarray:
    """``[queries, coefficients]``: ``width`` extra columns, 1 in ``column`` (None: all 0, a raw search)."""
    if width == 0:
        return queries
    out = np.zeros((len(queries), queries.shape[1] + width), dtype=np.float32)
    out[:, : queries.shape[1]] = queries
    if column is not None:
        out[:, queries.shape[1] + column] = 1.0
    return out


def term_columns(rho: np.ndarray) -> np.ndarray:
    """The stored coordinates ``-rho / 2`` of items with terms ``rho`` ``(n, M)``."""
    return (-0.5 * np.asarray(rho, dtype=np.float32)).astype(np.float32)


def fold_terms(shard: faiss.IndexIDMap, dim: int, factory: str, columns: np.ndarray) -> faiss.IndexIDMap:
    """Return ``shard`` with its items' term coordinates set to ``columns`` ``(ntotal, M)``
    (rows in shard order).

    A ``Flat`` shard that already has ``M`` term dimensions is updated in place
    (no copy); any other is rebuilt from its stored vectors with ``dim + M``
    dimensions (retrained for IVF/PQ, a new graph for HNSW).
    """
    columns = np.ascontiguousarray(columns, dtype=np.float32)
    n, width = columns.shape
    if n != shard.ntotal:
        raise SimstdError(f"got terms for {n} items, the shard holds {shard.ntotal}")
    inner = faiss.downcast_index(shard.index)
    if isinstance(inner, faiss.IndexFlat) and inner.d == dim + width:
        xb = faiss.rev_swig_ptr(inner.get_xb(), n * inner.d).reshape(n, inner.d)
        xb[:, dim:] = columns
        return shard
    try:
        vectors = inner.reconstruct_n(0, n) if n else np.empty((0, inner.d), np.float32)
    except RuntimeError:  # IVF indexes need a direct map (row -> inverted list entry) to reconstruct
        faiss.extract_index_ivf(inner).make_direct_map()
        vectors = inner.reconstruct_n(0, n)
    vectors = vectors[:, :dim]
    aug = np.ascontiguousarray(np.hstack([vectors, columns]), dtype=np.float32)
    sub = faiss.index_factory(dim + width, factory, faiss.METRIC_INNER_PRODUCT)
    if not sub.is_trained:
        sub.train(aug)
    _keep_search_params(inner, sub)
    out = faiss.IndexIDMap(sub)
    out.add_with_ids(aug, faiss.vector_to_array(shard.id_map).astype(np.int64))
    return out


def _keep_search_params(old: faiss.Index, new: faiss.Index) -> None:
    """Carry the search-time settings set on a shard (``efSearch``, ``nprobe``) over to its rebuild."""
    old, new = faiss.downcast_index(old), faiss.downcast_index(new)
    if isinstance(old, faiss.IndexHNSW) and isinstance(new, faiss.IndexHNSW):
        new.hnsw.efSearch = old.hnsw.efSearch
        return
    try:
        faiss.extract_index_ivf(new).nprobe = faiss.extract_index_ivf(old).nprobe
    except RuntimeError:  # not IVF
        pass


def new_shard(dim: int, factory: str, training: np.ndarray) -> faiss.IndexIDMap:
    """An empty shard of ``factory`` for vectors of ``dim`` dimensions, trained on ``training`` if needed."""
    sub = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not sub.is_trained:
        sub.train(training)
    return faiss.IndexIDMap(sub)


#: Search-time parameters that can be set per (query modality, shard) pair, by
#: the kind of shard they apply to (passed to FAISS per call as SearchParameters).
PAIR_PARAMS = {"efSearch": "HNSW", "nprobe": "IVF"}


def shard_kind(shard: faiss.Index) -> str | None:
    inner = faiss.downcast_index(shard.index if isinstance(shard, faiss.IndexIDMap) else shard)
    if isinstance(inner, faiss.IndexHNSW):
        return "HNSW"
    try:
        faiss.extract_index_ivf(inner)
    except RuntimeError:
        return None
    return "IVF"


def parse_pair_params(params: str, shard: faiss.Index, target: str) -> dict[str, int]:
    """``"efSearch=256"`` as ``{"efSearch": 256}``, checked against the shard it is for."""
    kind = shard_kind(shard)
    out: dict[str, int] = {}
    for item in params.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not name:
            raise SimstdError(f"invalid search parameters {params!r}: write name=value pairs such as 'efSearch=128'")
        if name not in PAIR_PARAMS:
            raise SimstdError(f"search parameter {name!r} cannot be set per query modality; use one of "
                              f"{sorted(PAIR_PARAMS)} (or set it on every shard: set_search_params({params!r}))")
        if PAIR_PARAMS[name] != kind:
            raise SimstdError(f"search parameter {name!r} applies to {PAIR_PARAMS[name]} shards; the {target!r} "
                              f"shard is {type(faiss.downcast_index(getattr(shard, 'index', shard))).__name__}")
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1 or str(number) != value.lstrip("+"):
            raise SimstdError(f"search parameter {name} must be a positive integer, got {value!r}")
        out[name] = number
    return out


def search_parameters(shard: faiss.Index, values: dict[str, int] | None) -> faiss.SearchParameters | None:
    """FAISS ``SearchParameters`` for one search of ``shard`` with ``values`` (None: the shard's own)."""
    if not values:
        return None
    if "efSearch" in values:
        params = faiss.SearchParametersHNSW()
        params.efSearch = int(values["efSearch"])
        return params
    params = faiss.SearchParametersIVF()
    params.nprobe = int(values["nprobe"])
    inner = faiss.extract_index_ivf(faiss.downcast_index(shard.index))
    params.max_codes = int(inner.max_codes)  # SearchParametersIVF would reset it to "no limit"
    return params


# ------------------------------------------------------- facts and clear errors
def faiss_message(exc: BaseException) -> str:
    """A FAISS exception's reason without its C++ location (``Error in <signature> at
    file.cpp:64: Error: '<condition>' failed: <reason>`` gives ``<reason>``)."""
    text = str(exc).strip()
    line = text.splitlines()[-1] if text else type(exc).__name__
    line = re.sub(r"^Error in .*? at \S+:\d+: ", "", line)
    line = re.sub(r"^Error: '.*?' failed: ", "", line)
    return line.strip()[:300]


_TRANSFORM = re.compile(r"^(?:(?P<opq>OPQ)(?P<m>\d+)(?:_(?P<out>\d+))?|(?:PCAW?R?|RR|ITQ)(?P<dout>\d+).*)$")
_PQ = re.compile(r"(?<![A-Z])PQ(\d+)")


def check_pq_split(dim: int, factory: str, why: str = "", hint: str = "") -> None:
    """Refuse a factory whose product quantizer splits vectors of ``dim`` unevenly,
    before FAISS does (its C++ assertion names neither the factory nor a fix).

    A ``PQ{M}`` (also inside ``IVF..._PQ{M}``, ``HNSW.._PQ{M}``, fast-scan
    ``PQ{M}x4fs``) cuts each vector into ``M`` sub-vectors of equal length, so
    ``M`` must divide the dimension it sees: ``dim``, or the output of a
    preceding ``OPQ{M}_{D}`` / ``PCA{D}`` / ``RR{D}`` transform. ``why``
    explains where ``dim`` comes from (e.g. the hubness term dimensions) and
    ``hint`` is a further fix for that case.
    """
    d = int(dim)
    for token in factory.replace(" ", "").split(","):
        match = _TRANSFORM.match(token)
        if match and match.group("opq"):
            out = int(match.group("out") or d)
            _refuse_split(int(match.group("m")), out, factory, token, *((why, hint) if out == d else ("", "")))
            d = out
            continue
        if match and match.group("dout"):
            d = int(match.group("dout"))
            continue
        for m in _PQ.findall(token):
            _refuse_split(int(m), d, factory, token, *((why, hint) if d == dim else ("", "")))


@functools.lru_cache(maxsize=256)
def term_padding(dim: int, terms: int, factory: str) -> int:
    """Zero dimensions stored after ``terms`` term dimensions so that every product
    quantizer of ``factory`` splits the stored width evenly (0 when it already does,
    or when no padding below 256 would: :func:`check_pq_split` then says why).

    A PQ code costs ``M`` sub-quantizer indices whatever the width, so the padding
    costs no memory per item; queries and items carry zeros there, so inner
    products are unchanged. Without it, the default's ``512 + 2`` dimensions
    could be split by no useful ``PQ{M}``.
    """
    if terms <= 0:
        return 0
    for pad in range(256):
        try:
            check_pq_split(dim + terms + pad, factory)
        except SimstdError:
            continue
        return pad
    return 0


def _refuse_split(m: int, d: int, factory: str, token: str, why: str, hint: str) -> None:
    if m > 0 and d % m == 0:
        return
    divisors = [x for x in range(1, d + 1) if d % x == 0]
    near = sorted(divisors, key=lambda x: (abs(x - m), x))[:2]
    fix = " or ".join(repr(re.sub(rf"PQ{m}(?!\d)", f"PQ{x}", token, count=1)) for x in sorted(near))
    raise SimstdError(
        f"factory {factory!r}: {token} splits each vector into {m} sub-vectors, which needs the dimension "
        f"{d}{why} to be a multiple of {m}; use a number of sub-vectors that divides {d}, e.g. {fix}{hint}"
    )


def factory_of(index: faiss.Index) -> str:
    """The FAISS factory string that builds ``index`` (FAISS's reverse factory), else its class name."""
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)
    try:
        from faiss.contrib.factory_tools import reverse_index_factory

        return str(reverse_index_factory(inner))
    except Exception:  # not every index type has a factory string
        return type(inner).__name__


def serialized_bytes(index: faiss.Index) -> int:
    """Bytes ``faiss.write_index`` writes for ``index``: what it holds in memory once read back
    (vectors or codes, graph links, ids, centroids), counted as the bytes stream past,
    so nothing is copied. On-disk inverted lists are a file of their own, not counted."""
    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    writer = faiss.PyCallbackIOWriter(count)
    faiss.write_index(index, writer)
    del writer  # flushes the last chunk
    return total


def on_disk_lists(index: faiss.Index) -> tuple[str, int] | None:
    """``(file, bytes it must hold)`` of an IVF index whose inverted lists live on disk
    (FAISS ``OnDiskInvertedLists``, the ``.ivfdata`` file), else None."""
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)
    try:
        ivf = faiss.extract_index_ivf(inner)
    except RuntimeError:
        return None
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    if isinstance(lists, faiss.OnDiskInvertedLists):
        return str(lists.filename), int(lists.totsize)
    return None


def search_settings(index: faiss.Index) -> dict[str, int | float]:
    """The search-time parameters in force on ``index``: ``efSearch`` (HNSW), ``nprobe``
    and, when set, ``max_codes`` and the coarse quantizer's ``quantizer_efSearch`` (IVF),
    ``k_factor`` (a refine stage); the names FAISS's ``ParameterSpace`` takes."""
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)
    out: dict[str, int | float] = {}
    if isinstance(inner, faiss.IndexRefine):
        out["k_factor"] = float(inner.k_factor)
        inner = faiss.downcast_index(inner.base_index)
    if isinstance(inner, faiss.IndexHNSW):
        out["efSearch"] = int(inner.hnsw.efSearch)
        return out
    try:
        ivf = faiss.extract_index_ivf(inner)
    except RuntimeError:
        return out
    out["nprobe"] = int(ivf.nprobe)
    if ivf.max_codes:
        out["max_codes"] = int(ivf.max_codes)
    quantizer = faiss.downcast_index(ivf.quantizer)
    if isinstance(quantizer, faiss.IndexHNSW):
        out["quantizer_efSearch"] = int(quantizer.hnsw.efSearch)
    return out


def list_file_problem(exc: BaseException | None, index: faiss.Index | None = None) -> str | None:
    """What is wrong with the inverted-list file of an on-disk IVF index, else None.

    ``exc``: FAISS's error on reading an index whose ``OnDiskInvertedLists``
    file (``.ivfdata``) cannot be opened (missing, moved, not writable);
    ``index``: an index read back, checked that its list file still holds
    every list (a truncated file is mapped without complaint and crashes the
    first search that reads past its end).
    """
    if exc is not None:
        match = re.search(r"could not open (.+?) in mode \S+: (.+)$", faiss_message(exc))
        if match and "OnDiskInvertedLists" in str(exc):
            return f"its inverted lists are kept in {match.group(1)} (FAISS on-disk lists), which cannot be opened ({match.group(2)})"
        return None
    lists = on_disk_lists(index) if index is not None else None
    if lists is None:
        return None
    name, size = lists
    have = os.path.getsize(name) if os.path.exists(name) else 0
    if have < size:
        return f"its inverted lists are kept in {name} (FAISS on-disk lists), which holds {have} of their {size} bytes"
    return None
