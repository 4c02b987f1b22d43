"""Edges of the public API (issue 22): merged fits, rebuilt fitted objects,
the FAISS-style search call, defaults named once, and the error classes."""
from __future__ import annotations

import numpy as np
import pytest

from simstd import MixedIndex, Standardizer
from simstd.errors import SimstdError

from conftest import unit_rows

DIM = 16


@pytest.fixture(scope="module")
def index() -> MixedIndex:
    rng = np.random.default_rng(0)
    return MixedIndex.from_arrays({"text": unit_rows(rng, 120, DIM, 2.0), "image": unit_rows(rng, 150, DIM, -2.0)},
                                  model="ViT-B-32")


def _merged(index: MixedIndex) -> Standardizer:
    a = Standardizer(sample=60, seed=1).fit(index)
    b = Standardizer(sample=60, seed=2).fit(index)
    return a.merge(b)


# ---------------------------------------------------------------- 1. merge
def test_merge_keeps_the_values_the_two_fits_agree_on(index):
    m = _merged(index)
    assert (m.dim_, m.model_, m.index_fingerprint_) == (DIM, "ViT-B-32", index.fingerprint)
    # a fit of scores alone records none of them: the merge does not claim one
    alone = Standardizer().fit_scores(["text", "text"], ["image", "image"], [0.1, 0.3])
    m2 = Standardizer(sample=60, seed=1).fit(index).merge(alone)
    assert (m2.dim_, m2.model_, m2.index_fingerprint_) == (None, None, None)


def test_merge_of_fits_of_two_versions_of_an_index_drops_the_fingerprint(index):
    a = Standardizer(sample=60, seed=1).fit(index)
    grown = MixedIndex.from_arrays({m: index.reconstruct(index.ids(m)) for m in index.modalities}, model="ViT-B-32")
    b = Standardizer(sample=60, seed=2).fit(grown)
    m = a.merge(b)
    assert (m.dim_, m.model_, m.index_fingerprint_) == (DIM, "ViT-B-32", None)


def test_a_merged_fit_searches_its_index(index):
    m = _merged(index)
    q = index.reconstruct(index.ids("text")[:3])
    got = index.search(q, "text", k=5, standardizer=m, strict=True)
    # the scores are the merged fit's own z-scores of the raw cosines
    np.testing.assert_allclose(got.scores, m.transform(got.raw_scores, "text", got.modalities), rtol=1e-5)


def test_a_merged_fit_saved_with_its_index_loads_and_searches(index, tmp_path):
    rng = np.random.default_rng(3)
    mine = MixedIndex.from_arrays({"text": unit_rows(rng, 80, DIM, 2.0), "image": unit_rows(rng, 90, DIM, -2.0)},
                                  model="ViT-B-32")
    mine.standardizer = _merged(mine)
    mine.save(tmp_path / "db.faiss")
    back = MixedIndex.load(tmp_path / "db.faiss")
    assert (back.standardizer.dim_, back.standardizer.model_, back.standardizer.index_fingerprint_) == \
        (DIM, "ViT-B-32", mine.fingerprint)
    back.search(back.reconstruct([0]), "text", k=3, strict=True)
    mine.standardizer.save(tmp_path / "s.json")
    alone = Standardizer.load(tmp_path / "s.json")
    assert (alone.dim_, alone.model_, alone.index_fingerprint_) == (DIM, "ViT-B-32", mine.fingerprint)


def test_merging_fits_of_other_dimensions_or_models_is_refused(index):
    rng = np.random.default_rng(4)
    a = Standardizer(sample=60, seed=1).fit(index)
    wide = MixedIndex.from_arrays({"text": unit_rows(rng, 50, DIM * 2, 2.0), "image": unit_rows(rng, 50, DIM * 2)},
                                  model="ViT-B-32")
    with pytest.raises(SimstdError, match=rf"dimension {DIM} with a fit on dimension {DIM * 2}.*one model"):
        a.merge(Standardizer(sample=40).fit(wide))
    other = MixedIndex.from_arrays({"text": unit_rows(rng, 50, DIM, 2.0), "image": unit_rows(rng, 50, DIM)},
                                   model="RN50")
    with pytest.raises(SimstdError, match="model 'ViT-B-32' with a fit on model 'RN50'"):
        a.merge(Standardizer(sample=40).fit(other))


def test_merge_keeps_every_setting_of_the_fit():
    a = Standardizer(method="paper", n_pseudo=2, sample=33, seed=4, query_shift=0.5, shift_k=3,
                     hubness_k=7).fit_scores("text", "image", [0.1, 0.3])
    m = a.merge(a)
    for name in ("method", "n_pseudo", "sample", "seed", "query_shift", "shift_k", "hubness_k"):
        assert getattr(m, name) == getattr(a, name), name
