"""Every exception and warning simstd raises, in one module (all exported from ``simstd``).

Two kinds (docs/reliability.md, "Errors"):

* :class:`SimstdError` and its subclasses: what the caller passed or set up is
  wrong (an argument, a file, a fit of another index, a missing extra). They
  are ``ValueError`` s, as in NumPy and scikit-learn, and the message names the
  problem and the fix.
* :class:`LockTimeoutError` and :class:`ConcurrentWriteError`: nothing the
  caller passed is wrong; another process was writing the same index. They
  are not ``ValueError`` s, so ``except ValueError`` around a call does not
  hide them; retrying is the fix.

Both derive from :class:`SimstdBaseError`: the CLI prints any of them as one
line (exit 1, no traceback) and the service maps each class to an HTTP status
(``simstd.serve.app.HTTP_STATUS``).
"""
from __future__ import annotations


class SimstdBaseError(Exception):
    """Any error simstd raises on purpose; the message says what to do."""


class SimstdError(SimstdBaseError, ValueError):
    """Bad input or state that the user can fix; the message says how."""


class NotFittedError(SimstdError):
    """A standardizer was used before ``fit`` (or for a pair it never saw)."""


class FingerprintMismatchError(SimstdError):
    """A standardizer fitted on one index was applied to another."""


class CorruptFileError(SimstdError):
    """An index, sidecar or standardizer file is missing or unreadable."""


class EncoderUnavailableError(SimstdError):
    """The encoder cannot be built as asked: the ``clip`` extra is missing or
    broken, or the model name, pretrained tag or checkpoint does not work."""


class WeightsUnavailableError(EncoderUnavailableError):
    """Pretrained weights are neither cached locally nor downloadable."""


class InputDataError(SimstdError):
    """Raw input (an image directory, a text file, an image) is unusable."""


class NotFoundError(SimstdError):
    """An id, image file or index name the server does not have (HTTP 404)."""


class UnsupportedQueryError(SimstdError):
    """A query this server cannot answer as configured (HTTP 400)."""


class LockTimeoutError(SimstdBaseError):
    """Another process held an index's writer lock for longer than the timeout
    (not bad input: retry, or wait longer)."""


class ConcurrentWriteError(SimstdBaseError):
    """An index changed on disk between loading it and saving it back
    (not bad input: load the new version and redo the change)."""


class IndexExistsError(SimstdError):
    """A new index would replace an existing one the caller did not ask to replace
    (``simstd build --overwrite`` / ``MixedIndex.save(path, overwrite=True)``)."""


class StaleFitWarning(UserWarning):
    """A fit (standardizer, uncertainty model) was made before items were added:
    it still serves, with the statistics of each item's modality pair."""
