"""Raw data on disk for an encoder: image folders, image files, text files.

Kept apart from the model (as clip-retrieval keeps its inference reader):
these need pillow at most, never torch. The batch readers never stop at one
bad file or line; it is skipped and reported with a reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ._torch_compat import _import_pil
from .base import IMAGE_EXTENSIONS, Encoder, ImageInput, InputDataError

if TYPE_CHECKING:  # pragma: no cover - typing only, never imported at runtime
    from PIL import Image


class LoadedImages(NamedTuple):
    """Result of :func:`load_images`; unpacks as ``images, paths, failures``."""

    images: list[Image.Image]
    paths: list[Path]  # paths[i] is where images[i] came from
    failures: list[tuple[Path, str]]  # (path, reason) for every unreadable file


class TextRecords(NamedTuple):
    """Result of :func:`read_texts`; unpacks as ``texts, line_numbers, skipped``."""

    texts: list[str]
    line_numbers: list[int]  # 1-based source line of texts[i]
    skipped: list[tuple[int, str]]  # (1-based line number, reason)


class ImageEmbeddings(NamedTuple):
    """Result of :func:`encode_image_files`."""

    embeddings: np.ndarray  # float32 (len(paths), dim)
    paths: list[Path]
    failures: list[tuple[Path, str]]


# --------------------------------------------------------------------------- #
# Images
# --------------------------------------------------------------------------- #
def iter_image_files(root: str | os.PathLike[str]) -> list[Path]:
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
    found: list[tuple[str, Path]] = []
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


def _open_image(path: Path) -> tuple[Image.Image | None, str]:
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


def _as_pil(image: ImageInput) -> Image.Image:
    """One RGB PIL image from a PIL image or a path; raises for a bad file."""
    Image = _import_pil()
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    if isinstance(image, (str, os.PathLike)):
        loaded, reason = _open_image(Path(image))
        if loaded is None:
            raise InputDataError(f"cannot read image {image}: {reason}")
        return loaded
    raise TypeError(f"expected a PIL image or a path, got {type(image).__name__}")


def load_images(paths: Sequence[str | os.PathLike[str]]) -> LoadedImages:
    """Open ``paths`` as RGB images, reporting the ones that cannot be read.

    Never raises for a bad file (unreadable, truncated, not an image, missing);
    each one lands in ``failures`` with a reason, and ``paths`` of the result
    lists only the files that loaded, aligned with ``images``. Everything is
    decoded into memory: for large collections call it per chunk, or use
    :func:`encode_image_files`.
    """
    images: list[Image.Image] = []
    good: list[Path] = []
    failures: list[tuple[Path, str]] = []
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
    paths: Sequence[str | os.PathLike[str]],
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
    blocks: list[np.ndarray] = []
    good: list[Path] = []
    failures: list[tuple[Path, str]] = []
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


# --------------------------------------------------------------------------- #
# Texts
# --------------------------------------------------------------------------- #
def read_texts(path: str | os.PathLike[str], field: str = "text") -> TextRecords:
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
    texts: list[str] = []
    line_numbers: list[int] = []
    skipped: list[tuple[int, str]] = []
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


def _parse_text_line(line: str, is_jsonl: bool, field: str) -> tuple[str | None, str]:
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
