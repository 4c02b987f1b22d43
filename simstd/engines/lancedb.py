"""LanceDB: standardized search over an existing table, merged exactly here.

:class:`LanceDBSearcher` wraps a LanceDB table with a vector column and a
modality column. It satisfies :class:`~simstd.engines.base.Searchable`
(``Standardizer().fit(searcher)`` mines pseudo positives, Yamashita, Shirafuji
and Saito 2025, through LanceDB's own search) and :meth:`LanceDBSearcher.search`
asks LanceDB for each target modality's raw top-k (a cosine search with the
modality filter applied before the search, ``prefilter=True``), standardizes
and merges them here (:func:`~simstd.engines.base.merge_topk`). LanceDB's
rerankers only reorder one mixed top-k, which can hold one modality only, so
they cannot be exact; the per-modality union is, for a per-pair affine map.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import SimstdError
from ..validation import as_embeddings, check_label
from . import terms as item_terms
from .base import CachedCountsStore, Payloads, SearchResult, Transform, gather, merge_topk, missing_mask, plan_search

ROWID = "_rowid"
#: Ids per reconstruct filter (an ``IN (...)`` list).
PAGE = 2048


def _import_lancedb() -> Any:
    try:
        import lancedb  # noqa: F401
        import pyarrow
    except ImportError:
        raise SimstdError('the LanceDB adapter needs lancedb: pip install "simstd[lancedb]"') from None
    return pyarrow


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _column(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class LanceDBSearcher(CachedCountsStore):
    """A LanceDB table of mixed-modality rows, searchable by simstd.

    Parameters
    ----------
    table:
        A ``lancedb`` table (``db.open_table(name)``).
    modality_column:
        String column holding each row's modality label.
    vector_column:
        Fixed-size float vector column (searched with cosine distance).
    id_column:
        Integer or string column to use as ids; None uses LanceDB's row ids
        (``_rowid``), which change when the table is compacted.
    exact:
        Bypass a vector index (a full scan per search) for exact results.

    Modalities and their counts are read once; call :meth:`refresh` after
    adding rows.
    """

    def __init__(
        self,
        table: Any,
        *,
        modality_column: str = "modality",
        vector_column: str = "vector",
        id_column: str | None = None,
        exact: bool = False,
    ) -> None:
        self._pa = _import_lancedb()
        self.table = table
        self.modality_column = check_label(modality_column, "modality column")
        self.vector_column = check_label(vector_column, "vector column")
        self.id_column = id_column
        self.exact = bool(exact)
        schema = table.schema
        names = schema.names
        for what, col in (("modality_column", modality_column), ("vector_column", vector_column),
                          ("id_column", id_column)):
            if col is not None and col not in names:
                raise SimstdError(f"the LanceDB table has no column {col!r} ({what}); its columns are {names}")
        vtype = schema.field(vector_column).type
        if not self._pa.types.is_fixed_size_list(vtype) or not self._pa.types.is_floating(vtype.value_type):
            raise SimstdError(f"column {vector_column!r} is {vtype}, not a fixed-size float vector; "
                              "pass vector_column= naming the embedding column")
        if not self._pa.types.is_string(schema.field(modality_column).type) and \
                not self._pa.types.is_large_string(schema.field(modality_column).type):
            raise SimstdError(f"column {modality_column!r} is {schema.field(modality_column).type}; modality labels "
                              "must be strings such as 'text' or 'image'")
        self._dim = int(vtype.list_size)
        self._payload_columns = [n for n in names if n not in (vector_column, item_terms.TERMS_NAME)]
        self._record: dict | None | bool = False  # the stored-terms record, read lazily (False: not read)
        self._counts = self._read_counts()  # fail fast: empty table, missing modalities

    # ------------------------------------------------------------ Searchable
    @property
    def _holder(self) -> str:
        return "the LanceDB table"

    def _read_counts(self) -> dict[str, int]:
        total = self.table.count_rows()
        if total == 0:
            raise SimstdError("the LanceDB table is empty: add rows before fitting or searching")
        col = self.modality_column
        values = self.table.search().select([col]).limit(None).to_arrow().column(col)
        missing = values.null_count
        if missing:
            raise SimstdError(f"{missing} of {total} rows of the LanceDB table have no modality in column {col!r}; "
                              "fill it on every row (table.update) or delete those rows")
        counts = {str(v["values"]): int(v["counts"]) for v in values.value_counts().to_pylist()}
        for label in counts:
            check_label(label, f"modality (column {col!r})")
        return dict(sorted(counts.items()))

    def _where(self, modality: str) -> str:
        return f"{_column(self.modality_column)} = {_quote(modality)}"

    @property
    def _id(self) -> str:
        return self.id_column or ROWID

    def ids(self, modality: str) -> np.ndarray:
        query = self.table.search().where(self._where(self._check(modality))).limit(None)
        query = query.with_row_id(True).select([]) if self.id_column is None else query.select([self.id_column])
        return _as_ids(query.to_arrow().column(self._id).to_pylist())

    def _rows(self, ids: list, columns: list[str]) -> dict[Any, dict]:
        """``{id: {column: value}}`` of the rows with these ids (``IN`` lists of :data:`PAGE`)."""
        found: dict[Any, dict] = {}
        for start in range(0, len(ids), PAGE):
            chunk = list(dict.fromkeys(ids[start : start + PAGE]))
            values = ", ".join(_quote(i) if isinstance(i, str) else str(int(i)) for i in chunk)
            query = self.table.search().where(f"{_column(self._id) if self.id_column else ROWID} IN ({values})")
            keep = list(dict.fromkeys(columns + ([self.id_column] if self.id_column else [])))
            query = query.limit(None).select(keep)
            if self.id_column is None:
                query = query.with_row_id(True)
            for row in query.to_arrow().to_pylist():
                key = row[self._id] if self.id_column else row.pop(ROWID)
                found[key] = row
        return found

    def _payloads(self, I: np.ndarray) -> Payloads:
        ids = [_key(i) for i in I[~missing_mask(I)].tolist()]
        return Payloads(self._rows(ids, self._payload_columns) if ids else {})

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        wanted = np.asarray(ids, dtype=object).ravel().tolist()
        if not wanted:
            return np.empty((0, self.dim), np.float32)
        found = {i: row[self.vector_column] for i, row in self._rows(wanted, [self.vector_column]).items()}
        missing = [i for i in wanted if _key(i) not in found]
        if missing:
            raise SimstdError(f"the LanceDB table has no row with {self._id} {missing[0]!r}")
        empty = [i for i in wanted if found[_key(i)] is None]
        if empty:  # e.g. a NaN vector stored as null (on_bad_vectors="null"): LanceDB's search skips it
            raise SimstdError(f"the LanceDB table's row with {self._id} {empty[0]!r} has a null vector (NaN vectors "
                              "are stored so with on_bad_vectors='null'); re-embed or delete it before fitting")
        return as_embeddings([found[_key(i)] for i in wanted], "stored vectors", self.dim)

    def _search(self, queries: np.ndarray, modality: str, k: int, columns: list[str],
                column: str | None = None) -> Any:
        # The terms column ranks by inner product (LanceDB's "dot" distance is 1 - x.q).
        metric = "cosine" if column is None else "dot"
        query = self.table.search(list(queries), vector_column_name=column or self.vector_column)
        query = query.distance_type(metric).where(self._where(modality), prefilter=True).limit(k)
        if self.exact:
            query = query.bypass_vector_index()
        if hasattr(query, "disable_scoring_autoprojection"):
            query = query.disable_scoring_autoprojection()
        if self.id_column is None:
            query = query.with_row_id(True)
        keep = list(dict.fromkeys(columns + ([self.id_column] if self.id_column else []) + ["_distance"]))
        return query.select(keep).to_arrow()

    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        D, I, _ = self._search_modality(queries, modality, k, [])
        return D, I

    def _search_modality(
        self, queries: np.ndarray, modality: str, k: int, columns: list[str], column: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        if column is None:
            queries = as_embeddings(queries, "queries", self.dim)
        k = min(int(k), self.counts[self._check(modality)])
        table = self._search(queries, modality, k, columns, column)
        rows = np.asarray(table.column("query_index").to_numpy() if "query_index" in table.column_names
                          else np.zeros(table.num_rows, np.int64))
        sims = 1.0 - table.column("_distance").to_numpy(zero_copy_only=False).astype(np.float64)
        ids = table.column(self._id).to_pylist()
        as_int = all(isinstance(i, int) for i in ids)
        D = np.full((len(queries), k), np.nan, np.float32)
        I = np.full((len(queries), k), -1 if as_int else None, dtype=np.int64 if as_int else object)
        # LanceDB returns each query's hits best first; place them by rank.
        order = np.lexsort((-sims, rows))
        rows, sims = rows[order], sims[order]
        ids_sorted = np.asarray(ids, dtype=np.int64 if as_int else object)[order]
        starts = np.searchsorted(rows, rows, side="left")
        cols = np.arange(len(rows)) - starts
        D[rows, cols] = sims
        I[rows, cols] = ids_sorted
        return D, I, table.take(order)

    # ------------------------------------------------------------ item terms
    def refresh(self) -> None:
        """Forget the cached modalities, counts and stored-terms record (after rows changed)."""
        super().refresh()
        self._record = False

    def store_terms(self, standardizer: Transform) -> "LanceDBSearcher":
        """Write a ``method="hubness"`` fit's per-item terms into the table, so
        LanceDB ranks by the corrected similarity itself: a vector column
        ``simstd_terms`` = ``[x, -rho / 2 per query modality]`` searched with
        ``dot`` distance, the fit's digest in the column's field metadata. Needs
        ``id_column=`` (rows are matched by it; LanceDB's row ids change on
        compaction). Rewrite it after every refit; rows added later make
        :meth:`search` fall back to the over-fetch until it is rewritten."""
        pa, name = self._pa, item_terms.TERMS_NAME
        if self.id_column is None:
            raise SimstdError("store_terms matches rows by their ids: make the searcher with id_column= naming a "
                              "unique id column (LanceDB's row ids change on compaction)")
        std = item_terms.check_fit(self, standardizer)
        size = self.dim + len(std.modalities_)
        if name in self.table.schema.names:
            self.table.drop_columns([name])
        vtype = pa.list_(pa.float32(), size)
        self.table.add_columns(pa.field(name, vtype, metadata={"simstd": item_terms.dumps(std)}))
        for ids, aug in item_terms.pages(self, std, self.dim):
            batch = pa.table({self.id_column: pa.array(ids.tolist(), type=self.table.schema.field(self.id_column).type),
                              name: pa.FixedSizeListArray.from_arrays(pa.array(aug.ravel()), size)})
            self.table.merge_insert(self.id_column).when_matched_update_all().execute(batch)
        self._record = False
        return self

    def stored_terms(self) -> dict | None:
        """The record of the terms :meth:`store_terms` wrote (digest, modalities, n), or None."""
        if self._record is False:
            schema = self.table.schema
            meta = schema.field(item_terms.TERMS_NAME).metadata if item_terms.TERMS_NAME in schema.names else None
            self._record = item_terms.loads((meta or {}).get(b"simstd"))
        return self._record  # type: ignore[return-value]

    def search_corrected(self, queries: np.ndarray, query_modality: str, modality: str, k: int,
                         standardizer: Transform) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of ``modality`` by ``u = s - rho / 2``, ranked by LanceDB on the stored
        terms column (:meth:`store_terms`): ``(cosines, ids)``."""
        aug = item_terms.queries(as_embeddings(queries, "queries", self.dim), standardizer, query_modality)
        U, I, _ = self._search_modality(aug, modality, k, [], item_terms.TERMS_NAME)
        return item_terms.cosines(U, I, standardizer, query_modality), I

    # ------------------------------------------------------------------ search
    def search(
        self,
        queries: np.ndarray,
        query_modality: str,
        k: int = 10,
        *,
        standardizer: Transform | None = None,
        raw: bool = False,
        targets: Sequence[str] | None = None,
    ) -> SearchResult:
        """Top-k over all (or the ``targets``) modalities by standardized score.

        One LanceDB search per target modality (each query's raw top-k among
        that modality), standardized and merged here: exact for a per-pair
        map when each search is. The same :class:`~simstd.SearchResult` as
        ``MixedIndex.search``, with the table's ids and its other columns as payload.
        """
        plan = plan_search(self, queries, query_modality, k, standardizer=standardizer, raw=raw, targets=targets)
        if plan.hubness:  # per-item terms: the stored terms or a certified over-fetch (gather)
            Z, S, I, labels = merge_topk(gather(self, plan), plan)
            return SearchResult(Z, I, S, labels, query_modality, True, self._payloads(I), route=plan.route,
                                fetched=plan.fetched)
        parts, payloads, fetched = [], {}, {}
        for m in plan.targets:
            D, I, table = self._search_modality(plan.queries, m, plan.depth, self._payload_columns)
            parts.append((D, I))
            fetched[m] = (~missing_mask(I)).sum(axis=1)
            for row in table.drop_columns([c for c in ("_distance", "query_index") if c in table.column_names]) \
                    .to_pylist():
                payloads[row.pop(ROWID) if self.id_column is None else row[self.id_column]] = row
        Z, S, I, labels = merge_topk(parts, plan)
        return SearchResult(Z, I, S, labels, query_modality, not raw, Payloads(payloads),
                            route="raw" if raw else "map", fetched=fetched)

    def __repr__(self) -> str:
        counts = ", ".join(f"{m}={n}" for m, n in (self._counts or {}).items())
        return f"LanceDBSearcher(dim={self.dim}{', ' + counts if counts else ''})"


def _key(i: Any) -> Any:
    return int(i) if isinstance(i, (int, np.integer)) else i


def _as_ids(ids: list) -> np.ndarray:
    if all(isinstance(i, int) for i in ids):
        return np.asarray(ids, dtype=np.int64)
    return np.asarray(ids, dtype=object)
