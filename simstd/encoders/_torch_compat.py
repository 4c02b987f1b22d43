"""Lazy import of the ``clip`` extra (torch, torchvision, pillow, open_clip).

Every import of the heavy stack happens inside these functions, so
``import simstd.encoders`` stays cheap and works without the extra. A missing
or broken piece becomes an :class:`EncoderUnavailableError` naming
``pip install "simstd[clip]"``. Also carries the shim that lets PyPI's
torchvision import beside a CPU-only torch (see :func:`_import_torchvision`).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from .base import INSTALL_HINT, EncoderUnavailableError

logger = logging.getLogger(__name__)

_import_lock = threading.Lock()
# Keeps the op-schema fragment alive: torch drops the definitions when the
# Library object is garbage collected.
_torchvision_shim_lib: Any = None
# Schemas of the torchvision ops whose fake kernels torchvision registers
# unconditionally at import time (torchvision/_meta_registrations.py).
_TORCHVISION_OP_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _missing_extra(exc: BaseException, what: str) -> EncoderUnavailableError:
    return EncoderUnavailableError(
        f"the open_clip encoder needs {what}, which is not importable here "
        f"({type(exc).__name__}: {exc}). Install the optional extra: {INSTALL_HINT}"
    )


def _import_torchvision(torch: Any) -> Any:
    """Import torchvision, tolerating compiled ops that do not load.

    PyPI's torchvision wheel is linked against the CUDA build of torch; beside
    a CPU-only torch its ``_C`` extension fails to load, which torchvision
    itself tolerates except for two unguarded fake-kernel registrations that
    raise "operator torchvision::nms does not exist" and abort the import.
    open_clip only uses the pure-Python transforms, so we declare the missing
    op schemas (no kernels) and import again. Calling ``torchvision.ops.nms``
    still fails afterwards, which is the truth about that install.
    """
    global _torchvision_shim_lib
    for _ in range(len(_TORCHVISION_OP_SCHEMAS) + 1):
        try:
            import torchvision  # noqa: F401
        except ImportError as exc:
            raise _missing_extra(exc, "torchvision") from None
        except RuntimeError as exc:
            message = str(exc)
            op = _missing_torchvision_op(message)
            if op is None or op not in _TORCHVISION_OP_SCHEMAS:
                raise EncoderUnavailableError(
                    f"torchvision does not import beside torch {torch.__version__}: "
                    f"{message}. Reinstall a matching pair, e.g. "
                    "`bash .ci/install-clip-extra.sh` or " + INSTALL_HINT
                ) from None
            # Drop the half-imported package so the retry starts clean.
            for mod_name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[mod_name]
            if _torchvision_shim_lib is None:
                _torchvision_shim_lib = torch.library.Library("torchvision", "FRAGMENT")
            _torchvision_shim_lib.define(_TORCHVISION_OP_SCHEMAS.pop(op))
            logger.debug("torchvision compiled ops unavailable; declared schema for %s", op)
        else:
            return torchvision
    raise EncoderUnavailableError(  # pragma: no cover - defensive
        "torchvision still fails to import after declaring its missing ops"
    )


def _missing_torchvision_op(message: str) -> str | None:
    marker = "operator torchvision::"
    if marker not in message or "does not exist" not in message:
        return None
    return message.split(marker, 1)[1].split()[0]


def _import_clip_stack() -> tuple[Any, Any]:
    """Return ``(torch, open_clip)``, raising :class:`EncoderUnavailableError`."""
    with _import_lock:
        try:
            import torch
        except ImportError as exc:
            raise _missing_extra(exc, "torch") from None
        _import_torchvision(torch)
        try:
            import PIL.Image  # noqa: F401
        except ImportError as exc:
            raise _missing_extra(exc, "pillow") from None
        try:
            import open_clip
        except ImportError as exc:
            raise _missing_extra(exc, "open_clip_torch") from None
        return torch, open_clip


def _import_pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise _missing_extra(exc, "pillow") from None
    return Image
