#!/usr/bin/env python3
"""The screenshots of docs/serve.md: the page of `simstd serve` in headless Chromium.

    python docs/make_serve_screenshot.py        # writes docs/img/serve_page.png and serve_page_raw.png

The index: 16 drawn shapes and their 16 captions (tests/serve_support.py),
embedded with open_clip's smallest architecture with *random* weights (no
download possible here), fitted. The ranking therefore shows the mechanics
(one grid, both modalities, scores, shares), not a trained model's semantics.
Needs the clip and serve extras and Debian's chromium.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from cdp_browser import Browser  # noqa: E402
from serve_support import build_corpus, uvicorn_server  # noqa: E402

from simstd import encoders  # noqa: E402
from simstd.serve import create_app  # noqa: E402

QUERY = "a red circle"
READY = ("document.querySelector('#results').dataset.state === 'results' && "
         "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")


def main() -> None:
    out = ROOT / "docs" / "img"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt = encoders.save_random_checkpoint(encoders.TEST_MODEL, root / "w.safetensors")
        encoder = encoders.OpenClipEncoder(encoders.TEST_MODEL, str(ckpt))
        db = build_corpus(root / "corpus", encoder)
        with uvicorn_server(create_app(db, encoder=encoder)) as url, Browser(1280, 860) as b:
            b.goto(url + "/")
            b.wait_for("document.querySelector('#index-facts').textContent.includes('image')", 20)
            b.type("#query", QUERY)
            b.click("#go")
            b.wait_for(READY, 30, "the standardized results")
            b.eval("document.activeElement.blur()")
            print(b.screenshot(out / "serve_page.png"))
            b.click("#mode-raw")
            b.wait_for("document.querySelector('#share').dataset.mode === 'raw' && " + READY, 30, "the raw ranking")
            print(b.screenshot(out / "serve_page_raw.png"))


if __name__ == "__main__":
    main()
