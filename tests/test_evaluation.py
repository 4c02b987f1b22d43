"""Metrics on hand-computed cases, the protocols, cross-fitting, and `simstd eval`."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from simstd import MixedIndex
from simstd.cli import main
from simstd.datasets import synthetic_pairs
from simstd.errors import SimstdError
from simstd.evaluation import (
    Task,
    affine_changes,
    evaluate,
    first_rank,
    load_qrels,
    map_at_r,
    mixed_task,
    modality_share,
    ndcg_at,
    plain_tasks,
    query_metrics,
    r_precision,
    rank_order,
    recall_at,
    run_pairs,
)
from simstd.methods import Raw


# ------------------------------------------------------------------ metrics
RANKED = np.array([[False, True, False, True, False]])  # positives at ranks 2 and 4
N_REL = np.array([2])


def test_recall_is_a_hit_in_the_top_k():
    assert recall_at(RANKED, 1)[0] == 0
    assert recall_at(RANKED, 2)[0] == 1
    assert recall_at(RANKED, 5)[0] == 1


def test_r_precision_counts_positives_in_the_top_r():
    assert r_precision(RANKED, N_REL)[0] == pytest.approx(0.5)  # top 2 holds one of 2
    assert r_precision(np.array([[True, False]]), np.array([1]))[0] == 1


def test_map_at_r_by_hand():
    # (1/R) * sum_{i<=R} P@i rel(i) = 1/2 * (P@2 = 1/2) = 0.25; rank 4 is beyond R = 2
    assert map_at_r(RANKED, N_REL)[0] == pytest.approx(0.25)
    both = np.array([[True, True, False]])
    assert map_at_r(both, np.array([2]))[0] == pytest.approx(1.0)
    late = np.array([[False, True, True]])  # 1/2 * (P@2 = 1/2) = 0.25
    assert map_at_r(late, np.array([2]))[0] == pytest.approx(0.25)


def test_ndcg_by_hand():
    dcg = 1 / np.log2(3) + 1 / np.log2(5)
    idcg = 1 + 1 / np.log2(3)
    assert ndcg_at(RANKED, N_REL, 10)[0] == pytest.approx(dcg / idcg)
    assert ndcg_at(np.array([[True, False]]), np.array([1]), 10)[0] == pytest.approx(1.0)


def test_first_rank_and_query_metrics_from_scores():
    scores = np.array([[0.9, 0.5, 0.7, 0.1], [0.2, 0.3, 0.4, 0.5]])
    rel = np.array([[False, False, True, False], [True, False, False, True]])
    np.testing.assert_array_equal(first_rank(scores, rel), [2, 1])
    m = query_metrics(scores, rel)
    np.testing.assert_allclose(m["R@1"], [0, 1])
    np.testing.assert_allclose(m["R-Precision"], [0, 0.5])  # query 2: top-2 = items 3, 2
    np.testing.assert_allclose(m["mAP@R"], [0, 0.5])


def test_rank_order_partial_matches_full_sort():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((5, 50))
    np.testing.assert_array_equal(rank_order(S, 7), np.argsort(-S, axis=1)[:, :7])


def test_modality_share_by_hand():
    order = np.array([[0, 2, 1, 3]])
    share = modality_share(order, np.array(["image", "image", "text", "text"]), 3)
    assert share["image"][0] == pytest.approx(2 / 3) and share["text"][0] == pytest.approx(1 / 3)


# ---------------------------------------------------------------- protocols
PAIRS = synthetic_pairs(80, 32, seed=3)


def test_mixed_task_puts_every_gold_in_the_other_modality():
    t = mixed_task(PAIRS, seed=1)
    assert (t.corpus_modalities == "image").sum() == 40 and (t.corpus_modalities == "text").sum() == 40
    gold_mod = t.corpus_modalities[t.positives[:, 1]]
    assert (gold_mod != t.query_modalities[t.positives[:, 0]]).all()
    # the gold is the query's partner: same pair index
    q, g = t.positives[0]
    partner = {tuple(np.round(v, 5)) for v in PAIRS[0]}
    assert tuple(np.round(t.corpus[g], 5)) in partner
    # no query is also an indexed item
    assert not (t.queries @ t.corpus.T > 0.99999).any()


def test_plain_tasks_rank_the_target_modality_only_and_affine_methods_change_nothing():
    tasks = plain_tasks(PAIRS)
    assert [t.name for t in tasks] == ["text→image", "image→text"]
    names = ["raw", "zscore-all", "per-query", "simstd-index", "simstd-qshift", "simstd-log", "simstd-labeled",
             "nnn"]
    for task in tasks:
        r = evaluate(task, names, seed=0)
        raw = r.per_query["raw"]["first_rank"]
        np.testing.assert_array_equal(raw, r.per_query["ceiling"]["first_rank"])  # ceiling = raw here
        for name in names[1:-1]:
            np.testing.assert_array_equal(r.per_query[name]["first_rank"], raw, name)
        assert not np.array_equal(r.per_query["nnn"]["first_rank"], raw)  # not affine: may reorder


def test_affine_methods_give_exactly_the_raw_ranking_on_one_modality():
    """Full rankings, not only the gold's rank."""
    task = plain_tasks(PAIRS)[0]
    from simstd.methods import make_method

    X = task.corpus.astype(np.float64)
    Q = task.queries.astype(np.float64)
    raw_order = np.argsort(-(Q @ X[task.ranked_columns].T), axis=1, kind="stable")
    for name in ("zscore-all", "per-query", "simstd-index", "simstd-index-top10", "simstd-qshift"):
        Z = make_method(name).fit(X, task.corpus_modalities).scores(Q, "text")[:, task.ranked_columns]
        np.testing.assert_array_equal(np.argsort(-Z, axis=1, kind="stable"), raw_order, name)


def test_query_log_methods_never_see_the_queries_they_score():
    task = mixed_task(PAIRS, seed=0)
    seen = []

    class Spy(Raw):
        name = "spy"
        needs_log = True

        def _fit(self, log, positives):
            seen.append(log[0].copy())

        def transform(self, raw, queries, query_modality):
            for log in seen[-1:]:
                assert not (queries @ log.T > 0.99999).any(), "a scored query is in its own query log"
            return raw

    evaluate(task, [Spy()], folds=2, seed=0)
    assert len(seen) == 2 and sum(len(s) for s in seen) == len(task.queries)


def test_runs_without_threadpoolctl(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    r = evaluate(mixed_task(PAIRS), ["raw", "simstd-index"])
    assert r.summary("simstd-index")["R@20"] > r.summary("raw")["R@20"]


def test_task_validation_messages():
    X = PAIRS[0][:4]
    with pytest.raises(SimstdError, match="no gold"):
        Task("t", X, ["a"] * 4, X[:2], ["b"] * 2, np.array([[0, 1]]))
    with pytest.raises(SimstdError, match="corpus ids outside"):
        Task("t", X, ["a"] * 4, X[:1], ["b"], np.array([[0, 9]]))
    with pytest.raises(SimstdError, match="outside the target"):
        Task("t", X, ["a", "a", "b", "b"], X[:1], ["b"], np.array([[0, 3]]), targets=("a",))
    with pytest.raises(SimstdError, match="folds"):
        evaluate(mixed_task(PAIRS), ["raw"], folds=1)


def test_several_positives_per_query_and_qrels_formats(tmp_path):
    (tmp_path / "g.tsv").write_text("# query corpus\n0 1\n0\t2\n1,3\n")
    np.testing.assert_array_equal(load_qrels(tmp_path / "g.tsv"), [[0, 1], [0, 2], [1, 3]])
    (tmp_path / "g.json").write_text('{"0": [1, 2], "1": [3]}')
    np.testing.assert_array_equal(load_qrels(tmp_path / "g.json"), [[0, 1], [0, 2], [1, 3]])
    np.save(tmp_path / "g.npy", np.array([[0, 1], [1, 3]]))
    assert load_qrels(tmp_path / "g.npy").shape == (2, 2)
    (tmp_path / "bad.tsv").write_text("0 x\n")
    with pytest.raises(SimstdError, match="bad.tsv:1"):
        load_qrels(tmp_path / "bad.tsv")
    # two positives of query 0 in two modalities: the ceiling ranks both modalities
    X = np.eye(4, dtype=np.float32)
    Q = np.array([[0.9, 0.1, 0.3, 0.0], [0.0, 0.0, 0.1, 0.9]], dtype=np.float32)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    t = Task("t", X, ["a", "a", "b", "b"], Q, ["a", "b"], np.array([[0, 0], [0, 2], [1, 3]]))
    r = evaluate(t, ["raw"])
    np.testing.assert_allclose(r.per_query["raw"]["R-Precision"], [1.0, 1.0])
    np.testing.assert_allclose(r.per_query["raw"]["mAP@R"], [1.0, 1.0])


def test_report_aggregates_seeds_and_renders():
    rep = run_pairs(PAIRS, data="synthetic", methods=["raw", "simstd-index", "simstd-qshift"], seeds=[0, 1])
    assert set(rep.results) == {"mixed", "text→image", "image→text"}
    assert affine_changes(rep) == {"text→image": [], "image→text": []}
    d = rep.to_dict()
    cell = d["protocols"]["mixed"]["methods"]["simstd-index"]["metrics"]["R@20"]
    assert len(cell["per_seed"]) == 2 and 0 < cell["of_ceiling"]["mean"] <= 1
    assert d["protocols"]["mixed"]["methods"]["raw"]["metrics"]["cross@10"]["mean"] < 0.05  # the gap
    assert "| simstd-qshift |" in rep.to_markdown()
    text = rep.to_text()
    assert "R@20/ceiling" in text and "±" in text


# -------------------------------------------------------------------- CLI
def test_cli_eval_on_index_with_ground_truth(tmp_path):
    pairs = synthetic_pairs(60, 32, seed=5)
    index = MixedIndex.from_arrays({"image": pairs[0], "text": pairs[1]})
    index.save(tmp_path / "db.faiss")
    np.save(tmp_path / "q.npy", pairs[1][:20])
    # each caption's image (ids 0..59) and, as a second positive, the caption itself (ids 60..119)
    lines = [f"{i} {i}" for i in range(20)] + [f"{i} {60 + i}" for i in range(20)]
    (tmp_path / "gold.tsv").write_text("\n".join(lines) + "\n")
    args = ["eval", "--index", str(tmp_path / "db.faiss"), "--queries", str(tmp_path / "q.npy"),
            "--query-modality", "text", "--qrels", str(tmp_path / "gold.tsv"), "--seeds", "1",
            "--methods", "raw,simstd-index,simstd-log", "--json"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # a note about the log's self-matches goes to stderr
    raw = out["protocols"]["index"]["methods"]["raw"]["metrics"]
    assert raw["R@1"]["mean"] == 1.0  # the caption itself is indexed and relevant
    r = CliRunner().invoke(main, args[:-3] + ["--methods", "raw"] + ["--qrels", str(tmp_path / "nope.tsv")])
    assert r.exit_code != 0 and "does not exist" in r.output and "Traceback" not in r.output


def test_cli_eval_user_errors_have_no_traceback(tmp_path):
    runner = CliRunner()
    for args, msg in (
        (["eval"], "nothing to evaluate"),
        (["eval", str(tmp_path / "x.npy")], "does not exist"),
        (["eval", "--index", "db.faiss"], "--index needs"),
    ):
        r = runner.invoke(main, args)
        assert r.exit_code == 1 and msg in r.output and "Traceback" not in r.output, r.output
    np.save(tmp_path / "p.npy", PAIRS)
    r = runner.invoke(main, ["eval", str(tmp_path / "p.npy"), "--methods", "raw,bogus"])
    assert r.exit_code == 1 and "unknown method 'bogus'" in r.output
    r = runner.invoke(main, ["eval", "--list-methods"])
    assert r.exit_code == 0 and "simstd-qshift" in r.output


def test_cli_eval_prints_the_table_on_real_clip(features_dir):
    r = CliRunner().invoke(main, ["eval", str(features_dir / "features_clip.npy"), "--seeds", "2",
                                  "--methods", "raw,per-query,simstd-index,simstd-qshift"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("features_clip.npy — mixed: index 250 image, 250 text")
    mixed = lines[: lines.index("")]  # the first table
    row = {line.split()[0]: line.split() for line in mixed}
    assert float(row["raw"][4]) == 0.0  # R@20: the modality gap
    # columns end with: R@20/ceiling mean ± std, excess mean ± std
    assert float(row["simstd-index"][-6]) == pytest.approx(0.91, abs=0.03)  # R@20 / ceiling, the paper
    assert float(row["simstd-qshift"][-6]) > float(row["simstd-index"][-6])
    assert row["simstd-index"][-3] == "+0.000"  # the paper sits on its own modality-bias frontier
    assert float(row["simstd-qshift"][-3]) > 0
    assert "text→image" in r.output and "image→text" in r.output


def test_recall_curve_and_recall_at_k_break_ties_alike_on_duplicates():
    # ConVIRT-like: many reports are exact duplicates, so an item can tie with the gold. R@k ranks ties by
    # corpus index (like a stable sort and FAISS Flat); the recall curve must use the same rule.
    rng = np.random.default_rng(0)
    dim, n = 16, 40
    texts = rng.standard_normal((4, dim))
    images = rng.standard_normal((n, dim))
    report_of = rng.integers(0, 4, size=n)  # only 4 distinct reports: duplicates everywhere
    pairs = np.stack([images, texts[report_of]])  # exact duplicate text rows
    pairs /= np.linalg.norm(pairs, axis=2, keepdims=True)
    report = run_pairs(pairs.astype(np.float32), methods=["raw", "simstd-index"], seeds=[0, 1], protocols=["mixed"])
    for method in ("ceiling", "raw", "simstd-index"):
        curve = report.recall_curve("mixed", method, kmax=20)
        for k in (1, 5, 10, 20):
            assert curve[k - 1] == pytest.approx(report.values("mixed", method, f"R@{k}").mean()), (method, k)
    # An image query whose caption duplicates an earlier-indexed one is not found at rank 1.
    scores = np.array([[0.5, 0.9, 0.9, 0.1]])
    np.testing.assert_array_equal(first_rank(scores, np.array([[False, False, True, False]])), [2])
    np.testing.assert_array_equal(first_rank(scores, np.array([[False, True, True, False]])), [1])
    np.testing.assert_array_equal(first_rank(scores, np.array([[True, False, True, False]])), [2])
    # A partial ranking keeps the same rule when the cut falls inside a block of ties.
    tied = np.array([[0.3, 0.7, 0.7, 0.9, 0.7, 0.7]])
    np.testing.assert_array_equal(rank_order(tied, 3), [[3, 1, 2]])
    np.testing.assert_array_equal(rank_order(tied, 3), rank_order(tied)[:, :3])
