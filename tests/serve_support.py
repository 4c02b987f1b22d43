"""Helpers for the `simstd serve` tests: a small picture+caption corpus, a real
uvicorn server on a free loopback port, bounded waiting."""
from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

REPO = Path(__file__).resolve().parents[1]
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "orange": (240, 140, 30)}
SHAPES = ("circle", "square", "triangle", "stripes")


def draw_shapes(folder: Path) -> list[str]:
    """16 small PNGs (4 colours x 4 shapes) and their captions."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    captions = []
    for name, rgb in COLORS.items():
        for shape in SHAPES:
            img = Image.new("RGB", (96, 96), (245, 245, 240))
            d = ImageDraw.Draw(img)
            if shape == "circle":
                d.ellipse((16, 16, 80, 80), fill=rgb)
            elif shape == "square":
                d.rectangle((20, 20, 76, 76), fill=rgb)
            elif shape == "triangle":
                d.polygon([(48, 12), (86, 84), (10, 84)], fill=rgb)
            else:
                for y in range(0, 96, 16):
                    d.rectangle((0, y, 96, y + 7), fill=rgb)
            img.save(folder / f"{name}_{shape}.png")
            captions.append(f"a {name} {shape}")
    return captions


def build_corpus(root: Path, encoder) -> Path:  # noqa: ANN001
    """Images + captions embedded with ``encoder``, fitted (standardizer and uncertainty), saved."""
    from simstd import Standardizer
    from simstd.ingest import ingest
    from simstd.uncertainty import UncertaintyModel

    captions = draw_shapes(root / "photos")
    (root / "captions.txt").write_text("\n".join(captions) + "\n")
    index, _ = ingest(encoder, images=root / "photos", texts=root / "captions.txt")
    index.standardizer = Standardizer().fit(index)
    index.uncertainty = UncertaintyModel().fit(index, index.standardizer)
    db = root / "db.faiss"
    index.save(db)
    return db


def unit_rows(rng: np.random.Generator, n: int, dim: int, shift: float = 0.0) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x[:, 0] += shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def vector_index(path: Path, n_text: int = 30, n_image: int = 40, dim: int = 32, fit: bool = True) -> Path:
    """A two-modality index from synthetic vectors with a modality gap, no encoder."""
    from simstd import MixedIndex, Standardizer

    rng = np.random.default_rng(0)
    index = MixedIndex.from_arrays(
        {"text": unit_rows(rng, n_text, dim, 3.0), "image": unit_rows(rng, n_image, dim, -3.0)},
        metadata={"text": [{"text": f"caption {i}"} for i in range(n_text)]},
    )
    if fit:
        index.standardizer = Standardizer().fit(index)
    index.save(path)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll ``check`` until it returns something truthy; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


@contextlib.contextmanager
def uvicorn_server(app, timeout: float = 30.0) -> Iterator[str]:  # noqa: ANN001
    """Run ``app`` with a real uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        assert not thread.is_alive(), "uvicorn did not stop"


def subprocess_env() -> dict:
    """Environment for `python -m simstd` subprocesses: this checkout's simstd first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


PY = sys.executable
