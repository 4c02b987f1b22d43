"""Acceptance on real CLIP ViT-B/16 COCO embeddings (../shared, always present in CI)."""
import numpy as np
import pytest
from click.testing import CliRunner

from simstd import MixedIndex, Standardizer
from simstd.cli import main
from simstd.datasets import mixed_split


def mixed_recall(pairs, k=20, seed=0, method=None, **search):
    split = mixed_split(pairs, ("image", "text"), seed=seed)
    index = MixedIndex.from_arrays(split.corpus)
    std = Standardizer(method=method) if method else Standardizer()
    index.standardizer = std.fit(index)  # no labels: pseudo queries are the indexed items
    recall = {}
    for qm, q in split.queries.items():
        ids = index.search(q, qm, k, **search).ids
        recall[qm] = (ids == split.gold[qm][:, None]).any(axis=1).mean()
    return recall


@pytest.mark.parametrize("method, floor", [("paper", 0.85), (None, 0.93)])
def test_raw_cosine_finds_no_gold_and_standardization_finds_most(features, method, floor):
    """Seed 0: the paper's method 0.894, the default (hubness) 0.958."""
    pairs = features("clip")
    assert pairs.shape == (2, 500, 512)
    raw = mixed_recall(pairs, method=method, raw=True)
    assert raw == {"text": 0.0, "image": 0.0}
    std = mixed_recall(pairs, method=method)
    assert np.mean(list(std.values())) >= floor, std


def test_real_data_shows_the_modality_gap(features):
    img, txt = features("clip")
    off = lambda S: S[~np.eye(len(S), dtype=bool)].mean()  # noqa: E731
    assert off(txt @ txt.T) == pytest.approx(0.52, abs=0.02)
    assert off(img @ txt.T) == pytest.approx(0.16, abs=0.02)
    assert np.mean(np.sum(img * txt, axis=1)) == pytest.approx(0.31, abs=0.02)


def test_demo_on_the_shared_folder(features_dir):
    r = CliRunner().invoke(main, ["demo", "--data", str(features_dir)])
    assert r.exit_code == 0, r.output
    assert "A motorcycle" in r.output  # real COCO captions from the meta file
    row = next(line for line in r.output.splitlines() if line.startswith("features_clip.npy"))
    values = list(map(float, row.split()[1:]))
    assert values[4] == 0.0 and values[5] >= 0.93  # R@20 raw, standardized


def test_the_default_is_the_corrected_method_and_beats_the_paper_on_real_clip(features):
    """Issue 17: the default ranking is the hubness-corrected one. Fails if the default goes back
    to the paper: on real CLIP (mixed protocol, seeds 0-4, the seeds for choosing) the default finds
    the gold item in the top 20 far more often than the paper's method does."""
    assert Standardizer().method == "hubness"
    pairs = features("clip")
    default, paper = [], []
    for seed in range(5):
        split = mixed_split(pairs, ("image", "text"), seed=seed)
        index = MixedIndex.from_arrays(split.corpus)
        fits = {"default": Standardizer().fit(index), "paper": Standardizer(method="paper").fit(index)}
        for name, out in (("default", default), ("paper", paper)):
            for qm, q in split.queries.items():
                ids = index.search(q, qm, 20, standardizer=fits[name]).ids
                out.append((ids == split.gold[qm][:, None]).any(axis=1).mean())
    assert np.mean(default) > np.mean(paper) + 0.03, (np.mean(default), np.mean(paper))
