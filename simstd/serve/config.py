"""Settings of one ``simstd serve`` process (the FastAPI template's core/config.py).

Plain values only, so the same settings come from the command line, from
Python (``create_app(path, max_k=100)``) or from a test.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ..errors import SimstdError

#: Loopback is the default bind address: the service has no authentication.
DEFAULT_HOST = "127.0.0.1"
#: clip-retrieval's `clip back` listens on 1234 too; its clients default to it.
DEFAULT_PORT = 1234


@dataclass(frozen=True)
class Settings:
    """What a served index allows and how it is kept fresh.

    ``max_k`` caps results per query (``/knn-service`` clamps to it, as its
    clients ask for fixed large counts; ``/search`` refuses more). A request
    body larger than ``max_body_bytes`` is refused with 413 before it is
    read; an image larger than ``max_image_pixels`` is refused before it is
    decoded. ``cors_origins`` is empty (CORS off) unless asked for.
    ``reload_interval`` is how often (seconds) the server looks for a new
    committed version of the index; 0 turns hot reload off.
    """

    index_path: Path
    name: str | None = None
    params: str | None = None
    device: str = "cpu"
    max_k: int = 1000
    max_body_bytes: int = 16 * 2**20
    max_image_pixels: int = 40_000_000
    max_text_chars: int = 2000
    cors_origins: tuple[str, ...] = ()
    reload_interval: float = 1.0
    thumbnail_size: int = 320
    thumbnail_cache_bytes: int = 64 * 2**20

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_path", Path(self.index_path))
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        for key in ("max_k", "max_body_bytes", "max_image_pixels", "max_text_chars", "thumbnail_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SimstdError(f"serve setting {key} must be a positive integer, got {value!r}")
        if not isinstance(self.reload_interval, (int, float)) or self.reload_interval < 0:
            raise SimstdError(f"reload_interval must be >= 0 seconds (0 = off), got {self.reload_interval!r}")
        for origin in self.cors_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise SimstdError(f"CORS origin {origin!r} must look like http://host:port (or * for any)")

    @property
    def index_name(self) -> str:
        """The name clip-retrieval clients pass as ``indice_name`` (default: the file's stem)."""
        if self.name:
            return self.name
        stem = self.index_path.name
        return stem[: -len(".faiss")] if stem.endswith(".faiss") else stem


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
