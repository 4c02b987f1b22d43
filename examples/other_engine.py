"""simstd with a search engine that is not FAISS: hand over raw scores.

Your engine answers each query with per-modality top hits. Fit the
standardizer from the top-1 score of each (query, target modality) - the
pseudo positives - then standardize every hit list before merging.

Run: python examples/other_engine.py
"""
import numpy as np

from simstd import Standardizer

rng = np.random.default_rng(0)
# Pretend engine output for 500 logged text queries: top-1 score per target modality.
top1_text = rng.normal(0.79, 0.08, 500)    # text -> text scores are high...
top1_image = rng.normal(0.30, 0.03, 500)   # ...text -> image scores are low and narrow.

std = Standardizer(method="paper").fit_scores(
    query_modalities="text",
    target_modalities=["text"] * 500 + ["image"] * 500,
    scores=np.concatenate([top1_text, top1_image]),
)
for row in std.table():
    print(row)

# One query's hits from the engine, both modalities, raw scores:
hit_scores = np.array([0.82, 0.78, 0.33, 0.31, 0.29])
hit_modalities = ["text", "text", "image", "image", "image"]
z = std.transform(hit_scores, "text", hit_modalities)
print("merged order:", [f"{m}:{s:.2f}" for s, m in sorted(zip(z, hit_modalities), reverse=True)])

# Shards fitted separately pool exactly:
half = Standardizer(method="paper").fit_scores("text", "image", top1_image[:250])
other = Standardizer(method="paper").fit_scores("text", "image", top1_image[250:])
print("pooled mean/std:", half.merge(other).affine("text", "image"))
