"""FastAPI dependencies: the shared objects the app factory put on ``app.state``."""
from __future__ import annotations

from fastapi import Request

from ..config import Settings
from ..deps import IndexHolder, Snapshot
from ..media import ThumbnailCache


def get_holder(request: Request) -> IndexHolder:
    return request.app.state.holder


def get_snapshot(request: Request) -> Snapshot:
    """Taken once per request: the request finishes on this version even if a reload happens meanwhile."""
    return request.app.state.holder.current()


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_thumbnails(request: Request) -> ThumbnailCache:
    return request.app.state.thumbnails
