"""Shared fixtures: the real paired embeddings in ../shared beside the project.

CI always has them, so there a missing folder fails the run; elsewhere the
tests that need it are skipped with a message.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from simstd.datasets import load_pairs

FEATURES_DIR = Path(
    os.environ.get(
        "SIMSTD_FEATURES_DIR",
        Path(__file__).resolve().parents[2] / "shared" / "data" / "modality-gap-features",
    )
)


@pytest.fixture(scope="session")
def features_dir() -> Path:
    if not FEATURES_DIR.is_dir():
        message = f"real embeddings not found at {FEATURES_DIR} (set SIMSTD_FEATURES_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have ../shared beside the project")
        pytest.skip(message + "; CI always runs these tests")
    return FEATURES_DIR


@pytest.fixture(scope="session")
def features(features_dir: Path):
    """``features("clip")`` -> the (2, N, D) array of features_clip.npy."""
    cache: dict[str, np.ndarray] = {}

    def load(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = load_pairs(features_dir / f"features_{name}.npy")
        return cache[name]

    return load


def unit_rows(rng: np.random.Generator, n: int, dim: int, shift: float = 0.0) -> np.ndarray:
    """Random unit vectors, optionally all shifted along the first axis (a 'modality')."""
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x[:, 0] += shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ------------------------------------------------------------ open_clip, random weights
@pytest.fixture(scope="session")
def clip_checkpoint(tmp_path_factory) -> Path:
    """A real open_clip architecture (encoders.TEST_MODEL) with random weights, saved once
    per session to a local file (no download). Skips when the clip extra is not usable."""
    from simstd import encoders

    try:
        torch, _ = encoders._import_clip_stack()
    except encoders.EncoderUnavailableError as exc:  # pragma: no cover - depends on env
        pytest.skip(f"clip extra not usable: {exc}")
    torch.set_num_threads(1)  # see test_encoders: spin-waiting threads on a busy 2-core machine
    return encoders.save_random_checkpoint(encoders.TEST_MODEL, tmp_path_factory.mktemp("clip") / "w.safetensors")


@pytest.fixture(scope="session")
def clip_encoder(clip_checkpoint):
    """One loaded encoder for the session's tests that need to embed texts or images."""
    from simstd import encoders

    return encoders.OpenClipEncoder(encoders.TEST_MODEL, str(clip_checkpoint))


@pytest.fixture(scope="session")
def serve_corpus(tmp_path_factory, clip_encoder) -> Path:
    """16 drawn images and their 16 captions, embedded with the random-weight encoder, fitted
    (standardizer and uncertainty) and saved: the index the `simstd serve` tests search.
    Read-only: tests that change an index copy it first."""
    from serve_support import build_corpus

    return build_corpus(tmp_path_factory.mktemp("serve"), clip_encoder)
