"""Shared input checks (simstd/validation.py)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from simstd.validation import NORM_TOLERANCE, RENORM_TOLERANCE, as_embeddings


def _unit(n: int = 50, d: int = 64, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _norm_error(x: np.ndarray) -> np.ndarray:
    return np.abs(np.linalg.norm(x.astype(np.float64), axis=1) - 1.0)


def test_slightly_off_rows_are_renormalised_silently():
    x = _unit()
    scale = np.ones(len(x), dtype=np.float32)
    scale[::3] = 1 + 5e-4  # inside the warning tolerance, far outside round-off
    scale[1::3] = 1 - 2e-5
    raw = x * scale[:, None]
    before = raw.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning below NORM_TOLERANCE
        out = as_embeddings(raw)
    assert _norm_error(out).max() < RENORM_TOLERANCE
    np.testing.assert_array_equal(raw, before)  # the caller's array is untouched
    # cosines are true cosines, not off by the norm error
    true = (raw.astype(np.float64) @ raw.T.astype(np.float64)) / np.outer(*(2 * [np.linalg.norm(raw.astype(np.float64), axis=1)]))
    assert np.abs(out.astype(np.float64) @ out.T.astype(np.float64) - true).max() < 1e-6
    # rows already unit are kept bit for bit, and a second pass changes nothing
    exact = scale == 1
    np.testing.assert_array_equal(out[exact], x[exact])
    np.testing.assert_array_equal(as_embeddings(out), out)


def test_rows_off_beyond_the_tolerance_warn_and_are_renormalised():
    x = _unit() * np.float32(1 + 10 * NORM_TOLERANCE)
    with pytest.warns(UserWarning, match="50 of 50 rows were not L2-normalised"):
        out = as_embeddings(x)
    assert _norm_error(out).max() < RENORM_TOLERANCE


def test_unit_input_passes_through_unchanged():
    x = _unit()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = as_embeddings(x)
    assert out is x  # no copy when nothing needs fixing


def test_stored_clip_features_become_true_unit_vectors(features_dir):
    raw = np.load(features_dir / "features_clip.npy", mmap_mode="r")[0, :500]
    assert _norm_error(np.asarray(raw, dtype=np.float32)).max() > 1e-5  # the file is off by more than round-off
    out = as_embeddings(raw)
    assert _norm_error(out).max() < RENORM_TOLERANCE


# ------------------------------------------------ fitted checks and parameters
from simstd import NotFittedError, SimstdError, Standardizer  # noqa: E402
from simstd.methods import CSLS, NNN, HubnessCorrection, PseudoStandardization, QBNorm, QueryShift  # noqa: E402
from simstd.uncertainty import UncertaintyModel  # noqa: E402
from simstd.validation import Interval, check_is_fitted  # noqa: E402


def test_check_is_fitted_names_the_estimator_and_the_fix():
    class Thing:
        pass

    thing = Thing()
    with pytest.raises(NotFittedError, match=r"this Thing is not fitted yet: call fit\(\.\.\.\) before using it"):
        check_is_fitted(thing)
    with pytest.raises(NotFittedError, match="run fit first"):
        check_is_fitted(thing, ["a_", "b_"], "run fit first")
    thing.a_ = 1
    check_is_fitted(thing)  # any public attribute ending in _ counts as fitted
    with pytest.raises(NotFittedError):
        check_is_fitted(thing, ["a_", "b_"])  # all named attributes must be set
    thing.b_ = 2
    check_is_fitted(thing, ["a_", "b_"])


def test_unfitted_estimators_raise_not_fitted_error():
    q = _unit(3, 8)
    with pytest.raises(NotFittedError, match=r"this Standardizer is not fitted yet: call fit\(index\)"):
        Standardizer().transform(np.zeros(3), "text", ["image"] * 3)
    with pytest.raises(NotFittedError, match=r"this UncertaintyModel is not fitted yet: call fit\(index\)"):
        UncertaintyModel().uncertainty(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1), ["image"], "text", [1])
    # The evaluation methods raised a plain SimstdError before: now the same NotFittedError.
    with pytest.raises(NotFittedError, match=r"this PseudoStandardization is not fitted yet: call fit\(corpus, "
                                             r"corpus_modalities\) first \(method 'simstd-index'\)"):
        PseudoStandardization().scores(q, "text")


BOOL_AS_INT = [
    lambda: Standardizer(n_pseudo=True).fit_scores(["a"], ["a"], [0.5]),  # accepted before
    lambda: Standardizer(sample=True).fit_scores(["a"], ["a"], [0.5]),  # accepted before
    lambda: Standardizer(hubness_k=True).fit_scores(["a"], ["a"], [0.5]),
    lambda: Standardizer(hubness_bank=True).fit_scores(["a"], ["a"], [0.5]),
    lambda: Standardizer(shift_k=True).fit_scores(["a"], ["a"], [0.5]),
    lambda: Standardizer(seed=True).fit_scores(["a"], ["a"], [0.5]),
    lambda: UncertaintyModel(sample=True).fit(None),
    lambda: UncertaintyModel(depth=True).fit(None),
    lambda: UncertaintyModel(seed=True).fit(None),
    lambda: PseudoStandardization(n_pseudo=True),
    lambda: PseudoStandardization(shift_k=True),
    lambda: NNN(k=True),
    lambda: CSLS(k=True),
    lambda: HubnessCorrection(k=True),
    lambda: QueryShift(k=True),
]


def test_index_dimension_refuses_true():
    from simstd import MixedIndex

    with pytest.raises(SimstdError, match="dim must be a positive integer, got True"):
        MixedIndex(True)


@pytest.mark.parametrize("make", BOOL_AS_INT, ids=range(len(BOOL_AS_INT)))
def test_true_is_refused_as_an_integer_everywhere(make):
    with pytest.raises(SimstdError, match=r"must be an integer >= 1|must be an integer >= 0") as err:
        make()
    assert "got True" in str(err.value)


@pytest.mark.parametrize("make, message", [
    (lambda: Standardizer(method="magic").fit_scores(["a"], ["a"], [0.5]), "method must be one of 'paper', 'hubness'"),
    (lambda: Standardizer(hubness_quantile=1.0).fit_scores(["a"], ["a"], [0.5]), r"number in \[0.5, 1\)"),
    (lambda: Standardizer(query_shift=-0.1).fit_scores(["a"], ["a"], [0.5]), "query_shift must be a number >= 0"),
    (lambda: Standardizer(n_pseudo=2.0).fit_scores(["a"], ["a"], [0.5]), "n_pseudo must be an integer >= 1"),
    (lambda: UncertaintyModel(hubness="yes").fit(None), "hubness must be True or False"),
    (lambda: HubnessCorrection(quantile=0.2), r"quantile must be a number in \[0.5, 1\)"),
    (lambda: QBNorm(beta=0), "beta must be a number > 0 or None"),
    (lambda: PseudoStandardization(source="gold"), "source must be one of 'index', 'log', 'labeled'"),
])
def test_parameters_are_checked_against_the_declared_table(make, message):
    with pytest.raises(SimstdError, match=message):
        make()


def test_numpy_scalars_are_accepted():
    Standardizer(method="paper", n_pseudo=np.int64(2), sample=np.int32(5), hubness_quantile=np.float32(0.9))._check_params()
    assert np.int64(3) in Interval(int, 1) and np.float32(0.7) in Interval(float, 0.5, 1, closed="left")
    assert np.bool_(True) not in Interval(int, 0) and float("nan") not in Interval(float)
