"""simstd's own JSON API: /search, /search/image, /health, /info."""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from .. import service
from ..config import Settings
from ..deps import IndexHolder, Snapshot
from ..schemas import K_RULE, Health, Info, SearchRequest, SearchResponse
from ._deps import get_holder, get_settings, get_snapshot

router = APIRouter(tags=["simstd"])


@router.post("/search", response_model=SearchResponse)
def search(req: SearchRequest, snap: Snapshot = Depends(get_snapshot),
           settings: Settings = Depends(get_settings)) -> dict:
    """Top-k over the index (all modalities, or `targets`), by standardized score unless `raw`."""
    return service.search(snap, settings, req)


@router.post("/search/image", response_model=SearchResponse)
async def search_image(
    image: UploadFile = File(..., description="The query image."),
    k: int = Form(10, ge=1, description=K_RULE),
    targets: Optional[list[str]] = Form(None),
    raw: bool = Form(False),
    query_modality: Optional[str] = Form(None),
    snap: Snapshot = Depends(get_snapshot),
    settings: Settings = Depends(get_settings),
) -> dict:
    """The same search with an uploaded image file (multipart/form-data) as the query."""
    data = await image.read()
    req = SearchRequest(k=k, targets=targets or None, raw=raw, query_modality=query_modality)
    return await run_in_threadpool(service.search, snap, settings, req, data)


@router.get("/health", response_model=Health)
def health(holder: IndexHolder = Depends(get_holder)) -> dict:
    """Liveness, the version served, and a newer version not served yet (with the reason)."""
    snap, status = holder.current(), holder.status
    return {"status": "ok", "version": snap.version, "loaded_at": snap.loaded_at, "reloads": status.reloads,
            "pending_version": status.pending_version, "pending_reason": status.pending_reason}


@router.get("/info", response_model=Info)
def info(snap: Snapshot = Depends(get_snapshot), settings: Settings = Depends(get_settings)) -> dict:
    """Counts, dimension, model, fitted statistics and the server's limits."""
    index = snap.index
    return {
        "name": settings.index_name, "version": snap.version, "dim": index.dim, "factory": index.factory,
        "model": index.model, "ntotal": index.ntotal, "counts": index.counts, "fingerprint": index.fingerprint,
        "standardized": snap.standardized, "stale": snap.stale,
        "method": index.standardizer.describe() if snap.standardized else None,
        "standardizer": index.standardizer.table() if snap.standardized else None,
        "confidence": snap.uncertainty is not None,
        "probabilities": None if snap.uncertainty is None else snap.uncertainty.calibration_source,
        "encoder": snap.encoder.name if snap.encoder else None, "encoder_note": snap.encoder_note,
        "limits": {"max_k": settings.max_k, "max_body_bytes": settings.max_body_bytes,
                   "max_image_pixels": settings.max_image_pixels, "max_text_chars": settings.max_text_chars},
    }
