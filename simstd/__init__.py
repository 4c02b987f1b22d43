"""simstd: training-free similarity standardization for mixed-modality search.

One FAISS index holds texts and images (and any other modality); a
:class:`Standardizer` fitted on pseudo-positive pairs puts the scores of every
(query modality, target modality) pair on one scale, so one merged ranking
returns every modality (Yamashita, Shirafuji and Saito, 2025).
"""
from __future__ import annotations

from .errors import (
    ConcurrentWriteError,
    CorruptFileError,
    EncoderUnavailableError,
    FingerprintMismatchError,
    IndexExistsError,
    InputDataError,
    LockTimeoutError,
    NotFittedError,
    NotFoundError,
    SimstdBaseError,
    SimstdError,
    StaleFitWarning,
    UnsupportedQueryError,
    WeightsUnavailableError,
)
from .index import MixedIndex, SearchResult
from .standardizer import Standardizer

__version__ = "0.1.0"

__all__ = [
    "MixedIndex",
    "SearchResult",
    "Standardizer",
    "UncertaintyModel",
    "SimstdBaseError",
    "SimstdError",
    "NotFittedError",
    "FingerprintMismatchError",
    "CorruptFileError",
    "IndexExistsError",
    "EncoderUnavailableError",
    "WeightsUnavailableError",
    "InputDataError",
    "NotFoundError",
    "UnsupportedQueryError",
    "LockTimeoutError",
    "ConcurrentWriteError",
    "StaleFitWarning",
    "__version__",
]


def __getattr__(name: str) -> object:
    # UncertaintyModel imports scipy.special (about 1 s): loaded when first asked
    # for, so `import simstd` stays as quick as the index needs (PEP 562).
    if name == "UncertaintyModel":
        from .uncertainty.model import UncertaintyModel

        return UncertaintyModel
    raise AttributeError(f"module 'simstd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
