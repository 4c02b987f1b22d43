"""The fit from files on Spark: the same map-reduce as :func:`simstd.laion.fit_embeddings`.

As in clip-retrieval's ``PysparkDistributor``, pyspark is imported inside the
call and each partition runs the very worker the local fit runs
(:func:`simstd.laion.fit.partial_topk`):

- the seeded pseudo-query sample is broadcast once;
- one task per piece (row range of an ``.npy`` file) computes every pseudo
  query's partial top-k over its own items;
- ``reduceByKey`` merges the partial top-ks per (query block, target modality);
- the driver collects the reduced top-ks (a few bytes per pseudo query) and
  pools their count/mean/M2 exactly (:func:`simstd.stats.merge_moments`).

Executors read the ``.npy`` files by path, so on a cluster the folder must be
on storage every executor sees, and simstd (with numpy) installed there.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import SimstdError
from ..laion.fit import PseudoQueries, Tops, merge_partial, partial_topk
from ..laion.reader import EmbeddingFiles, Piece

#: Where this simstd lives: put on the Python path of locally started workers,
#: so they import the same code as the driver.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def session(master: object):  # noqa: ANN201
    """``(session, created)``: ``master`` itself if it is a SparkSession, else a session for a master URL."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SimstdError('the Spark fit needs pyspark: pip install "simstd[spark]" (and a Java 17+ runtime)') from None
    if isinstance(master, SparkSession):
        return master, False
    if not isinstance(master, str) or not master:
        raise SimstdError(f"spark must be a master URL such as 'local[2]' or a SparkSession, got {master!r}")
    # Workers started by this driver run this interpreter and import this simstd.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    path = os.environ.get("PYTHONPATH", "")
    if _PACKAGE_ROOT not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT] + ([path] if path else []))
    active = SparkSession.getActiveSession()
    try:
        spark = (SparkSession.builder.master(master).appName("simstd-fit")
                 .config("spark.ui.showConsoleProgress", "false")
                 .config("spark.executorEnv.PYTHONPATH", os.environ["PYTHONPATH"])
                 .getOrCreate())
    except Exception as exc:  # the JVM's errors arrive as several types
        raise SimstdError(f"cannot start Spark with master {master!r} ({str(exc).strip().splitlines()[0][:300]}); "
                          "check the master URL and that Java 17+ is installed (java -version)") from None
    return spark, active is None


class SparkRunner:
    """Runs the fit's map-reduce as Spark jobs (one per call) on one session."""

    def __init__(self, master: object, files: EmbeddingFiles, k: int) -> None:
        self.spark, self.created = session(master)
        self.files, self.k = files, k
        self.jobs = 0

    def run(self, pieces: list[Piece], queries: PseudoQueries, search: str = "exact") -> Tops:
        sc = self.spark.sparkContext
        shared = sc.broadcast(queries)
        threads = int(sc.getConf().get("spark.task.cpus", "1"))
        files, k = self.files, self.k

        def work(part):  # noqa: ANN001, ANN202 (runs on the executors)
            from threadpoolctl import threadpool_limits

            q = shared.value
            with threadpool_limits(threads):  # one BLAS thread per task slot: no oversubscription
                for piece in part:
                    yield from partial_topk(piece, files.read(piece), q, k, search)

        sc.setJobGroup(f"simstd-fit-{self.jobs}", "simstd fit from files")
        tops = dict(sc.parallelize(pieces, len(pieces)).mapPartitions(work)
                    .reduceByKey(lambda a, b: merge_partial(a, b, k)).collect())
        shared.unpersist()
        self.jobs += 1
        return tops

    def close(self) -> dict:
        sc = self.spark.sparkContext
        facts = {"jobs": self.jobs, "app_id": sc.applicationId, "master": sc.master,
                 "default_parallelism": sc.defaultParallelism}
        if self.created:
            self.spark.stop()
        return facts
