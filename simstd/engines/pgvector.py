"""pgvector: standardized search over an existing Postgres table, computed in SQL.

:class:`PgvectorSearcher` wraps a DB-API connection (psycopg 3 is tested;
anything with ``%s`` parameters, such as psycopg2, works) and a table with a
``vector`` column and a modality column. It satisfies
:class:`~simstd.engines.base.Searchable` (``Standardizer().fit(searcher)``
mines pseudo positives, Yamashita, Shirafuji and Saito 2025, with pgvector's
own ``ORDER BY embedding <=> q LIMIT k``), and :meth:`PgvectorSearcher.search`
ranks in Postgres: per query (a ``LATERAL`` join over the batch), a
``UNION ALL`` of each target modality's ``ORDER BY embedding <=> q LIMIT k``,
joined to the fitted statistics as an inline ``VALUES`` table and ordered by
``((1 - (embedding <=> q)) - mean) / std``. For a fixed query modality the map
is increasing within each modality, so the standardized top-k lies in that
union: exact whenever each per-modality search is (a sequential scan; an
HNSW/IVFFlat index is approximate, see docs/engines.md). simstd only reads:
no table, column or setting of the database is changed.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from ..errors import SimstdError
from ..validation import as_embeddings, check_label
from . import terms as item_terms
from .base import CachedCountsStore, Payloads, SearchResult, Transform, gather, merge_topk, missing_mask, plan_search

#: Queries per SQL statement (LATERAL over an array of vectors) and ids per reconstruct.
BATCH = 256
PAGE = 2048
INT_TYPES = ("smallint", "integer", "bigint")


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table(name: str) -> str:
    """``name`` or ``schema.name``, each part quoted."""
    return ".".join(_identifier(part) for part in name.split("."))


def _literal(vector: np.ndarray) -> str:
    """pgvector's text form; repr of each float32 value reads back to the same float4."""
    return "[" + ",".join(map(repr, vector.tolist())) + "]"


class PgvectorSearcher(CachedCountsStore):
    """A Postgres table of mixed-modality rows with a pgvector column, searchable by simstd.

    Parameters
    ----------
    connection:
        An open DB-API connection (psycopg 3 or psycopg2) to a database with
        the ``vector`` extension.
    table:
        Table name, optionally ``schema.table``.
    vector_column, modality_column, id_column:
        The ``vector(d)`` column, the text column holding each row's modality,
        and the column used as ids (integer ids are returned as int64, others
        as strings).

    Modalities and their counts are read once; call :meth:`refresh` after
    inserting rows.
    """

    def __init__(
        self,
        connection: Any,
        table: str,
        *,
        vector_column: str = "embedding",
        modality_column: str = "modality",
        id_column: str = "id",
    ) -> None:
        self.connection = connection
        self.table = table
        self.vector_column = check_label(vector_column, "vector column")
        self.modality_column = check_label(modality_column, "modality column")
        self.id_column = check_label(id_column, "id column")
        if not isinstance(table, str) or not table:
            raise SimstdError(f"table must be a table name such as 'items' or 'public.items', got {table!r}")
        self._t = _table(table)
        self._v, self._m, self._i = (_identifier(c) for c in (vector_column, modality_column, id_column))
        if self._fetch("SELECT to_regclass(%s)", (self._t,))[0][0] is None:
            raise SimstdError(f"Postgres has no table {table!r} (searched with the connection's search_path)")
        types = dict(self._fetch(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped", (self._t,)))
        for what, col in (("vector_column", vector_column), ("modality_column", modality_column),
                          ("id_column", id_column)):
            if col not in types:
                raise SimstdError(f"table {table!r} has no column {col!r} ({what}); its columns are {sorted(types)}")
        vtype = types[vector_column]
        if not re.fullmatch(r"vector(\(\d+\))?", vtype):
            raise SimstdError(f"column {vector_column!r} has type {vtype}; simstd searches a pgvector `vector` column "
                              "(pass vector_column= naming it)")
        if types[modality_column] not in ("text", "character varying") and \
                not types[modality_column].startswith(("character varying", "character(")):
            raise SimstdError(f"column {modality_column!r} has type {types[modality_column]}; modality labels must "
                              "be text such as 'text' or 'image'")
        self._int_ids = types[id_column] in INT_TYPES
        self._record: dict | None | bool = False  # the stored-terms record, read lazily (False: not read)
        self._counts = self._read_counts()  # fail fast: empty table, rows without a modality
        dim = re.fullmatch(r"vector\((\d+)\)", vtype)
        self._dim = int(dim.group(1)) if dim else int(self._fetch(
            f"SELECT vector_dims({self._v}) FROM {self._t} WHERE {self._v} IS NOT NULL LIMIT 1")[0][0])

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            cursor.close()

    # ------------------------------------------------------------ Searchable
    @property
    def _holder(self) -> str:
        return f"table {self.table!r}"

    def _read_counts(self) -> dict[str, int]:
        rows = self._fetch(f"SELECT {self._m}, count(*) FROM {self._t} WHERE {self._v} IS NOT NULL GROUP BY 1")
        if not rows:
            raise SimstdError(f"Postgres table {self.table!r} has no rows with a vector: insert rows before fitting "
                              "or searching")
        counts = {m: int(n) for m, n in rows if m is not None}
        missing = sum(int(n) for m, n in rows if m is None)
        if missing:
            raise SimstdError(f"{missing} of {missing + sum(counts.values())} rows of table {self.table!r} have no "
                              f"modality in column {self.modality_column!r}; fill it on every row (UPDATE) or "
                              "delete those rows")
        for label in counts:
            check_label(label, f"modality (column {self.modality_column!r})")
        return dict(sorted(counts.items()))

    def _id_expr(self, alias: str = "t") -> str:
        return f"{alias}.{self._i}" if self._int_ids else f"{alias}.{self._i}::text"

    def ids(self, modality: str) -> np.ndarray:
        rows = self._fetch(f"SELECT {self._id_expr()} FROM {self._t} t WHERE t.{self._m} = %s "
                           f"AND t.{self._v} IS NOT NULL ORDER BY 1", (self._check(modality),))
        return self._as_ids([r[0] for r in rows])

    def _as_ids(self, ids: list) -> np.ndarray:
        return np.asarray(ids, dtype=np.int64 if self._int_ids else object)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        wanted = np.asarray(ids, dtype=object).ravel().tolist()
        if not wanted:
            return np.empty((0, self.dim), np.float32)
        wanted = [int(i) for i in wanted] if self._int_ids else [str(i) for i in wanted]
        found: dict[Any, Any] = {}
        cast = "bigint[]" if self._int_ids else "text[]"
        for start in range(0, len(wanted), PAGE):
            chunk = list(dict.fromkeys(wanted[start : start + PAGE]))
            for i, v in self._fetch(f"SELECT {self._id_expr()}, t.{self._v}::real[] FROM {self._t} t "
                                    f"WHERE {self._id_expr()} = ANY(%s::{cast})", (chunk,)):
                found[i] = v
        missing = [i for i in wanted if i not in found]
        if missing:
            raise SimstdError(f"table {self.table!r} has no row with {self.id_column} = {missing[0]!r}")
        return as_embeddings([found[i] for i in wanted], "stored vectors", self.dim)

    def _per_modality(self, modality_param: str, limit_param: str) -> str:
        """One modality's raw top-k for query vector ``q.v`` (pgvector's ``<=>`` is cosine distance)."""
        return (f"SELECT {self._id_expr()} AS id, t.{self._m} AS m, 1 - (t.{self._v} <=> q.v) AS s "
                f"FROM {self._t} t WHERE t.{self._m} = {modality_param} "
                f"ORDER BY t.{self._v} <=> q.v LIMIT {limit_param}")

    @staticmethod
    def _quote_literal(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    def search_modality(self, queries: np.ndarray, modality: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = as_embeddings(queries, "queries", self.dim)
        k = min(int(k), self.counts[self._check(modality)])
        D = np.full((len(queries), k), np.nan, np.float32)
        I = np.full((len(queries), k), -1 if self._int_ids else None, dtype=np.int64 if self._int_ids else object)
        sql = (f"SELECT q.i - 1, c.id, c.s FROM unnest(%s::vector[]) WITH ORDINALITY AS q(v, i) "
               f"CROSS JOIN LATERAL ({self._per_modality('%s', '%s')}) c ORDER BY q.i, c.s DESC")
        for start in range(0, len(queries), BATCH):
            chunk = queries[start : start + BATCH]
            rows = self._fetch(sql, ([_literal(q) for q in chunk], modality, k))
            self._place(rows, start, D, I, [2])
        return D, I

    @staticmethod
    def _place(rows: list[tuple], start: int, D: np.ndarray, I: np.ndarray, score_at: list[int]) -> None:
        """Write rows ``(query, id, score, ...)`` (sorted by query, best first) into ``D``/``I``."""
        if not rows:
            return
        q = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        col = np.arange(len(rows)) - np.searchsorted(q, q, side="left")
        D[start + q, col] = [r[score_at[0]] for r in rows]
        I[start + q, col] = [r[1] for r in rows]

    # ------------------------------------------------------------ item terms
    def refresh(self) -> None:
        """Forget the cached modalities, counts and stored-terms record (after rows changed)."""
        super().refresh()
        self._record = False

    def store_terms(self, standardizer: Transform) -> "PgvectorSearcher":
        """Write a ``method="hubness"`` fit's per-item terms into the table, so
        Postgres ranks by the corrected similarity itself: a column
        ``simstd_terms vector(d + M)`` = ``[x, -rho / 2 per query modality]``,
        searched with ``<#>`` (negative inner product), the fit's digest in the
        column's comment. The one write simstd does (ALTER TABLE, UPDATE,
        COMMENT, then a commit). Rewrite it after every refit; rows added
        later make :meth:`search` fall back to the over-fetch until it is rewritten."""
        std = item_terms.check_fit(self, standardizer)
        size = self.dim + len(std.modalities_)
        col = _identifier(item_terms.TERMS_NAME)
        cursor = self.connection.cursor()
        try:
            cursor.execute(f"ALTER TABLE {self._t} DROP COLUMN IF EXISTS {col}")
            cursor.execute(f"ALTER TABLE {self._t} ADD COLUMN {col} vector({size})")
            cast = "bigint[]" if self._int_ids else "text[]"
            for ids, aug in item_terms.pages(self, std, self.dim):
                keys = [int(i) for i in ids.tolist()] if self._int_ids else [str(i) for i in ids.tolist()]
                cursor.execute(f"UPDATE {self._t} t SET {col} = v.x FROM unnest(%s::{cast}, %s::vector[]) AS v(id, x) "
                               f"WHERE {self._id_expr()} = v.id", (keys, [_literal(x) for x in aug]))
            cursor.execute(f"COMMENT ON COLUMN {self._t}.{col} IS {self._quote_literal(item_terms.dumps(std))}")
            self.connection.commit()
        except Exception:
            self.connection.rollback()
            raise
        finally:
            cursor.close()
        self._record = False
        return self

    def stored_terms(self) -> dict | None:
        """The record of the terms :meth:`store_terms` wrote (digest, modalities, n), or None."""
        if self._record is False:
            rows = self._fetch("SELECT col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = "
                               "to_regclass(%s) AND attname = %s AND NOT attisdropped",
                               (self._t, item_terms.TERMS_NAME))
            self._record = item_terms.loads(rows[0][0]) if rows else None
        return self._record  # type: ignore[return-value]

    def search_corrected(self, queries: np.ndarray, query_modality: str, modality: str, k: int,
                         standardizer: Transform) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of ``modality`` by ``u = s - rho / 2``, ranked by Postgres on the stored
        terms column (:meth:`store_terms`, ``ORDER BY simstd_terms <#> [q, e_a]``):
        ``(cosines, ids)``, the cosines computed in SQL."""
        queries = as_embeddings(queries, "queries", self.dim)
        aug = item_terms.queries(queries, standardizer, query_modality)
        k = min(int(k), self.counts[self._check(modality)])
        col = _identifier(item_terms.TERMS_NAME)
        D = np.full((len(queries), k), np.nan, np.float32)
        I = np.full((len(queries), k), -1 if self._int_ids else None, dtype=np.int64 if self._int_ids else object)
        sql = (f"SELECT q.i - 1, c.id, c.s FROM unnest(%s::vector[], %s::vector[]) WITH ORDINALITY AS q(v, a, i) "
               f"CROSS JOIN LATERAL (SELECT {self._id_expr()} AS id, 1 - (t.{self._v} <=> q.v) AS s, "
               f"t.{col} <#> q.a AS nu FROM {self._t} t WHERE t.{self._m} = %s ORDER BY t.{col} <#> q.a LIMIT %s) c "
               f"ORDER BY q.i, c.nu")
        for start in range(0, len(queries), BATCH):
            rows = self._fetch(sql, ([_literal(q) for q in queries[start : start + BATCH]],
                                     [_literal(q) for q in aug[start : start + BATCH]], modality, k))
            self._place(rows, start, D, I, [2])
        return D, I

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
        """Top-k over all (or the ``targets``) modalities by standardized score, ranked by Postgres.

        The same :class:`~simstd.SearchResult` as ``MixedIndex.search``, with
        the table's ids and each row's other columns (``to_jsonb(row)``) as
        payload. ``raw=True`` ranks by raw cosine. With ``query_shift`` or
        ``method="hubness"`` the map depends on each query's own top scores (and
        per-item terms), so the merge happens here instead, still exact.
        """
        plan = plan_search(self, queries, query_modality, k, standardizer=standardizer, raw=raw, targets=targets)
        nq, k = len(plan.queries), plan.k
        if plan.client_side:  # hubness: engine-side terms (store_terms) or certified over-fetch
            Z, S, I, labels = merge_topk(gather(self, plan), plan)
            return SearchResult(Z, I, S, labels, query_modality, True, self._payloads(I), route=plan.route,
                                fetched=plan.fetched)
        Z = np.full((nq, k), -np.inf, np.float32)
        S = np.full((nq, k), np.nan, np.float32)
        I = np.full((nq, k), -1 if self._int_ids else None, dtype=np.int64 if self._int_ids else object)
        labels = np.full((nq, k), "", dtype=object)
        if plan.standardizer is None:
            inner = (f"SELECT {self._id_expr()} AS id, t.{self._m} AS m, 1 - (t.{self._v} <=> q.v) AS s "
                     f"FROM {self._t} t WHERE t.{self._m} = ANY(%s::text[]) ORDER BY t.{self._v} <=> q.v LIMIT %s")
            select, params = "c.id, c.s, c.s, c.m", [list(plan.targets), k]
            order = "c.s DESC"
        else:
            unions = " UNION ALL ".join(f"({self._per_modality('%s', '%s')})" for _ in plan.targets)
            values = ", ".join("(%s, %s::float8, %s::float8)" for _ in plan.targets)
            inner = (f"SELECT u.*, (u.s - st.mean) / st.std AS z FROM ({unions}) u "
                     f"JOIN (VALUES {values}) AS st(m, mean, std) ON st.m = u.m ORDER BY z DESC LIMIT %s")
            params = [x for m in plan.targets for x in (m, k)]
            params += [x for m, (mean, std) in zip(plan.targets, plan.maps) for x in (m, mean, std)] + [k]
            select, order = "c.id, c.z, c.s, c.m", "c.z DESC"
        sql = (f"SELECT q.i - 1, {select} FROM unnest(%s::vector[]) WITH ORDINALITY AS q(v, i) "
               f"CROSS JOIN LATERAL ({inner}) c ORDER BY q.i, {order}")
        for start in range(0, nq, BATCH):
            chunk = plan.queries[start : start + BATCH]
            rows = self._fetch(sql, [[_literal(q) for q in chunk], *params])
            self._place(rows, start, Z, I, [2])
            if rows:
                q = np.fromiter((r[0] for r in rows), np.int64, len(rows))
                col = np.arange(len(rows)) - np.searchsorted(q, q, side="left")
                S[start + q, col] = [r[3] for r in rows]
                labels[start + q, col] = [r[4] for r in rows]
        # Payloads in one more statement for the final hits only (to_jsonb of
        # every candidate row would also serialize its vector).
        return SearchResult(Z, I, S, labels, query_modality, not raw, self._payloads(I), route="raw" if raw else "map")

    def _payloads(self, I: np.ndarray) -> Payloads:
        ids = list(dict.fromkeys(I[~missing_mask(I)].tolist()))
        if not ids:
            return Payloads()
        cast = "bigint[]" if self._int_ids else "text[]"
        rows = self._fetch(f"SELECT {self._id_expr()}, to_jsonb(t) - %s - %s FROM {self._t} t "
                           f"WHERE {self._id_expr()} = ANY(%s::{cast})", (self.vector_column, item_terms.TERMS_NAME, ids))
        return Payloads(dict(rows))

    def __repr__(self) -> str:
        counts = ", ".join(f"{m}={n}" for m, n in (self._counts or {}).items())
        return f"PgvectorSearcher({self.table!r}, dim={self.dim}{', ' + counts if counts else ''})"
