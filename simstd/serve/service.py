"""What the routes do, kept apart from HTTP: turn a query into a vector, search
one snapshot of the index, and shape the hits for simstd's API and for
clip-retrieval's (clip_back.py's ``/knn-service`` and ``/metadata``).
"""
from __future__ import annotations

import base64
import binascii
import io
import time
import warnings
from typing import Any

import numpy as np

from ..errors import NotFoundError, SimstdError, UnsupportedQueryError
from ..index import SearchResult
from ..validation import check_modality, check_probability, searchable_k
from .config import Settings
from .deps import Snapshot
from .media import image_fields
from .schemas import KnnRequest, SearchRequest


def decode_base64_image(data: str) -> bytes:
    """Bytes of a base64 image, also given as a ``data:image/...;base64,`` URL."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SimstdError("image is not valid base64; send the file's bytes base64-encoded") from None


def open_image(data: bytes, settings: Settings) -> Any:
    """A PIL image from uploaded bytes; refuses non-images and oversized images before decoding."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > settings.max_image_pixels:
            raise SimstdError(f"image is {img.width}x{img.height} pixels; the limit is "
                              f"{settings.max_image_pixels} pixels")
        img.load()
        return img.convert("RGB")
    except SimstdError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise SimstdError(f"the uploaded file is not a readable image ({type(exc).__name__})") from None


def _need_encoder(snap: Snapshot, what: str):  # noqa: ANN202
    if snap.encoder is None:
        raise UnsupportedQueryError(f"{what} queries need an encoder, and {snap.encoder_note}")
    return snap.encoder


def _embed(snap: Snapshot, settings: Settings, *, text: str | None = None, vector: list[float] | None = None,
           image: bytes | None = None) -> np.ndarray:
    if text is not None:
        if not text.strip():
            raise SimstdError("the text query is empty; type something to search for")
        if len(text) > settings.max_text_chars:
            raise SimstdError(f"the text query has {len(text)} characters; the limit is {settings.max_text_chars}")
        return _need_encoder(snap, "text").encode_texts([text])
    if image is not None:
        encoder = _need_encoder(snap, "image")
        return encoder.encode_images([open_image(image, settings)])
    arr = np.asarray(vector, dtype=np.float32)
    if arr.shape != (snap.index.dim,):
        raise SimstdError(f"the query vector has {arr.size} numbers; this index holds {snap.index.dim}-d vectors")
    with warnings.catch_warnings():  # a client's unnormalised vector is normalised; no need to log it
        warnings.simplefilter("ignore", UserWarning)
        from ..validation import as_embeddings

        return as_embeddings(arr, "the query vector", snap.index.dim)


def _check_targets(snap: Snapshot, targets: list[str] | None) -> list[str]:
    names = snap.index.modalities
    if not targets:
        return names
    return [check_modality(t, names, "target modality") for t in dict.fromkeys(targets)]


def _check_id(snap: Snapshot, item_id: int) -> str:
    n = snap.index.ntotal
    if item_id < 0 or item_id >= n:
        raise NotFoundError(f"id {item_id} is not in the index (ids run from 0 to {n - 1})")
    return str(snap.index.modality_of([item_id])[0])


def _run(snap: Snapshot, vectors: np.ndarray | None, item_id: int | None, query_modality: str, k: int,
         targets: list[str], raw: bool) -> SearchResult:
    if not raw and not snap.standardized:
        from ..errors import NotFittedError

        raise NotFittedError("the index has no standardizer fitted on its current items: run "
                             "`simstd fit --index ...` (the server switches to it), or ask for raw scores")
    kwargs = {"raw": raw, "targets": targets, "uncertainty": snap.uncertainty}
    if item_id is not None:
        return snap.index.search_like([item_id], k, **kwargs)
    return snap.index.search(vectors, query_modality, k, **kwargs)


def search(snap: Snapshot, settings: Settings, req: SearchRequest, upload: bytes | None = None) -> dict:
    """simstd's own ``POST /search``."""
    t0 = time.perf_counter()
    given = [name for name, v in (("text", req.text), ("vector", req.vector), ("image", req.image or upload),
                                  ("id", req.id)) if v is not None]
    if len(given) != 1:
        raise SimstdError("give exactly one query: text, vector, image or id "
                          f"(got {', '.join(given) or 'none'})")
    kind = given[0]
    if req.min_prob is not None:
        check_probability(req.min_prob, "min_prob")
        if snap.uncertainty is None:
            raise SimstdError("min_prob thresholds the match probability of the uncertainty model, which this "
                              "index has not fitted: run simstd fit --uncertainty --index ...")
    if req.k > settings.max_k:
        raise SimstdError(f"k={req.k} is above this server's limit of {settings.max_k}")
    targets = _check_targets(snap, req.targets)
    item_modality = _check_id(snap, req.id) if kind == "id" else None
    if kind == "id":
        if req.query_modality not in (None, item_modality):
            raise SimstdError(f"item {req.id} is a {item_modality}; leave query_modality out for id queries")
        qmod = item_modality
    else:
        qmod = req.query_modality or ("image" if kind == "image" else "text")
    check_modality(qmod, snap.index.modalities)
    k = searchable_k(req.k, snap.index.counts, targets, item_modality)  # the CLI's rule: capped, reported
    if k < 1:
        raise SimstdError("no item to return: the target modalities hold no other item")
    vectors = None
    if kind != "id":
        image = upload if upload is not None else (decode_base64_image(req.image) if req.image else None)
        vectors = _embed(snap, settings, text=req.text, vector=req.vector, image=image)
    result = _run(snap, vectors, req.id, qmod, k, targets, req.raw)
    if req.min_prob is not None:
        result = result.above(req.min_prob)
    hits = []
    for h in result.hits(0):
        h.pop("uncertainty", None)
        hits.append({**h, **image_fields(h["id"], h["modality"], h["metadata"])})
    return {
        "query": {"kind": kind, "query_modality": qmod, "k": k, "k_requested": req.k, "targets": targets,
                  "standardized": result.standardized},
        "hits": hits,
        "modality_share": modality_share([h["modality"] for h in hits], targets),
        "version": snap.version,
        "took_ms": round((time.perf_counter() - t0) * 1000, 3),
    }


def modality_share(labels: list[str], modalities: list[str]) -> dict[str, float]:
    n = max(len(labels), 1)
    return {m: round(labels.count(m) / n, 4) for m in modalities}


# ------------------------------------------------------- clip-retrieval API
#: clip back's metadata columns, filled from simstd's payload fields.
_CLIP_COLUMNS = {"caption": ("caption", "text"), "url": ("url", "coco_url"), "image_path": ("image_path", "path")}


def clip_metadata(meta: dict) -> dict:
    """A payload with clip back's column names added (caption, url, image_path) beside simstd's."""
    out = dict(meta)
    for column, sources in _CLIP_COLUMNS.items():
        if column not in out:
            value = next((meta[s] for s in sources if meta.get(s) not in (None, "")), None)
            if value is not None:
                out[column] = value
    return out


def check_indice(settings: Settings, name: str | None) -> None:
    if name is not None and name != settings.index_name:
        raise NotFoundError(f"unknown indice_name {name!r}; this server has [{settings.index_name!r}] "
                       "(GET /indices-list)")


def knn_service(snap: Snapshot, settings: Settings, req: KnnRequest, base_url: str) -> list[dict]:
    """clip back's ``POST /knn-service``: a list of ``{id, similarity, ...metadata}``.

    ``modality`` "image" or "text" searches that modality only and reports the
    cosine as ``similarity`` (what clip back reports); "all" returns the merged
    standardized ranking with the standardized score as ``similarity``. Every
    result also carries ``modality``, ``score`` and ``raw_similarity``.
    """
    check_indice(settings, req.indice_name)
    if req.image_url:
        raise UnsupportedQueryError("image_url is not supported: this server does not fetch URLs; "
                          "send the image itself, base64-encoded, as image")
    names = snap.index.modalities
    if req.modality == "all":
        targets, raw = names, False
    elif req.modality in names:
        targets, raw = [req.modality], True
    else:
        raise SimstdError(f"unknown modality {req.modality!r}; use one of {names + ['all']}")
    if req.text:
        vectors, qmod = _embed(snap, settings, text=req.text), "text"
    elif req.image:
        vectors, qmod = _embed(snap, settings, image=decode_base64_image(req.image)), "image"
    elif req.embedding_input is not None:
        vectors, qmod = _embed(snap, settings, vector=req.embedding_input), req.query_modality or "text"
    else:
        raise SimstdError("must fill one of text, image and embedding_input")
    check_modality(qmod, names, "query_modality")
    # clip back returns num_result_ids ids and metadata for the first num_images; clamp, its clients ask fixed sizes.
    wanted = req.num_result_ids if req.num_result_ids is not None else req.num_images
    k = searchable_k(min(max(wanted, req.num_images), settings.max_k), snap.index.counts, targets)
    if k < 1:
        return []
    result = _run(snap, vectors, None, qmod, k, targets, raw)
    with_meta = min(req.num_images, k)
    metas = snap.index.store.get(result.ids[0, :with_meta])
    out = []
    for rank in range(result.ids.shape[1]):
        i = int(result.ids[0, rank])
        if i < 0:
            break
        modality = str(result.modalities[0, rank])
        row: dict[str, Any] = {}
        if rank < with_meta:
            meta = metas.get(i, {})
            row.update(clip_metadata(meta))
            urls = image_fields(i, modality, meta)
            if urls["image_url"] and "url" not in meta:  # clip front shows `url`; point it at this server
                row["url"] = base_url.rstrip("/") + urls["image_url"]
        row.update(id=i, similarity=float(result.scores[0, rank]), modality=modality,
                   score=float(result.scores[0, rank]), raw_similarity=float(result.raw_scores[0, rank]))
        if result.confidence is not None:
            row["confidence"] = float(result.confidence[0, rank])
        out.append(row)
    return out


def metadata(snap: Snapshot, settings: Settings, ids: list[int], indice_name: str | None) -> list[dict]:
    """clip back's ``POST /metadata``: ``[{id, metadata}]`` in the order asked."""
    check_indice(settings, indice_name)
    if len(ids) > settings.max_k:
        raise SimstdError(f"{len(ids)} ids asked; the limit is {settings.max_k} per request")
    metas = snap.index.store.get(ids)
    return [{"id": i, "metadata": clip_metadata(metas[i]) if i in metas else None} for i in ids]
