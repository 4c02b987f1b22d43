"""Checks on embedding arrays shared by the index, the miner and the CLI.

Policy for unnormalised input: simstd normalises it, everywhere, because
cosine similarity is what every fitted statistic assumes. Rows off by more
than :data:`NORM_TOLERANCE` are renormalised with a ``UserWarning``; rows off
by less (float16/float32 round-off, e.g. up to 6e-4 on stored CLIP features)
are renormalised silently, so a score is the true cosine, not one off by the
row's norm error. NaN, inf and zero vectors have no direction and are refused.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .errors import SimstdError

#: Rows whose norm differs from 1 by more than this are renormalised with a
#: warning (the input was evidently not normalised).
NORM_TOLERANCE = 1e-3
#: Rows off by more than this (but at most NORM_TOLERANCE) are renormalised
#: silently. float32 normalisation leaves errors around 1e-7, so a normalised
#: array passes through unchanged (renormalising is idempotent).
RENORM_TOLERANCE = 1e-6


def as_embeddings(x: object, name: str = "embeddings", dim: int | None = None) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 ``(n, d)`` array of unit rows.

    Raises :class:`SimstdError` naming the first bad row for NaN/inf or zero
    rows, a wrong number of dimensions, or a dimension other than ``dim``.
    """
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise SimstdError(
            f"{name} must be a 2-D array of shape (n, dim), got shape {arr.shape}; "
            "pass one vector per row"
        )
    if arr.shape[0] == 0:
        raise SimstdError(f"{name} is empty (0 rows); pass at least one vector")
    if not np.issubdtype(arr.dtype, np.number):
        raise SimstdError(f"{name} must be numeric, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise SimstdError(
            f"{name} has dimension {arr.shape[1]} but the index has dimension {dim}; "
            "embed with the same model the index was built with"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise SimstdError(
            f"{name} row {row} contains NaN or inf ({int((~finite).sum())} such rows); "
            "remove or re-embed those rows"
        )
    # float64 accumulation: a float32 norm of a 512-d row is itself off by ~1e-7.
    norms = np.sqrt(np.einsum("ij,ij->i", arr, arr, dtype=np.float64))
    zero = norms == 0
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise SimstdError(
            f"{name} row {row} is a zero vector ({int(zero.sum())} such rows); "
            "a zero vector has no direction for cosine similarity: remove it"
        )
    error = np.abs(norms - 1.0)
    off = error > NORM_TOLERANCE
    if off.any():
        warnings.warn(
            f"{name}: {int(off.sum())} of {len(arr)} rows were not L2-normalised; "
            "simstd normalised them (cosine similarity needs unit vectors)",
            UserWarning,
            stacklevel=2,
        )
    renorm = error > RENORM_TOLERANCE
    if renorm.any():
        arr = arr.copy()  # never scale the caller's array in place
        arr[renorm] = (arr[renorm] / norms[renorm, None]).astype(np.float32)
    return arr


def load_npy(path: str | Path, name: str | None = None) -> np.ndarray:
    """Load a ``.npy`` file with an error that names the path when it fails."""
    path = Path(path)
    label = name or str(path)
    if not path.exists():
        raise SimstdError(f"{label}: file {path} does not exist; check the path")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for a bad file
        raise SimstdError(
            f"{label}: cannot read {path} as a .npy array ({exc}); "
            "save embeddings with numpy.save"
        ) from None


def check_label(label: object, what: str = "modality") -> str:
    """Modalities are non-empty strings without surrounding whitespace."""
    if not isinstance(label, str) or not label or label != label.strip():
        raise SimstdError(f"{what} label {label!r} must be a non-empty string such as 'text' or 'image'")
    return label

