"""The fit from files on Spark: the same map-reduce as :func:`simstd.laion.fit_embeddings`.

:class:`SparkRunner` is a :class:`~simstd.laion.worker.Runner`: hand it to
``fit_embeddings(..., runner=SparkRunner("local[2]"))``. As in
clip-retrieval's ``PysparkDistributor``, pyspark is imported inside the call
and each partition runs the very worker the local fit runs
(:func:`simstd.laion.worker.partial_topk`); per pass (an adaptive sample makes
one pass per round):

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
from functools import partial
from pathlib import Path

from ..errors import SimstdError
from ..laion.reader import EmbeddingFiles, Piece
from ..laion.topk import PseudoQueries, Tops, merge_partial
from ..laion.worker import Merge, Work, topk_work

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
    """Runs the fit's map-reduce as Spark jobs (one per pass) on one session.

    ``master`` is a master URL (``"local[2]"``, ``"spark://host:7077"``) or a
    running ``SparkSession``. A session this runner starts is stopped by
    :meth:`close` (or at the end of a ``with`` block); one handed in is left
    running for its owner.
    """

    engine = "spark"

    def __init__(self, master: object) -> None:
        self.spark, self.created = session(master)
        self.jobs = 0

    def map_pieces(self, files: EmbeddingFiles, pieces: list[Piece], shared: object, work: Work,
                   merge: Merge | None = None) -> dict:
        """One Spark job: ``shared`` broadcast once, one task per piece running ``work``,
        ``reduceByKey(merge)`` (or a plain collect when ``merge`` is None)."""
        sc = self.spark.sparkContext
        box = sc.broadcast(shared)
        threads = int(sc.getConf().get("spark.task.cpus", "1"))

        def tasks(part):  # noqa: ANN001, ANN202 (runs on the executors)
            from threadpoolctl import threadpool_limits

            value = box.value
            with threadpool_limits(threads):  # one BLAS thread per task slot: no oversubscription
                for piece in part:
                    yield from work(piece, files.read(piece), value)

        sc.setJobGroup(f"simstd-fit-{self.jobs}", "simstd fit from files")
        rdd = sc.parallelize(pieces, len(pieces)).mapPartitions(tasks)
        out = dict((rdd if merge is None else rdd.reduceByKey(merge)).collect())
        box.unpersist()
        self.jobs += 1
        return out

    def run(self, files: EmbeddingFiles, pieces: list[Piece], queries: PseudoQueries, k: int,
            search: str = "exact") -> Tops:
        return self.map_pieces(files, pieces, queries, partial(topk_work, k=k, search=search),
                               partial(merge_partial, k=k))

    def facts(self) -> dict:
        sc = self.spark.sparkContext
        return {"jobs": self.jobs, "app_id": sc.applicationId, "master": sc.master,
                "default_parallelism": sc.defaultParallelism}

    def close(self) -> None:
        """Stop the session if this runner started it."""
        if self.created:
            self.spark.stop()
            self.created = False

    def __enter__(self) -> SparkRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
