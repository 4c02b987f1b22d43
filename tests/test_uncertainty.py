"""The label-free uncertainty model: formulas on hand-computed cases, the search
and CLI integration, the analysis functions, and the real-CLIP acceptance."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from simstd import MixedIndex, Standardizer
from simstd.cli import main
from simstd.errors import FingerprintMismatchError, SimstdError, StaleFitWarning
from simstd.storage import version_files
from simstd.evaluation.uncertainty import (
    decile_recall,
    expected_calibration_error,
    fit_platt,
    mixed_protocol_run,
    platt,
    plot_reliability,
)
from simstd.uncertainty import (
    UncertaintyModel,
    background_moments,
    condition_out,
    log_tail_mean,
    lr_vertex,
    monotone_log_lr,
    surprisal,
)

from conftest import unit_rows


# ------------------------------------------------------------------ formulas
def test_log_lr_by_hand_and_capped_at_the_vertex():
    mp, sp, mb, sb = 0.30, 0.03, 0.16, 0.05
    # ln(5/3) - (0.05/0.03)^2 / 2 + (0.09/0.05)^2 / 2
    assert monotone_log_lr(0.25, mp, sp, mb, sb) == pytest.approx(math.log(5 / 3) - 25 / 18 + 1.62)
    v = lr_vertex(mp, sp, mb, sb)
    assert v == pytest.approx(0.000606 / 0.0016)  # (mp sb^2 - mb sp^2) / (sb^2 - sp^2) = 0.37875
    above = monotone_log_lr(np.array([v, 0.5, 1.0]), mp, sp, mb, sb)
    assert np.allclose(above, above[0])  # a higher cosine never lowers the evidence
    grid = monotone_log_lr(np.linspace(-1, 1, 2001), mp, sp, mb, sb)
    assert np.all(np.diff(grid) >= -1e-12)


def test_log_lr_floored_when_positives_are_wider():
    mp, sp, mb, sb = 0.5, 0.2, 0.1, 0.1
    v = lr_vertex(mp, sp, mb, sb)  # (0.5*0.01 - 0.1*0.04) / (0.01 - 0.04) = -1/30
    assert v == pytest.approx(-1 / 30)
    grid = monotone_log_lr(np.linspace(-1, 1, 2001), mp, sp, mb, sb)
    assert np.all(np.diff(grid) >= -1e-12)
    assert monotone_log_lr(-0.9, mp, sp, mb, sb) == pytest.approx(monotone_log_lr(v, mp, sp, mb, sb))


def test_tail_mean_closed_forms():
    # Equal distributions: LR = 1 everywhere.
    assert log_tail_mean(np.array([-0.5, 0.2, np.inf]), 0.2, 0.1, 0.2, 0.1) == pytest.approx([0, 0, 0], abs=1e-12)
    # Equal variances, mu_p = 1, mu_b = 0, sigma = 1: LR = exp(s - 1/2) and
    # E_b[LR | s < 0] = Phi(-1) / Phi(0) = 0.158655 / 0.5.
    assert math.exp(log_tail_mean(0.0, 1, 1, 0, 1)) == pytest.approx(0.3173105, rel=1e-6)


@pytest.mark.parametrize("params", [(0.30, 0.03, 0.16, 0.05), (0.5, 0.2, 0.1, 0.1)])
@pytest.mark.parametrize("cutoff", [0.2, 0.45])
def test_tail_mean_matches_monte_carlo_on_both_sides_of_the_vertex(params, cutoff):
    mp, sp, mb, sb = params
    s = np.random.default_rng(0).normal(mb, sb, 2_000_000)
    s = s[s < cutoff]
    mc = np.exp(monotone_log_lr(s, *params)).mean()
    assert math.exp(log_tail_mean(cutoff, *params)) == pytest.approx(mc, rel=0.02)


def test_background_moments_by_hand_and_by_brute_force():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    t = np.array([[1.0, 0.0], [0.6, 0.8]])
    mean, std = background_moments([a, t])
    # a x t cosines: 1, 0.6, 0, 0.8 -> mean 0.6, E[s^2] = 0.5, var 0.14
    assert mean[0, 1] == pytest.approx(0.6) and std[0, 1] == pytest.approx(math.sqrt(0.14))
    assert mean[1, 1] == pytest.approx(0.6) and std[1, 1] == pytest.approx(0.0, abs=1e-7)  # only x != y
    assert mean[0, 0] == pytest.approx(0.0) and std[0, 0] == pytest.approx(0.0)
    rng = np.random.default_rng(1)
    x, y = unit_rows(rng, 30, 8, 1.0).astype(float), unit_rows(rng, 20, 8, -1.0).astype(float)
    mean, std = background_moments([x, y])
    cross, same = (x @ y.T).ravel(), (y @ y.T)[~np.eye(20, dtype=bool)]
    assert mean[0, 1] == pytest.approx(cross.mean()) and std[0, 1] == pytest.approx(cross.std())
    assert mean[1, 1] == pytest.approx(same.mean()) and std[1, 1] == pytest.approx(same.std())


def test_surprisal_and_conditioning_by_hand():
    u = surprisal(np.log([[1.0, 3.0]]))
    assert u == pytest.approx(np.log([[4.0, 4 / 3]]))
    u = surprisal(np.log([[1.0, 3.0]]), np.log([[4.0]]))  # a tail term joins the normaliser
    assert u == pytest.approx(np.log([[8.0, 8 / 3]]))
    # The near-certain result keeps an accurate tiny u = log1p(e^-50).
    u = surprisal(np.array([[0.0, -50.0]]))
    assert u[0, 0] == pytest.approx(math.exp(-50), rel=1e-12)
    # p = (0.5, 0.3, 0.2); learning the first is not the match leaves (0.6, 0.4).
    u = condition_out(-np.log([[0.5, 0.3, 0.2]]), np.array([[True, False, False]]))
    assert np.exp(-u[0, 1:]) == pytest.approx([0.6, 0.4])
    # p_self = 1 - 1e-20 is held accurately as u_self = 1e-20 (see surprisal).
    u = condition_out(np.array([[1e-20, -np.log(6e-21), -np.log(4e-21)]]), np.array([[True, False, False]]))
    assert np.exp(-u[0, 1:]) == pytest.approx([0.6, 0.4], rel=1e-6)


def _fixed_model(params, hubs=None):
    """A model for one modality pair ('q', 't') with given Gaussians."""
    m = UncertaintyModel(hubness=hubs is not None)
    m.modalities_ = ["q", "t"]
    for name in ("pos_mean_", "pos_std_", "bg_mean_", "bg_std_"):
        setattr(m, name, np.full((2, 2), np.nan))
    m.pos_mean_[0, 1], m.pos_std_[0, 1], m.bg_mean_[0, 1], m.bg_std_[0, 1] = params
    m.hubs_ = {"q": hubs or (np.empty(0, np.int64), np.empty(0, np.int64), 0)}
    m.index_fingerprint_ = None
    m.dim_ = None
    return m


def test_posterior_with_hub_prior_and_tail_by_hand():
    # LR(s) = exp(s - 1/2) (equal variances); ids 5 and 7 score the same, item 5
    # won 3 pseudo queries: prior 1/4 against 1.
    hubs = (np.array([5]), np.array([3]), 10)
    m = _fixed_model((1.0, 1.0, 0.0, 1.0), hubs)
    u = m.uncertainty(np.array([[0.0, 0.0]]), np.array([[5, 7]]), np.array([0, 0]), ["t"], "q", [2])
    assert np.exp(-u[0]) == pytest.approx([0.2, 0.8])
    # One candidate (s = 0) of a 2-item shard: the other item is a tail below 0
    # with mean ratio Phi(-1)/Phi(0): p = e^-0.5 / (e^-0.5 + 0.3173105).
    m = _fixed_model((1.0, 1.0, 0.0, 1.0))
    u = m.uncertainty(np.array([[0.0]]), np.array([[3]]), np.array([0]), ["t"], "q", [2])
    assert math.exp(-u[0, 0]) == pytest.approx(math.exp(-0.5) / (math.exp(-0.5) + 0.3173105), rel=1e-6)


# ------------------------------------------------------------- integration
@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    index = MixedIndex.from_arrays({"text": unit_rows(rng, 60, 16, 3.0), "image": unit_rows(rng, 40, 16, -3.0)})
    index.standardizer = Standardizer().fit(index)
    return index, UncertaintyModel().fit(index), unit_rows(rng, 5, 16, 3.0)


def test_search_fills_confidence_and_uncertainty(fitted):
    index, model, q = fitted
    plain = index.search(q, "text", 5)
    assert plain.confidence is None and plain.uncertainty is None and plain.query_confidence is None
    res = index.search(q, "text", 5, uncertainty=model)
    # the same ranking; the default's query term is summed over wider candidate blocks (the model's
    # depth), so a score may differ in float32's last bits
    assert np.array_equal(res.ids, plain.ids) and np.allclose(res.scores, plain.scores, rtol=1e-6, atol=1e-5)
    assert res.confidence.shape == (5, 5) and np.allclose(res.confidence, np.exp(-res.uncertainty))
    assert np.all(res.confidence.sum(axis=1) <= 1 + 1e-9)
    assert np.array_equal(res.query_confidence, res.confidence[:, 0])
    hit = res.hits(0)[0]
    assert hit["confidence"] == pytest.approx(res.confidence[0, 0]) and list(hit)[-1] == "metadata"
    # The confidence of a hit does not depend on k (up to the model's depth).
    assert index.search(q, "text", 1, uncertainty=model).confidence[:, 0] == pytest.approx(res.confidence[:, 0])
    full = index.search(q, "text", index.ntotal, uncertainty=model)
    assert full.confidence.sum(axis=1) == pytest.approx(np.ones(5))  # every item retrieved: no tail


def test_equal_distributions_give_a_uniform_posterior(fitted):
    index, model, q = fitted
    for i in range(2):
        for j in range(2):  # positives look like background: no evidence at all
            model.pos_mean_[i, j], model.pos_std_[i, j] = model.bg_mean_[i, j], model.bg_std_[i, j]
    model.hubness = False
    for k in (1, 3, 30):
        res = index.search(q, "text", k, uncertainty=model)
        assert res.confidence == pytest.approx(np.full((5, k), 1 / index.ntotal))


def test_rerank(fitted):
    index, model, q = fitted
    plain = index.search(q, "text", 8, uncertainty=model)
    same = index.search(q, "text", 8, uncertainty=model, rerank="uncertainty", rerank_weight=0.0)
    assert np.array_equal(same.ids, plain.ids)
    w = 2.0
    rr = index.search(q, "text", 8, uncertainty=model, rerank="uncertainty", rerank_weight=w)
    key = rr.scores - w * rr.uncertainty
    assert np.all(np.diff(key, axis=1) <= 1e-5)  # ordered by z - w u
    with pytest.raises(SimstdError, match="uncertainty model"):
        index.search(q, "text", 8, rerank="uncertainty")
    with pytest.raises(SimstdError, match="standardized"):
        index.search(q, "text", 8, raw=True, uncertainty=model, rerank="uncertainty")
    with pytest.raises(SimstdError, match="rerank must be"):
        index.search(q, "text", 8, uncertainty=model, rerank="lcb")
    with pytest.raises(SimstdError, match="rerank_weight"):
        index.search(q, "text", 8, uncertainty=model, rerank="uncertainty", rerank_weight=-1)


def test_search_like_conditions_on_the_item_not_being_its_own_match(fitted):
    # The paper's z of the other items does not depend on the query item being a candidate, so
    # leaving it out is conditioning on it not being the match. (The default's query term moves
    # when the item leaves its own modality's candidates: tests/test_hubness.py checks that path.)
    index, _, _ = fitted
    index.standardizer = Standardizer(method="paper").fit(index)
    model = UncertaintyModel().fit(index)
    like = index.search_like([3, 50], 4, uncertainty=model)
    with_self = index.search(index.reconstruct([3, 50]), "text", 5, uncertainty=model)
    assert np.array_equal(with_self.ids[:, 0], [3, 50])
    expected = with_self.confidence[:, 1:] / (1 - with_self.confidence[:, :1])
    assert like.confidence == pytest.approx(expected, rel=1e-6)


def test_fingerprint_save_and_load(fitted, tmp_path):
    index, model, q = fitted
    model.save(tmp_path / "u.json")
    again = UncertaintyModel.load(tmp_path / "u.json")
    a = index.search(q, "text", 5, uncertainty=model)
    b = index.search(q, "text", 5, uncertainty=again)
    assert np.allclose(a.uncertainty, b.uncertainty)
    index.add(unit_rows(np.random.default_rng(9), 2, 16), "image")
    fresh = Standardizer().fit(index)
    with pytest.warns(StaleFitWarning, match="uncertainty model is stale"):  # keeps serving
        assert np.isfinite(index.search(q, "text", 5, uncertainty=model, standardizer=fresh).uncertainty).all()
    with pytest.raises(FingerprintMismatchError):
        index.search(q, "text", 5, uncertainty=model, standardizer=fresh, strict=True)


def test_cli_fit_uncertainty_query_and_rerank(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "t.npy", unit_rows(rng, 40, 16, 4.0))
    np.save(tmp_path / "i.npy", unit_rows(rng, 30, 16, -4.0))
    np.save(tmp_path / "q.npy", unit_rows(rng, 2, 16, 4.0))
    db = tmp_path / "db.faiss"
    run = lambda *a: CliRunner().invoke(main, [str(x) for x in a])  # noqa: E731
    r = run("build", "-e", f"text={tmp_path / 't.npy'}", "-e", f"image={tmp_path / 'i.npy'}", "-o", db)
    assert r.exit_code == 0, r.output
    r = run("query", "--vector", tmp_path / "q.npy", "--index", db, "--rerank", "uncertainty")
    assert r.exit_code == 1 and "simstd fit --uncertainty" in r.output  # not fitted yet
    assert run("fit", "--index", db, "--uncertainty").exit_code == 0
    assert "uncertainty.json" in version_files(db)
    for extra in ([], ["--rerank", "uncertainty", "--rerank-weight", "0.5"]):
        r = run("query", "--vector", tmp_path / "q.npy", "--index", db, "-k", "3", "--format", "jsonl", *extra)
        assert r.exit_code == 0, r.output
        records = [json.loads(line) for line in r.output.splitlines()]
        assert len(records) == 6 and all(0 <= x["confidence"] <= 1 and x["uncertainty"] >= 0 for x in records)
    r = run("query", "--like", 0, "--index", db, "-k", "3")
    assert r.exit_code == 0 and "conf" in r.output
    r = run("fit", "--index", db)  # a refit without --uncertainty drops the stale model
    assert r.exit_code == 0 and "uncertainty.json" not in version_files(db)
    r = run("query", "--vector", tmp_path / "q.npy", "--index", db, "--format", "jsonl")
    assert "confidence" not in r.output


# ----------------------------------------------------------------- analysis
def test_decile_recall_and_ece_by_hand():
    correct = np.arange(20) < 10
    out = decile_recall(np.arange(20.0), correct)
    assert list(out["recall"]) == [1] * 5 + [0] * 5
    assert out["r"] == pytest.approx(-12.5 / math.sqrt(82.5 * 2.5))  # -0.8704
    # Bins [0.9, 1): conf 0.95, acc 0.5; [0.1, 0.2): conf 0.15, acc 0.
    assert expected_calibration_error([0.95, 0.95, 0.15, 0.15], [1, 0, 0, 0]) == pytest.approx(0.3)
    assert expected_calibration_error([1.0, 0.0], [1, 0]) == pytest.approx(0.0)


def test_platt_recovers_a_calibrated_map():
    rng = np.random.default_rng(0)
    true = rng.uniform(0.02, 0.98, 20_000)
    correct = rng.uniform(size=true.size) < true
    a, b = fit_platt(true, correct)
    assert a == pytest.approx(1, abs=0.05) and b == pytest.approx(0, abs=0.05)
    squashed = 1 / (1 + np.exp(-0.5 * np.log(true / (1 - true))))  # underconfident scores
    a, b = fit_platt(squashed, correct)
    assert expected_calibration_error(platt(squashed, a, b), correct) < 0.02 < expected_calibration_error(
        squashed, correct)


def test_reliability_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    conf = rng.uniform(size=200)
    path = plot_reliability({"toy": (conf, rng.uniform(size=200) < conf)}, tmp_path / "rel.png")
    assert path.stat().st_size > 1000


# --------------------------------------------------------------- real data
def test_clip_recall_at_1_falls_with_uncertainty_decile(features):
    """Acceptance: on the mixed protocol with real CLIP, Pearson r <= -0.9."""
    rs = []
    for seed in (0, 1):
        run = mixed_protocol_run(features("clip"), seed, weights=())
        correct = run["ids"][:, 0] == run["gold"]
        out = decile_recall(run["uncertainty"][:, 0], correct)
        assert out["recall"][0] > 0.9 and out["recall"][-1] < 0.2, out["recall"]
        rs.append(out["r"])
    assert max(rs) <= -0.9, rs
