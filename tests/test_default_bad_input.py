"""Bad input for the default (hubness-corrected) method: a clear error or a documented
fallback, never NaN scores or a traceback (issue 17, item 6; docs/default.md)."""
import warnings

import numpy as np
import pytest

from simstd import MixedIndex, Standardizer
from simstd.errors import FingerprintMismatchError, SimstdError, StaleFitWarning
from simstd.index import search as pipeline

from conftest import unit_rows

DIM = 16


def brute_force(index, std, q, query_modality, k):
    """The default's scores of every item, computed apart from the index's search path."""
    ids = np.arange(index.ntotal)
    S = q @ index.reconstruct(ids).T
    z = std.transform(S, query_modality, index.modality_of(ids)[None, :], ids=ids[None, :])
    return np.sort(z, axis=1)[:, ::-1][:, :k]


def test_a_collection_smaller_than_k_gets_finite_scores_of_ordinary_size():
    # 4 texts and 3 images, K = 10: the 0.999 quantile of 12 cosines left a one-value tail whose
    # "excess" was interpolation noise, and scores in the hundreds (293 before the tail floor).
    rng = np.random.default_rng(0)
    index = MixedIndex.from_arrays({"text": unit_rows(rng, 4, DIM, 3.0), "image": unit_rows(rng, 3, DIM, -3.0)})
    std = Standardizer().fit(index)
    assert std.method == "hubness"
    index.standardizer = std
    q = unit_rows(rng, 5, DIM, 3.0)
    got = index.search(q, "text", k=6).scores
    assert np.isfinite(got).all() and np.abs(got).max() < 50, got
    np.testing.assert_allclose(got, brute_force(index, std, q, "text", 6), rtol=1e-4, atol=1e-4)


def test_one_modality_only_fits_and_ranks_like_brute_force():
    rng = np.random.default_rng(1)
    index = MixedIndex.from_arrays({"text": unit_rows(rng, 60, DIM)})
    index.standardizer = std = Standardizer().fit(index)
    q = unit_rows(rng, 4, DIM)
    got = index.search(q, "text", k=5).scores
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, brute_force(index, std, q, "text", 5), rtol=1e-4, atol=1e-4)


def test_exact_duplicates_keep_finite_scores_and_rank_first():
    rng = np.random.default_rng(2)
    text, image = unit_rows(rng, 40, DIM, 3.0), unit_rows(rng, 40, DIM, -3.0)
    index = MixedIndex.from_arrays({"text": np.vstack([text, text]), "image": image})
    index.standardizer = Standardizer().fit(index)
    res = index.search(text[:3], "text", k=4)
    assert np.isfinite(res.scores).all()
    # each query's two copies (ids i and 40 + i) are its best two hits
    assert all({i, 40 + i} == set(res.ids[i, :2].tolist()) for i in range(3))


def test_a_modality_added_after_the_fit_is_left_out_with_a_warning_and_strict_refuses():
    rng = np.random.default_rng(3)
    index = MixedIndex.from_arrays({"text": unit_rows(rng, 40, DIM, 3.0), "image": unit_rows(rng, 40, DIM, -3.0)})
    index.standardizer = Standardizer().fit(index)
    index.add(unit_rows(rng, 6, DIM), "audio")
    q = unit_rows(rng, 2, DIM, 3.0)
    with pytest.warns(StaleFitWarning, match="audio"):
        res = index.search(q, "text", k=10)
    assert np.isfinite(res.scores).all() and "audio" not in set(res.modalities.ravel().tolist())
    with pytest.raises(FingerprintMismatchError, match="stale"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index.search(q, "text", k=10, strict=True)
    with pytest.raises(SimstdError, match="'audio' was not seen"):  # asked for by name: refused
        index.search(q, "text", k=10, targets=["audio"])


def test_nan_vectors_are_refused_with_the_row():
    rng = np.random.default_rng(4)
    text = unit_rows(rng, 20, DIM)
    text[7] = np.nan
    with pytest.raises(SimstdError, match="row 7"):
        MixedIndex.from_arrays({"text": text, "image": unit_rows(rng, 20, DIM)})


def test_the_pipeline_plan_keeps_every_fitted_modality():
    rng = np.random.default_rng(5)
    index = MixedIndex.from_arrays({"text": unit_rows(rng, 30, DIM, 3.0), "image": unit_rows(rng, 30, DIM, -3.0)})
    index.standardizer = Standardizer().fit(index)
    plan = pipeline.plan(index, "text", 5)
    assert plan.names == ["text", "image"] and plan.column is not None and min(plan.widths) >= 10
