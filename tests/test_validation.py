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
