"""sample="auto": pseudo queries drawn in rounds until every pair's mean and std reach a target precision."""
from __future__ import annotations

import numpy as np
import pytest

from simstd import SimstdError, Standardizer
from simstd.engines import ArraySearcher
from simstd.stats import first_round, next_round, sampling_errors


def test_sampling_errors_match_the_textbook_formulas():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40_000, 1))
    n, se_mean, se_std = sampling_errors(x)
    assert n == 40_000 and se_mean == pytest.approx(1 / 200)
    assert se_std == pytest.approx(np.sqrt(2 / (4 * 40_000)), rel=0.05)  # normal: kurtosis 3
    heavy = np.where(rng.random((40_000, 1)) < 0.1, 1.0, 0.5)  # 10% near-duplicates: kurtosis ~8.1
    assert sampling_errors(heavy)[2] == pytest.approx(np.sqrt(7.1 / (4 * 40_000)), rel=0.05)
    # rows without a score do not count as queries; an all-empty pair has no precision at all
    assert sampling_errors(np.array([[0.5], [-np.inf], [0.7]]))[0] == 2
    assert sampling_errors(np.full((3, 1), -np.inf))[1] == np.inf


def test_next_round_stops_at_the_target_and_extrapolates_otherwise():
    rng = np.random.default_rng(1)
    normal = rng.standard_normal((first_round(0.05), 1))
    assert first_round(0.05) == 400 and next_round([normal], 400, 0.05) == 0
    heavy = np.where(rng.random((400, 1)) < 0.1, 1.0, 0.5)
    more = next_round([normal, heavy], 400, 0.05)  # the heavy pair's std needs ~(8.1 - 1) / 4 / 0.05^2 = 710
    assert 600 - 400 < more < 1000 - 400


def _heavy_store(seed: int = 0):
    """Two modalities; 5% of the images come as near-identical pairs, so image->image top-1 scores
    are bimodal (a heavy tail in kurtosis terms: its std needs more queries than its mean)."""
    rng = np.random.default_rng(seed)
    dim, n = 32, 3000
    base = rng.standard_normal((n, dim))
    twins = rng.choice(n, size=int(0.05 * n) // 2 * 2, replace=False)
    base[twins[1::2]] = base[twins[::2]] + 0.01 * rng.standard_normal((len(twins) // 2, dim))
    text = rng.standard_normal((n, dim)) + 2.0 * np.eye(dim)[0]
    X = np.concatenate([base, text]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return ArraySearcher(X, ["image"] * n + ["text"] * n)


def test_auto_draws_until_every_pair_reaches_the_target():
    store = _heavy_store()
    target = 0.04
    std = Standardizer(method="paper", sample="auto", target_se=target, seed=3).fit(store)
    queries = std.n_  # n_pseudo=1: one score per query and pair
    assert (queries[1] == first_round(target)).all()  # text pairs: a light tail, one round suffices
    assert (queries[0] > first_round(target)).all()  # image pairs: the twins' tail asked for more
    assert (queries < 3000).all()
    # and what it reached: each pair's standard errors at most the target, on the scores it mined
    from simstd.mining import mine_pseudo_positives

    qm, tm, s = mine_pseudo_positives(store, sample="auto", target_se=target, seed=3)
    for a in ("image", "text"):
        for b in ("image", "text"):
            n, se_mean, se_std = sampling_errors(s[(qm == a) & (tm == b)][:, None])
            assert n == std.n_[std.modalities_.index(a), std.modalities_.index(b)]
            assert max(se_mean, se_std) <= target


@pytest.mark.parametrize("method", ["paper", "hubness"])
def test_auto_with_a_target_beyond_reach_uses_every_item(method):
    store = _heavy_store()
    std = Standardizer(method=method, sample="auto", target_se=0.001, seed=0).fit(store)  # would need 10^6 queries
    np.testing.assert_array_equal(std.n_, [[3000, 3000], [3000, 3000]])
    full = Standardizer(method=method, sample=None).fit(store)
    np.testing.assert_allclose(std.mean_, full.mean_, atol=1e-12)
    np.testing.assert_allclose(std.std_, full.std_, atol=1e-12)


@pytest.mark.parametrize("method", ["paper", "hubness"])
def test_auto_is_seeded_and_saved(method):
    store = _heavy_store()
    a = Standardizer(method=method, sample="auto", target_se=0.05, seed=7).fit(store)
    b = Standardizer(method=method, sample="auto", target_se=0.05, seed=7).fit(store)
    np.testing.assert_array_equal(a.mean_, b.mean_)
    again = Standardizer.from_dict(a.to_dict())
    assert again.method == method and again.sample == "auto" and again.target_se == 0.05
    assert "sample='auto'" in repr(a)


@pytest.mark.parametrize("bad", [{"sample": "all"}, {"target_se": 0}, {"target_se": 1.5}, {"target_se": True},
                                 {"sample": 0}])
def test_bad_adaptive_settings_are_refused(bad):
    with pytest.raises(SimstdError):
        Standardizer(**bad).fit(_heavy_store())


def test_auto_sizes_the_hubness_fit_too():
    store = _heavy_store()
    std = Standardizer(method="hubness", sample="auto", target_se=0.05, hubness_bank=None).fit(store)
    assert (std.n_ >= first_round(0.05)).all() and (std.n_ < 3000).all()
    fixed = Standardizer(method="hubness", sample=400, hubness_bank=None).fit(store)
    assert fixed.n_.tolist() == [[400, 400], [400, 400]]


def test_the_default_states_its_sampling_error_and_keeps_it():
    """The same for the default (hubness) fit, whose pairs are scored by the corrected
    similarity; merge, which pools the paper's statistics, is the paper's alone."""
    default = Standardizer(sample="auto", target_se=0.04, seed=3).fit(_heavy_store())
    errors = default.standard_error_
    assert default.method == "hubness" and errors.shape == (2, 2, 2) and (errors <= 0.04).all()
    np.testing.assert_allclose(errors[..., 0], default.n_**-0.5)  # 1/sqrt(pseudo queries)
    np.testing.assert_array_equal(Standardizer.from_dict(default.to_dict()).standard_error_, errors)
    with pytest.raises(SimstdError, match="merge"):
        default.merge(default)
    small = Standardizer(sample=100, seed=3).fit(_heavy_store()).standard_error_
    assert small[..., 0] == pytest.approx(0.1) and (small > 0.04).any()


def test_a_fit_states_its_sampling_error_and_keeps_it():
    store = _heavy_store()
    std = Standardizer(method="paper", sample="auto", target_se=0.04, seed=3).fit(store)
    assert std.standard_error_.shape == (2, 2, 2) and (std.standard_error_ <= 0.04).all()
    np.testing.assert_allclose(std.standard_error_[..., 0], std.n_**-0.5)  # the mean's: 1/sqrt(queries)
    again = Standardizer.from_dict(std.to_dict())
    np.testing.assert_array_equal(again.standard_error_, std.standard_error_)
    assert np.isnan(std.merge(again).standard_error_).all()  # pooled fits: unknown, not made up
    fixed = Standardizer(method="paper", sample=100, seed=3).fit(store)
    assert (fixed.standard_error_[..., 0] == pytest.approx(0.1)) and (fixed.standard_error_ > 0.04).any()


def test_draw_sample_sizes_rounds_by_the_chosen_arrays_only():
    from simstd.stats import draw_sample

    rng = np.random.default_rng(2)
    light = rng.standard_normal(3000)
    heavy = np.where(rng.random(3000) < 0.1, 1.0, 0.5)  # kurtosis ~8: its std asks ~2x the queries

    def score(rows):
        return [heavy[rows][:, None], light[rows][:, None]]

    def drawn(**kw):
        return len(draw_sample(np.arange(3000), "auto", score, rng=np.random.default_rng(0), seed=0,
                               modality="text", target=0.05, **kw)[0])

    assert drawn() > first_round(0.05)  # every array sizes the sample: the heavy one asks for more
    assert drawn(sized_by=slice(1, None)) == first_round(0.05)  # the light one alone: one round


def test_the_tail_scaled_fit_sizes_its_sample_by_the_cosines():
    """With the tail scale the ranking uses the terms and beta_ab only, so the pseudo positives'
    corrected scores (reported, heavy-tailed when a few items are anti-hubs) do not size the sample;
    the cosines the uncertainty model describes do."""
    from simstd import hubness

    store = _heavy_store()
    rng = np.random.default_rng(5)
    rho = np.where(rng.random(6000) < 0.03, -3.0, 0.5)  # 3% of items with a tiny term: huge u, a heavy tail

    def run(sized_by):
        qm, tm, v, s = hubness.pseudo_positive_scores(store, lambda ids, a: rho[ids], 10, "auto", 0,
                                                      target_se=0.05, sized_by=sized_by)
        return qm, tm, v, s

    qm, tm, v, s = run("both")
    assert (qm == "text").sum() > 2 * first_round(0.05)  # the corrected scores asked for more rounds
    qm, tm, v, s = run("cosines")
    assert (qm == "text").sum() == 2 * first_round(0.05)  # 400 queries x 2 target modalities
    for a in ("image", "text"):
        for b in ("image", "text"):
            pick = (qm == a) & (tm == b)
            assert max(sampling_errors(s[pick][:, None])[1:]) <= 0.05  # the cosines reach the target
    with pytest.raises(SimstdError, match="sized_by"):
        run("corrected")
