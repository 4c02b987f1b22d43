"""Checks on embedding arrays shared by the index, the miner and the CLI.

Policy for unnormalised input: simstd normalises it, everywhere, because
cosine similarity is what every fitted statistic assumes. Rows off by more
than :data:`NORM_TOLERANCE` are renormalised with a ``UserWarning``; rows off
by less (float16/float32 round-off, e.g. up to 6e-4 on stored CLIP features)
are renormalised silently, so a score is the true cosine, not one off by the
row's norm error. NaN, inf and zero vectors have no direction and are refused.
"""
from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import NotFittedError, SimstdError

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


#: The first bytes of every ``.npy`` file (numpy.lib.format.MAGIC_PREFIX) and of a zip (``.npz``).
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def load_npy(path: str | Path, name: str | None = None) -> np.ndarray:
    """Load a ``.npy`` file with an error that names the path when it fails.

    Never unpickles, and never advises it: numpy's own message for a file that
    is not an array file suggests ``allow_pickle=``, which would run code from
    the file. A file that does not start with the ``.npy`` magic is named as
    such, before numpy reads it.
    """
    path = Path(path)
    label = name or str(path)
    if not path.exists():
        raise SimstdError(f"{label}: file {path} does not exist; check the path")
    fix = "save embeddings with numpy.save(path, array) (a numeric (n, dim) array)"
    with path.open("rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if head.startswith(_ZIP_MAGIC):
        raise SimstdError(f"{label}: {path} is a .npz archive of several arrays, not one .npy array; "
                          f"save the array you mean with numpy.save (e.g. numpy.save('x.npy', numpy.load(f)['name']))")
    if head != _NPY_MAGIC:
        what = "an empty file" if not head else f"it starts with {head!r}"
        raise SimstdError(f"{label}: {path} is not a NumPy array file (.npy) ({what}); {fix}")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):  # numpy's text advises unsafe loading: not ours
            raise SimstdError(f"{label}: {path} holds Python objects (dtype object), not numbers; {fix}") from None
        raise SimstdError(f"{label}: cannot read {path} as a .npy array ({exc}); {fix}") from None
    except Exception as exc:  # numpy raises several types for a truncated or damaged file
        raise SimstdError(f"{label}: cannot read {path} as a .npy array ({exc}); it is truncated or damaged; "
                          f"{fix}") from None
    return arr


def check_modality(label: str, known: Sequence[str], what: str = "query modality") -> str:
    """Refuse a modality the index does not hold, listing the ones it holds and
    suggesting the close one for a case or spelling slip (``Text``, ``imgae``).

    Refitting cannot help here (the index holds no such items), so the message
    says what to pass instead.
    """
    if label in known:
        return label
    import difflib  # only on this error path

    by_case = [m for m in known if m.lower() == str(label).lower()]
    guess = by_case or difflib.get_close_matches(str(label), list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {guess[0]!r}?" if guess else "; pass one of those"
    raise SimstdError(f"unknown {what} {label!r}: the index holds no such modality, it holds {sorted(set(known))}{hint}")


def searchable_k(k: int, counts: Mapping[str, int], targets: Sequence[str], own: str | None = None) -> int:
    """The one rule for k of the CLI and the service: a k above the items a search
    can return is capped at that number (what ``k`` means in a search engine:
    at most k results). ``counts`` are the items per modality, ``targets`` the
    modalities searched, ``own`` the query item's modality when the query is an
    indexed item (left out of its own result)."""
    available = sum(int(counts[t]) for t in targets) - int(own is not None and own in targets)
    return max(0, min(int(k), available))


def check_probability(value: object, what: str = "probability") -> float:
    """A probability threshold: a real number in [0, 1]."""
    if not _is_real(value) or not 0.0 <= float(value) <= 1.0:  # type: ignore[arg-type]
        raise SimstdError(f"{what} must be a probability in [0, 1], got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_label(label: object, what: str = "modality") -> str:
    """Modalities are non-empty strings without surrounding whitespace."""
    if not isinstance(label, str) or not label or label != label.strip():
        raise SimstdError(f"{what} label {label!r} must be a non-empty string such as 'text' or 'image'")
    return label


def check_query_modality(query_modality: object, modalities: Sequence[str], call: str = "search") -> str:
    """The query modality of a ``search(queries, query_modality, k)`` call.

    A FAISS user writes ``search(xq, 10)``: the k lands where the modality
    goes, so the error names the signature and the modalities to choose from
    rather than only calling 10 a bad label. (Accepting the FAISS order for a
    one-modality index would make the same call mean two things.)
    """
    if not isinstance(query_modality, str):
        names = list(modalities)
        example = names[0] if names else "text"
        k = f", k={query_modality}" if _is_int(query_modality) else ", k=10"
        raise SimstdError(
            f"{call}(queries, query_modality, k): the second argument is the modality of the queries "
            f"(one of {names}), got {query_modality!r}; unlike FAISS's search(x, k), name it first: "
            f"{call}(queries, {example!r}{k})"
        )
    return check_label(query_modality, "query modality")


# ------------------------------------------------------------ estimator checks
def check_is_fitted(estimator: object, attributes: str | Sequence[str] | None = None, fix: str | None = None) -> None:
    """Raise :class:`NotFittedError` unless ``estimator`` has been fitted.

    The scikit-learn rule (``sklearn.utils.validation.check_is_fitted``): fitted
    means every name in ``attributes`` is set, or, when ``attributes`` is
    ``None``, that some public attribute ending in ``_`` is set. The message
    names the estimator and ``fix`` (default: call ``fit`` first).
    """
    if attributes is None:
        fitted = any(k.endswith("_") and not k.startswith("_") for k in vars(estimator))
    else:
        names = [attributes] if isinstance(attributes, str) else list(attributes)
        fitted = all(hasattr(estimator, a) for a in names)
    if not fitted:
        raise NotFittedError(
            f"this {type(estimator).__name__} is not fitted yet: {fix or 'call fit(...) before using it'}"
        )


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python; a flag passed as a count is a mistake.
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: object) -> bool:
    return isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_, np.complexfloating))


@dataclass(frozen=True)
class Interval:
    """A numeric constraint (scikit-learn's ``Interval``): ``kind`` is ``int`` or
    ``float`` (any real, ints included); ``None`` bounds are open-ended."""

    kind: type
    left: float | None = None
    right: float | None = None
    closed: str = "both"  # which bounds are included: "left", "right", "both" or "neither"

    def __contains__(self, value: object) -> bool:
        if not (_is_int(value) if self.kind is int else _is_real(value)):
            return False
        if not np.isfinite(float(value)):  # type: ignore[arg-type]
            return False
        lo_in = self.closed in ("left", "both")
        hi_in = self.closed in ("right", "both")
        if self.left is not None and not (value >= self.left if lo_in else value > self.left):  # type: ignore[operator]
            return False
        if self.right is not None and not (value <= self.right if hi_in else value < self.right):  # type: ignore[operator]
            return False
        return True

    def __str__(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        lo_in = self.closed in ("left", "both")
        hi_in = self.closed in ("right", "both")
        if self.left is not None and self.right is not None:
            return f"{what} in {'[' if lo_in else '('}{self.left}, {self.right}{']' if hi_in else ')'}"
        if self.left is not None:
            return f"{what} {'>=' if lo_in else '>'} {self.left}"
        if self.right is not None:
            return f"{what} {'<=' if hi_in else '<'} {self.right}"
        return what


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (compared with ``==``, type included)."""

    values: tuple

    def __contains__(self, value: object) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


#: A boolean flag (True/False, numpy bools included).
BOOLEAN = Options((True, False))


def _satisfies(value: object, constraint: object) -> bool:
    if constraint is None:
        return value is None
    if constraint is BOOLEAN:
        return isinstance(value, (bool, np.bool_))
    return value in constraint  # type: ignore[operator]


def _describe(constraint: object) -> str:
    if constraint is None:
        return "None"
    if constraint is BOOLEAN:
        return "True or False"
    return str(constraint)


def validate_params(estimator: object, constraints: Mapping[str, Sequence[object]],
                    params: Mapping[str, object] | None = None) -> None:
    """Check ``estimator``'s parameters against a declarative table.

    ``constraints`` maps each parameter to the constraints it may satisfy
    (any one suffices): an :class:`Interval`, :class:`Options`, :data:`BOOLEAN`
    or ``None`` (the value None). This is scikit-learn's
    ``_parameter_constraints`` + ``validate_parameter_constraints``: declared
    once per estimator, checked by one function, so ``True`` is refused as a
    count everywhere. ``params`` defaults to the estimator's attributes of
    those names (a function's settings are passed as ``params``). Raises :class:`SimstdError` naming the parameter, the allowed
    values and the value given.
    """
    for name, allowed in constraints.items():
        value = params[name] if params is not None else getattr(estimator, name)
        if not any(_satisfies(value, c) for c in allowed):
            options = " or ".join(_describe(c) for c in allowed)
            owner = getattr(estimator, "__name__", None) or type(estimator).__name__  # a function names itself
            raise SimstdError(f"{owner}: {name} must be {options}, got {value!r}")
