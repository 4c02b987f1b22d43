"""What the rest of simstd codes against: the :class:`Encoder` protocol, the
encoder errors and the shared constants. Imports nothing heavy."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

# The encoders' errors live with every other simstd error; importable from here as before.
from ..errors import EncoderUnavailableError, InputDataError, WeightsUnavailableError  # noqa: F401

if TYPE_CHECKING:  # pragma: no cover - typing only, never imported at runtime
    from typing import TypeAlias

    from PIL import Image


#: File suffixes (lower case) that :func:`~simstd.encoders.iter_image_files` picks up.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
)
#: Suffixes that make a ``pretrained`` value count as a local checkpoint path.
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".bin", ".safetensors")
#: ``pretrained`` spelling, inside an encoder name, for seeded random weights.
RANDOM_WEIGHTS = "random"
#: Smallest built-in open_clip architecture (43 M parameters, 256-d output,
#: bundled BPE tokenizer): what tests and offline demos use.
TEST_MODEL = "ViT-S-32-alt"

INSTALL_HINT = 'pip install "simstd[clip]"'

# A string, so PIL is not imported; PEP 563 keeps the annotation unevaluated.
ImageInput: TypeAlias = "Image.Image | str | os.PathLike[str]"


# --------------------------------------------------------------------------- #
# Protocol
# --------------------------------------------------------------------------- #
@runtime_checkable
class Encoder(Protocol):
    """What simstd needs from an embedding model.

    Both ``encode_*`` methods return a float32 array of shape ``(n, dim)`` whose
    rows have unit L2 norm, so inner product equals cosine similarity.
    ``name`` is a string that :func:`~simstd.encoders.load_encoder` turns back
    into an encoder producing the same embeddings; store it next to the index.
    """

    name: str
    dim: int

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 ``(len(texts), dim)``, unit rows."""
        ...

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Embed PIL images or image paths; float32 ``(len(images), dim)``."""
        ...
