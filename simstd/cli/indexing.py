"""Commands over an index: build, add, query, tune, info (fit: cli/fitting.py).

Every write (build over an index, add, fit) holds the index's writer lock from
loading to committing, so concurrent writers queue instead of losing a batch.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import IndexExistsError, SimstdError
from ..index import MixedIndex
from ..storage import writer_lock
from ..storage.listing import disk_usage, list_versions
from ..storage.versions import describe, get_keep, open_version
from ..validation import check_modality, check_probability, load_npy, searchable_k
from ._common import (
    _echo_counts,
    _method_lines,
    _table,
    _hits_table,
    _load_embeddings,
    _stats_table,
    index_option,
    keep_option,
    lock_timeout_option,
    main,
    result_records,
)


@main.command()
@click.option("--embeddings", "-e", multiple=True, metavar="MODALITY=FILE.npy",
              help="Embeddings of one modality, (n, dim) .npy; repeat per modality. Ids follow the order given.")
@click.option("--meta", multiple=True, metavar="MODALITY=FILE.jsonl",
              help="Payloads of one modality: one JSON object per row.")
@click.option("--images", type=click.Path(file_okay=False), help="Folder of images to embed (recursive).")
@click.option("--texts", type=click.Path(dir_okay=False),
              help="Texts to embed: one per line, or JSONL with --text-field.")
@click.option("--text-field", default="text", show_default=True, help="Field holding the text in a JSONL file.")
@click.option("--factory", default="Flat", show_default=True,
              help="FAISS factory string, e.g. Flat, IVF1024,Flat, HNSW32, IVF4096,SQfp16.")
@click.option("--model", default=None,
              help="With --images/--texts: open_clip architecture (default ViT-B-32). "
                   "With --embeddings: the name of the model that made them (recorded).")
@click.option("--pretrained", default=None,
              help="open_clip pretrained tag (default laion2b_s34b_b79k, downloaded on first use) "
                   "or a local checkpoint file (.pt, .bin, .safetensors).")
@click.option("--device", default="cpu", show_default=True, help="Torch device for embedding (cpu, cuda).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--from", "from_dir", type=click.Path(file_okay=False), default=None,
              help="Import a clip-retrieval output folder (img_emb/, text_emb/, metadata/*.parquet): both "
                   'modalities, parquet rows as payloads (pip install "simstd[parquet]").')
@click.option("--adopt-indexes", "adopt_dir", type=click.Path(file_okay=False), default=None,
              help="With --from: use autofaiss's image.index and text.index in this folder as the shards, "
                   "without adding the vectors again (checked against the files first).")
@click.option("--resume", is_flag=True,
              help="Add to the existing --out index only what it does not hold yet (no re-embedding).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Index file to write (db.faiss).")
@click.option("--overwrite", is_flag=True,
              help="Replace the index already at --out (it stays one `simstd rollback` away).")
@keep_option
@lock_timeout_option
def build(embeddings: tuple[str, ...], meta: tuple[str, ...], images: str | None, texts: str | None,
          text_field: str, factory: str, model: str | None, pretrained: str | None, device: str,
          batch_size: int, from_dir: str | None, adopt_dir: str | None, resume: bool, out: str,
          overwrite: bool, keep: int | None, lock_timeout: float) -> None:
    """Build a mixed index from embedding files, a clip-retrieval folder, or images and texts.

    An index already at --out is replaced only with --overwrite (--resume
    extends it instead).
    """
    if not resume:
        _refuse_existing(out, overwrite)  # before any embedding work
    if from_dir is not None:
        if embeddings or meta or images or texts or resume:
            raise SimstdError("--from imports a clip-retrieval folder on its own; drop --embeddings/--meta/"
                              "--images/--texts/--resume")
        from ..laion.build import import_folder

        if adopt_dir is not None and factory != "Flat":
            raise SimstdError("--adopt-indexes uses autofaiss's indexes as they are; --factory does not apply")
        index = import_folder(from_dir, factory=factory, adopt=adopt_dir, model=model)
        index.save(out, lock_timeout=lock_timeout, overwrite=overwrite, keep=keep)
        _echo_counts(index, f"built {out}")
        _echo_replaced(out)
        click.echo(f"next: simstd fit --embeddings {from_dir} --index {out}   (exact, from the files)", err=True)
        return
    if adopt_dir is not None:
        raise SimstdError("--adopt-indexes applies to --from DIR (a clip-retrieval folder)")
    if images or texts:
        if embeddings or meta:
            raise SimstdError("build from --embeddings or from --images/--texts, not both in one run")
        with writer_lock(out, lock_timeout):  # --resume reads the index it extends: hold the lock from there
            _build_from_raw(images, texts, text_field, factory, model, pretrained, device, batch_size, resume, out,
                            overwrite, keep)
        return
    if resume:
        raise SimstdError("--resume applies to --images/--texts; append embeddings with simstd add")
    arrays, metadata = _load_embeddings(embeddings, meta)
    index = MixedIndex.from_arrays(arrays, factory=factory, metadata=metadata, model=model)
    index.save(out, lock_timeout=lock_timeout, overwrite=overwrite, keep=keep)
    _echo_counts(index, f"built {out}")
    _echo_replaced(out)
    click.echo(f"next: simstd fit --index {out}", err=True)


def _refuse_existing(out: str, overwrite: bool) -> None:
    """`build` never replaces an index silently (MixedIndex.save refuses too, under the lock)."""
    if not overwrite and (Path(out).exists() or Path(out).is_symlink()):
        raise IndexExistsError(f"{out} holds {describe(out)}; `simstd build` would replace it. Pass --overwrite "
                               f"to replace it (it stays one `simstd rollback` away), `simstd add --index {out}` "
                               "to add items to it, or choose another --out")


def _echo_replaced(out: str) -> None:
    """After a build: say which version it replaced and how to get it back."""
    parent = open_version(out).manifest.parent
    if parent:
        click.echo(f"replaced version {parent}: `simstd rollback --index {out}` brings it back "
                   f"(`simstd versions --index {out}` lists the kept versions)", err=True)


def _build_from_raw(images: str | None, texts: str | None, text_field: str, factory: str, model: str | None,
                    pretrained: str | None, device: str, batch_size: int, resume: bool, out: str,
                    overwrite: bool = False, keep: int | None = None) -> None:
    from ..encoders import OpenClipEncoder
    from ..ingest import ingest

    encoder = OpenClipEncoder(model or "ViT-B-32", pretrained or "laion2b_s34b_b79k", device=device,
                              batch_size=batch_size)
    existing = MixedIndex.load(out) if resume and Path(out).exists() else None
    index, report = ingest(encoder, images=images, texts=texts, text_field=text_field, index=existing,
                           factory=factory, progress=sys.stderr.isatty())
    for where, why in report.skipped:
        click.echo(f"skipped {where}: {why}", err=True)
    for m, n in report.already_indexed.items():
        if n:
            click.echo(f"{n} {m} item(s) already indexed: not embedded again", err=True)
    if existing is not None and not any(report.added.values()):
        click.echo(f"{out} is up to date", err=True)
        return
    if index.ntotal == 0:
        raise SimstdError("no item could be embedded (see the skipped files above); nothing was written")
    _save_built(index, out, overwrite, keep, replacing=existing is None)


def _save_built(index: MixedIndex, out: str, overwrite: bool = False, keep: int | None = None,
                replacing: bool = False) -> None:
    index.save(out, overwrite=overwrite, keep=keep)
    _echo_counts(index, f"built {out}")
    if replacing:
        _echo_replaced(out)
    if index.fit_is_stale:
        click.echo(f"the fit is now stale (queries keep using it): refresh it with simstd fit --index {out}", err=True)
    else:
        click.echo(f"next: simstd fit --index {out}", err=True)


@main.command()
@index_option
@click.option("--embeddings", "-e", multiple=True, metavar="MODALITY=FILE.npy", help="Embeddings to append.")
@click.option("--meta", multiple=True, metavar="MODALITY=FILE.jsonl", help="Their payloads.")
@keep_option
@lock_timeout_option
def add(index_path: str, embeddings: tuple[str, ...], meta: tuple[str, ...], keep: int | None,
        lock_timeout: float) -> None:
    """Append embeddings to an existing index (new ids follow the last one).

    A fit made before keeps serving, marked stale, until `simstd fit` refreshes it.
    """
    arrays, metadata = _load_embeddings(embeddings, meta)
    with writer_lock(index_path, lock_timeout, create=False):
        index = MixedIndex.load(index_path)
        for m, arr in arrays.items():
            index.add(arr, m, metadata.get(m))
        index.save(index_path, keep=keep)
    _echo_counts(index, f"updated {index_path}")
    std = index.standardizer
    if std is not None and std.has_item_terms:
        click.echo("the hubness fit gave the new items their terms (against its fitted banks); it is stale but "
                   f"keeps serving: refresh it with simstd fit --index {index_path}", err=True)
    elif std is not None:
        click.echo(f"the fit is now stale (queries keep using it): refresh it with simstd fit --index {index_path}",
                   err=True)


@main.command()
@click.argument("text", required=False)
@index_option
@click.option("-k", default=10, show_default=True, type=click.IntRange(min=1),
              help="Number of results; above the items the search can return (the --target modalities' items, "
                   "a --like item left out) it is capped at them, with a note (as in simstd serve).")
@click.option("--vector", type=click.Path(dir_okay=False), help="Query vector(s), (dim,) or (n, dim) .npy.")
@click.option("--query-modality", default=None,
              help="Modality of --vector (default: text); a --like item's own modality is used.")
@click.option("--like", "like", type=int, default=None, metavar="ID", help="Use indexed item ID as the query.")
@click.option("--image", type=click.Path(dir_okay=False), help="Image file to use as the query (needs an encoder).")
@click.option("--target", multiple=True, help="Only return these modalities (repeatable).")
@click.option("--raw", is_flag=True, help="Rank by raw cosine instead of standardized score.")
@click.option("--params", default=None, help="FAISS search parameters, e.g. nprobe=16 or efSearch=128.")
@click.option("--rerank", type=click.Choice(["none", "uncertainty"]), default="none", show_default=True,
              help="uncertainty: order by z-score minus weight x uncertainty (needs simstd fit --uncertainty).")
@click.option("--rerank-weight", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Weight of the uncertainty in --rerank uncertainty.")
@click.option("--min-prob", type=float, default=None, metavar="P",
              help="Only return hits whose match probability p_match is at least P, in [0, 1] "
                   "(needs simstd fit --uncertainty; simstd info says whether p_match is label-free).")
@click.option("--strict", is_flag=True,
              help="Refuse a stale fit (items were added since `simstd fit`) instead of serving it with a note.")
@click.option("--query-stratum", default=None, metavar="STRATUM",
              help="A stratified fit (simstd fit --strata): the stratum of the query (e.g. text:5-9, or a field "
                   "value); a TEXT query of a text:length fit gets its own bin.")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
def query(text: str | None, index_path: str, k: int, vector: str | None, query_modality: str | None,
          like: int | None, image: str | None, target: tuple[str, ...], raw: bool, params: str | None,
          rerank: str, rerank_weight: float, min_prob: float | None, strict: bool, query_stratum: str | None,
          fmt: str) -> None:
    """Search the index with TEXT, --vector, --like ID or --image.

    When the index has a fitted uncertainty model (simstd fit --uncertainty),
    every hit also gets a confidence (its label-free posterior share), an
    uncertainty (-ln confidence) and p_match, its match probability (label-free,
    or calibrated with simstd fit --labels); --min-prob thresholds it.
    """
    if min_prob is not None:
        check_probability(min_prob, "--min-prob")
    given = [name for name, v in (("TEXT", text), ("--vector", vector), ("--like", like), ("--image", image))
             if v is not None]
    if len(given) != 1:
        raise SimstdError("give exactly one query: TEXT, --vector FILE.npy, --like ID or --image FILE "
                          f"(got {', '.join(given) or 'none'})")
    index = MixedIndex.load(index_path)
    if params:
        index.set_search_params(params)
    if (text is not None or image is not None) and index.model is None:
        raise SimstdError(
            "this index records no encoder model (it was built from .npy embeddings), so it cannot embed "
            "a text or image query: use --vector q.npy --query-modality text or --like ID, or build the "
            "index with an encoder (simstd build --images DIR --texts FILE)"
        )
    own = None
    if like is not None:
        own = str(index.modality_of([like])[0])
        if query_modality not in (None, own):  # the item's vector is a {own} vector, whatever is claimed
            raise SimstdError(f"item {like} is a {own} item and is searched as one; --query-modality "
                              f"{query_modality} contradicts it: leave --query-modality out with --like")
    targets = [check_modality(t, index.modalities, "target modality") for t in dict.fromkeys(target)]
    capped = searchable_k(k, index.counts, targets or index.modalities, own)
    if capped < 1:
        raise SimstdError(f"no item to return: the target modalities {targets} hold no item other than {like}")
    kwargs = {"raw": raw, "targets": targets or None, "strict": strict}
    if index.uncertainty is not None:
        kwargs["uncertainty"] = index.uncertainty
    if rerank == "uncertainty":
        if index.uncertainty is None:
            raise SimstdError(f"--rerank uncertainty needs the uncertainty model: run simstd fit --uncertainty "
                              f"--index {index_path}")
        kwargs.update(rerank=rerank, rerank_weight=rerank_weight)
    if min_prob is not None and index.uncertainty is None:
        raise SimstdError(f"--min-prob thresholds the match probability of the uncertainty model: run simstd fit "
                          f"--uncertainty --index {index_path}")
    if not raw and index.standardizer is None:  # the index's own message speaks Python (raw=True)
        raise SimstdError(f"the index has no fitted standardizer: run simstd fit --index {index_path}, "
                          "or rank by raw cosine with --raw")
    if capped < k:  # the one rule for k, shared with simstd serve: at most the items there are
        click.echo(f"note: k={k} is more than the {capped} items this search can return; returning {capped}",
                   err=True)
        k = capped
    strata = None if raw or index.standardizer is None else getattr(index.standardizer, "strata_", None)
    if query_stratum is not None and like is not None:
        raise SimstdError("--query-stratum names a query's stratum; a --like item queries as its own: drop it")
    if strata is not None and query_stratum is None and text is not None:  # text:length: the query's own bin
        query_stratum = strata.query_stratum_of_text(query_modality or "text", text)
    if query_stratum is not None:
        kwargs["query_stratum"] = query_stratum
    if like is not None:
        result = index.search_like([like], k, **kwargs)
        labels = [f"like:{like}"]
    elif vector is not None:
        vectors = load_npy(vector, "--vector")
        result = index.search(vectors, query_modality or "text", k, **kwargs)
        labels = [f"{vector}#{i}" for i in range(len(result))] if len(result) > 1 else [vector]
    else:
        from ..encoders import encoder_for_index

        encoder = encoder_for_index(index)
        if text is not None:
            result = index.search(encoder.encode_texts([text]), query_modality or "text", k, **kwargs)
            labels = [text]
        else:
            result = index.search(encoder.encode_images([image]), query_modality or "image", k, **kwargs)
            labels = [image]
    if min_prob is not None:
        result = result.above(min_prob)
    if fmt == "jsonl":
        for line in result_records(result, labels):
            click.echo(json.dumps(line, ensure_ascii=False))
    else:
        for i, label in enumerate(labels):
            click.echo(_hits_table(result, i, label))


@main.command()
@index_option
@click.option("--budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="WORK",
              help="Distance computations per query (FAISS's counter, summed over the shards) not to exceed "
                   "(default: the current settings' work, split better).")
@click.option("--target-recall", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Instead of --budget: the cheapest split whose recall of the exact standardized top-k "
                   "reaches this.")
@click.option("-k", default=10, show_default=True, type=click.IntRange(min=1), help="The k to tune for.")
@click.option("--sample", "n_queries", default=1000, show_default=True, type=click.IntRange(min=2),
              help="Pseudo queries per query modality: stored items (label-free), or rows of --queries.")
@click.option("--queries", type=click.Path(dir_okay=False), default=None,
              help="Tune on these query vectors (e.g. a query log, (n, dim) .npy) instead of stored items.")
@click.option("--query-modality", default=None, help="Modality of --queries (e.g. text).")
@click.option("--holdout", default=0.5, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Share of them held out to report the chosen split (never used to choose).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--bridges/--no-bridges", default=None,
              help="Build (or drop) cross-modal entry points for HNSW shards first (MixedIndex.build_bridges): "
                   "most of a standardized top-k is cross-modal, and they make that search cheaper.")
@click.option("--dry-run", is_flag=True, help="Report the split without committing it.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@lock_timeout_option
def tune(index_path: str, budget: float | None, target_recall: float | None, k: int, n_queries: int,
         queries: str | None, query_modality: str | None, holdout: float, seed: int, bridges: bool | None,
         dry_run: bool, fmt: str, lock_timeout: float) -> None:
    """Choose each HNSW/IVF shard's efSearch/nprobe per query modality for a work budget.

    Cross-modal graph search needs a wider beam than same-modality search
    (docs/performance.md); this measures both on stored items used as pseudo
    queries and commits the best split (simstd.tuning.tune_search_params).
    """
    from ..tuning import tune_search_params

    log = None
    if queries is not None:
        if query_modality is None:
            raise SimstdError("--queries needs --query-modality (the modality of those vectors, e.g. text)")
        log = {query_modality: load_npy(queries, "--queries")}
    elif query_modality is not None:
        raise SimstdError("--query-modality describes --queries; pass the query vectors too")
    with writer_lock(index_path, lock_timeout, create=False):
        index = MixedIndex.load(index_path)
        plans = tune_search_params(index, budget=budget, target_recall=target_recall, k=k, n_queries=n_queries,
                                   holdout=holdout, seed=seed, apply=not dry_run, bridges=bridges, queries=log)
        version = None if dry_run else index.save(index_path)
    if fmt == "json":
        click.echo(json.dumps({q: p.as_dict() for q, p in plans.items()}, indent=2))
    else:
        rows = []
        for q, p in plans.items():
            for t, values in p.params.items():
                (name, value), = values.items()
                rows.append([q, t, name, p.baseline_params[t][name], value])
        click.echo(_table(["query", "target", "parameter", "before", "after"], rows))
        for q, p in plans.items():
            line = f"{q} queries: tuning recall@{p.k} {p.recall:.3f} at {p.work:,.0f} work per query"
            if p.n_eval:
                line += (f"; held out ({p.n_eval}): recall {p.baseline_recall:.3f} -> {p.eval_recall:.3f}, "
                         f"work {p.baseline_work:,.0f} -> {p.eval_work:,.0f}")
            click.echo(line)
    click.echo("dry run: nothing written" if dry_run else f"wrote {index_path} (version {version})", err=True)


@main.command()
@index_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def info(index_path: str, fmt: str) -> None:
    """Show counts per modality, dimension, factory and the fitted statistics."""
    index = MixedIndex.load(index_path)
    std = index.standardizer
    stale = None
    if index.fit_is_stale:
        stale = (f"fitted before items were added (fingerprint {std.index_fingerprint_[:12]}, the index now "
                 f"{index.fingerprint[:12]}); queries use it until you run simstd fit --index {index_path}")
    if fmt == "json":
        click.echo(json.dumps({
            "index": str(index_path), "version": index.version, "dim": index.dim, "factory": index.factory,
            "model": index.model, "ntotal": index.ntotal, "counts": index.counts, "fingerprint": index.fingerprint,
            "method": None if std is None else std.describe(),
            "standardizer": None if std is None else std.to_dict(), "stale": stale,
            "search_params": [{"query_modality": q, "target": t, "params": v}
                              for (q, t), v in index.search_params.items()],
            "bridges": [[q, t] for q, t in index.bridges],
            "shards": index.shard_info(),
            "versions": _versions_cost(index_path),
            "uncertainty": _uncertainty_info(index),
        }, indent=2))
        return
    click.echo(f"index        {index_path}")
    click.echo(f"version      {index.version}")
    click.echo(f"dimension    {index.dim}")
    click.echo(f"factory      {index.factory}")
    click.echo(f"model        {index.model or '-'}")
    click.echo(f"fingerprint  {index.fingerprint[:16]}")
    click.echo(f"items        {index.ntotal}  (" + ", ".join(f"{m}: {n}" for m, n in index.counts.items()) + ")")
    if index.search_params:
        click.echo("search       " + ", ".join(f"{q} -> {t}: {v}" for (q, t), v in index.search_params.items()))
    if index.bridges:
        click.echo("bridges      " + ", ".join(f"{q} -> {t}" for q, t in index.bridges))
    click.echo(_shards_table(index.shard_info()))
    cost = _versions_cost(index_path)
    if cost is not None:
        click.echo(f"versions     {cost['kept']} kept (keep {cost['keep']}): {_size(cost['bytes'])} on disk, "
                   f"{_size(cost['bytes'] - cost['current_bytes'])} of it for the {cost['kept'] - 1} besides the "
                   f"current one (simstd versions --index {index_path})")
    if std is None:
        click.echo(f"standardizer not fitted: run simstd fit --index {index_path}")
    else:
        click.echo("standardizer " + ("STALE: " + stale if stale else "fitted"))
        click.echo(_method_lines(std))
        click.echo(_stats_table(std))
    unc = _uncertainty_info(index)
    if unc is None:
        click.echo(f"p_match      none: no uncertainty model (simstd fit --uncertainty --index {index_path})")
    else:
        click.echo(f"p_match      {unc['probabilities']} ({unc['map']})")


def _uncertainty_info(index: MixedIndex) -> dict | None:
    """Whether the match probabilities are label-free or calibrated on gold pairs (and on how many)."""
    model = index.uncertainty
    if model is None:
        return None
    c = model.calibration_
    if c["source"] == "labels":
        how = f"Platt map fitted on {c['n_labels']} gold pairs: p_match = sigmoid({c['a']:.3f} logit(p) {c['b']:+.3f})"
    elif c["map"] == "identity":
        how = "no labels: p_match is the posterior share p"
    else:
        how = f"no labels, {c['map']} map: p_match = sigmoid({c['a']:.3f} logit(p) {c['b']:+.3f})"
    return {"probabilities": model.calibration_source, "labels": int(c["n_labels"]), "map": how,
            "calibration": {k: v for k, v in c.items() if k != "label_free"}}


def _shards_table(shards: list[dict]) -> str:
    """One row per shard: its factory, memory and the search parameters in force."""
    rows = []
    for s in shards:
        params = ", ".join(f"{n}={v:g}" for n, v in s["search_params"].items()) or "-"
        for q, v in s["pair_params"].items():
            params += f"; {q} queries: {v}"
        memory = _size(s["memory_bytes"]) + (f" + {_size(s['lists_bytes'])} lists on disk ({s['lists_file']})"
                                             if "lists_file" in s else "")
        rows.append([s["modality"], s["factory"], s["count"], s["stored_dim"], memory,
                     _size(s["memory_bytes"] / s["count"]) if s["count"] else "-", params])
    return ("shards (memory: each shard's faiss.write_index size, what it holds in RAM once loaded)\n"
            + _table(["shard", "factory", "items", "dim", "memory", "per item", "search parameters"], rows))


def _versions_cost(index_path: str) -> dict | None:
    """Kept versions and their disk cost (each hard-linked file counted once); None for the old layout."""
    kept = list_versions(index_path)
    if not kept:
        return None
    total, current = disk_usage(index_path)
    return {"kept": len(kept), "keep": get_keep(index_path), "bytes": total, "current_bytes": current}


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
