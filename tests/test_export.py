"""simstd export: the OpenSearch and Vespa fragments, re-evaluated in Python by
the engines' documented formulas, rank exactly as the standardizer does."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from simstd import MixedIndex, NotFittedError, SimstdError, Standardizer
from simstd.datasets import mixed_split, synthetic_pairs
from simstd.engines import export

REPO = Path(__file__).resolve().parents[1]
SPLIT = mixed_split(synthetic_pairs(300, 64, seed=7), ("image", "text"))
INDEX = MixedIndex.from_arrays(SPLIT.corpus)
STD = Standardizer(method="paper").fit(INDEX)
K = 15


def per_modality(queries, names):
    return [INDEX.search_modality(queries, m, K) for m in names]


@pytest.mark.parametrize("space_type", ["cosinesimil", "innerproduct"])
@pytest.mark.parametrize("query_modality", ["text", "image"])
def test_opensearch_pipeline_reproduces_the_standardized_order(query_modality, space_type):
    clip = 8.0
    frag = export.opensearch(STD, query_modality, k=K, space_type=space_type, clip=clip)
    names = [q["knn"]["embedding"]["filter"]["term"]["modality"] for q in frag["query"]["query"]["hybrid"]["queries"]]
    assert sorted(names) == ["image", "text"]
    queries = SPLIT.queries[query_modality][:40]
    ref = INDEX.search(queries, query_modality, K, standardizer=STD)
    parts = per_modality(queries, names)
    for r in range(len(queries)):
        knn = [export.opensearch_score(D[r], space_type) for D, _ in parts]  # what each subquery returns
        norm = export.opensearch_scores(frag, knn)
        scores = np.concatenate(norm)
        ids = np.concatenate([I[r] for _, I in parts])
        z = np.concatenate([STD.transform(D[r], query_modality, m) for (D, _), m in zip(parts, names)])
        inside = np.abs(z) <= clip
        # the documented map: score = z / (2c) + 1/2 inside the band (float32 in OpenSearch)
        np.testing.assert_allclose(scores[inside], z[inside] / (2 * clip) + 0.5, atol=2e-6)
        top = ids[np.argsort(-scores, kind="stable")[:K]]
        assert set(top) == set(ref.ids[r]) or np.allclose(np.sort(scores)[-K:], np.sort(z / (2 * clip) + .5)[-K:],
                                                          atol=2e-6)


def test_opensearch_clips_outside_the_band_and_checks_settings():
    frag = export.opensearch(STD, "text", clip=1.0)
    params = frag["pipeline"]["phase_results_processors"][0]["normalization-processor"]["normalization"]["parameters"]
    lo_t = params["lower_bounds"][0]["min_score"]
    hi_t = params["upper_bounds"][0]["max_score"]
    mean, sd = STD.affine("text", "image")  # subquery 0 is the first fitted modality, image
    assert lo_t == pytest.approx((1 + mean - sd) / 2) and hi_t == pytest.approx((1 + mean + sd) / 2)
    norm = export.opensearch_scores(frag, [np.array([0.99, lo_t - 0.01, (lo_t + hi_t) / 2], np.float32),
                                           np.array([], np.float32)])
    np.testing.assert_allclose(norm[0], [1.0, 0.001, 0.5], atol=1e-6)
    with pytest.raises(SimstdError, match="space_type"):
        export.opensearch(STD, "text", space_type="l2")
    with pytest.raises(NotFittedError, match="'audio' was not seen"):
        export.opensearch(STD, "audio")
    hub = Standardizer(method="hubness", sample=50).fit(INDEX)
    with pytest.raises(SimstdError, match="per-item terms"):
        export.opensearch(hub, "text")


def test_vespa_expression_reproduces_z():
    frag = export.vespa(STD, "text", k=K)
    assert "nearestNeighbor(embedding, q) and modality contains \"image\"" in frag["yql"]
    assert "tensor<float>(x[64])" in frag["rank_profile"]
    rng = np.random.default_rng(0)
    cos = rng.uniform(-0.2, 1.0, 50)
    mods = rng.choice(["image", "text"], 50)
    np.testing.assert_allclose(export.vespa_scores(frag, cos, mods), STD.transform(cos, "text", mods), rtol=1e-12)
    with pytest.raises(SimstdError, match="identifiers"):
        export.vespa(STD, "text", vector_field="my-field")


def run_cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "simstd", "export", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_writes_fragments_and_refuses_bad_input(tmp_path):
    STD.save(tmp_path / "fit.json")
    done = run_cli("--to", "opensearch", "--standardizer", "fit.json", "--query-modality", "image", "-k", "5",
                   "-o", "os.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    frag = json.loads((tmp_path / "os.json").read_text())
    assert frag["query"]["size"] == 5 and "not run against a live server" in done.stderr
    done = run_cli("--to", "vespa", "--standardizer", "fit.json", "--query-modality", "text", cwd=tmp_path)
    assert done.returncode == 0 and "rank-profile simstd_text" in json.loads(done.stdout)["rank_profile"]
    done = run_cli("--to", "vespa", "--query-modality", "text", cwd=tmp_path)
    assert done.returncode == 1 and "either --standardizer FILE or --index FILE" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("--to", "opensearch", "--standardizer", "fit.json", "--query-modality", "audio",
                   "-o", "bad.json", cwd=tmp_path)
    assert done.returncode == 1 and "'audio' was not seen" in done.stderr and not (tmp_path / "bad.json").exists()
