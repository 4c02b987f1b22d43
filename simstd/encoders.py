"""Turn raw texts and images into CLIP embeddings for a simstd index.

The heavy stack (torch, torchvision, open_clip, pillow) is the optional
``clip`` extra, so every import of it happens lazily inside the functions that
need it: ``import simstd.encoders`` stays cheap and works without the extra.

Public API
----------
* :class:`Encoder` -- the protocol the rest of simstd codes against.
* :class:`OpenClipEncoder` -- the open_clip implementation.
* :func:`load_encoder` -- rebuild an encoder from its :attr:`Encoder.name`;
  :func:`encoder_for_index` -- the encoder an index records.
* :func:`iter_image_files`, :func:`load_images`, :func:`read_texts`,
  :func:`encode_image_files` -- helpers for raw data on disk.
* :func:`save_random_checkpoint` -- a real architecture with random weights,
  for tests and offline demos (no download needed).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import socket
import sys
import threading
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Iterator,
    List,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
    runtime_checkable,
)
from urllib.parse import urlparse

import numpy as np

from .errors import SimstdError

if TYPE_CHECKING:  # pragma: no cover - typing only, never imported at runtime
    from PIL import Image

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "IMAGE_EXTENSIONS",
    "RANDOM_WEIGHTS",
    "TEST_MODEL",
    "Encoder",
    "EncoderUnavailableError",
    "ImageEmbeddings",
    "InputDataError",
    "LoadedImages",
    "OpenClipEncoder",
    "TextRecords",
    "WeightsUnavailableError",
    "encode_image_files",
    "encoder_for_index",
    "iter_image_files",
    "load_encoder",
    "load_images",
    "read_texts",
    "save_random_checkpoint",
]

logger = logging.getLogger(__name__)

#: File suffixes (lower case) that :func:`iter_image_files` picks up.
IMAGE_EXTENSIONS: Tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
)
#: Suffixes that make a ``pretrained`` value count as a local checkpoint path.
CHECKPOINT_SUFFIXES: Tuple[str, ...] = (".pt", ".pth", ".bin", ".safetensors")
#: ``pretrained`` spelling, inside an encoder name, for seeded random weights.
RANDOM_WEIGHTS = "random"
#: Smallest built-in open_clip architecture (43 M parameters, 256-d output,
#: bundled BPE tokenizer): what tests and offline demos use.
TEST_MODEL = "ViT-S-32-alt"

_BACKEND = "open_clip"
_INSTALL_HINT = 'pip install "simstd[clip]"'
_LOCAL_WEIGHTS_HINT = "--pretrained /path/to/weights.safetensors"
# How long the hub reachability probe may take before we call the machine
# offline; a dead network must fail in seconds, not after the hub client's
# retry/backoff loop (~45 s measured with DNS failing).
_HUB_PROBE_TIMEOUT_S = 3.0
_TRUE_STRINGS = {"1", "on", "yes", "true"}

ImageInput = Union["Image.Image", str, "os.PathLike[str]"]


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
# All derive from SimstdError (a ValueError), so the CLI prints their message
# without a traceback.
class EncoderUnavailableError(SimstdError):
    """The encoder cannot be built as asked: the ``clip`` extra is missing or
    broken, or the model name, pretrained tag or checkpoint does not work."""


class WeightsUnavailableError(EncoderUnavailableError):
    """Pretrained weights are neither cached locally nor downloadable."""


class InputDataError(SimstdError):
    """Raw input (an image directory, a text file, an image) is unusable."""


# --------------------------------------------------------------------------- #
# Protocol
# --------------------------------------------------------------------------- #
@runtime_checkable
class Encoder(Protocol):
    """What simstd needs from an embedding model.

    Both ``encode_*`` methods return a float32 array of shape ``(n, dim)`` whose
    rows have unit L2 norm, so inner product equals cosine similarity.
    ``name`` is a string that :func:`load_encoder` turns back into an encoder
    producing the same embeddings; store it next to the index.
    """

    name: str
    dim: int

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 ``(len(texts), dim)``, unit rows."""
        ...

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Embed PIL images or image paths; float32 ``(len(images), dim)``."""
        ...


# --------------------------------------------------------------------------- #
# Lazy import of the clip stack
# --------------------------------------------------------------------------- #
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
        f"({type(exc).__name__}: {exc}). Install the optional extra: {_INSTALL_HINT}"
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
                    "`bash .ci/install-clip-extra.sh` or " + _INSTALL_HINT
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


def _missing_torchvision_op(message: str) -> Optional[str]:
    marker = "operator torchvision::"
    if marker not in message or "does not exist" not in message:
        return None
    return message.split(marker, 1)[1].split()[0]


def _import_clip_stack() -> Tuple[Any, Any]:
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


# --------------------------------------------------------------------------- #
# Hub access: fail fast and clearly when offline
# --------------------------------------------------------------------------- #
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


@contextlib.contextmanager
def _no_implicit_logging_config() -> Iterator[None]:
    """Stop ``logging.error(...)`` inside open_clip from configuring root.

    Module-level ``logging.error`` calls ``basicConfig()`` when the root logger
    has no handler, which would permanently change the caller's logging. The
    information is carried by the exception we raise instead.
    """
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        yield
    finally:
        root.removeHandler(guard)


def _looks_like_path(pretrained: str) -> bool:
    return (
        pretrained.lower().endswith(CHECKPOINT_SUFFIXES)
        or os.sep in pretrained
        or (os.altsep is not None and os.altsep in pretrained)
        or os.path.exists(pretrained)
    )


# --------------------------------------------------------------------------- #
# open_clip encoder
# --------------------------------------------------------------------------- #
class OpenClipEncoder:
    """CLIP text and image encoder backed by open_clip, run on the CPU by default.

    Args:
        model: an open_clip architecture name, e.g. ``"ViT-B-32"``
            (see ``open_clip.list_models()``).
        pretrained: an open_clip pretrained tag (``"laion2b_s34b_b79k"``;
            downloaded once into the Hugging Face cache), a local checkpoint
            file (``.pt``/``.pth``/``.bin``/``.safetensors``), or ``None`` /
            ``"random"`` for seeded random weights (tests only: the embeddings
            carry no meaning).
        device: torch device string, ``"cpu"`` or e.g. ``"cuda:0"``.
        batch_size: how many texts or images go through the model at once.

    Raises:
        EncoderUnavailableError: the ``clip`` extra is missing or broken, the
            architecture or tag is unknown, the checkpoint belongs to another
            architecture, or the device is unusable.
        WeightsUnavailableError: (a subclass) the tag's weights are not cached
            and cannot be downloaded (offline machine, hub unreachable).
        FileNotFoundError: ``pretrained`` names a file that does not exist.
        ValueError: ``batch_size`` is not a positive integer.
    """

    def __init__(
        self,
        model: str,
        pretrained: Optional[Union[str, "os.PathLike[str]"]],
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not model or ":" in model:
            # 'hf-hub:' / 'local-dir:' schemas would need network or extra
            # config files and would make the name string ambiguous.
            raise EncoderUnavailableError(
                f"model must be a built-in open_clip architecture name such as "
                f"'ViT-B-32', got {model!r}"
            )
        torch, open_clip = _import_clip_stack()
        self._torch = torch
        self.batch_size = batch_size
        self.model_name = model
        self.device = self._check_device(torch, device)

        available = open_clip.list_models()
        if model not in available:
            close = difflib.get_close_matches(model, available, n=5)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise EncoderUnavailableError(f"unknown open_clip model {model!r}.{hint}")

        kind, weights = self._classify_pretrained(open_clip, model, pretrained)
        self.pretrained = weights
        self.name = f"{_BACKEND}:{model}:{weights}"
        with _no_implicit_logging_config():
            self._model, self._preprocess = self._create(open_clip, torch, model, kind, weights)
            self._tokenizer = self._create_tokenizer(open_clip, model)
        self._model.eval()
        if kind == "random":
            logger.warning(
                "open_clip model %s uses random weights (seed 0): embeddings are "
                "meaningless, fine for tests only", model,
            )
        self.dim = int(open_clip.get_model_config(model)["embed_dim"])

    # -- construction helpers ------------------------------------------------
    @staticmethod
    def _check_device(torch: Any, device: str) -> str:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise EncoderUnavailableError(f"invalid torch device {device!r}: {exc}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise EncoderUnavailableError(
                f"device {device!r} requested but this torch build has no usable CUDA; use 'cpu'"
            )
        return str(dev)

    @staticmethod
    def _classify_pretrained(
        open_clip: Any, model: str, pretrained: Optional[Union[str, "os.PathLike[str]"]]
    ) -> Tuple[str, str]:
        """Return ``(kind, value)``; kind is 'random', 'file' or 'tag'."""
        if pretrained is None or pretrained == RANDOM_WEIGHTS:
            return "random", RANDOM_WEIGHTS
        if not isinstance(pretrained, (str, os.PathLike)):
            raise TypeError(f"pretrained must be a str, a path or None, got {type(pretrained).__name__}")
        pretrained = os.fspath(pretrained)
        if open_clip.get_pretrained_cfg(model, pretrained):
            return "tag", pretrained
        if _looks_like_path(pretrained):
            path = Path(pretrained).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint file not found: {path}")
            # Absolute, so the encoder name still works from another cwd.
            return "file", str(path.resolve())
        tags = open_clip.list_pretrained_tags_by_model(model)
        known = ", ".join(tags) if tags else "none"
        raise EncoderUnavailableError(
            f"{pretrained!r} is neither a pretrained tag of open_clip model {model!r} "
            f"(known tags: {known}) nor a checkpoint file "
            f"({'/'.join(CHECKPOINT_SUFFIXES)}); for local weights use {_LOCAL_WEIGHTS_HINT}"
        )

    def _create(self, open_clip: Any, torch: Any, model: str, kind: str, weights: str) -> Tuple[Any, Any]:
        if kind == "random":
            # Seeded and isolated so the same name always rebuilds the same model.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                created = open_clip.create_model_and_transforms(model, pretrained=None, device=self.device)
            return created[0], created[2]
        if kind == "file":
            try:
                created = open_clip.create_model_and_transforms(model, pretrained=weights, device=self.device)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001
                # open_clip reports a wrong architecture as RuntimeError (key or
                # shape mismatch) or AssertionError (resized embeddings), and a
                # damaged file as whatever torch/safetensors raise.
                raise EncoderUnavailableError(
                    f"checkpoint {weights} does not fit open_clip model {model!r} or is "
                    f"not a valid checkpoint ({type(exc).__name__}: {_first_line(exc)})"
                ) from None
            return created[0], created[2]

        # A pretrained tag: open_clip resolves it through the Hugging Face cache
        # and downloads on a miss. Decide up front whether the hub is usable so
        # an offline machine fails (or uses the cache) at once, not after the
        # client's retries.
        requested = _offline_requested()
        reachable = (not requested) and _hub_reachable()
        offline = requested or not reachable
        try:
            with _hub_offline(offline):
                created = open_clip.create_model_and_transforms(model, pretrained=weights, device=self.device)
        except Exception as exc:  # noqa: BLE001 - any failure here is "no weights"
            if not _is_download_failure(exc):
                raise
            if requested:
                why = "offline mode is on (HF_HUB_OFFLINE is set) and they are not in the local cache"
            elif offline:
                why = (
                    "the Hugging Face hub is unreachable (this machine looks offline) "
                    "and they are not in the local cache"
                )
            else:
                why = f"the download failed ({_first_line(exc)[:300]})"
            source = open_clip.get_pretrained_cfg(model, weights).get("hf_hub", "")
            where = f" (hub repo {source.rstrip('/')})" if source else ""
            raise WeightsUnavailableError(
                f"cannot load pretrained weights {weights!r}{where} for open_clip model "
                f"{model!r}: {why}. Use a local checkpoint file instead: {_LOCAL_WEIGHTS_HINT}"
            ) from None
        return created[0], created[2]

    @staticmethod
    def _create_tokenizer(open_clip: Any, model: str) -> Any:
        # Most architectures use the bundled BPE tokenizer; a few (SigLIP, MT5,
        # RoBERTa text towers) fetch a Hugging Face tokenizer, which can fail
        # offline or without `transformers`.
        try:
            with _hub_offline(_offline_requested()):
                return open_clip.get_tokenizer(model)
        except ImportError as exc:
            raise _missing_extra(exc, "an extra tokenizer package") from None
        except Exception as exc:  # noqa: BLE001
            raise WeightsUnavailableError(
                f"cannot create the tokenizer of open_clip model {model!r}: {_first_line(exc)}"
            ) from None

    # -- encoding ------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; float32 ``(len(texts), dim)`` with unit-norm rows."""
        if isinstance(texts, str):
            raise TypeError("encode_texts expects a sequence of strings, not a single str")
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
        return self._run(texts, self._text_batch)

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Embed PIL images or image file paths; float32 ``(n, dim)``, unit rows.

        Paths are opened one batch at a time, so memory stays bounded. An
        unreadable file raises :class:`InputDataError`; use
        :func:`encode_image_files` to skip and report bad files instead.
        """
        if isinstance(images, (str, os.PathLike)):
            raise TypeError("encode_images expects a sequence of images or paths, not a single path")
        return self._run(list(images), self._image_batch)

    def _run(self, items: List[Any], encode_batch: Any) -> np.ndarray:
        torch = self._torch
        if not items:
            return np.empty((0, self.dim), dtype=np.float32)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                features = encode_batch(items[start:start + self.batch_size]).float()
                features = torch.nn.functional.normalize(features, dim=-1)
                chunks.append(features.cpu().numpy())
        return np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)

    def _text_batch(self, texts: List[str]) -> Any:
        tokens = self._tokenizer(texts).to(self.device)
        return self._model.encode_text(tokens)

    def _image_batch(self, images: List[ImageInput]) -> Any:
        pixels = [self._preprocess(_as_pil(image)) for image in images]
        return self._model.encode_image(self._torch.stack(pixels).to(self.device))

    def __repr__(self) -> str:
        return f"OpenClipEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


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


def _as_pil(image: ImageInput) -> "Image.Image":
    Image = _import_pil()
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    if isinstance(image, (str, os.PathLike)):
        loaded, reason = _open_image(Path(image))
        if loaded is None:
            raise InputDataError(f"cannot read image {image}: {reason}")
        return loaded
    raise TypeError(f"expected a PIL image or a path, got {type(image).__name__}")


# --------------------------------------------------------------------------- #
# Rebuilding an encoder from its name
# --------------------------------------------------------------------------- #
def load_encoder(name: str, device: str = "cpu", batch_size: int = 64) -> Encoder:
    """Rebuild the encoder whose :attr:`Encoder.name` is ``name``.

    Format: ``"open_clip:<architecture>:<pretrained>"`` where ``<pretrained>``
    is a tag, an absolute checkpoint path (which may itself contain ``:``), or
    ``random``. Example: ``"open_clip:ViT-B-32:laion2b_s34b_b79k"``.
    """
    if not isinstance(name, str):
        raise TypeError(f"encoder name must be a str, got {type(name).__name__}")
    backend, sep, rest = name.partition(":")
    if not sep or backend != _BACKEND:
        raise EncoderUnavailableError(
            f"unsupported encoder name {name!r}: expected "
            f"'{_BACKEND}:<model>:<pretrained tag | checkpoint path | {RANDOM_WEIGHTS}>'"
        )
    model, sep, pretrained = rest.partition(":")
    if not sep or not model or not pretrained:
        raise EncoderUnavailableError(
            f"malformed encoder name {name!r}: expected "
            f"'{_BACKEND}:<model>:<pretrained tag | checkpoint path | {RANDOM_WEIGHTS}>'"
        )
    return OpenClipEncoder(model, pretrained, device=device, batch_size=batch_size)


def encoder_for_index(index: Any, device: str = "cpu", batch_size: int = 64) -> Encoder:
    """The encoder recorded in ``index.model`` (an :attr:`Encoder.name`).

    Raises :class:`EncoderUnavailableError` if the index records none (it was
    built from precomputed embeddings) or the encoder cannot be rebuilt here.
    """
    name = getattr(index, "model", None)
    if not name:
        raise EncoderUnavailableError(
            "this index records no encoder model (it was built from precomputed "
            "embeddings), so it cannot embed texts or images"
        )
    return load_encoder(str(name), device=device, batch_size=batch_size)


def save_random_checkpoint(
    model_name: str = TEST_MODEL,
    path: Union[str, "os.PathLike[str]"] = "random-weights.safetensors",
    seed: int = 0,
) -> Path:
    """Save a real open_clip architecture with random weights to ``path``.

    The file loads through ``OpenClipEncoder(model_name, path)`` like any
    downloaded checkpoint, so tests and demos exercise the genuine loading
    and encoding code with no network. ``.safetensors`` is written with
    safetensors, any other suffix with ``torch.save``. Returns the absolute
    path. :data:`TEST_MODEL` (ViT-S-32-alt, ~43 M parameters, ~173 MB as
    float32) is the smallest built-in architecture.
    """
    torch, open_clip = _import_clip_stack()
    if model_name not in open_clip.list_models():
        raise EncoderUnavailableError(f"unknown open_clip model {model_name!r}")
    path = Path(path).expanduser().resolve()
    if not path.name.lower().endswith(CHECKPOINT_SUFFIXES):
        raise ValueError(f"checkpoint path must end with one of {CHECKPOINT_SUFFIXES}: {path}")
    with _no_implicit_logging_config(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(model_name, pretrained=None, device="cpu")
    # Own, contiguous tensors: safetensors refuses shared or strided storage.
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(tmp))
    else:
        torch.save(state, str(tmp))
    os.replace(tmp, path)  # never leave a half-written checkpoint behind
    return path


# --------------------------------------------------------------------------- #
# Raw data helpers
# --------------------------------------------------------------------------- #
class LoadedImages(NamedTuple):
    """Result of :func:`load_images`; unpacks as ``images, paths, failures``."""

    images: List["Image.Image"]
    paths: List[Path]  # paths[i] is where images[i] came from
    failures: List[Tuple[Path, str]]  # (path, reason) for every unreadable file


class TextRecords(NamedTuple):
    """Result of :func:`read_texts`; unpacks as ``texts, line_numbers, skipped``."""

    texts: List[str]
    line_numbers: List[int]  # 1-based source line of texts[i]
    skipped: List[Tuple[int, str]]  # (1-based line number, reason)


class ImageEmbeddings(NamedTuple):
    """Result of :func:`encode_image_files`."""

    embeddings: np.ndarray  # float32 (len(paths), dim)
    paths: List[Path]
    failures: List[Tuple[Path, str]]


def iter_image_files(root: Union[str, "os.PathLike[str]"]) -> List[Path]:
    """All image files under ``root``, recursively, in a deterministic order.

    Matches :data:`IMAGE_EXTENSIONS` case-insensitively, skips hidden files and
    directories (``.git``, ``.thumbnails``, macOS ``._x.jpg`` forks), and sorts
    by the path relative to ``root`` so the order (and hence index ids) does
    not depend on the file system.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        NotADirectoryError: ``root`` is not a directory.
        InputDataError: no image file was found.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image directory not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a directory: {root}")
    found: List[Tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            if filename.startswith(".") or not filename.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = Path(dirpath, filename)
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    if not found:
        raise InputDataError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) found under {root}"
        )
    found.sort(key=lambda item: item[0])
    return [path for _, path in found]


def _open_image(path: Path) -> Tuple[Optional["Image.Image"], str]:
    """Open, fully decode and RGB-convert one image; ``(None, reason)`` on failure."""
    Image = _import_pil()
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files only fail here
            return img.convert("RGB"), ""
    except FileNotFoundError:
        return None, "file not found"
    except Image.DecompressionBombError as exc:
        return None, f"too large ({exc})"
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a batch
        return None, f"{type(exc).__name__}: {exc}"


def load_images(paths: Sequence[Union[str, "os.PathLike[str]"]]) -> LoadedImages:
    """Open ``paths`` as RGB images, reporting the ones that cannot be read.

    Never raises for a bad file (unreadable, truncated, not an image, missing);
    each one lands in ``failures`` with a reason, and ``paths`` of the result
    lists only the files that loaded, aligned with ``images``. Everything is
    decoded into memory: for large collections call it per chunk, or use
    :func:`encode_image_files`.
    """
    images: List["Image.Image"] = []
    good: List[Path] = []
    failures: List[Tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        image, reason = _open_image(path)
        if image is None:
            failures.append((path, reason))
        else:
            images.append(image)
            good.append(path)
    return LoadedImages(images, good, failures)


def encode_image_files(
    encoder: Encoder,
    paths: Sequence[Union[str, "os.PathLike[str]"]],
    chunk_size: int = 256,
) -> ImageEmbeddings:
    """Embed image files chunk by chunk, skipping and reporting bad files.

    Memory holds at most ``chunk_size`` decoded images at a time. The result's
    ``paths`` are the files that were embedded, row-aligned with
    ``embeddings``; ``failures`` lists ``(path, reason)`` for the rest.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    paths = list(paths)
    blocks: List[np.ndarray] = []
    good: List[Path] = []
    failures: List[Tuple[Path, str]] = []
    for start in range(0, len(paths), chunk_size):
        loaded = load_images(paths[start:start + chunk_size])
        failures.extend(loaded.failures)
        if loaded.images:
            blocks.append(encoder.encode_images(loaded.images))
            good.extend(loaded.paths)
    if blocks:
        embeddings = np.concatenate(blocks, axis=0).astype(np.float32, copy=False)
    else:
        embeddings = np.empty((0, encoder.dim), dtype=np.float32)
    return ImageEmbeddings(embeddings, good, failures)


def read_texts(path: Union[str, "os.PathLike[str]"], field: str = "text") -> TextRecords:
    """Read the texts to embed from a file.

    * ``.jsonl`` / ``.ndjson``: one JSON object per line, the text in ``field``.
    * anything else: plain UTF-8 text, one item per line.

    Texts are stripped of surrounding whitespace. Lines that yield no text
    (blank lines, whitespace only, and for JSON Lines: invalid JSON, a missing
    or non-string ``field``) are not embedded but reported in ``skipped`` with
    their 1-based line number and the reason.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory.
        InputDataError: the file is not UTF-8, or no line holds any text.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"text file not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"expected a text file, got a directory: {path}")
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    texts: List[str] = []
    line_numbers: List[int] = []
    skipped: List[Tuple[int, str]] = []
    try:
        # utf-8-sig drops a BOM that some editors put at the start.
        with path.open("r", encoding="utf-8-sig", newline=None) as handle:
            for number, line in enumerate(handle, start=1):
                text, reason = _parse_text_line(line, is_jsonl, field)
                if text is None:
                    skipped.append((number, reason))
                else:
                    texts.append(text)
                    line_numbers.append(number)
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{path} is not UTF-8 text: {exc}") from None
    if not texts:
        detail = f"; first skipped lines: {skipped[:3]}" if skipped else " (the file is empty)"
        raise InputDataError(f"no text to embed in {path}{detail}")
    return TextRecords(texts, line_numbers, skipped)


def _parse_text_line(line: str, is_jsonl: bool, field: str) -> Tuple[Optional[str], str]:
    stripped = line.strip()
    if not stripped:
        return None, "empty line"
    if not is_jsonl:
        return stripped, ""
    try:
        record = json.loads(stripped)
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc.msg}"
    if not isinstance(record, dict):
        return None, f"not a JSON object ({type(record).__name__})"
    if field not in record:
        return None, f"missing field {field!r}"
    value = record[field]
    if not isinstance(value, str):
        return None, f"field {field!r} is {type(value).__name__}, not a string"
    value = value.strip()
    if not value:
        return None, f"empty {field!r}"
    return value, ""
