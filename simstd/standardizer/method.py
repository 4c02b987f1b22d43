"""The contract of a standardization method: one backend object per method.

A :class:`~simstd.Standardizer` keeps what every method shares (its settings,
the per-pair statistics ``n_``, ``mean_``, ``var_``, ``std_``, save/load,
checks and merge) and picks one :class:`Method` once, from its ``method``
setting, the way scikit-learn's ``algorithm=`` picks a neighbours backend. The
backend owns the rest: what ``fit`` mines, the affine map of each pair, the
per-item terms (if the method has them), how a candidate's cosine becomes the
score the pair standardizes, and the method's part of the saved file.

Backends are stateless strategies: the fitted state lives in the
Standardizer's attributes (scikit-learn style, names ending in ``_``), and a
backend lists the ones it owns in :attr:`Method.fitted_attributes`. A new
method is a new module with a subclass, registered in
:mod:`simstd.standardizer.registry`.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..engines.base import Searchable
from ..errors import SimstdError

#: The estimator a backend works on (a :class:`~simstd.Standardizer`; typed
#: loosely so this module imports nothing above it).
Estimator = Any


class Method:
    """One standardization method. Subclasses set :attr:`name` and override what differs."""

    #: The ``method=`` value that selects this backend.
    name: ClassVar[str] = ""
    #: Short citation shown with a fit (info, the service page).
    citation: ClassVar[str] = ""
    #: Whether fits of this method carry one fitted term per item and query
    #: modality (stored in FAISS shards as extra dimensions; engines store them too).
    has_item_terms: ClassVar[bool] = False
    #: Whether two fits pool exactly (:meth:`Standardizer.merge`).
    mergeable: ClassVar[bool] = False
    #: Fitted attributes this backend sets on the estimator, beyond the shared pairs.
    fitted_attributes: ClassVar[tuple[str, ...]] = ()
    #: Settings of other methods this one refuses when they differ from their
    #: default: ``{setting: (default, what to say)}``.
    foreign_settings: ClassVar[dict[str, tuple[object, str]]] = {}

    # ------------------------------------------------------------ fitting
    def check_settings(self, est: Estimator) -> None:
        """Refuse settings this method does not use (after the shared validation)."""
        wrong = [label for setting, (default, label) in self.foreign_settings.items()
                 if getattr(est, setting) != default]
        if wrong:
            raise SimstdError(f"{', '.join(wrong)} belong to another method than method={self.name!r}: use "
                              f"Standardizer(method='paper', ...) for them")

    def fit(self, est: Estimator, searchable: Searchable, *, queries: np.ndarray | None,
            query_modalities: object, positives: np.ndarray | None, terms: np.ndarray | None) -> None:
        """Mine the positives, fit the pairs (``est._fit_pairs``) and this method's state."""
        raise NotImplementedError

    # ------------------------------------------------------------ applying
    def affine(self, est: Estimator, query_modality: str, target_modality: str) -> tuple[float, float]:
        """``(centre, scale)``: the pair's score is standardized as ``(score - centre) / scale``."""
        return est.positive_moments(query_modality, target_modality)

    def cosine_moments(self, est: Estimator, query_modality: str, target_modality: str) -> tuple[float, float]:
        """``(mean, std)`` of a pair's pseudo-positive cosines (the uncertainty model's input):
        the pair statistics themselves for a method that standardizes the cosine."""
        return est.positive_moments(query_modality, target_modality)

    def query_depth(self, est: Estimator) -> int:
        """Best candidates per target modality a query-side term needs (0: none)."""
        return 0

    def scores(self, est: Estimator, cosines: np.ndarray, query_modality: str, codes: np.ndarray,
               ids: np.ndarray | None) -> np.ndarray:
        """The score each pair standardizes, from candidate cosines (``transform``'s first step).
        ``codes`` names each column's target modality; ``ids`` are the items' ids."""
        return cosines

    def adjust(self, est: Estimator, z: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """A query-side step after standardizing (``transform``'s last step)."""
        return z

    def block_scores(self, est: Estimator, found: np.ndarray, ids: np.ndarray, missing: np.ndarray,
                     widths: list[int], query_modality: str) -> tuple[np.ndarray, np.ndarray]:
        """``(cosines, scores)`` of an index search's candidates, column blocks of ``widths``
        (one per shard, each sorted best first by what the shard ranks by). ``found`` is
        what FAISS returned: the cosine, or for a method with item terms folded into the
        shards the item-corrected similarity."""
        return found, found

    def adjust_blocks(self, est: Estimator, z: np.ndarray, ids: np.ndarray, widths: list[int]) -> np.ndarray:
        """:meth:`adjust` for an index search's blocks."""
        return z

    # ----------------------------------------------------------- persistence
    def table_row(self, est: Estimator, i: int, j: int) -> dict:
        """Extra columns of pair ``(i, j)`` in :meth:`Standardizer.table`."""
        return {}

    def to_dict(self, est: Estimator) -> dict | None:
        """This method's section of the saved file (None: none)."""
        return None

    def from_dict(self, est: Estimator, section: dict | None, pairs: list[dict], source: str) -> None:
        """Restore this method's fitted attributes from the saved file."""

    def describe(self, est: Estimator) -> dict:
        """The method's own settings of a fit, for people (``Standardizer.describe``)."""
        return {}

    def summary(self, est: Estimator) -> str:
        """What the fit ranks by, in a few words (``simstd fit``, ``info``, the page)."""
        return self.name
