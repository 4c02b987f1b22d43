"""The web page in a real headless Chromium (Debian's package), driven over CDP:
type a query, see one grid mixing image thumbnails and text cards, toggle raw,
see the modality share change; upload an image; error and empty states."""
from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("websocket")
from cdp_browser import Browser, find_chromium  # noqa: E402
from serve_support import uvicorn_server, vector_index  # noqa: E402

from simstd.serve import create_app  # noqa: E402

if find_chromium() is None:  # pragma: no cover - CI installs it (.ci/install-system.sh)
    if os.environ.get("CI"):
        pytest.fail("chromium is missing; .ci/install-system.sh installs it", pytrace=False)
    pytest.skip("chromium is not installed (bash .ci/install-system.sh)", allow_module_level=True)

CARDS = """[...document.querySelectorAll('#results .card')].map(c => ({
  modality: c.dataset.modality, id: Number(c.dataset.id), text: c.innerText,
  img: c.querySelector('img') ? {done: c.querySelector('img').complete, w: c.querySelector('img').naturalWidth} : null,
  p_match: c.querySelector('[title^="match probability"]')?.innerText ?? null,
  p_match_title: c.querySelector('[title^="match probability"]')?.title ?? null}))"""
SHARE = "JSON.stringify([document.querySelector('#share').dataset.mode, document.querySelector('#share').dataset.share])"


def _share(browser) -> tuple[str, dict]:
    mode, share = json.loads(browser.eval(SHARE))
    return mode, json.loads(share)


@pytest.fixture(scope="module")
def page(serve_corpus, clip_encoder):
    with uvicorn_server(create_app(serve_corpus, encoder=clip_encoder)) as url, Browser() as browser:
        browser.goto(url + "/")
        browser.wait_for("document.querySelector('#index-facts').textContent.includes('image')", 20,
                         "the index facts")
        yield browser, url


def test_query_mixed_grid_then_raw_toggle_changes_share(page, tmp_path):
    browser, _ = page
    assert browser.eval("document.querySelector('#results').dataset.state") == "empty"
    assert "Type a query" in browser.eval("document.querySelector('#results').innerText")

    footer = browser.eval("document.querySelector('footer').innerText")
    assert browser.eval("document.querySelector('#z-method').dataset.method") == "hubness"  # the default
    assert "CSLS (Conneau et al. 2018)" in footer and "Yamashita" in footer  # cites what is fitted

    browser.type("#query", "a red circle")
    browser.click("#go")
    browser.wait_for("document.querySelector('#results').dataset.state === 'results'", 30, "results")
    assert browser.eval("location.search") == "?q=a+red+circle"  # the search is a link
    cards = browser.eval(CARDS)
    assert len(cards) == 20  # the default k
    assert {c["modality"] for c in cards} == {"image", "text"}  # one grid, both modalities
    assert cards[0]["modality"] == "text" and "a red circle" in cards[0]["text"]
    for c in cards:
        assert "z " in c["text"] and "cos " in c["text"] and "conf " in c["text"], c
        assert c["p_match"] is not None and 0 <= float(c["p_match"].split()[1]) <= 1, c  # the match probability
        assert "label-free" in c["p_match_title"], c  # says what it rests on
        assert c["text"].lower().startswith(c["modality"]) or c["modality"].upper() in c["text"]
    browser.wait_for("[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)",
                     20, "the thumbnails")
    assert all(c["img"] is not None for c in browser.eval(CARDS) if c["modality"] == "image")
    mode, std_share = _share(browser)
    assert mode == "standardized" and std_share["image"] > 0 and std_share["text"] > 0
    width = browser.eval("parseFloat(document.querySelector('#share .seg.m-image').style.width)")
    assert width == pytest.approx(std_share["image"] * 100, abs=0.1)  # the bar shows the share

    browser.click("#mode-raw")
    browser.wait_for("document.querySelector('#share').dataset.mode === 'raw' && "
                     "document.querySelector('#results').dataset.state === 'results'", 30, "the raw ranking")
    mode, raw_share = _share(browser)
    assert raw_share["text"] > std_share["text"]  # raw cosine: the query's own modality first
    raw_cards = browser.eval(CARDS)
    assert [c["modality"] for c in raw_cards] == ["text"] * 16 + ["image"] * 4  # all 16 texts above any image
    echo = browser.eval("document.querySelector('#query-echo').textContent")
    assert "raw cosine: image 20%, text 80%" in echo
    assert f"standardized: image {std_share['image'] * 100:.0f}%" in echo  # both shares shown
    assert browser.eval("document.querySelector('#mode-raw').classList.contains('active')")

    browser.click("#mode-std")
    browser.wait_for("document.querySelector('#share').dataset.mode === 'standardized'", 30, "standardized again")
    assert _share(browser)[1] == std_share
    shot = browser.screenshot(os.environ.get("SIMSTD_PAGE_SCREENSHOT") or tmp_path / "page.png")
    assert shot.stat().st_size > 10_000


def test_image_upload_and_click_for_more_like_this(page, serve_corpus):
    browser, _ = page
    picture = serve_corpus.parent / "photos" / "green_triangle.png"
    browser.set_files("#image-input", [str(picture)])
    browser.wait_for("document.querySelector('#query-echo').textContent.includes('green_triangle.png') && "
                     "document.querySelector('#results').dataset.state === 'results'", 30, "image results")
    first = browser.eval(CARDS)[0]
    assert first["modality"] == "image"
    assert browser.eval("document.querySelector('#results .card img').alt") == "green_triangle.png"
    browser.click("#results .card:nth-child(2)")  # more like this one
    browser.wait_for("document.querySelector('#query').value.startsWith('#') && "
                     "document.querySelector('#results').dataset.state === 'results'", 30, "an id query")
    clicked = int(browser.eval("document.querySelector('#query').value").lstrip("#"))
    assert clicked not in [c["id"] for c in browser.eval(CARDS)]  # the item itself is left out


def test_error_and_empty_states(page):
    browser, _ = page
    browser.type("#query", "#99999")
    browser.click("#go")
    browser.wait_for("document.querySelector('#results').dataset.state === 'error'", 30, "the error state")
    message = browser.eval("document.querySelector('#results').innerText")
    assert "not in the index" in message and "Traceback" not in message
    browser.type("#query", "   ")
    browser.click("#go")
    browser.wait_for("document.querySelector('#results').dataset.state === 'empty'", 10, "the empty state")
    assert "Type something" in browser.eval("document.querySelector('#results').innerText")


# ------------------------------------------------------------------ issue 21: a server without an encoder, links
@pytest.fixture(scope="module")
def bare_page(tmp_path_factory):
    """`simstd serve --no-encoder` over a hubness fit (vector_index: ids 0-29 texts, 30-69 images)."""
    from simstd import MixedIndex, Standardizer

    db = vector_index(tmp_path_factory.mktemp("bare") / "db.faiss", fit=False)
    index = MixedIndex.load(db)
    index.standardizer = Standardizer(method="hubness").fit(index)
    index.save(db)
    with uvicorn_server(create_app(db, encoder=None)) as url, Browser() as browser:
        yield browser, url


STATE = "document.querySelector('#results').dataset.state"


def test_without_an_encoder_the_page_says_what_it_can_do_and_cites_the_fitted_method(bare_page):
    browser, url = bare_page
    browser.goto(url + "/")
    browser.wait_for("document.querySelector('#z-method').dataset.method === 'hubness'", 20, "the fitted method")
    assert browser.eval(STATE) == "empty"
    empty = browser.eval("document.querySelector('#results').innerText")
    assert "Type #123 (an item id, 0 to 69)" in empty and "no text/image encoder" in empty
    assert "pick an image" not in empty and "drop one" not in empty
    footer = browser.eval("document.querySelector('footer').innerText")
    assert "CSLS (Conneau et al. 2018) hubness-corrected, standardized on pseudo positives" in footer
    assert "K=10" in footer and "Yamashita, Shirafuji and Saito" not in footer


def test_a_search_in_the_url_runs_and_every_search_updates_the_url(bare_page):
    browser, url = bare_page
    browser.goto(url + "/?id=3&raw=1&k=10")
    browser.wait_for(f"{STATE} === 'results'", 30, "the linked search")
    cards = browser.eval(CARDS)
    assert len(cards) == 10 and 3 not in [c["id"] for c in cards]
    assert browser.eval("document.querySelector('#query').value") == "#3"
    assert _share(browser)[0] == "raw" and browser.eval("document.querySelector('#mode-raw').classList.contains('active')")
    assert {c["modality"] for c in cards} == {"text"}  # raw cosine: the query's own modality only

    browser.click("#mode-std")
    browser.wait_for("document.querySelector('#share').dataset.mode === 'standardized'", 30, "standardized")
    assert browser.eval("location.search") == "?id=3&k=10"  # the link follows what is shown
    assert {c["modality"] for c in browser.eval(CARDS)} == {"image", "text"}

    browser.goto(url + "/?q=a%20red%20circle")  # a text query this server cannot embed: said, not hidden
    browser.wait_for(f"{STATE} === 'error'", 30, "the refusal")
    assert "need an encoder" in browser.eval("document.querySelector('#results').innerText")
    assert browser.eval("document.querySelector('#query').value") == "a red circle"
