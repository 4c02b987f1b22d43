"""``simstd serve``: an HTTP search service with a web page.

simstd's own JSON API (``POST /search``, ``GET /info``, ``GET /health``, an
OpenAPI schema at ``/openapi.json``), clip-retrieval's back-end API so its
``ClipClient`` and web front work unchanged (``/indices-list``,
``/knn-service``, ``/metadata``), and a page at ``/`` that shows texts and
images in one standardized ranking. New index versions are picked up while
serving (hot reload). Needs the serve extra: ``pip install "simstd[serve]"``.

>>> from simstd.serve import create_app, run
>>> app = create_app("db.faiss")          # doctest: +SKIP
>>> run(app, "127.0.0.1", 1234)           # doctest: +SKIP
"""
from __future__ import annotations

from .app import create_app, run
from .config import Settings
from .deps import IndexHolder, Snapshot, index_version

__all__ = ["IndexHolder", "Settings", "Snapshot", "create_app", "index_version", "run"]
