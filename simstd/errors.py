"""Exceptions raised by simstd.

Every error a user can cause derives from :class:`SimstdError`, so the CLI can
print its message (which names the problem and the fix) without a traceback.
"""
from __future__ import annotations


class SimstdError(ValueError):
    """Bad input or state that the user can fix; the message says how."""


class NotFittedError(SimstdError):
    """A standardizer was used before ``fit`` (or for a pair it never saw)."""


class FingerprintMismatchError(SimstdError):
    """A standardizer fitted on one index was applied to another."""


class CorruptFileError(SimstdError):
    """An index, sidecar or standardizer file is missing or unreadable."""


class LockTimeoutError(SimstdError):
    """Another process held an index's writer lock for longer than the timeout."""


class IndexExistsError(SimstdError):
    """A new index would replace an existing one the caller did not ask to replace."""


class ConcurrentWriteError(SimstdError):
    """An index changed on disk between loading it and saving it back."""


class StaleFitWarning(UserWarning):
    """A fit (standardizer, uncertainty model) was made before items were added:
    it still serves, with the statistics of each item's modality pair."""
