"""clip-retrieval's back-end API (clip_back.py): /indices-list, /knn-service, /metadata.

Its ClipClient and web front talk to these unchanged. ``modality`` "all" is a
simstd addition (the merged standardized ranking); ``query_modality`` names the
modality of ``embedding_input`` (default text). Deduplication, safety,
violence, aesthetic and mclip flags are accepted and ignored.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from .. import service
from ..config import Settings
from ..deps import Snapshot
from ..schemas import KnnRequest, MetadataRequest
from ._deps import get_settings, get_snapshot

router = APIRouter(tags=["clip-retrieval"])


@router.get("/indices-list")
def indices_list(settings: Settings = Depends(get_settings)) -> list[str]:
    """The one index this server holds, by name."""
    return [settings.index_name]


@router.post("/knn-service")
def knn_service(req: KnnRequest, request: Request, snap: Snapshot = Depends(get_snapshot),
                settings: Settings = Depends(get_settings)) -> list[dict]:
    """Nearest neighbours of a text, a base64 image or an embedding, as clip back answers them."""
    return service.knn_service(snap, settings, req, str(request.base_url))


@router.post("/metadata")
def metadata(req: MetadataRequest, snap: Snapshot = Depends(get_snapshot),
             settings: Settings = Depends(get_settings)) -> list[dict]:
    """Metadata of the given ids: ``[{id, metadata}]``."""
    return service.metadata(snap, settings, req.ids, req.indice_name)
