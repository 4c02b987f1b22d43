"""The fit from files on Spark: the same map-reduce as :func:`simstd.laion.fit_embeddings`.

As in clip-retrieval's ``PysparkDistributor``, pyspark is imported inside the
call and each partition runs the very worker the local fit runs
(:func:`simstd.laion.fit.partial_topk`):

- the seeded pseudo-query sample is broadcast once;
- one task per piece (row range of an ``.npy`` file) computes every pseudo
  query's partial top-k over its own items;
- ``reduceByKey`` merges the partial top-ks per (query block, target modality);
- each reduced block becomes count/mean/M2, pooled exactly on the driver
  (:func:`simstd.stats.merge_moments`).

Executors read the ``.npy`` files by path, so on a cluster the folder must be
on storage every executor sees, and simstd (with numpy) installed there.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import SimstdError
from ..laion.fit import PseudoQueries, block_moments, merge_topk, partial_topk
from ..laion.reader import EmbeddingFiles, Piece

#: Where this simstd lives: put on the Python path of locally started workers,
#: so they import the same code as the driver.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def session(master: object):  # noqa: ANN201
    """``master`` itself if it is a SparkSession, else ``(session, created)`` for a master URL."""
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


def run_spark(master: object, files: EmbeddingFiles, pieces: list[Piece], queries: PseudoQueries, k: int):  # noqa: ANN201
    """Run the fit's map-reduce on Spark; returns the pooled parts and facts about the job."""
    spark, created = session(master)
    try:
        sc = spark.sparkContext
        shared = sc.broadcast(queries)
        threads = int(sc.getConf().get("spark.task.cpus", "1"))

        def work(part):  # noqa: ANN001, ANN202 (runs on the executors)
            from threadpoolctl import threadpool_limits

            q = shared.value
            with threadpool_limits(threads):  # one BLAS thread per task slot: no oversubscription
                for piece in part:
                    yield from partial_topk(piece, files.read(piece), q, k)

        job = (sc.parallelize(pieces, len(pieces))
               .mapPartitions(work)
               .reduceByKey(lambda a, b: merge_topk(a, b, k))
               .map(lambda kv: (kv[0][0], kv[0][2], block_moments(kv[1]))))
        parts = job.collect()
        shared.unpersist()
        return parts, {"tasks": len(pieces), "app_id": sc.applicationId, "master": sc.master,
                       "default_parallelism": sc.defaultParallelism}
    finally:
        if created:
            spark.stop()
