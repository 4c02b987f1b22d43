"""Synthetic CLIP-like mixed-modality embeddings with a modality gap.

Every vector is, before L2 normalisation,

    a_m * u_m  +  b1 * c1[g1] + b2 * c2[g2]  +  b3 * c3_m[leaf]  +  noise

``u_m`` is the modality's mean direction (text and image directions at cosine
``rho``: the modality gap); ``c1`` (64 topics) and ``c2`` (16 subtopics each)
are concept directions shared by both modalities, so texts and images of one
subtopic are cross-modal neighbours; ``c3_m`` (16 leaves per subtopic) are
modality-specific, so same-modality neighbours are closer than cross-modal
ones, as in CLIP; the noise lives in a 64-dimensional subspace (real
embeddings have a low intrinsic dimension, which is what makes approximate
indexes work). With near-orthogonal unit components the mean cosines are
about ``a_t**2`` (text-text), ``a_i**2`` (image-image) and ``a_t * a_i * rho``
(text-image); the defaults aim at 0.52, 0.53 and 0.16, the means of real CLIP
ViT-B/32 embeddings.

Chunks are generated independently from ``(seed, modality, chunk)``, so any
chunk can be regenerated without keeping the data: 10M x 512 float32 is 20 GB
and never exists at once.
"""
from __future__ import annotations

import numpy as np

MODALITIES = ("text", "image")
TARGET_MEAN_COS = {"text-text": 0.52, "image-image": 0.53, "text-image": 0.16}
N_TOPICS, FANOUT, NOISE_RANK = 64, 16, 64
#: Squared weights of topic, subtopic, leaf and noise (they share 1 - a_m**2).
WEIGHTS = (0.08, 0.10, 0.18, 0.12)


class Synth:
    def __init__(self, dim: int = 512, seed: int = 0) -> None:
        self.dim, self.seed = dim, seed
        a = {"text": np.sqrt(TARGET_MEAN_COS["text-text"]), "image": np.sqrt(TARGET_MEAN_COS["image-image"])}
        rho = TARGET_MEAN_COS["text-image"] / (a["text"] * a["image"])
        rng = np.random.default_rng([seed, 999_999])
        plane = np.linalg.qr(rng.standard_normal((dim, 2)))[0].T
        self.u = {
            "text": (a["text"] * plane[0]).astype(np.float32),
            "image": (a["image"] * (rho * plane[0] + np.sqrt(1 - rho**2) * plane[1])).astype(np.float32),
        }

        def units(n: int) -> np.ndarray:
            x = rng.standard_normal((n, dim)).astype(np.float32)
            return x / np.linalg.norm(x, axis=1, keepdims=True)

        w1, w2, w3, wn = (np.float32(np.sqrt(w)) for w in WEIGHTS)
        self.c1 = w1 * units(N_TOPICS)
        self.c2 = w2 * units(N_TOPICS * FANOUT)
        self.n_leaves = N_TOPICS * FANOUT * FANOUT
        self.c3 = {m: w3 * units(self.n_leaves) for m in MODALITIES}
        basis = np.linalg.qr(rng.standard_normal((dim, NOISE_RANK)))[0].T
        self.noise_basis = (basis * np.sqrt(WEIGHTS[3] / NOISE_RANK)).astype(np.float32)

    def chunk(self, modality: str, index: int, size: int) -> np.ndarray:
        """Rows of modality ``modality``, chunk number ``index`` (deterministic)."""
        rng = np.random.default_rng([self.seed, MODALITIES.index(modality), index])
        leaf = rng.integers(0, self.n_leaves, size)
        sub = leaf // FANOUT
        x = rng.standard_normal((size, NOISE_RANK), dtype=np.float32) @ self.noise_basis
        x += self.c1[sub // FANOUT]
        x += self.c2[sub]
        x += self.c3[modality][leaf]
        x += self.u[modality]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def queries(self, modality: str, n: int) -> np.ndarray:
        """Fresh vectors (not in any indexed chunk) to use as queries."""
        return self.chunk(modality, 10_000_000 + n, n)

    def chunks(self, n_total: int, chunk: int):
        """Yield ``(modality, chunk index, size)`` adding ``n_total`` vectors, half
        of each modality, alternating text and image chunks."""
        per = {"text": n_total // 2, "image": n_total - n_total // 2}
        i = 0
        while any(per.values()):
            for m in MODALITIES:
                size = min(chunk, per[m])
                if size:
                    yield m, i, size
                    per[m] -= size
            i += 1


def mean_cosines(synth: Synth, n: int = 4000) -> dict[str, float]:
    """Achieved mean pairwise cosines (off-diagonal) on ``n`` fresh vectors per modality."""
    x = {m: synth.chunk(m, 20_000_000 + i, n).astype(np.float64) for i, m in enumerate(MODALITIES)}
    out = {}
    for q, t in (("text", "text"), ("image", "image"), ("text", "image")):
        sims = x[q] @ x[t].T
        if q == t:
            out[f"{q}-{t}"] = float((sims.sum() - np.trace(sims)) / (n * n - n))
        else:
            out[f"{q}-{t}"] = float(sims.mean())
    return out
