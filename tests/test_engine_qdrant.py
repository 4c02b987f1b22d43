"""QdrantSearcher against a real Qdrant (qdrant-client's local mode, the same
query engine semantics as the server): fits and searches equal MixedIndex's."""
from __future__ import annotations

import sys
import uuid

import numpy as np
import pytest

from simstd import NotFittedError, SimstdError, Standardizer
from simstd.datasets import synthetic_pairs

from engine_support import assert_same_fit, assert_same_topk, check_keyed_hubness, clip_case

qdrant_client = pytest.importorskip("qdrant_client", reason='needs pip install "simstd[qdrant]"')
from qdrant_client import QdrantClient, models  # noqa: E402

from simstd.engines.qdrant import QdrantSearcher  # noqa: E402


def make_collection(client, name, vectors, payloads, ids=None, distance=models.Distance.COSINE, dim=None):
    client.create_collection(name, vectors_config=models.VectorParams(size=dim or vectors.shape[1],
                                                                      distance=distance))
    if len(vectors):
        client.upload_collection(name, vectors=vectors, payload=payloads,
                                 ids=list(range(len(vectors))) if ids is None else ids)


@pytest.fixture(scope="module")
def case(features):
    return clip_case(features("clip"))


@pytest.fixture(scope="module")
def searcher(case):
    client = QdrantClient(":memory:")
    payloads = [{"modality": m, "row": i} for i, m in enumerate(case.labels)]
    make_collection(client, "mixed", case.vectors, payloads)
    return QdrantSearcher(client, "mixed")


def test_sees_the_collection(searcher, case):
    assert searcher.dim == case.index.dim
    assert searcher.counts == {"image": 250, "text": 250}
    np.testing.assert_array_equal(searcher.ids("text"), case.index.ids("text"))
    np.testing.assert_allclose(searcher.reconstruct([3, 400]), case.vectors[[3, 400]], atol=1e-6)


def test_fit_through_qdrant_equals_fit_on_the_index(searcher, case):
    assert_same_fit(Standardizer(method="paper", sample=60, seed=4).fit(searcher), Standardizer(method="paper", sample=60, seed=4).fit(case.index))


@pytest.mark.parametrize("query_modality", ["text", "image"])
def test_server_side_top20_equals_mixed_index(searcher, case, query_modality, monkeypatch):
    q = case.queries[query_modality]
    with monkeypatch.context() as patch:  # ranked by the engine: no per-modality search from Python
        patch.setattr(searcher, "search_modality", None)
        got = searcher.search(q, query_modality, 20, standardizer=case.standardizer)
    ref = case.index.search(q, query_modality, 20, standardizer=case.standardizer)
    assert_same_topk(got, ref)
    assert got.modalities[:, :20].tolist() != [[query_modality] * 20] * len(q)  # both modalities come back
    hit = got.hits(0)[0]
    assert hit["metadata"] == {"modality": hit["modality"], "row": hit["id"]}


def test_hubness_method_is_exact_by_certified_over_fetch(searcher, case):
    # The engine ranks by raw cosine only; the adapter over-fetches until no unseen
    # item can enter the top by u = s - rho/2, so the result equals MixedIndex's
    # (whose FAISS shards carry the terms as extra dimensions).
    for qm in ("text", "image"):
        q = case.queries[qm][:8]
        got = searcher.search(q, qm, 20, standardizer=case.hubness)
        assert_same_topk(got, case.index.search(q, qm, 20, standardizer=case.hubness))


@pytest.mark.parametrize("method", ["hubness", "paper"])
def test_uuid_keyed_collection_fits_and_ranks_exactly(case, method):
    # The default-to-be on a collection with UUID ids: terms keyed by the UUIDs,
    # then Qdrant ranks by u on the stored named vector (one search per modality).
    keys = [str(uuid.UUID(int=i + 1)) for i in range(len(case.vectors))]
    client = QdrantClient(":memory:")
    make_collection(client, "uuids", case.vectors, [{"modality": m, "row": i} for i, m in enumerate(case.labels)],
                    ids=keys)
    check_keyed_hubness(QdrantSearcher(client, "uuids"), case, keys, method)


def test_raw_targets_and_query_shift_equal_mixed_index(searcher, case):
    q = case.queries["text"]
    assert_same_topk(searcher.search(q, "text", 20, raw=True), case.index.search(q, "text", 20, raw=True))
    std = case.standardizer
    assert_same_topk(searcher.search(q, "text", 7, standardizer=std, targets=["image"]),
                     case.index.search(q, "text", 7, standardizer=std, targets=["image"]))
    shifted = Standardizer(method="paper", sample=150, query_shift=0.5).fit(case.index)
    assert_same_topk(searcher.search(q, "text", 20, standardizer=shifted),
                     case.index.search(q, "text", 20, standardizer=shifted))


def test_uuid_ids_and_k_beyond_the_collection():
    pairs = synthetic_pairs(40, 16, seed=2)
    vectors = np.vstack([pairs[0], pairs[1]])
    labels = ["image"] * 40 + ["text"] * 40
    ids = [str(uuid.UUID(int=i + 1)) for i in range(80)]
    client = QdrantClient(":memory:")
    make_collection(client, "u", vectors, [{"modality": m} for m in labels], ids=ids)
    searcher = QdrantSearcher(client, "u")
    std = Standardizer(method="paper").fit(searcher)
    ref = Standardizer(method="paper").fit(vectors, labels)
    assert_same_fit(std, ref)
    res = searcher.search(pairs[1][:3], "text", 85, standardizer=std)
    assert res.ids.dtype == object and set(res.ids[0, :80]) == set(ids)
    assert res.ids[0, 80:].tolist() == [None] * 5 and np.isneginf(res.scores[0, 80:]).all()
    assert len(res.hits(0)) == 80 and res.hits(0)[0]["id"] in ids


def test_bad_input_is_named():
    pairs = synthetic_pairs(20, 8, seed=1)
    vectors = np.vstack([pairs[0], pairs[1]])
    labels = ["image"] * 20 + ["text"] * 20
    client = QdrantClient(":memory:")
    make_collection(client, "ok", vectors, [{"modality": m} for m in labels])
    with pytest.raises(SimstdError, match="no collection 'nope'"):
        QdrantSearcher(client, "nope")
    with pytest.raises(SimstdError, match="payload key 'kind'"):
        QdrantSearcher(client, "ok", modality_key="kind")
    make_collection(client, "holes", vectors, [{"modality": m} if i % 7 else {} for i, m in enumerate(labels)])
    with pytest.raises(SimstdError, match="6 of 40 points .* no modality"):
        QdrantSearcher(client, "holes")
    make_collection(client, "empty", vectors[:0], [], dim=8)
    with pytest.raises(SimstdError, match="empty"):
        QdrantSearcher(client, "empty")
    make_collection(client, "l2", vectors, [{"modality": m} for m in labels], distance=models.Distance.EUCLID)
    with pytest.raises(SimstdError, match="Euclid distance"):
        QdrantSearcher(client, "l2")
    searcher = QdrantSearcher(client, "ok")
    with pytest.raises(SimstdError, match="one unnamed vector"):
        QdrantSearcher(client, "ok", vector_name="clip")
    std = Standardizer(method="paper").fit(searcher)
    with pytest.raises(SimstdError, match="dimension 5 but the index has dimension 8"):
        searcher.search(np.ones((2, 5)), "text", 3, standardizer=std)
    with pytest.raises(SimstdError, match="unknown target modality 'audio'"):
        searcher.search(vectors[:2], "text", 3, standardizer=std, targets=["audio"])
    with pytest.raises(NotFittedError, match="'audio' was not seen"):
        searcher.search(vectors[:2], "audio", 3, standardizer=std)
    with pytest.raises(NotFittedError, match="pass a fitted standardizer"):
        searcher.search(vectors[:2], "text", 3)
    with pytest.raises(SimstdError, match="fitted on dimension 512"):
        searcher.search(vectors[:2], "text", 3, standardizer=Standardizer(method="paper").fit(
            np.eye(512, dtype=np.float32)[:20], ["a"] * 10 + ["b"] * 10))
    with pytest.raises(SimstdError, match="no point with id 99"):
        searcher.reconstruct([1, 99])


def test_missing_extra_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "qdrant_client", None)
    with pytest.raises(SimstdError, match=r'pip install "simstd\[qdrant\]"'):
        QdrantSearcher(object(), "x")
