"""PgvectorSearcher against a real Postgres + pgvector (pgserver starts one in a
temporary folder; as root it runs the server as its own system user):
fits and searches equal MixedIndex's."""
from __future__ import annotations

import shutil
import tempfile
import warnings

import numpy as np
import pytest

from simstd import NotFittedError, SimstdError, Standardizer
from simstd.datasets import synthetic_pairs

from engine_support import assert_same_fit, assert_same_topk, check_keyed_hubness, clip_case

pgserver = pytest.importorskip("pgserver", reason='needs pip install "simstd[pgvector]"')
psycopg = pytest.importorskip("psycopg", reason='needs pip install "simstd[pgvector]"')

from simstd.engines.pgvector import PgvectorSearcher, _literal  # noqa: E402


@pytest.fixture(scope="module")
def conn():
    # Not under pytest's tmp_path: as root, pgserver runs Postgres as its own
    # user, and every pytest session starting on the machine resets
    # /tmp/pytest-of-root to mode 700, locking that user out of its data.
    folder = tempfile.mkdtemp(prefix="simstd-pg-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        server = pgserver.get_server(folder, cleanup_mode="delete")
    try:
        connection = psycopg.connect(server.get_uri(), autocommit=True)
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        yield connection
        connection.close()
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def make_table(conn, name, vectors, labels, ids=None, id_type="bigint", dim=None):
    conn.execute(f"CREATE TABLE {name} (id {id_type} PRIMARY KEY, modality text, "
                 f"embedding vector({dim or vectors.shape[1]}), caption text)")
    ids = list(range(len(vectors))) if ids is None else ids
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {name} VALUES (%s, %s, %s::vector, %s)",
                        [(i, m, _literal(v), f"caption {i}") for i, v, m in zip(ids, vectors, labels)])


@pytest.fixture(scope="module")
def case(features):
    return clip_case(features("clip"))


@pytest.fixture(scope="module")
def searcher(case, conn):
    make_table(conn, "mixed", case.vectors, case.labels)
    return PgvectorSearcher(conn, "mixed")


def test_sees_the_table(searcher, case):
    assert searcher.dim == case.index.dim and searcher.counts == {"image": 250, "text": 250}
    np.testing.assert_array_equal(searcher.ids("image"), case.index.ids("image"))
    np.testing.assert_array_equal(searcher.reconstruct([400, 3, 400]), case.vectors[[400, 3, 400]])


def test_fit_through_pgvector_equals_fit_on_the_index(searcher, case):
    assert_same_fit(Standardizer(method="paper", sample=60, seed=4).fit(searcher), Standardizer(method="paper", sample=60, seed=4).fit(case.index))


@pytest.mark.parametrize("query_modality", ["text", "image"])
def test_sql_top20_equals_mixed_index(searcher, case, query_modality, monkeypatch):
    q = case.queries[query_modality]
    with monkeypatch.context() as patch:  # ranked by the engine: no per-modality search from Python
        patch.setattr(searcher, "search_modality", None)
        got = searcher.search(q, query_modality, 20, standardizer=case.standardizer)
    assert_same_topk(got, case.index.search(q, query_modality, 20, standardizer=case.standardizer))
    hit = got.hits(0)[0]
    assert hit["metadata"] == {"id": hit["id"], "modality": hit["modality"], "caption": f"caption {hit['id']}"}


def test_hubness_method_is_exact_by_certified_over_fetch(searcher, case):
    # The engine ranks by raw cosine only; the adapter over-fetches until no unseen
    # item can enter the top by u = s - rho/2, so the result equals MixedIndex's
    # (whose FAISS shards carry the terms as extra dimensions).
    for qm in ("text", "image"):
        q = case.queries[qm]
        got = searcher.search(q, qm, 20, standardizer=case.hubness)
        assert_same_topk(got, case.index.search(q, qm, 20, standardizer=case.hubness))


@pytest.mark.parametrize("id_type", ["text", "bigint"])
def test_keyed_table_fits_and_ranks_exactly(case, conn, id_type):
    # Text ids, and integer ids with gaps: terms keyed by them, then Postgres
    # ranks by u on the stored column with <#> (one statement per modality).
    n = len(case.vectors)
    keys = [f"item-{i:04d}" for i in range(n)] if id_type == "text" else [10 * i + 3 for i in range(n)]
    make_table(conn, f"keyed_{id_type}", case.vectors, case.labels, ids=keys, id_type=id_type)
    check_keyed_hubness(PgvectorSearcher(conn, f"keyed_{id_type}"), case, keys, "hubness")


def test_raw_targets_and_query_shift_equal_mixed_index(searcher, case):
    q = case.queries["text"]
    assert_same_topk(searcher.search(q, "text", 20, raw=True), case.index.search(q, "text", 20, raw=True))
    std = case.standardizer
    assert_same_topk(searcher.search(q, "text", 9, standardizer=std, targets=["image"]),
                     case.index.search(q, "text", 9, standardizer=std, targets=["image"]))
    shifted = Standardizer(method="paper", sample=150, query_shift=0.5).fit(case.index)
    assert_same_topk(searcher.search(q, "text", 20, standardizer=shifted),
                     case.index.search(q, "text", 20, standardizer=shifted))


def test_uuid_ids_and_k_beyond_the_table(conn):
    pairs = synthetic_pairs(25, 16, seed=6)
    vectors, labels = np.vstack([pairs[0], pairs[1]]), ["image"] * 25 + ["text"] * 25
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(50)]
    make_table(conn, "uuids", vectors, labels, ids=ids, id_type="uuid")
    searcher = PgvectorSearcher(conn, "uuids")
    std = Standardizer(method="paper").fit(searcher)
    assert_same_fit(std, Standardizer(method="paper").fit(vectors, labels))
    res = searcher.search(pairs[0][:2], "image", 53, standardizer=std)
    assert res.ids.dtype == object and res.ids[0, 50:].tolist() == [None] * 3
    assert {h["id"] for h in res.hits(1)} == set(ids)


def test_bad_input_is_named(conn):
    pairs = synthetic_pairs(20, 8, seed=1)
    vectors, labels = np.vstack([pairs[0], pairs[1]]), ["image"] * 20 + ["text"] * 20
    make_table(conn, "ok", vectors, labels)
    with pytest.raises(SimstdError, match="no table 'nope'"):
        PgvectorSearcher(conn, "nope")
    with pytest.raises(SimstdError, match="no column 'kind' .modality_column"):
        PgvectorSearcher(conn, "ok", modality_column="kind")
    with pytest.raises(SimstdError, match="has type text; simstd searches a pgvector"):
        PgvectorSearcher(conn, "ok", vector_column="caption")
    make_table(conn, "holes", vectors, [None if i % 7 == 0 else m for i, m in enumerate(labels)])
    with pytest.raises(SimstdError, match="6 of 40 rows .* no modality"):
        PgvectorSearcher(conn, "holes")
    make_table(conn, "empty", vectors[:0], [], dim=8)
    with pytest.raises(SimstdError, match="no rows"):
        PgvectorSearcher(conn, "empty")
    searcher = PgvectorSearcher(conn, "ok")
    std = Standardizer(method="paper").fit(searcher)
    with pytest.raises(SimstdError, match="dimension 5 but the index has dimension 8"):
        searcher.search(np.ones((2, 5)), "text", 3, standardizer=std)
    with pytest.raises(SimstdError, match="unknown target modality 'audio'"):
        searcher.search(vectors[:2], "text", 3, standardizer=std, targets=["audio"])
    with pytest.raises(NotFittedError, match="'audio' was not seen"):
        searcher.search(vectors[:2], "audio", 3, standardizer=std)
    with pytest.raises(SimstdError, match="no row with id = 99"):
        searcher.reconstruct([1, 99])
