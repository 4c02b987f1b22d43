"""Match probabilities (p_match): the calibration map, gold pairs, thresholds, persistence, CLI and HTTP."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from simstd import MixedIndex, Standardizer
from simstd.cli import main
from simstd.datasets import synthetic_pairs
from simstd.errors import SimstdError
from simstd.uncertainty import UncertaintyModel
from simstd.evaluation.uncertainty import expected_calibration_error, partnered_split
from simstd.uncertainty.labels import read_gold_pairs
from simstd.uncertainty.model import LABEL_PRIOR, apply_logistic, fit_logistic, logit


# ----------------------------------------------------------- the map itself
def test_calibration_error_falls_with_the_number_of_labels_on_known_probabilities():
    """Posterior shares p whose true match probability is known, sigmoid(2 logit p - 1):
    the map fitted on n gold labels (with the prior toward the label-free identity)
    gets closer to the truth as n grows: 10, 20, 50, 100, 200."""
    rng = np.random.default_rng(0)
    grid = rng.uniform(0.01, 0.99, 5000)
    truth = apply_logistic(logit(grid), 2.0, -1.0)
    identity_error = np.abs(grid - truth).mean()
    errors = []
    for n in (10, 20, 50, 100, 200):
        err = []
        for _ in range(40):
            p = rng.uniform(0.01, 0.99, n)
            y = rng.uniform(size=n) < apply_logistic(logit(p), 2.0, -1.0)
            a, b = fit_logistic(logit(p), y, prior=(1.0, 0.0), ridge=LABEL_PRIOR)
            err.append(np.abs(apply_logistic(logit(grid), a, b) - truth).mean())
        errors.append(float(np.mean(err)))
    assert all(x > y for x, y in zip(errors, errors[1:])), errors
    assert errors[0] < identity_error and errors[-1] < 0.35 * identity_error, (identity_error, errors)


def test_fit_logistic_stays_finite_on_separable_labels():
    a, b = fit_logistic(np.array([-3.0, -2.0, 2.0, 3.0]), np.array([0, 0, 1, 1]))
    assert np.isfinite([a, b]).all() and a > 1


# ----------------------------------------------------- on an index, labelled
@pytest.fixture(scope="module")
def paired():
    """A synthetic collection in which every query's partner is indexed (ids known)."""
    pairs = synthetic_pairs(240, 48, seed=3)
    corpus, queries, gold = partnered_split(pairs, "paired", seed=0)
    index = MixedIndex.from_arrays(corpus)
    index.standardizer = Standardizer().fit(index)
    model = UncertaintyModel().fit(index)
    Q = np.concatenate(list(queries.values()))
    QM = np.repeat(list(queries), [len(v) for v in queries.values()])
    G = np.concatenate([gold[m] for m in queries])
    return index, model, Q, QM, G


def _top1_ece(index, model, Q, QM, G, rows):
    p, c = [], []
    for m in np.unique(QM[rows]).tolist():
        sel = rows[QM[rows] == m]
        res = index.search(Q[sel], m, 1, uncertainty=model)
        p.append(res.p_match[:, 0])
        c.append(res.ids[:, 0] == G[sel])
    return expected_calibration_error(np.concatenate(p), np.concatenate(c))


def test_calibrating_on_gold_pairs_lowers_the_error_of_held_out_queries(paired):
    index, model, Q, QM, G = paired
    assert model.calibration_source == "label-free"
    rows = np.random.default_rng(1).permutation(len(Q))
    train, test = rows[:60], rows[60:]
    before = _top1_ece(index, model, Q, QM, G, test)
    fitted = UncertaintyModel.from_dict(model.to_dict()).calibrate(index, G[train], queries=Q[train],
                                                                   query_modality=QM[train])
    after = _top1_ece(index, fitted, Q, QM, G, test)
    assert fitted.calibration_source == "calibrated on 60 gold pairs"
    assert after < before, (before, after)
    # the label-free map is kept beside the fitted one: a second calibration starts from it
    again = UncertaintyModel.from_dict(fitted.to_dict()).calibrate(index, G[train[:10]], queries=Q[train[:10]],
                                                                   query_modality=QM[train[:10]])
    assert again.calibration_["label_free"] == model.calibration_


def test_min_prob_filters_hits_and_refuses_bad_thresholds(paired):
    index, model, Q, QM, G = paired
    res = index.search(Q[:20], str(QM[0]), 5, uncertainty=model)
    assert res.p_match is not None and np.allclose(res.p_match, res.confidence)  # the identity map
    kept = res.above(0.3)
    assert ((kept.ids >= 0) == (res.p_match >= 0.3)).all()
    assert (kept.ids[kept.ids >= 0] == res.ids[res.p_match >= 0.3]).all()
    assert all(h["p_match"] >= 0.3 for q in range(20) for h in kept.hits(q))
    assert (res.above(0.0).ids == res.ids).all() and (res.above(1.0).ids[res.p_match < 1] == -1).all()
    for bad in (-0.1, 1.5, float("nan"), "0.5", True):
        with pytest.raises(SimstdError, match=r"must be a probability in \[0, 1\]"):
            res.above(bad)
    with pytest.raises(SimstdError, match="needs the uncertainty model"):
        index.search(Q[:2], str(QM[0]), 5).above(0.5)


def test_calibrate_refuses_unknown_ids(paired):
    index, model, Q, QM, G = paired
    fresh = UncertaintyModel.from_dict(model.to_dict())
    with pytest.raises(SimstdError, match="unknown target ids"):
        fresh.calibrate(index, [0, index.ntotal + 5], query_ids=[1, 2])
    with pytest.raises(SimstdError, match="unknown query ids"):
        fresh.calibrate(index, [0, 1], query_ids=[3, -1])
    with pytest.raises(SimstdError, match="either as stored ids"):
        fresh.calibrate(index, [0], query_ids=[1], queries=Q[:1], query_modality="text")
    assert fresh.calibration_source == "label-free"  # refused calls change nothing


def test_calibration_persists_and_old_files_read_as_label_free(paired, tmp_path):
    index, model, Q, QM, G = paired
    fitted = UncertaintyModel.from_dict(model.to_dict()).calibrate(index, G[:30], queries=Q[:30],
                                                                   query_modality=QM[:30])
    fitted.save(tmp_path / "u.json")
    back = UncertaintyModel.load(tmp_path / "u.json")
    assert back.calibration_ == fitted.calibration_ and back.calibration_source == "calibrated on 30 gold pairs"
    p = np.array([0.01, 0.3, 0.9])
    np.testing.assert_allclose(back.p_match(p), fitted.p_match(p))
    old = fitted.to_dict()
    del old["calibration"], old["settings"]["calibration"]  # a file written before p_match existed
    assert UncertaintyModel.from_dict(old).calibration_source == "label-free"


def test_mutual_map_is_label_free_and_fitted(paired):
    index = paired[0]
    model = UncertaintyModel(calibration="mutual").fit(index)
    c = model.calibration_
    assert c["source"] == "label-free" and c["map"] == "mutual" and c["n_fit"] > 0
    assert np.isfinite([c["a"], c["b"]]).all()
    with pytest.raises(SimstdError, match="calibration"):
        UncertaintyModel(calibration="isotonic").fit(index)


# ------------------------------------------------------------- label files
def test_gold_pair_files_and_their_errors(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"query_id": 1, "target_id": 7}\n\n{"query_id": 2, "target_id": 8}\n')
    gold = read_gold_pairs(f)
    assert gold.query_ids.tolist() == [1, 2] and gold.target_ids.tolist() == [7, 8]
    f.write_text('{"query_vector": [1, 0], "query_modality": "text", "target_id": 3}\n')
    gold = read_gold_pairs(f, dim=2)
    assert gold.queries.shape == (1, 2) and gold.query_modalities.tolist() == ["text"]
    cases = {
        '{"query_id": 1, "target_id": 7}\nnot json\n': "line 2 is not JSON",
        '{"query_id": 1}\n': 'line 1 has no "target_id"',
        '{"target_id": 1}\n': 'neither "query_id" nor "query_vector"',
        '{"query_id": "a", "target_id": 1}\n': "query_id must be a non-negative integer",
        '{"query_id": 1, "target_id": 1.5}\n': "target_id must be a non-negative integer",
        '{"query_vector": [1, 0], "target_id": 1}\n': "needs its \"query_modality\"",
        '{"query_id": 1, "target_id": 2}\n{"query_vector": [1, 0], "query_modality": "text", "target_id": 1}\n':
            "mixes query ids and query vectors",
        "\n": "holds no pairs",
    }
    for text, message in cases.items():
        f.write_text(text)
        with pytest.raises(SimstdError, match=message):
            read_gold_pairs(f)
    with pytest.raises(SimstdError, match="does not exist"):
        read_gold_pairs(tmp_path / "nope.jsonl")


# --------------------------------------------------------------------- CLI
def test_cli_labels_min_prob_and_info(tmp_path):
    pairs = synthetic_pairs(120, 32, seed=5)
    np.save(tmp_path / "i.npy", pairs[0])
    np.save(tmp_path / "t.npy", pairs[1])
    np.save(tmp_path / "q.npy", pairs[1][:3])
    db = tmp_path / "db.faiss"
    run = lambda *a: CliRunner().invoke(main, [str(x) for x in a])  # noqa: E731
    r = run("build", "-e", f"image={tmp_path / 'i.npy'}", "-e", f"text={tmp_path / 't.npy'}", "-o", db)
    assert r.exit_code == 0, r.output
    r = run("query", "--vector", tmp_path / "q.npy", "--index", db, "--min-prob", "0.5")
    assert r.exit_code == 1 and "simstd fit" in r.output
    r = run("fit", "--index", db, "--uncertainty")
    assert r.exit_code == 0 and "p_match: label-free" in r.output
    r = run("info", "--index", db)
    assert "p_match      label-free" in r.output
    assert json.loads(run("info", "--index", db, "--format", "json").output)["uncertainty"]["probabilities"] == \
        "label-free"
    r = run("query", "--vector", tmp_path / "q.npy", "--index", db, "-k", "5", "--format", "jsonl")
    records = [json.loads(line) for line in r.output.splitlines()]
    assert len(records) == 15 and all(0 <= x["p_match"] <= 1 for x in records)
    r = run("query", "--vector", tmp_path / "q.npy", "--index", db, "-k", "5", "--format", "jsonl",
            "--min-prob", "0.2")
    kept = [json.loads(line) for line in r.output.splitlines()]
    assert kept == [x for x in records if x["p_match"] >= 0.2]
    assert "p_match" in run("query", "--like", 0, "--index", db, "-k", "3").output  # the table's column
    for bad in ("1.5", "-0.2", "nan"):
        r = run("query", "--vector", tmp_path / "q.npy", "--index", db, "--min-prob", bad)
        assert r.exit_code == 1 and "--min-prob must be a probability in [0, 1]" in r.output, r.output
        assert "Traceback" not in r.output
    # gold pairs: image i (id i) matches text i (id 120 + i)
    labels = tmp_path / "pairs.jsonl"
    labels.write_text("".join(json.dumps({"query_id": i, "target_id": 120 + i}) + "\n" for i in range(40)))
    r = run("fit", "--index", db, "--labels", labels)
    assert r.exit_code == 1 and "add --uncertainty" in r.output
    r = run("fit", "--index", db, "--uncertainty", "--labels", labels)
    assert r.exit_code == 0 and "p_match: calibrated on 40 gold pairs" in r.output, r.output
    assert "calibrated on 40 gold pairs" in run("info", "--index", db).output
    vectors = tmp_path / "vectors.jsonl"  # query vectors that are not stored: caption i matches image i
    vectors.write_text("".join(json.dumps({"query_vector": pairs[1][i].tolist(), "query_modality": "text",
                                           "target_id": i}) + "\n" for i in range(12)))
    r = run("fit", "--index", db, "--uncertainty", "--labels", vectors)
    assert r.exit_code == 0 and "p_match: calibrated on 12 gold pairs" in r.output, r.output
    r = run("fit", "--index", db, "--uncertainty", "--labels", labels)
    info = json.loads(run("info", "--index", db, "--format", "json").output)["uncertainty"]
    assert info["labels"] == 40 and info["calibration"]["source"] == "labels"
    for text, message in (('{"query_id": 1, "target_id": 999}\n', "unknown target ids (first: 999)"),
                          ('{"query_id": 1}\n', 'has no "target_id"'), ("{oops\n", "line 1 is not JSON")):
        labels.write_text(text)
        r = run("fit", "--index", db, "--uncertainty", "--labels", labels)
        assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, r.output
    assert "calibrated on 40 gold pairs" in run("info", "--index", db).output  # a refused fit wrote nothing


def test_plot_reliability(tmp_path):
    pytest.importorskip("matplotlib")
    np.save(tmp_path / "p.npy", synthetic_pairs(80, 32, seed=1))
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "p.npy"), "-o", str(tmp_path), "--kind", "reliability",
                                  "--seeds", "2"])
    assert r.exit_code == 0, r.output
    png = tmp_path / "p_reliability.png"
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


# -------------------------------------------------------------------- HTTP
def test_serve_search_min_prob_and_info(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from simstd.serve import create_app

    pairs = synthetic_pairs(80, 32, seed=2)
    index = MixedIndex.from_arrays({"image": pairs[0], "text": pairs[1]})
    index.standardizer = Standardizer().fit(index)
    db = tmp_path / "db.faiss"
    index.save(db)
    with TestClient(create_app(db, encoder=None)) as client:
        r = client.post("/search", json={"vector": pairs[1][0].tolist(), "k": 5, "min_prob": 0.5})
        assert r.status_code == 400 and "uncertainty" in r.json()["detail"]
        assert client.get("/info").json()["probabilities"] is None
    index.uncertainty = UncertaintyModel().fit(index)
    index.save(db)
    with TestClient(create_app(db, encoder=None)) as client:
        assert client.get("/info").json()["probabilities"] == "label-free"
        hits = client.post("/search", json={"vector": pairs[1][0].tolist(), "k": 10}).json()["hits"]
        assert all(0 <= h["p_match"] <= 1 for h in hits)
        kept = client.post("/search", json={"vector": pairs[1][0].tolist(), "k": 10, "min_prob": 0.1}).json()["hits"]
        assert [h["id"] for h in kept] == [h["id"] for h in hits if h["p_match"] >= 0.1]
        r = client.post("/search", json={"vector": pairs[1][0].tolist(), "k": 5, "min_prob": 2})
        assert r.status_code == 400 and "min_prob must be a probability in [0, 1]" in r.json()["detail"]
