"""simstd: training-free similarity standardization for mixed-modality search.

One FAISS index holds texts and images (and any other modality); a
:class:`Standardizer` fitted on pseudo-positive pairs puts the scores of every
(query modality, target modality) pair on one scale, so one merged ranking
returns every modality (Yamashita, Shirafuji and Saito, 2025).
"""
from .errors import CorruptFileError, FingerprintMismatchError, NotFittedError, SimstdError
from .index import MixedIndex, SearchResult
from .standardizer import Standardizer

__version__ = "0.1.0"

__all__ = [
    "MixedIndex",
    "SearchResult",
    "Standardizer",
    "SimstdError",
    "NotFittedError",
    "FingerprintMismatchError",
    "CorruptFileError",
    "__version__",
]
