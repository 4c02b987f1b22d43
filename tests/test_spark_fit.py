"""The fit from files on Spark (local[2]) equals the single-machine fit: one Spark session for the module."""
from __future__ import annotations

import os

import numpy as np
import pytest

from clipfolder import write_clip_folder
from simstd import SimstdError
from simstd.laion import fit_embeddings

try:
    import pyspark  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise  # CI installs simstd[spark] and a JDK: the test must run there
    pytest.skip('pyspark not installed (pip install "simstd[spark]")', allow_module_level=True)

from simstd.spark import SparkRunner  # noqa: E402


@pytest.fixture(scope="module")
def spark():
    from simstd.spark.fit import session

    spark, _ = session("local[2]")
    yield spark
    spark.stop()


def test_spark_fit_equals_the_local_fit(spark, features, tmp_path):
    folder = write_clip_folder(tmp_path, features("clip"))
    reports = []
    # top-2: the reduce merges partial top-ks, not just maxima; pieces of 128 rows split the files
    local = fit_embeddings(folder, method="paper", sample=150, seed=5, n_pseudo=2, piece_rows=128)
    distributed = fit_embeddings(folder, method="paper", sample=150, seed=5, n_pseudo=2, piece_rows=128,
                                 runner=SparkRunner(spark), report=reports.append)
    assert distributed.modalities_ == local.modalities_
    np.testing.assert_array_equal(distributed.n_, local.n_)
    assert distributed.n_.tolist() == [[300, 300], [300, 300]]
    np.testing.assert_allclose(distributed.mean_, local.mean_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(distributed.std_, local.std_, rtol=0, atol=1e-6)
    assert reports[0].engine == "spark" and reports[0].extra["jobs"] == 1 and reports[0].pieces == 10
    assert spark.sparkContext._jsc is not None  # a session handed in is left running for its owner


def test_adaptive_spark_fit_runs_a_job_per_round(spark, features, tmp_path):
    folder = write_clip_folder(tmp_path, features("clip"))
    reports = []
    local = fit_embeddings(folder, method="paper", sample="auto", target_se=0.07, seed=2, piece_rows=256)
    distributed = fit_embeddings(folder, method="paper", sample="auto", target_se=0.07, seed=2, piece_rows=256,
                                 runner=SparkRunner(spark), report=reports.append)
    np.testing.assert_array_equal(distributed.n_, local.n_)
    np.testing.assert_allclose(distributed.mean_, local.mean_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(distributed.std_, local.std_, rtol=0, atol=1e-6)
    assert reports[0].extra["jobs"] == reports[0].extra["rounds"] >= 1


def test_bad_master_is_a_clear_error(tmp_path):
    from simstd.spark.fit import session

    with pytest.raises(SimstdError, match="master URL"):
        session(42)


def test_spark_hubness_fit_equals_the_local_and_the_index_fit(spark, features, tmp_path):
    """The corrected method on Spark: the terms in one job (banks broadcast), each search a job;
    the same fit as in this process and as on an index of the same vectors."""
    from simstd import MixedIndex, Standardizer

    pairs = features("clip")
    folder = write_clip_folder(tmp_path, pairs)
    reports = []
    settings = dict(method="hubness", hubness_bank=100, sample="auto", target_se=0.07, seed=2, piece_rows=128)
    local = fit_embeddings(folder, **settings)
    distributed = fit_embeddings(folder, runner=SparkRunner(spark), report=reports.append, **settings)
    stored = pairs.astype(np.float16).astype(np.float32)
    on_index = Standardizer(method="hubness", hubness_bank=100, sample="auto", target_se=0.07, seed=2).fit(
        MixedIndex.from_arrays({"image": stored[0], "text": stored[1]}))
    for ref in (local, on_index):
        assert distributed.banks_ == ref.banks_
        np.testing.assert_allclose(distributed.terms_, ref.terms_, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(distributed.n_, ref.n_)
        for name in ("mean_", "std_", "centre_", "scale_"):
            np.testing.assert_allclose(getattr(distributed, name), getattr(ref, name), rtol=0, atol=1e-6)
    facts = reports[0].extra
    assert reports[0].engine == "spark" and facts["jobs"] == facts["passes"] >= 1 + 4  # terms + 2 x 2 searches
