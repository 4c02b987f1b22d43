"""Images of indexed items: which file belongs to an id, and cached thumbnails.

A client names an item by its integer id, never by a path: the file served is
the one recorded in the index's metadata (``path``, or clip-retrieval's
``image_path``) for an item of the image modality, with an image suffix.
Nothing a request carries can point outside that set (no path traversal).
Thumbnails are made with Pillow and kept in a bounded in-memory LRU, keyed by
the file's path, size and modification time, so a replaced file is re-read.
"""
from __future__ import annotations

import io
import mimetypes
import threading
from collections import OrderedDict
from pathlib import Path

from ..encoders import IMAGE_EXTENSIONS
from ..errors import NotFoundError
from ..index import MixedIndex

#: Metadata fields that hold an item's image file, in order of preference.
PATH_FIELDS = ("path", "image_path")


def image_file(index: MixedIndex, item_id: int, index_path: Path) -> Path:
    """The image file recorded for ``item_id``; relative paths are taken from the index's folder."""
    if item_id < 0 or item_id >= index.ntotal:
        raise NotFoundError(f"id {item_id} is not in the index (ids run from 0 to {index.ntotal - 1})")
    if str(index.modality_of([item_id])[0]) != "image":
        raise NotFoundError(f"item {item_id} is not an image")
    meta = index.store.get([item_id]).get(item_id, {})
    recorded = next((meta[f] for f in PATH_FIELDS if isinstance(meta.get(f), str) and meta[f]), None)
    if recorded is None:
        raise NotFoundError(f"image {item_id} has no file recorded in the index (metadata field 'path')")
    path = Path(recorded)
    if not path.is_absolute():
        path = index_path.resolve().parent / path
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise NotFoundError(f"the file recorded for image {item_id} is not an image file ({path.suffix or 'no suffix'})")
    if not path.is_file():
        raise NotFoundError(f"the file recorded for image {item_id} is missing")
    return path


def media_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


#: Metadata fields that may hold an image's web address (clip-retrieval and LAION use ``url``).
URL_FIELDS = ("url", "image_url", "coco_url")


def image_fields(item_id: int, modality: str, meta: dict) -> dict:
    """URLs a client can show for an image hit: this server's own (relative) for a
    recorded file, else an http(s) address from the metadata (the browser loads
    it; other schemes such as ``javascript:`` are never passed on)."""
    if modality != "image":
        return {"image_url": None, "thumbnail_url": None}
    if any(isinstance(meta.get(f), str) and meta[f] for f in PATH_FIELDS):
        return {"image_url": f"/images/{item_id}", "thumbnail_url": f"/thumbnails/{item_id}"}
    url = next((meta[f] for f in URL_FIELDS if isinstance(meta.get(f), str)
                and meta[f].lower().startswith(("http://", "https://"))), None)
    return {"image_url": url, "thumbnail_url": url}


class ThumbnailCache:
    """JPEG thumbnails of at most ``size`` pixels a side, an LRU of at most ``max_bytes``."""

    def __init__(self, size: int = 320, max_bytes: int = 64 * 2**20, max_pixels: int = 40_000_000) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, path: Path) -> bytes:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return data
            self.misses += 1
        data = self._make(path)  # outside the lock: two first requests may both decode, never block others
        with self._lock:
            if key not in self._items and len(data) <= self.max_bytes:
                self._items[key] = data
                self._bytes += len(data)
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old)
        return data

    def _make(self, path: Path) -> bytes:
        from PIL import Image

        try:
            with Image.open(path) as img:
                if img.width * img.height > self.max_pixels:
                    raise NotFoundError(f"image {path.name} is too large to thumbnail ({img.width}x{img.height})")
                img.draft("RGB", (self.size, self.size))  # JPEG: decode at reduced scale, much faster
                img = img.convert("RGB")
                img.thumbnail((self.size, self.size))
                out = io.BytesIO()
                img.save(out, format="JPEG", quality=82)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise NotFoundError(f"image {path.name} cannot be read ({type(exc).__name__})") from None
        return out.getvalue()
