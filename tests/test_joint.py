"""The joint graph (one inner-product HNSW graph per query modality over every item,
simstd.index.joint): with a budget that covers every item it returns the exact
standardized top-k, for the default method (both ways of finding r_q^b) and the paper's."""
from __future__ import annotations

import numpy as np
import pytest

from simstd import MixedIndex, SimstdError, Standardizer
from simstd.index import search as pipeline
from simstd.index.joint import JointGraph
from simstd.tuning import brute_force_search, recall_at

from conftest import unit_rows

SHIFT = {"text": 2.0, "image": -2.0}


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(1)
    vectors = {m: unit_rows(rng, n, 16, SHIFT[m]) for m, n in (("text", 300), ("image", 250))}
    out = {}
    for method in ("hubness", "paper"):
        index = MixedIndex.from_arrays(vectors, factory="HNSW8")
        index.standardizer = Standardizer(method=method, sample=200).fit(index)
        index.build_bridges()
        out[method] = index
    return out


@pytest.mark.parametrize("method, terms, bridged", [
    ("hubness", "graph", False), ("hubness", "shards", False), ("paper", "graph", False),
    ("hubness", "graph", True), ("hubness", "shards", True), ("paper", "graph", True),
])
@pytest.mark.parametrize("query_modality", ["text", "image"])
def test_joint_graph_is_exact_when_its_budget_covers_every_item(fitted, method, terms, bridged, query_modality):
    index = fitted[method]
    rng = np.random.default_rng(2)
    queries = unit_rows(rng, 25, 16, SHIFT[query_modality])  # fresh, in no index
    truth = pipeline.search(index, queries, query_modality, 10, shard_search=brute_force_search(index))
    graph = JointGraph.build(index, query_modality)
    assert graph.ntotal == index.ntotal
    Z, I = graph.search(index, queries, 10, ef=index.ntotal, terms=terms, term_ef=index.ntotal, bridged=bridged)
    np.testing.assert_array_equal(I, truth.ids)
    np.testing.assert_allclose(Z, truth.scores, rtol=0, atol=1e-4)
    # a narrow beam is approximate: fewer of the exact top-k (the test above is not vacuous)
    _, I16 = graph.search(index, queries, 10, ef=10, terms=terms, term_ef=10, bridged=bridged, entry_ef=10)
    assert recall_at(I16, truth.ids) < 1.0


def test_joint_graph_refuses_another_fit(fitted):
    index = fitted["paper"]
    graph = JointGraph.build(index, "text")
    saved = index.standardizer
    try:
        index.standardizer = Standardizer(method="paper", sample=100, seed=5).fit(index)
        with pytest.raises(SimstdError, match="another fit"):
            graph.search(index, unit_rows(np.random.default_rng(0), 2, 16), 5, ef=32)
    finally:
        index.standardizer = saved


@pytest.mark.parametrize("method", ["hubness", "paper"])
def test_bridged_search_returns_each_item_once(fitted, method):
    """The bridges of a query's best items often coincide; an entry given twice came back
    twice from FAISS's bottom-layer search (the same id twice in one top-k)."""
    index = fitted[method]
    queries = unit_rows(np.random.default_rng(3), 200, 16, SHIFT["text"])
    index.set_search_params("efSearch=10")
    try:
        ids = index.search(queries, "text", 10).ids
    finally:
        index.clear_search_params()
        index.set_search_params("efSearch=16")
    s = np.sort(ids, axis=1)
    assert not (s[:, 1:] == s[:, :-1]).any()
