"""Per-(query modality, shard) search parameters and their label-free tuning (simstd.tuning)."""
from __future__ import annotations

import faiss
import numpy as np
import pytest

from simstd import MixedIndex, Standardizer
from simstd.datasets import synthetic_pairs
from simstd.errors import CorruptFileError, NotFittedError, SimstdError, StaleFitWarning
from simstd import tuning


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    pairs = synthetic_pairs(3000, 64, seed=3)  # clustered, CLIP-like gap
    return {"text": pairs[1], "image": pairs[0]}


@pytest.fixture(scope="module")
def fitted_hnsw(arrays) -> MixedIndex:
    index = MixedIndex.from_arrays(arrays, factory="HNSW8")
    index.standardizer = Standardizer(sample=500).fit(index)
    return index


@pytest.fixture
def hnsw(fitted_hnsw) -> MixedIndex:
    fitted_hnsw.clear_search_params()
    fitted_hnsw.set_search_params("efSearch=16")
    return fitted_hnsw


def _ndis(index: MixedIndex, queries: np.ndarray, modality: str) -> float:
    faiss.cvar.hnsw_stats.reset()
    index.search(queries, modality, 10)
    return faiss.cvar.hnsw_stats.ndis


def _ef(index: MixedIndex, modality: str) -> int:
    return faiss.downcast_index(index.shards[modality].index).hnsw.efSearch


def test_pair_params_apply_to_their_pair_only_and_leave_the_shards_alone(hnsw, arrays):
    text_q, image_q = arrays["text"][:40], arrays["image"][:40]
    before = {m: _ndis(hnsw, q, m) for m, q in (("text", text_q), ("image", image_q))}
    base = hnsw.search(text_q, "text", 10)
    hnsw.set_search_params("efSearch=16", query_modality="text", target="image")  # the shard's own value
    same = hnsw.search(text_q, "text", 10)
    np.testing.assert_array_equal(same.ids, base.ids)
    hnsw.set_search_params("efSearch=200", query_modality="text", target="image")
    assert hnsw.search_params == {("text", "image"): "efSearch=200"}
    assert _ndis(hnsw, text_q, "text") > 1.5 * before["text"]  # the wider beam is used ...
    assert _ndis(hnsw, image_q, "image") == before["image"]  # ... for text queries only
    assert _ef(hnsw, "image") == 16 and _ef(hnsw, "text") == 16  # per call, not stored in the shard
    assert hnsw.shard_search_params("image") == {"efSearch": 16}
    # single queries run the shards in a thread pool: the pair's parameters go with them
    single = np.vstack([hnsw.search(text_q[i : i + 1], "text", 10).ids for i in range(5)])
    np.testing.assert_array_equal(single, hnsw.search(text_q[:5], "text", 10).ids)
    hnsw.clear_search_params()
    assert _ndis(hnsw, text_q, "text") == before["text"]


def test_setting_a_parameter_on_every_shard_drops_the_pair_settings_of_that_parameter(hnsw):
    hnsw.set_search_params("efSearch=64", target="image")  # every query modality, the image shard
    assert hnsw.search_params == {("text", "image"): "efSearch=64", ("image", "image"): "efSearch=64"}
    hnsw.set_search_params("efSearch=32")
    assert hnsw.search_params == {}
    assert _ef(hnsw, "image") == 32


def test_pair_params_are_saved_with_the_index(hnsw, tmp_path):
    hnsw.set_search_params("efSearch=77", query_modality="text", target="image")
    hnsw.save(tmp_path / "db.faiss")
    loaded = MixedIndex.load(tmp_path / "db.faiss")
    assert loaded.search_params == {("text", "image"): "efSearch=77"}
    q = hnsw.reconstruct(hnsw.ids("text")[:20])
    np.testing.assert_array_equal(loaded.search(q, "text", 10).ids, hnsw.search(q, "text", 10).ids)
    loaded.clear_search_params()
    loaded.save(tmp_path / "db.faiss")
    assert MixedIndex.load(tmp_path / "db.faiss").search_params == {}
    assert not any(p.name == "search_params.json" for p in (tmp_path / "db.faiss.d").rglob("*")
                   if MixedIndex.load(tmp_path / "db.faiss").version in str(p))


def test_a_damaged_search_params_file_is_refused(hnsw, tmp_path):
    bad = tmp_path / "search_params.json"
    bad.write_text('{"format": "simstd-search-params", "format_version": 1, "pairs": '
                   '[{"query_modality": "text", "target": "image", "params": {"efSearch": -3}}]}')
    with pytest.raises(CorruptFileError, match="positive integer"):
        hnsw.pair_params.load(hnsw.shard_set, bad)


@pytest.mark.parametrize("params, kwargs, message", [
    ("efSearch=0", {"target": "image"}, "positive integer"),
    ("efSearch=1.5", {"target": "image"}, "positive integer"),
    ("efSearch=many", {"query_modality": "text"}, "positive integer"),
    ("nprobe=4", {"target": "image"}, "applies to IVF shards"),
    ("efConstruction=40", {"target": "image"}, "cannot be set per query modality"),
    ("efSearch", {"target": "image"}, "name=value"),
    ("efSearch=32", {"target": "audio"}, "unknown target modality 'audio'"),
    ("efSearch=32", {"query_modality": " text"}, "non-empty string"),
    (32, {"target": "image"}, "must be a string"),
])
def test_bad_pair_params_are_refused_with_the_fix(hnsw, params, kwargs, message):
    with pytest.raises(SimstdError, match=message):
        hnsw.set_search_params(params, **kwargs)
    assert hnsw.search_params == {}


def test_ivf_nprobe_per_pair_makes_that_pair_exhaustive(arrays):
    index = MixedIndex.from_arrays(arrays, factory="IVF16,Flat")
    index.set_search_params("nprobe=1")
    index.standardizer = Standardizer(sample=300).fit(index)
    index.set_search_params("nprobe=16", query_modality="text")  # all lists: exact for text queries
    q = arrays["text"][:50]
    exact = tuning.exact_search(index, q, "text", 10)
    np.testing.assert_array_equal(index.search(q, "text", 10).ids, exact)
    assert tuning.recall_at(index.search(arrays["image"][:50], "image", 10).ids,
                            tuning.exact_search(index, arrays["image"][:50], "image", 10)) < 1


def test_exact_search_is_the_flat_search(arrays):
    index = MixedIndex.from_arrays(arrays)
    index.standardizer = Standardizer(sample=300).fit(index)
    q = arrays["image"][:30]
    np.testing.assert_array_equal(tuning.exact_search(index, q, "image", 10), index.search(q, "image", 10).ids)
    with pytest.raises(SimstdError, match="nothing to tune"):
        tuning.tune_search_params(index, n_queries=20)


@pytest.mark.parametrize("method", ["paper", "hubness"])
def test_tuning_estimate_is_the_real_search_recall(hnsw, method):
    """The shards' hits add up to the merged recall: for the paper's fit the split's
    estimated recall on the tuning queries equals what MixedIndex.search then gets on
    them. The default's query term (each shard's K best by u) depends on what every
    shard returned, so there the sum is an estimate, close to the real recall."""
    std = hnsw.standardizer if method == "hubness" else Standardizer(method="paper", sample=500).fit(hnsw)
    assert std.method == method
    ids = hnsw.ids("text")[::30]
    plan = tuning.choose(hnsw, "text", ids, 10, budget=400, standardizer=std)
    assert plan.work <= 400
    tuning.evaluate(hnsw, plan, ids, standardizer=std)  # the same queries, searched for real
    assert plan.eval_recall == pytest.approx(plan.recall, abs=1e-12 if method == "paper" else 0.05)
    assert plan.eval_work == pytest.approx(plan.work, rel=1e-9)


def test_tuning_chooses_on_its_queries_only_and_reports_on_held_out_ones(hnsw, monkeypatch):
    seen: list[np.ndarray] = []
    measure = tuning.measure

    def spy(index, query_modality, tune_ids, *args, **kwargs):
        seen.append(np.asarray(tune_ids).copy())
        return measure(index, query_modality, tune_ids, *args, **kwargs)

    monkeypatch.setattr(tuning, "measure", spy)
    plans = tuning.tune_search_params(hnsw, query_modalities=["text"], n_queries=200, holdout=0.5, seed=4,
                                      apply=False)
    plan = plans["text"]
    tune_ids, eval_ids = tuning.split_queries(hnsw, "text", 200, 0.5, 4)
    assert len(seen) == 1 and np.array_equal(seen[0], tune_ids)  # only the tuning queries are measured
    assert not np.intersect1d(tune_ids, eval_ids).size and len(eval_ids) == 100 == plan.n_eval
    assert plan.n_tune == 100
    # the choice is the best split of the tuning tables within the budget (the current work)
    assert plan.params == tuning.pick(plan.tables, plan.n_tune * 10, budget=plan.budget)[0]
    assert plan.work <= plan.budget
    assert plan.recall >= max(r for w, r, _ in plan.frontier if w <= plan.budget) - 1e-12
    assert plan.baseline_params == {"text": {"efSearch": 16}, "image": {"efSearch": 16}}
    assert 0 < plan.eval_recall <= 1 and 0 < plan.baseline_recall <= 1 and plan.eval_work > 0
    assert hnsw.search_params == {}  # apply=False


def test_tuning_for_a_target_recall_applies_and_saves(hnsw, tmp_path):
    plans = tuning.tune_search_params(hnsw, target_recall=0.97, n_queries=120, k=5)
    for q, plan in plans.items():
        assert plan.recall >= 0.97 or plan.recall == max(r for _, r, _ in plan.frontier)
        cheaper = [r for w, r, _ in plan.frontier if w < plan.work - 1e-9]
        assert all(r < 0.97 for r in cheaper)  # the cheapest split that reaches it
        for t, values in plan.params.items():
            assert hnsw.search_params[(q, t)] == f"efSearch={values['efSearch']}"
    hnsw.save(tmp_path / "db.faiss")
    assert MixedIndex.load(tmp_path / "db.faiss").search_params == hnsw.search_params


@pytest.mark.parametrize("kwargs, error, message", [
    ({"budget": 1}, SimstdError, "below the least work"),
    ({"budget": 100, "target_recall": 0.9}, SimstdError, "not both"),
    ({"budget": -5}, SimstdError, "budget must be a positive"),
    ({"target_recall": 1.5}, SimstdError, r"target_recall must be in \(0, 1\]"),
    ({"k": 0}, SimstdError, "k must be"),
    ({"holdout": 1.0}, SimstdError, "holdout"),
    ({"n_queries": True}, SimstdError, "n_queries"),
    ({"query_modalities": ["audio"]}, SimstdError, "no stored items"),
])
def test_bad_tuning_settings_are_refused(hnsw, kwargs, error, message):
    with pytest.raises(error, match=message):
        tuning.tune_search_params(hnsw, apply=False, **{"n_queries": 20, **kwargs})
    assert hnsw.search_params == {}


def test_tuning_needs_a_fit(arrays):
    index = MixedIndex.from_arrays({m: x[:300] for m, x in arrays.items()}, factory="HNSW8")
    with pytest.raises(NotFittedError, match="fit one first"):
        tuning.tune_search_params(index)


def test_cli_tune_commits_the_split_and_info_shows_it(arrays, tmp_path):
    from click.testing import CliRunner

    from simstd.cli import main

    index = MixedIndex.from_arrays({m: x[:1500] for m, x in arrays.items()}, factory="HNSW8")
    index.set_search_params("efSearch=16")
    index.standardizer = Standardizer(sample=300).fit(index)
    path = tmp_path / "db.faiss"
    index.save(path)
    runner = CliRunner()
    dry = runner.invoke(main, ["tune", "--index", str(path), "--sample", "60", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run: nothing written" in dry.output and MixedIndex.load(path).search_params == {}
    done = runner.invoke(main, ["tune", "--index", str(path), "--sample", "60", "--target-recall", "0.99",
                                "--bridges"])
    assert done.exit_code == 0, done.output
    assert "held out (30)" in done.output
    assert sorted(MixedIndex.load(path).bridges) == [("image", "text"), ("text", "image")]
    saved = MixedIndex.load(path).search_params
    assert set(saved) == {(q, t) for q in ("text", "image") for t in ("text", "image")}
    info = runner.invoke(main, ["info", "--index", str(path)])
    assert "text -> image: efSearch=" in info.output and "bridges      " in info.output
    bad = runner.invoke(main, ["tune", "--index", str(path), "--budget", "1"])
    assert bad.exit_code == 1 and "raise the budget" in bad.output and "Traceback" not in bad.output
    np.save(tmp_path / "log.npy", arrays["text"][:80])
    logged = runner.invoke(main, ["tune", "--index", str(path), "--queries", str(tmp_path / "log.npy"),
                                  "--query-modality", "text", "--dry-run"])
    assert logged.exit_code == 0, logged.output
    assert "text queries:" in logged.output and "image queries:" not in logged.output
    lonely = runner.invoke(main, ["tune", "--index", str(path), "--queries", str(tmp_path / "log.npy")])
    assert lonely.exit_code == 1 and "--query-modality" in lonely.output


# ---------------------------------------------------------------- cross-modal bridges
@pytest.fixture
def bridged(arrays) -> MixedIndex:
    index = MixedIndex.from_arrays(arrays, factory="HNSW8")
    index.standardizer = Standardizer(sample=500).fit(index)
    index.set_search_params("efSearch=16")
    assert sorted(index.build_bridges()) == [("image", "text"), ("text", "image")]
    return index


def test_bridges_point_near_each_items_cross_modal_neighbour(bridged, arrays):
    S = arrays["text"] @ arrays["image"].T
    got = S[np.arange(len(S)), bridged.bridge_table.rows[("text", "image")]]
    assert (got >= S.max(axis=1) - 1e-6).mean() > 0.6  # mostly the exact top-1 (a graph search, ef 32)
    assert np.median(got / S.max(axis=1)) > 0.99


def test_bridged_search_recalls_more_for_less_work(bridged):
    q = bridged.reconstruct(bridged.ids("text")[::10])
    truth = tuning.exact_search(bridged, q, "text", 10)
    with_bridges = dict(bridged.bridge_table.rows)
    faiss.cvar.hnsw_stats.reset()
    hit = tuning.recall_at(bridged.search(q, "text", 10).ids, truth)
    work = faiss.cvar.hnsw_stats.ndis + tuning.entry_work(bridged, "text") * len(q)
    bridged.drop_bridges()
    faiss.cvar.hnsw_stats.reset()
    plain = tuning.recall_at(bridged.search(q, "text", 10).ids, truth)
    assert work < faiss.cvar.hnsw_stats.ndis and hit > plain - 0.01 and hit > 0.75
    bridged.bridge_table.rows = with_bridges
    # one query at a time (the thread-pool path) gives the batch's answer, and search_like works
    single = np.vstack([bridged.search(q[i : i + 1], "text", 10).ids for i in range(8)])
    np.testing.assert_array_equal(single, bridged.search(q[:8], "text", 10).ids)
    like = bridged.search_like(bridged.ids("text")[:5], k=10)
    assert not np.isin(bridged.ids("text")[:5], like.ids).any()


def test_bridges_are_saved_and_dropped_for_a_modality_that_grows(bridged, arrays, tmp_path):
    bridged.save(tmp_path / "db.faiss")
    loaded = MixedIndex.load(tmp_path / "db.faiss")
    assert sorted(loaded.bridges) == [("image", "text"), ("text", "image")]
    q = arrays["text"][:20]
    np.testing.assert_array_equal(loaded.search(q, "text", 10).ids, bridged.search(q, "text", 10).ids)
    loaded.add(arrays["text"][:10], "text")  # new texts have no bridges yet
    assert loaded.bridges == [("image", "text")]
    with pytest.warns(StaleFitWarning):
        assert loaded.search(q, "text", 10).ids.shape == (20, 10)  # text queries: each graph from its top
    loaded.standardizer = Standardizer(sample=300).fit(loaded)
    loaded.save(tmp_path / "db.faiss")
    assert MixedIndex.load(tmp_path / "db.faiss").bridges == [("image", "text")]


def test_bad_bridges_are_refused(bridged, tmp_path):
    table = bridged.bridge_table
    rows = table.rows[("text", "image")]
    table.rows[("text", "image")] = rows[:-1]  # one item short
    table.save(tmp_path / "bridges.npz")
    table.rows[("text", "image")] = rows
    with pytest.raises(CorruptFileError, match="do not match the index"):
        table.load(bridged.shard_set, tmp_path / "bridges.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CorruptFileError, match="cannot read the bridges"):
        table.load(bridged.shard_set, tmp_path / "junk.npz")
    with pytest.raises(SimstdError, match="ef_search must be a positive integer"):
        bridged.build_bridges(ef_search=0)


def test_only_hnsw_shards_get_bridges(arrays):
    index = MixedIndex.from_arrays({m: x[:300] for m, x in arrays.items()})
    assert index.build_bridges() == [] and index.bridges == []


def test_tuning_with_bridges_counts_the_entry_points(bridged):
    plans = tuning.tune_search_params(bridged, n_queries=100, query_modalities=["text"], apply=False)
    plan = plans["text"]
    assert plan.eval_work > 0 and 0 < plan.eval_recall <= 1
    image = [tb for tb in plan.tables if tb.target == "image"][0]
    assert image.work.min() >= tuning.BRIDGE_ENTRIES  # entry distances are work too
    assert tuning.entry_work(bridged, "text") == tuning.BRIDGE_ENTRIES


def test_tuning_on_a_query_log(hnsw, arrays):
    rng = np.random.default_rng(5)
    log = arrays["text"][rng.choice(3000, 120, replace=False)] + 0.05 * rng.standard_normal((120, 64))
    log /= np.linalg.norm(log, axis=1, keepdims=True)
    plans = tuning.tune_search_params(hnsw, queries={"text": log.astype(np.float32)}, holdout=0.5, apply=False)
    plan = plans["text"]
    assert list(plans) == ["text"] and plan.n_tune == 60 and plan.n_eval == 60
    vectors = hnsw.search(log[:5].astype(np.float32), "text", 10)  # fresh vectors: nothing left out
    assert vectors.ids.shape == (5, 10)
    paper = Standardizer(method="paper", sample=500).fit(hnsw)  # no query term: the estimate is exact
    est = tuning.choose(hnsw, "text", log[:40].astype(np.float32), 10, budget=2 * plan.budget, standardizer=paper)
    tuning.evaluate(hnsw, est, log[:40].astype(np.float32), standardizer=paper)
    assert est.eval_recall == pytest.approx(est.recall, abs=1e-12)  # the additive estimate, on vectors too
    with pytest.raises(SimstdError, match="without query_modalities"):
        tuning.tune_search_params(hnsw, queries={"text": log}, query_modalities=["text"])
