"""Shared resources of the service: the loaded index, its fitted models and
the encoder, handed to every request as one immutable :class:`Snapshot`
(the FastAPI template's api/deps.py).

Hot reload. A background thread asks :func:`index_version` every
``reload_interval`` seconds whether a new version of the index was
committed (by ``simstd fit`` or ``simstd add``). If so it loads that version
beside the current one, then swaps one reference. A request takes the
snapshot once, when it starts, and keeps it to the end: requests in flight
finish on the old version while new ones see the new version, and no request
waits for a load. Versions are immutable and committed by one atomic rename
(simstd.storage), so a load never sees a half-written one. A version that
cannot be loaded (a damaged file) or that would serve less than the current
one (no fitted standardizer, an encoder that cannot be loaded) is not
switched to; /health reports it as pending, with the reason. A fit made
before an ``add`` keeps serving the new items (stale, as /info says) until the
next ``fit`` commits.
"""
from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SimstdError
from ..errors import StaleFitWarning
from ..index import MixedIndex

if TYPE_CHECKING:  # pragma: no cover
    from ..encoders import Encoder
    from ..uncertainty.model import UncertaintyModel
    from .config import Settings

logger = logging.getLogger(__name__)

#: ``encoder=`` value meaning: the encoder the index records, if it records one.
AUTO = "auto"
#: Seconds before a version that could not be served is tried again (a committed
#: version never changes, but a missing encoder file or a full disk may be fixed).
PENDING_RETRY = 30.0


# ----------------------------------------------------------------- versions
def index_version(path: str | Path) -> str | None:
    """The id of the version the index at ``path`` serves now (None: no index).

    One small read of the manifest (:func:`simstd.storage.current_version`):
    cheap enough to poll every second.
    """
    from ..storage import current_version

    return current_version(path)


# ----------------------------------------------------------------- snapshot
class LockedEncoder:
    """An encoder used by one request at a time: a torch model is not meant to
    run concurrent forward passes, and on a small machine they would only
    compete for the same cores."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.dim = encoder.dim
        self._lock = threading.Lock()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self.encoder.encode_texts(texts)

    def encode_images(self, images: list[Any]) -> np.ndarray:
        with self._lock:
            return self.encoder.encode_images(images)


@dataclass(frozen=True)
class Snapshot:
    """One loaded version of the index, never changed after it is made."""

    index: MixedIndex
    version: str
    uncertainty: UncertaintyModel | None = None
    encoder: LockedEncoder | None = None
    encoder_note: str | None = None  # why there is no encoder
    loaded_at: float = field(default_factory=time.time)

    @property
    def standardized(self) -> bool:
        """True when the index has a fitted standardizer."""
        return self.index.standardizer is not None

    @property
    def stale(self) -> bool:
        """True when items were added after the fit (it still serves: the statistics
        of each modality pair apply to the new items too)."""
        return self.index.fit_is_stale


@dataclass
class ReloadStatus:
    reloads: int = 0
    checked_at: float | None = None
    pending_version: str | None = None
    pending_reason: str | None = None
    pending_since: float = 0.0


class IndexHolder:
    """Loads the index at ``settings.index_path`` and keeps the newest servable version.

    ``encoder`` is ``"auto"`` (the encoder the index records, if any), None
    (vector and id queries only) or an :class:`~simstd.encoders.Encoder`.
    """

    def __init__(self, settings: Settings, encoder: Encoder | str | None = AUTO) -> None:
        self.settings = settings
        self._encoder_spec = encoder
        self._encoders: dict[str, LockedEncoder] = {}
        self.status = ReloadStatus()
        self._lock = threading.Lock()  # one check at a time (thread and manual calls)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._snapshot = self._load()

    # -- public ------------------------------------------------------------
    def current(self) -> Snapshot:
        """The snapshot a request uses from its start to its end."""
        return self._snapshot

    def check(self) -> bool:
        """Look for a new committed version once; switch to it if it is servable.

        Returns True when the served version changed. Never raises: a failed
        load leaves the current version in place and is reported in ``status``.
        """
        with self._lock:
            self.status.checked_at = time.time()
            try:
                version = index_version(self.settings.index_path)
            except Exception as exc:  # noqa: BLE001 - a reload problem must not stop the service
                self._pending(None, f"cannot read the index version ({exc})")
                return False
            if version is None or version == self._snapshot.version:
                if version == self._snapshot.version:
                    self.status.pending_version = self.status.pending_reason = None
                return False
            if (version == self.status.pending_version and self.status.pending_reason
                    and time.time() - self.status.pending_since < PENDING_RETRY):
                return False  # known not servable; wait for the next commit (or retry later)
            try:
                new = self._load()
            except Exception as exc:  # noqa: BLE001
                self._pending(version, str(exc))
                return False
            reason = self._worse(new)
            if reason:
                self._pending(new.version, reason)
                return False
            self._snapshot = new
            self.status.reloads += 1
            self.status.pending_version = self.status.pending_reason = None
            logger.info("switched to index version %s (%s)", new.version, _counts(new.index))
            return True

    def start(self) -> None:
        """Poll for new versions in a daemon thread (no-op when reload_interval is 0)."""
        if self.settings.reload_interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="simstd-reload", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- internals ---------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.settings.reload_interval):
            self.check()

    def _pending(self, version: str | None, reason: str) -> None:
        if (version, reason) != (self.status.pending_version, self.status.pending_reason):
            logger.warning("index version %s not served: %s", version or "?", reason)
        self.status.pending_version, self.status.pending_reason = version, reason
        self.status.pending_since = time.time()

    def _worse(self, new: Snapshot) -> str | None:
        """Why ``new`` would serve less than the current snapshot, or None."""
        if self._snapshot.standardized and not new.standardized:
            return ("it has no fitted standardizer (rebuilt?); the previous version is served until "
                    "`simstd fit` commits a fitted one")
        if self._snapshot.encoder is not None and new.encoder is None:
            return f"its encoder cannot be loaded ({new.encoder_note})"
        return None

    def _load(self) -> Snapshot:
        index = MixedIndex.load(self.settings.index_path)  # one complete version, whatever commits meanwhile
        if self.settings.params:
            index.set_search_params(self.settings.params)
        uncertainty = getattr(index, "uncertainty", None)
        with warnings.catch_warnings():  # a stale fit keeps serving; /info says so
            warnings.simplefilter("ignore", StaleFitWarning)
            if index.standardizer is not None:
                index.standardizer.check_index(index)
            if uncertainty is not None:
                try:
                    uncertainty.check_index(index)
                except SimstdError as exc:
                    logger.warning("confidences are off: %s", exc)
                    uncertainty = None
        encoder, note = self._encoder_for(index)
        version = getattr(index, "version", None) or index_version(self.settings.index_path) or "unversioned"
        return Snapshot(index=index, version=str(version), uncertainty=uncertainty, encoder=encoder,
                        encoder_note=note)

    def _encoder_for(self, index: MixedIndex) -> tuple[LockedEncoder | None, str | None]:
        spec = self._encoder_spec
        if spec is None:
            return None, "the server runs without an encoder (--no-encoder)"
        if spec != AUTO:  # an encoder object given from Python
            if spec.dim != index.dim:
                raise SimstdError(f"the encoder makes {spec.dim}-d vectors, the index holds {index.dim}-d ones")
            enc = self._encoders.get(spec.name) or LockedEncoder(spec)
            self._encoders = {spec.name: enc}
            return enc, None
        if not index.model:
            return None, ("the index records no encoder model (it was built from .npy embeddings); "
                          "query it by vector or by id")
        if index.model not in self._encoders:
            from ..encoders import encoder_for_index

            encoder = encoder_for_index(index, device=self.settings.device)
            self._encoders = {index.model: LockedEncoder(encoder)}  # keep the one in use only
        return self._encoders[index.model], None


def _counts(index: MixedIndex) -> str:
    return ", ".join(f"{n} {m}" for m, n in index.counts.items())
