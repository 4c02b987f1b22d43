"""clip-retrieval's own ClipClient (the installed wheel's clip_client.py, which needs
only `requests`) against `simstd serve` on a real uvicorn, loopback only."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
requests = pytest.importorskip("requests")
from serve_support import uvicorn_server  # noqa: E402

from simstd.serve import create_app  # noqa: E402


def _load_clip_client():
    """clip_retrieval/clip_client.py from the installed wheel, without the package's __init__
    (which imports the whole clip back stack: flask, torch, ...)."""
    spec = importlib.util.find_spec("clip_retrieval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("clip-retrieval is not installed (.ci/install-clip-retrieval.sh installs it)")
    path = Path(spec.submodule_search_locations[0]) / "clip_client.py"
    module_spec = importlib.util.spec_from_file_location("clip_retrieval_clip_client", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def server(serve_corpus, clip_encoder):
    with uvicorn_server(create_app(serve_corpus, encoder=clip_encoder)) as url:
        yield url


def test_clip_client_text_image_embedding_queries(server, serve_corpus, clip_encoder):
    cc = _load_clip_client()
    url = server + "/knn-service"
    # clip-retrieval semantics: modality names the index searched; defaults (dedup, safety...) are sent and ignored
    client = cc.ClipClient(url=url, indice_name="db", modality=cc.Modality.IMAGE, num_images=5)
    results = client.query(text="a red circle")
    assert len(results) == 5 and {r["modality"] for r in results} == {"image"}
    assert all({"id", "similarity", "image_path", "url"} <= set(r) for r in results)
    sims = [r["similarity"] for r in results]
    assert sims == sorted(sims, reverse=True) and sims == [r["raw_similarity"] for r in results]  # cosines
    assert all(r["url"] == f"{server}/images/{r['id']}" for r in results)
    assert requests.get(results[0]["url"], timeout=10).content == Path(results[0]["image_path"]).read_bytes()

    texts = cc.ClipClient(url=url, indice_name="db", modality=cc.Modality.TEXT, num_images=3)
    top = texts.query(text="a red circle")
    assert [r["caption"] for r in top][0] == "a red circle" and {r["modality"] for r in top} == {"text"}

    picture = serve_corpus.parent / "photos" / "orange_stripes.png"
    found = client.query(image=str(picture))  # sent as base64
    assert found[0]["image_path"].endswith("orange_stripes.png")

    vector = clip_encoder.encode_texts(["a blue square"])[0].tolist()
    by_vector = texts.query(embedding_input=vector)  # query_modality defaults to text
    assert by_vector[0]["caption"] == "a blue square"


def test_modality_all_is_the_merged_standardized_ranking(server):
    cc = _load_clip_client()
    client = cc.ClipClient(url=server + "/knn-service", indice_name="db", num_images=10)
    client.modality = "all"  # simstd's addition: both modalities, standardized scores
    mixed = client.query(text="a red circle")
    assert {r["modality"] for r in mixed} == {"image", "text"}
    assert [r["similarity"] for r in mixed] == sorted((r["similarity"] for r in mixed), reverse=True)
    assert all(r["similarity"] != r["raw_similarity"] for r in mixed)  # z-scores, not cosines
    own = requests.post(server + "/search", json={"text": "a red circle", "k": 10}, timeout=30).json()
    assert [r["id"] for r in mixed] == [h["id"] for h in own["hits"]]


def test_indices_list_metadata_and_errors(server):
    assert requests.get(server + "/indices-list", timeout=10).json() == ["db"]
    r = requests.post(server + "/metadata", json={"ids": [0, 20, 999], "indice_name": "db"}, timeout=10).json()
    assert [m["id"] for m in r] == [0, 20, 999]
    assert r[0]["metadata"]["image_path"].endswith(".png") and r[1]["metadata"]["caption"].startswith("a ")
    assert r[2]["metadata"] is None
    assert requests.post(server + "/metadata", json={"ids": [], "indice_name": "db"}, timeout=10).json() == []
    bad = requests.post(server + "/knn-service", json={"text": "x", "modality": "image", "num_images": 3,
                                                       "indice_name": "laion5B"}, timeout=10)
    assert bad.status_code == 404 and "db" in bad.json()["detail"]
    bad = requests.post(server + "/knn-service", json={"image_url": "http://127.0.0.1:9/x.jpg", "modality": "image",
                                                       "num_images": 3, "indice_name": "db"}, timeout=10)
    assert bad.status_code == 400 and "does not fetch" in bad.json()["detail"]
    bad = requests.post(server + "/knn-service", json={"modality": "image", "num_images": 3}, timeout=10)
    assert bad.status_code == 400 and "must fill" in bad.json()["detail"]
    # large counts, as clip front asks (num_result_ids 3000), are clamped to what exists
    many = requests.post(server + "/knn-service", json={"text": "x", "modality": "all", "num_images": 2,
                                                        "num_result_ids": 3000, "indice_name": "db"}, timeout=30).json()
    assert len(many) == 32 and ("caption" in many[0] or "image_path" in many[0])
    assert all(set(r) >= {"id", "similarity"} for r in many) and not any("caption" in r or "image_path" in r
                                                                         for r in many[2:])


def test_clip_front_in_chromium_shows_the_images(serve_corpus, clip_encoder, tmp_path):
    """clip-retrieval's own web front (the built files in its wheel), served from another
    loopback origin, searching `simstd serve` (CORS allowed for that origin only)."""
    import functools
    import http.server
    import threading

    cdp_browser = pytest.importorskip("cdp_browser")
    if cdp_browser.find_chromium() is None:
        pytest.skip("chromium is not installed (bash .ci/install-system.sh)")
    _load_clip_client()  # skips without the wheel
    spec = importlib.util.find_spec("clip_retrieval")
    front = Path(spec.submodule_search_locations[0]).parent / "front" / "build"
    if not (front / "index.html").exists():
        pytest.skip(f"the clip-retrieval wheel has no built front at {front}")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # noqa: ANN002
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(front)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{httpd.server_address[1]}"
    images = ("[...document.querySelector('clip-front').shadowRoot.querySelectorAll('img')]"
              ".filter(i => i.src.startsWith(BACK + '/images/'))")
    try:
        app = create_app(serve_corpus, encoder=clip_encoder, cors_origins=[origin])
        with uvicorn_server(app) as back, cdp_browser.Browser() as browser:
            browser.goto(f"{origin}/?back={back}&index=db&query=a%20red%20circle")
            js = images.replace("BACK", f"'{back}'")
            browser.wait_for(f"document.querySelector('clip-front') && {js}.length === 16 && "
                             f"{js}.every(i => i.complete && i.naturalWidth > 0)", 60, "clip front's results")
            shot = browser.screenshot(os.environ.get("SIMSTD_FRONT_SCREENSHOT") or tmp_path / "front.png")
            assert shot.stat().st_size > 10_000
    finally:
        httpd.shutdown()
        thread.join(10)
