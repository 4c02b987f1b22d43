"""The open_clip implementation of :class:`~simstd.encoders.Encoder`, and
rebuilding an encoder from the name an index records.

torch and open_clip are imported when an encoder is built (through
:mod:`._torch_compat`), never at import time.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._hub import _hub_offline, _hub_reachable, _is_download_failure, _offline_requested
from ._torch_compat import _import_clip_stack, _missing_extra
from .base import (
    CHECKPOINT_SUFFIXES,
    RANDOM_WEIGHTS,
    TEST_MODEL,
    Encoder,
    EncoderUnavailableError,
    ImageInput,
    WeightsUnavailableError,
)
from .readers import _as_pil


logger = logging.getLogger(__name__)

_BACKEND = "open_clip"
_LOCAL_WEIGHTS_HINT = "--pretrained /path/to/weights.safetensors"


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
        pretrained: str | os.PathLike[str] | None,
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
        open_clip: Any, model: str, pretrained: str | os.PathLike[str] | None
    ) -> tuple[str, str]:
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

    def _create(self, open_clip: Any, torch: Any, model: str, kind: str, weights: str) -> tuple[Any, Any]:
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

    def _run(self, items: list[Any], encode_batch: Any) -> np.ndarray:
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

    def _text_batch(self, texts: list[str]) -> Any:
        tokens = self._tokenizer(texts).to(self.device)
        return self._model.encode_text(tokens)

    def _image_batch(self, images: list[ImageInput]) -> Any:
        pixels = [self._preprocess(_as_pil(image)) for image in images]
        return self._model.encode_image(self._torch.stack(pixels).to(self.device))

    def __repr__(self) -> str:
        return f"OpenClipEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


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
    path: str | os.PathLike[str] = "random-weights.safetensors",
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

