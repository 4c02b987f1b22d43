"""`simstd fit`: fit the standardizer on an index, or from embedding files (a clip-retrieval folder, on Spark)."""
from __future__ import annotations

import json

import click

from ..errors import SimstdError
from ..index import MixedIndex
from ..storage import writer_lock
from ..laion.worker import SEARCHES
from ..standardizer import Standardizer, backend
from ..stats import SAMPLE_AUTO, TARGET_SE
from ..strata import MIN_STRATUM
from ..validation import load_npy
from ._common import (
    _method_lines,
    _stats_table,
    index_option,
    SAMPLE,
    keep_option,
    lock_timeout_option,
    main,
)


@main.command()
@index_option(required=False)
@click.option("--embeddings", "embeddings_dir", type=click.Path(file_okay=False), default=None,
              help="Fit from embedding files instead of an index: a clip-retrieval output folder "
                   "(img_emb/, text_emb/). Streams the files; writes --out and/or commits to --index.")
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), default=None,
              help="With --embeddings: the standardizer file to write (std.json).")
@click.option("--spark", "spark_master", default=None, metavar="MASTER",
              help="With --embeddings: run the fit on Spark, e.g. local[2] or spark://host:7077 "
                   '(pip install "simstd[spark]").')
@click.option("--queries", type=click.Path(dir_okay=False),
              help="Pseudo queries (a query log), (n, dim) .npy. Default: sample the indexed items.")
@click.option("--query-modality", default=None, help="Modality of --queries (e.g. text).")
@click.option("--sample", default="10000", show_default=True, type=SAMPLE,
              help="Pseudo queries per query modality (0 = all), or 'auto': as many as it takes for every "
                   "pair's mean and std to reach --target-se.")
@click.option("--target-se", default=TARGET_SE, show_default=True, type=click.FloatRange(0, 1, min_open=True,
              max_open=True), help="--sample auto: standard error of each pair's mean and std, in units of its std.")
@click.option("--search", type=click.Choice(SEARCHES), default="exact", show_default=True,
              help="With --embeddings: how pseudo positives are found. exact: float32 products; bfloat16: "
                   "bfloat16 candidates re-scored in float32, certified equal to exact (fast on CPUs with "
                   "bfloat16 instructions; needs torch); ivf: k-means lists, reports its recall.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the sample.")
@click.option("--n-pseudo", default=1, show_default=True, type=click.IntRange(min=1),
              help="Pseudo positives per query and target modality (top-n).")
@click.option("--method", type=click.Choice(["paper", "hubness"]), default=Standardizer().method, show_default=True,
              help="paper: standardize the raw cosine (Yamashita et al. 2025); hubness: standardize the "
                   "hubness-corrected similarity (CSLS with the stored items as the bank; docs/default.md).")
@click.option("--hubness-k", default=10, show_default=True, type=click.IntRange(min=1),
              help="--method hubness: neighbours averaged in each item's term.")
@click.option("--hubness-bank", default=4096, show_default=True, type=click.IntRange(min=0),
              help="--method hubness: items per modality the terms are measured against (0 = all, exact).")
@click.option("--mining", type=click.Choice(["exhaustive", "graph"]), default="exhaustive", show_default=True,
              help="How the fit searches HNSW shards: exhaustive scans their stored vectors (exact pseudo "
                   "positives, a Flat fit's cost); graph walks the graph with a wide beam (faster, biased).")
@click.option("--strata", default=None, metavar="FIELD",
              help="Fit the statistics per value of a metadata field within each modality (e.g. source), or per "
                   "token-count bin of the texts (text:length: 0-4, 5-9, 10-14, 15-29, 30+ words); docs/strata.md.")
@click.option("--min-stratum", default=MIN_STRATUM, show_default=True, type=click.IntRange(min=0),
              help="--strata: a stratum with fewer items shares the statistics of its modality's largest stratum "
                   "(no stratum that large: the modality stays whole); 0: none shares.")
@click.option("--uncertainty", "with_uncertainty", is_flag=True,
              help="Also fit the label-free uncertainty model (confidences, --rerank uncertainty); "
                   "costs about one more pass over the pseudo queries.")
@click.option("--labels", "labels", type=click.Path(dir_okay=False), default=None,
              help="With --uncertainty: calibrate the match probabilities (p_match) on gold pairs, a JSONL file "
                   'of {"query_id": ID, "target_id": ID} (or "query_vector" + "query_modality" instead of '
                   "query_id); 10-200 pairs. Without it p_match is label-free.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@keep_option
@lock_timeout_option
def fit(index_path: str | None, embeddings_dir: str | None, out: str | None, spark_master: str | None,
        queries: str | None, query_modality: str | None, sample: int | str, target_se: float, search: str, seed: int,
        n_pseudo: int, method: str, hubness_k: int, hubness_bank: int, mining: str, strata: str | None,
        min_stratum: int, with_uncertainty: bool, labels: str | None, fmt: str, keep: int | None,
        lock_timeout: float) -> None:
    """Fit the standardizer on pseudo-positive pairs and commit it with the index.

    With --embeddings DIR, fit from embedding files instead (a clip-retrieval
    folder; streamed, bounded memory; on Spark with --spark): written to
    --out std.json, and/or committed with --index.
    """
    if strata is not None and (embeddings_dir is not None or with_uncertainty):
        raise SimstdError("--strata reads the items' metadata from an index (--index) and keys the statistics by "
                          "stratum; it does not combine with " + ("--embeddings" if embeddings_dir else "--uncertainty")
                          + " (the uncertainty model describes modality pairs)")
    if strata is None and min_stratum != MIN_STRATUM:
        raise SimstdError("--min-stratum sets the sharing rule of --strata; pass --strata FIELD too")
    gold = None
    if labels is not None:  # read (and refuse) the labels before any fitting
        if not with_uncertainty or embeddings_dir is not None:
            raise SimstdError("--labels calibrates the uncertainty model's match probabilities: add --uncertainty "
                              "(a fit on --index)")
        from ..uncertainty.labels import read_gold_pairs

        gold = read_gold_pairs(labels)
    if embeddings_dir is not None:
        if mining != "exhaustive":
            raise SimstdError("--mining chooses how a fit searches an index's HNSW shards; a fit from files "
                              "(--embeddings) scans every item (or its --search candidates)")
        _fit_from_files(embeddings_dir, index_path, out, spark_master, queries, with_uncertainty, sample, target_se,
                        search, seed, n_pseudo, method, hubness_k, hubness_bank, fmt, lock_timeout, keep)
        return
    if search != "exact":
        raise SimstdError("--search applies to --embeddings DIR (a fit from files); a fit on --index searches "
                          "with the index's own shards")
    if out is not None or spark_master is not None:
        raise SimstdError("--out and --spark apply to --embeddings DIR (a fit from files); "
                          "a fit on --index is committed with the index")
    if index_path is None:
        raise SimstdError("pass --index db.faiss (or set SIMSTD_INDEX), or fit from files with "
                          "--embeddings DIR --out std.json")
    with writer_lock(index_path, lock_timeout, create=False):
        _fit(index_path, queries, query_modality, sample, target_se, seed, n_pseudo, method, hubness_k,
             hubness_bank, mining, with_uncertainty, fmt, keep, strata, min_stratum, gold)


def _fit(index_path: str, queries: str | None, query_modality: str | None, sample: int | str, target_se: float,
         seed: int, n_pseudo: int, method: str, hubness_k: int, hubness_bank: int, mining: str,
         with_uncertainty: bool, fmt: str, keep: int | None = None, strata: str | None = None,
         min_stratum: int = MIN_STRATUM, gold: object = None) -> None:
    index = MixedIndex.load(index_path, load_standardizer=False)
    index.mining = mining
    qvec = None
    if queries is not None:
        if backend(method).has_item_terms:
            raise SimstdError(f"--queries (a query log) fits the paper's method; --method {method} measures every "
                              "stored item against the others: add --method paper, or drop --queries")
        if query_modality is None:
            raise SimstdError("--queries needs --query-modality (the modality of those vectors, e.g. text)")
        qvec = load_npy(queries, "--queries")
    elif query_modality is not None:
        raise SimstdError("--query-modality describes --queries; pass the query vectors too")
    if backend(method).has_item_terms:  # refuse a factory that cannot store the terms before a long fit
        index.shard_set.check_factory(len(index.modalities))
    std = Standardizer(method=method, hubness_k=hubness_k, hubness_bank=hubness_bank or None,
                       n_pseudo=n_pseudo, sample=sample or None, target_se=target_se, seed=seed, strata=strata,
                       min_stratum=min_stratum)
    std.fit(index, queries=qvec, query_modalities=query_modality)
    std.check_degenerate()  # refuse before anything is written
    index.standardizer = std
    if std.has_item_terms:  # the terms go into the shards once, here, not at every query
        index.fold_terms(std)
    note = None
    if with_uncertainty:
        from ..uncertainty.model import UncertaintyModel  # lazy, like every optional part: it loads scipy.special

        settings = {"sample": sample or None} if sample != SAMPLE_AUTO else {}  # auto sizes the standardizer's only
        index.uncertainty = UncertaintyModel(seed=seed, **settings).fit(index, std)
        if gold is not None:  # before anything is written: unknown ids refuse the whole fit
            if gold.queries is not None and gold.queries.shape[1] != index.dim:
                raise SimstdError(f"the --labels query vectors have {gold.queries.shape[1]} dimensions, the index "
                                  f"{index.dim}")
            index.uncertainty.calibrate(index, **gold.calibrate_kwargs())
        note = f"p_match: {index.uncertainty.calibration_source}"
    elif index.uncertainty is not None:  # it was fitted with the previous standardizer
        index.uncertainty = None
        note = "removed the uncertainty model fitted with the previous standardizer (refit it with --uncertainty)"
    version = index.save(index_path, keep=keep)
    if fmt == "json":
        click.echo(json.dumps(std.to_dict(), indent=2))
    else:
        click.echo(_method_lines(std))
        click.echo(_stats_table(std))
        click.echo(f"wrote {index_path} (version {version})", err=True)
    if note:
        click.echo(note, err=True)


def _fit_from_files(folder: str, index_path: str | None, out: str | None, spark_master: str | None,
                    queries: str | None, with_uncertainty: bool, sample: int | str, target_se: float, search: str,
                    seed: int, n_pseudo: int, method: str, hubness_k: int, hubness_bank: int, fmt: str,
                    lock_timeout: float, keep: int | None = None) -> None:
    from ..laion import fit_embeddings

    if out is None and index_path is None:
        raise SimstdError("--embeddings needs --out std.json (a standardizer file) and/or --index db.faiss "
                          "(commit the fit with an index built from these files)")
    if queries is not None or with_uncertainty:
        raise SimstdError("a fit from files samples its pseudo queries from the files; --queries and "
                          "--uncertainty need an index (simstd build --from DIR, then simstd fit --index)")
    reports = []
    settings = dict(method=method, hubness_k=hubness_k, hubness_bank=hubness_bank or None, sample=sample or None,
                    target_se=target_se, search=search, seed=seed, n_pseudo=n_pseudo, report=reports.append)
    if spark_master is None:
        std = fit_embeddings(folder, **settings)
    else:
        from ..spark import SparkRunner

        with SparkRunner(spark_master) as runner:
            std = fit_embeddings(folder, runner=runner, **settings)
    wrote = []
    if out is not None:
        std.save(out)
        wrote.append(str(out))
    if index_path is not None:
        with writer_lock(index_path, lock_timeout, create=False):
            index = MixedIndex.load(index_path, load_standardizer=False)
            std.check_index(index, index_path)
            if index.counts != reports[0].counts:
                raise SimstdError(f"{index_path} holds {index.counts} items but {folder} holds "
                                  f"{reports[0].counts}: build the index from this folder (simstd build --from)")
            if std.has_item_terms:  # its terms are keyed by the ids the files' order gives
                import numpy as np

                first = 0
                for m, n in reports[0].counts.items():
                    if not np.array_equal(np.sort(index.ids(m)), np.arange(first, first + n)):
                        raise SimstdError(f"{index_path} numbers its {m} items otherwise than {folder} orders "
                                          f"them (ids {first}..{first + n - 1}): build the index from this "
                                          "folder (simstd build --from), or fit it with --index alone")
                    first += n
            index.standardizer = std
            if std.has_item_terms:  # the terms go into the shards once, here, not at every query
                index.fold_terms(std)
            index.uncertainty = None  # fitted with the previous standardizer, if any
            version = index.save(index_path, keep=keep)
        wrote.append(f"{index_path} (version {version})")
    if fmt == "json":
        click.echo(json.dumps(std.to_dict(), indent=2))
    else:
        click.echo(_method_lines(std))
        click.echo(_stats_table(std))
        r = reports[0]
        counts = ", ".join(f"{n} {m}" for m, n in r.counts.items())
        worst = max(max(e["mean"], e["std"]) for e in r.extra["standard_error"].values())
        drawn = ", ".join(f"{n} {m}" for m, n in r.sample.items())
        click.echo(f"fitted on {counts} ({r.engine}, {r.pieces} pieces, {r.seconds:.1f} s) with {drawn} pseudo "
                   f"queries; sampling error of each pair's mean and std at most {worst:.3f} std; wrote "
                   + " and ".join(wrote), err=True)
