"""Image files and thumbnails of indexed items, by id only."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from ..config import Settings
from ..deps import Snapshot
from ..media import ThumbnailCache, image_file, media_type
from ._deps import get_settings, get_snapshot, get_thumbnails

router = APIRouter(tags=["media"])
_CACHE = "public, max-age=3600"


@router.get("/images/{item_id}", response_class=FileResponse)
def image(item_id: int, snap: Snapshot = Depends(get_snapshot), settings: Settings = Depends(get_settings)):
    """The image file recorded in the index for an image item."""
    path = image_file(snap.index, item_id, settings.index_path)
    return FileResponse(path, media_type=media_type(path), headers={"Cache-Control": _CACHE})


@router.get("/thumbnails/{item_id}", response_class=Response)
async def thumbnail(item_id: int, snap: Snapshot = Depends(get_snapshot),
                    settings: Settings = Depends(get_settings),
                    thumbs: ThumbnailCache = Depends(get_thumbnails)) -> Response:
    """A JPEG thumbnail of an image item (cached)."""
    path = await run_in_threadpool(image_file, snap.index, item_id, settings.index_path)
    data = await run_in_threadpool(thumbs.get, path)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": _CACHE})
