"""Hugging Face hub access for pretrained tags: fail fast and clearly offline.

open_clip resolves a pretrained tag through the hub cache and downloads on a
miss; on a dead network the hub client retries for ~45 s before giving up.
These helpers decide up front whether the hub is usable and, if not, make
the client serve cached files only. Every lookup of an environment variable
or hub constant happens at call time, never at import.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from urllib.parse import urlparse

# How long the hub reachability probe may take before we call the machine
# offline; a dead network must fail in seconds, not after the hub client's
# retry/backoff loop (~45 s measured with DNS failing).
_HUB_PROBE_TIMEOUT_S = 3.0
_TRUE_STRINGS = {"1", "on", "yes", "true"}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE_STRINGS


def _offline_requested() -> bool:
    """HF_HUB_OFFLINE read now (huggingface_hub reads it only at import)."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    hub_constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(hub_constants, "HF_HUB_OFFLINE", False))


def _hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to the hub endpoint within ``timeout``?"""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy may reach what a direct connection cannot
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname
    if not host:
        return False
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline(enabled: bool) -> Iterator[None]:
    """Force huggingface_hub's offline mode for the duration of the block.

    Its offline flag is a module constant read from the environment at import
    time, so setting the variable later has no effect; flipping the constant
    makes it serve cached files only and fail at once for missing ones.
    """
    if not enabled:
        yield
        return
    try:
        from huggingface_hub import constants as hub_constants
    except ImportError:  # no hub client: open_clip cannot download anyway
        yield
        return
    previous = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = previous


def _is_download_failure(exc: BaseException) -> bool:
    """Does ``exc`` (from open_clip model creation) mean "weights not obtainable"?"""
    if isinstance(exc, RuntimeError) and "Failed to download" in str(exc):
        return True  # open_clip wraps every hub error in this message
    try:
        from huggingface_hub import errors as hub_errors
    except ImportError:
        return isinstance(exc, OSError)
    hub_types = tuple(
        t for t in (getattr(hub_errors, n, None) for n in (
            "LocalEntryNotFoundError", "OfflineModeIsEnabled", "HfHubHTTPError",
        )) if isinstance(t, type)
    )
    return isinstance(exc, hub_types) or isinstance(exc, (OSError, ConnectionError))
