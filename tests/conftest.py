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
