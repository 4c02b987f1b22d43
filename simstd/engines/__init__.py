"""Vector stores simstd fits on and searches through.

``base`` holds the :class:`Searchable` contract, the shared search helpers
(``plan_search``, ``gather``, ``merge_topk``) and :class:`SearchResult`;
``numpy`` the exact brute-force reference. Adapters for vector databases live
in their own modules (``qdrant``, ``lancedb``, ``pgvector``) and import their
client library lazily (optional extras); ``export`` writes OpenSearch and
Vespa configuration (docs/engines.md).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .base import Searchable, check_searchable, count, drop_self, search_session
from .numpy import ArraySearcher


def as_searchable(X: object, modalities: Sequence[str] | None = None) -> Searchable:
    """``X`` itself if it is searchable, else arrays plus labels wrapped in an :class:`ArraySearcher`.

    Like scikit-learn's ``NeighborsBase._fit``, the backend is resolved once
    from the type of ``X``.
    """
    from ..errors import SimstdError

    if isinstance(X, np.ndarray) or isinstance(X, (list, tuple)):
        if modalities is None:
            raise SimstdError("fit(embeddings, modalities): pass one modality label per row")
        return ArraySearcher(np.asarray(X), modalities)
    if modalities is not None:
        raise SimstdError(f"modalities are stored in the {type(X).__name__}; do not pass them with it")
    return check_searchable(X)


__all__ = ["ArraySearcher", "Searchable", "as_searchable", "check_searchable", "count", "drop_self",
           "search_session"]
