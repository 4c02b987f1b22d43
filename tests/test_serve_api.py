"""`simstd serve`'s own JSON API through FastAPI's TestClient: queries of every
kind, images and thumbnails, limits and errors (always JSON, 4xx, no traceback)."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from serve_support import vector_index  # noqa: E402

from simstd import SimstdError  # noqa: E402
from simstd.serve import create_app  # noqa: E402


@pytest.fixture(scope="module")
def vec_db(tmp_path_factory):
    return vector_index(tmp_path_factory.mktemp("vec") / "db.faiss")


@pytest.fixture(scope="module")
def vec_client(vec_db):
    with TestClient(create_app(vec_db, encoder=None, max_k=50, max_body_bytes=64 * 1024)) as client:
        yield client


@pytest.fixture(scope="module")
def clip_client(serve_corpus, clip_encoder):
    with TestClient(create_app(serve_corpus, encoder=clip_encoder, max_image_pixels=200 * 200)) as client:
        yield client


def _no_traceback(response) -> None:
    body = response.json()
    assert set(body) <= {"detail", "errors"} and isinstance(body["detail"], str)
    assert "Traceback" not in response.text and 'File "' not in response.text


def _png(width: int, height: int, color=(200, 30, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


# ------------------------------------------------------------------ queries
def test_text_query_mixes_modalities_and_raw_does_not(clip_client):
    r = clip_client.post("/search", json={"text": "a red circle", "k": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == {"kind": "text", "query_modality": "text", "k": 10, "k_requested": 10,
                             "targets": ["image", "text"], "standardized": True}
    hits = body["hits"]
    assert [h["rank"] for h in hits] == list(range(1, 11))
    assert hits[0]["metadata"]["text"] == "a red circle"  # the caption itself ranks first
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all(0 < h["confidence"] <= 1 for h in hits)  # the corpus has a fitted uncertainty model
    images = [h for h in hits if h["modality"] == "image"]
    assert images and all(h["thumbnail_url"] == f"/thumbnails/{h['id']}" for h in images)
    assert all(h["thumbnail_url"] is None for h in hits if h["modality"] == "text")
    assert body["modality_share"]["image"] == len(images) / 10
    assert body["version"] == clip_client.get("/health").json()["version"]

    raw = clip_client.post("/search", json={"text": "a red circle", "k": 10, "raw": True}).json()
    assert raw["query"]["standardized"] is False
    assert raw["modality_share"] == {"image": 0.0, "text": 1.0}  # the modality gap: raw cosine picks texts
    assert all(h["score"] == h["raw_score"] for h in raw["hits"])


def test_image_upload_and_base64_find_the_image_itself(clip_client, serve_corpus):
    # The image itself is the query's best raw cosine (1.0). (The encoder has random weights, so every
    # image is a near-copy of every other and the default's hubness terms may put another first.)
    path = serve_corpus.parent / "photos" / "blue_square.png"
    r = clip_client.post("/search/image", files={"image": ("q.png", path.read_bytes(), "image/png")},
                         data={"k": "3", "targets": ["image"], "raw": "true"})
    assert r.status_code == 200, r.text
    top = r.json()["hits"][0]
    assert r.json()["query"]["query_modality"] == "image" and r.json()["query"]["targets"] == ["image"]
    assert top["modality"] == "image" and top["metadata"]["path"].endswith("blue_square.png")
    b64 = base64.b64encode(path.read_bytes()).decode()
    for image in (b64, "data:image/png;base64," + b64):
        r = clip_client.post("/search", json={"image": image, "k": 2, "raw": True})
        assert r.json()["hits"][0]["metadata"]["path"].endswith("blue_square.png")
        standardized = clip_client.post("/search", json={"image": image, "k": 2}).json()
        assert standardized["query"]["standardized"] and len(standardized["hits"]) == 2


def test_vector_id_and_target_queries(vec_client):
    rng = np.random.default_rng(1)
    q = rng.standard_normal(32) * 5  # not normalised: normalised on arrival
    r = vec_client.post("/search", json={"vector": q.tolist(), "k": 5})
    assert r.status_code == 200, r.text
    assert r.json()["query"]["query_modality"] == "text"
    r = vec_client.post("/search", json={"vector": q.tolist(), "k": 5, "targets": ["image"]})
    assert {h["modality"] for h in r.json()["hits"]} == {"image"}
    r = vec_client.post("/search", json={"id": 3, "k": 50})
    assert r.status_code == 200, r.text
    ids = [h["id"] for h in r.json()["hits"]]
    assert 3 not in ids and len(ids) == 50 and r.json()["query"]["query_modality"] == "text"
    # k above the number of items there are is clamped to what exists (and reported)
    r = vec_client.post("/search", json={"id": 3, "k": 50, "targets": ["text"]})
    assert r.status_code == 200 and r.json()["query"]["k"] == 29  # 30 texts but itself
    assert {h["modality"] for h in r.json()["hits"]} == {"text"} and 3 not in [h["id"] for h in r.json()["hits"]]
    r = vec_client.post("/search", json={"vector": q.tolist(), "k": 50, "targets": ["text"], "raw": True})
    assert r.json()["query"]["k"] == 30 and len(r.json()["hits"]) == 30


# ------------------------------------------------------------------ media
def test_thumbnails_and_images_only_for_recorded_image_files(clip_client, serve_corpus):
    from PIL import Image

    hits = clip_client.post("/search", json={"text": "a green triangle", "k": 32, "raw": True}).json()["hits"]
    image = next(h for h in hits if h["modality"] == "image")
    text = next(h for h in hits if h["modality"] == "text")
    r = clip_client.get(image["thumbnail_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(r.content))
    assert thumb.format == "JPEG" and max(thumb.size) <= 320
    thumbs = clip_client.app.state.thumbnails
    hits_before = thumbs.hits
    assert clip_client.get(image["thumbnail_url"]).content == r.content
    assert thumbs.hits == hits_before + 1  # second request served from the cache
    r = clip_client.get(image["image_url"])
    assert r.status_code == 200 and r.content == open(image["metadata"]["path"], "rb").read()
    for url in (f"/thumbnails/{text['id']}", f"/images/{text['id']}", "/images/9999", "/thumbnails/-1"):
        r = clip_client.get(url)
        assert r.status_code == 404, url
        _no_traceback(r)
    for url in ("/images/..%2f..%2fetc%2fpasswd", "/images/../../etc/passwd", "/thumbnails/x"):
        assert clip_client.get(url).status_code in (404, 422), url


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("body, status, words", [
    ({"k": 3}, 400, "exactly one query"),
    ({"id": 1, "text": "x"}, 400, "exactly one query"),
    ({"id": 1, "k": 51}, 400, "limit of 50"),
    ({"id": 1, "k": 0}, 422, "k"),
    ({"id": 1, "k": "ten"}, 422, "k"),
    ({"id": 1, "kk": 3}, 422, "kk"),
    ({"id": 10_000}, 404, "not in the index"),
    ({"id": -1}, 404, "not in the index"),
    ({"vector": [0.1] * 31}, 400, "32-d"),
    ({"vector": [0.0] * 32}, 400, "zero"),
    ({"id": 1, "targets": ["audio"]}, 400, "unknown target modality"),
    ({"vector": [0.1] * 32, "query_modality": "audio"}, 400, "unknown query modality"),
    ({"vector": [0.1] * 32, "query_modality": "Text"}, 400, "it holds ['image', 'text']; did you mean 'text'?"),
    ({"id": 1, "targets": ["imgae"]}, 400, "did you mean 'image'?"),
    ({"text": "a cat"}, 400, "encoder"),
    ({"image": "bm90IGFuIGltYWdl"}, 400, "encoder"),
])
def test_bad_requests_get_json_errors(vec_client, body, status, words):
    r = vec_client.post("/search", json=body)
    assert r.status_code == status, r.text
    _no_traceback(r)
    assert words in r.json()["detail"]


def test_bad_bodies_and_size_limits(vec_client):
    r = vec_client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    _no_traceback(r)
    big = json.dumps({"vector": [0.5] * 20000}).encode()  # > 64 KiB
    r = vec_client.post("/search", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b" " * 4096

    r = vec_client.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    _no_traceback(r)
    assert vec_client.get("/nowhere").status_code == 404
    assert vec_client.put("/search").status_code == 405


def test_bad_images(clip_client):
    r = clip_client.post("/search/image", files={"image": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 400 and "not a readable image" in r.json()["detail"]
    r = clip_client.post("/search/image", files={"image": ("x.png", _png(300, 300), "image/png")})
    assert r.status_code == 400 and "limit" in r.json()["detail"]  # max_image_pixels=200*200 in the fixture
    r = clip_client.post("/search", json={"image": "%%%"})
    assert r.status_code == 400 and "base64" in r.json()["detail"]
    r = clip_client.post("/search", json={"text": "   "})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = clip_client.post("/search", json={"text": "x" * 2001})
    assert r.status_code == 400 and "2000" in r.json()["detail"]
    r = clip_client.post("/search/image", data={"k": "3"})
    assert r.status_code == 422
    _no_traceback(r)


def test_internal_errors_are_500_json_without_traceback(vec_db, monkeypatch):
    from simstd.serve import service

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service, "search", broken)
    with TestClient(create_app(vec_db, encoder=None), raise_server_exceptions=False) as client:
        r = client.post("/search", json={"id": 1})
    assert r.status_code == 500 and "secret" not in r.text
    _no_traceback(r)


def test_unfitted_index_serves_raw_scores_only(tmp_path):
    db = vector_index(tmp_path / "db.faiss", fit=False)
    with TestClient(create_app(db, encoder=None)) as client:
        r = client.post("/search", json={"id": 1, "k": 3})
        assert r.status_code == 409 and "simstd fit" in r.json()["detail"]
        assert client.post("/search", json={"id": 1, "k": 3, "raw": True}).status_code == 200
        assert client.get("/info").json()["standardized"] is False


# ------------------------------------------------------------------ service facts
def test_info_health_schema_and_page(vec_client, clip_client):
    info = vec_client.get("/info").json()
    assert info["counts"] == {"text": 30, "image": 40} and info["dim"] == 32 and info["standardized"] is True
    assert info["encoder"] is None and "encoder" in info["encoder_note"] and info["limits"]["max_k"] == 50
    assert {r["query_modality"] for r in info["standardizer"]} == {"text", "image"}
    assert clip_client.get("/info").json()["confidence"] is True
    health = vec_client.get("/health").json()
    assert health["status"] == "ok" and health["version"] == info["version"] and health["pending_version"] is None
    schema = vec_client.get("/openapi.json").json()
    for path in ("/search", "/search/image", "/health", "/info", "/knn-service", "/metadata", "/indices-list"):
        assert path in schema["paths"], path
    page = vec_client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert vec_client.get("/static/app.js").status_code == 200


def test_cors_is_off_unless_asked(vec_db, vec_client):
    headers = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in vec_client.get("/health", headers=headers).headers
    with TestClient(create_app(vec_db, encoder=None, cors_origins=["http://localhost:3000"])) as client:
        r = client.options("/search", headers={**headers, "Origin": "http://localhost:3000"})
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        r = client.get("/health", headers=headers)
        assert "access-control-allow-origin" not in r.headers
    with TestClient(create_app(vec_db, encoder=None, cors_origins=["http://localhost:3000"],
                               max_body_bytes=1024)) as client:  # a refusal still carries CORS headers
        r = client.post("/search", content=b" " * 2048, headers={"Origin": "http://localhost:3000"})
        assert r.status_code == 413 and r.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_create_app_refuses_bad_setup(tmp_path, vec_db):
    with pytest.raises(SimstdError, match="does not exist"):
        create_app(tmp_path / "none.faiss", encoder=None)
    with pytest.raises(SimstdError, match="max_k"):
        create_app(vec_db, encoder=None, max_k=0)
    with pytest.raises(SimstdError, match="Settings"):
        create_app(vec_db, encoder=None, not_a_setting=1)
    with pytest.raises(SimstdError, match="CORS origin"):
        create_app(vec_db, encoder=None, cors_origins=["localhost"])
    # an index built from .npy records no encoder: auto means vector/id queries only, said in /info
    with TestClient(create_app(vec_db)) as client:
        assert "no encoder model" in client.get("/info").json()["encoder_note"]


# ------------------------------------------------------------------ issue 21
def test_k_above_the_searchable_items_is_capped_and_reported(vec_client):
    # The one rule for k, shared with `simstd query -k` (tests/test_cli.py): capped at what the search can
    # return, and the response says so; the server's max_k stays a refusal.
    r = vec_client.post("/search", json={"id": 3, "k": 40, "targets": ["text"]})
    assert r.status_code == 200 and r.json()["query"]["k"] == 29 and r.json()["query"]["k_requested"] == 40
    r = vec_client.post("/search", json={"id": 3, "k": 5})
    assert r.json()["query"]["k"] == r.json()["query"]["k_requested"] == 5
    schema = vec_client.get("/openapi.json").json()["components"]["schemas"]
    assert "capped" in schema["SearchRequest"]["properties"]["k"]["description"]
    assert "k_requested" in schema["QueryInfo"]["required"]


def test_info_names_the_fitted_method(vec_client, tmp_path):
    from simstd import MixedIndex, Standardizer

    info = vec_client.get("/info").json()  # the fixture fits the default
    assert info["method"]["method"] == "hubness" and info["method"]["settings"]["sample"] == 10_000
    assert "CSLS (Conneau et al. 2018)" in info["method"]["citation"]
    paper = vector_index(tmp_path / "paper.faiss", fit=False)
    index = MixedIndex.load(paper)
    index.standardizer = Standardizer(method="paper").fit(index)
    index.save(paper)
    with TestClient(create_app(paper, encoder=None)) as client:
        info = client.get("/info").json()
    assert info["method"]["method"] == "paper" and info["method"]["citation"] == "Yamashita, Shirafuji and Saito 2025"

    db = vector_index(tmp_path / "hub.faiss", fit=False)
    index = MixedIndex.load(db)
    index.standardizer = Standardizer(method="hubness", hubness_k=5).fit(index)
    index.save(db)
    with TestClient(create_app(db, encoder=None)) as client:
        info = client.get("/info").json()
    assert info["method"]["method"] == "hubness" and info["method"]["settings"]["hubness_k"] == 5
    assert "CSLS (Conneau et al. 2018)" in info["method"]["citation"] and "K=5" in info["method"]["summary"]
    with TestClient(create_app(vector_index(tmp_path / "raw.faiss", fit=False), encoder=None)) as client:
        assert client.get("/info").json()["method"] is None


def test_image_url_comes_from_the_metadata_url_of_an_npy_built_index(tmp_path):
    """Issue 23: an index built from .npy files with a `url` per image got `image_url: null`."""
    from simstd import MixedIndex

    rng = np.random.default_rng(0)
    from conftest import unit_rows

    images = [{"url": f"https://example.org/img/{i}.jpg", "caption": f"photo {i}"} for i in range(3)]
    images[2] = {"url": "javascript:alert(1)"}  # never passed on as an image address
    index = MixedIndex.from_arrays({"text": unit_rows(rng, 4, 8, 3.0), "image": unit_rows(rng, 3, 8, -3.0)},
                                   metadata={"image": images})
    index.save(tmp_path / "db.faiss")
    with TestClient(create_app(tmp_path / "db.faiss", encoder=None)) as client:
        r = client.post("/search", json={"id": 0, "k": 6, "raw": True})  # every other item
        assert r.status_code == 200, r.text
        hits = {h["id"]: h for h in r.json()["hits"]}
    assert hits[4]["image_url"] == hits[4]["thumbnail_url"] == "https://example.org/img/0.jpg"
    assert hits[6]["image_url"] is None and hits[1]["image_url"] is None  # a bad scheme; a text item
