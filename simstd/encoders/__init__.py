"""Turn raw texts and images into CLIP embeddings for a simstd index.

The heavy stack (torch, torchvision, open_clip, pillow) is the optional
``clip`` extra, so every import of it happens lazily inside the functions that
need it: ``import simstd.encoders`` stays cheap and works without the extra.

Modules
-------
* :mod:`.base` -- the :class:`Encoder` protocol the rest of simstd codes
  against, the encoder errors, shared constants.
* :mod:`.open_clip` -- :class:`OpenClipEncoder`; :func:`load_encoder` rebuilds
  an encoder from its :attr:`Encoder.name`, :func:`encoder_for_index` the one
  an index records; :func:`save_random_checkpoint` writes a real architecture
  with random weights, for tests and offline demos (no download needed).
* :mod:`.readers` -- :func:`iter_image_files`, :func:`load_images`,
  :func:`read_texts`, :func:`encode_image_files`: raw data on disk.
* :mod:`._torch_compat` -- lazy import of the clip stack (with the torchvision
  shim); :mod:`._hub` -- Hugging Face hub reachability and offline mode.
"""

from __future__ import annotations

# Private, but reached through the package by tests and .ci/install-clip-extra.sh.
from ._torch_compat import _import_clip_stack  # noqa: F401
from .base import (
    CHECKPOINT_SUFFIXES,
    IMAGE_EXTENSIONS,
    RANDOM_WEIGHTS,
    TEST_MODEL,
    Encoder,
    EncoderUnavailableError,
    ImageInput,  # noqa: F401 - a type alias: importable, not in __all__
    InputDataError,
    WeightsUnavailableError,
)
from .open_clip import OpenClipEncoder, encoder_for_index, load_encoder, save_random_checkpoint
from .readers import (
    ImageEmbeddings,
    LoadedImages,
    TextRecords,
    encode_image_files,
    iter_image_files,
    load_images,
    read_texts,
)

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
