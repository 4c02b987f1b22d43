"""The ``simstd`` command line: a thin layer over the Python API.

Every user error is a :class:`~simstd.errors.SimstdError`; the group below
prints its message and exits with status 1, without a traceback. Output for
machines is JSON lines (``--format jsonl``), for people a table.
"""
from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import click
import numpy as np

from .datasets import load_pairs, mixed_split, synthetic_pairs
from .errors import SimstdError
from .index import MixedIndex, SearchResult, sidecar_paths
from .standardizer import Standardizer
from .validation import check_label, load_npy

INDEX_ENV = "SIMSTD_INDEX"
#: Metadata fields shown in the table's "item" column, in order of preference.
PAYLOAD_FIELDS = ("text", "caption", "title", "path", "url", "coco_url")


class SimstdGroup(click.Group):
    """Turns SimstdError (and file-system errors) into a clean message and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except SimstdError as exc:
                raise click.ClickException(str(exc)) from None
            except OSError as exc:
                raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    click.echo(f"note: {message}", err=True)


@click.group(cls=SimstdGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="simstd")
def main() -> None:
    """Mixed text+image search with similarity standardization.

    A FAISS index that holds several modalities ranks by raw cosine one
    modality only; simstd fits per-modality-pair score statistics on
    pseudo-positive pairs and ranks by standardized score instead.

    \b
    Typical use:
      simstd build -e text=texts.npy -e image=images.npy --out db.faiss
      simstd fit --index db.faiss
      simstd query --like 0 --index db.faiss
    """


def index_option(f):  # noqa: ANN001, ANN201
    return click.option(
        "--index",
        "index_path",
        envvar=INDEX_ENV,
        show_envvar=True,
        required=True,
        type=click.Path(dir_okay=False),
        help="Index file written by `simstd build` (e.g. db.faiss).",
    )(f)


def _pairs(values: Sequence[str], option: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not label or not path:
            raise SimstdError(f"{option} {value!r} must look like MODALITY=FILE, e.g. {option} text=texts.npy")
        out.append((check_label(label), path))
    return out


def read_jsonl(path: str | Path) -> list[dict]:
    """Read one JSON object per line; errors name the line."""
    path = Path(path)
    if not path.exists():
        raise SimstdError(f"metadata file {path} does not exist; check the path")
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                raise SimstdError(f"{path}:{lineno} is empty; metadata JSONL needs one JSON object per vector row")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SimstdError(f"{path}:{lineno} is not valid JSON ({exc.msg}); fix that line") from None
            if not isinstance(obj, dict):
                raise SimstdError(f"{path}:{lineno} is a JSON {type(obj).__name__}, expected an object {{...}}")
            records.append(obj)
    return records


def _load_embeddings(embeddings: Sequence[str], meta: Sequence[str]) -> tuple[dict, dict]:
    files = _pairs(embeddings, "--embeddings")
    if not files:
        raise SimstdError("nothing to index: pass --embeddings MODALITY=FILE.npy (once per modality)")
    labels = [m for m, _ in files]
    if len(set(labels)) != len(labels):
        raise SimstdError("each modality may appear once in --embeddings; concatenate the arrays first")
    arrays = {m: load_npy(p, f"embeddings for {m!r}") for m, p in files}
    metadata = {}
    for m, p in _pairs(meta, "--meta"):
        if m not in arrays:
            raise SimstdError(f"--meta {m}=... names a modality without --embeddings {m}=...")
        metadata[m] = read_jsonl(p)
        rows = len(arrays[m]) if arrays[m].ndim == 2 else 1
        if len(metadata[m]) != rows:
            raise SimstdError(
                f"{p} has {len(metadata[m])} records but embeddings for {m!r} have {rows} rows; "
                "metadata JSONL needs exactly one object per row"
            )
    return arrays, metadata


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
@click.option("--resume", is_flag=True,
              help="Add to the existing --out index only what it does not hold yet (no re-embedding).")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Index file to write (db.faiss).")
def build(embeddings: tuple[str, ...], meta: tuple[str, ...], images: str | None, texts: str | None,
          text_field: str, factory: str, model: str | None, pretrained: str | None, device: str,
          batch_size: int, resume: bool, out: str) -> None:
    """Build a mixed index from embedding files, or from images and texts."""
    if images or texts:
        if embeddings or meta:
            raise SimstdError("build from --embeddings or from --images/--texts, not both in one run")
        _build_from_raw(images, texts, text_field, factory, model, pretrained, device, batch_size, resume, out)
        return
    if resume:
        raise SimstdError("--resume applies to --images/--texts; append embeddings with simstd add")
    arrays, metadata = _load_embeddings(embeddings, meta)
    index = MixedIndex.from_arrays(arrays, factory=factory, metadata=metadata, model=model)
    _save_built(index, out)


def _build_from_raw(images: str | None, texts: str | None, text_field: str, factory: str, model: str | None,
                    pretrained: str | None, device: str, batch_size: int, resume: bool, out: str) -> None:
    from .encoders import OpenClipEncoder
    from .ingest import ingest

    encoder = OpenClipEncoder(model or "ViT-B-32", pretrained or "laion2b_s34b_b79k", device=device,
                              batch_size=batch_size)
    existing = MixedIndex.load(out, load_standardizer=False) if resume and Path(out).exists() else None
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
    _save_built(index, out)


def _save_built(index: MixedIndex, out: str) -> None:
    index.save(out)
    # A fit belongs to the index it was made on; a rebuilt index needs a new one.
    sidecar_paths(out)["standardizer"].unlink(missing_ok=True)
    sidecar_paths(out)["uncertainty"].unlink(missing_ok=True)
    _echo_counts(index, f"built {out}")
    click.echo(f"next: simstd fit --index {out}", err=True)


@main.command()
@index_option
@click.option("--embeddings", "-e", multiple=True, metavar="MODALITY=FILE.npy", help="Embeddings to append.")
@click.option("--meta", multiple=True, metavar="MODALITY=FILE.jsonl", help="Their payloads.")
def add(index_path: str, embeddings: tuple[str, ...], meta: tuple[str, ...]) -> None:
    """Append embeddings to an existing index (new ids follow the last one)."""
    arrays, metadata = _load_embeddings(embeddings, meta)
    index = MixedIndex.load(index_path, load_standardizer=False)
    for m, arr in arrays.items():
        index.add(arr, m, metadata.get(m))
    index.save(index_path)
    _echo_counts(index, f"updated {index_path}")
    if sidecar_paths(index_path)["standardizer"].exists():
        click.echo(f"the fitted standardizer is now stale: run simstd fit --index {index_path}", err=True)


@main.command()
@index_option
@click.option("--queries", type=click.Path(dir_okay=False),
              help="Pseudo queries (a query log), (n, dim) .npy. Default: sample the indexed items.")
@click.option("--query-modality", default=None, help="Modality of --queries (e.g. text).")
@click.option("--sample", default=10_000, show_default=True, type=click.IntRange(min=0),
              help="Pseudo queries per query modality (0 = all).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the sample.")
@click.option("--n-pseudo", default=1, show_default=True, type=click.IntRange(min=1),
              help="Pseudo positives per query and target modality (top-n).")
@click.option("--uncertainty", "with_uncertainty", is_flag=True,
              help="Also fit the label-free uncertainty model (confidences, --rerank uncertainty); "
                   "costs about one more pass over the pseudo queries.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def fit(index_path: str, queries: str | None, query_modality: str | None, sample: int, seed: int,
        n_pseudo: int, with_uncertainty: bool, fmt: str) -> None:
    """Fit the standardizer on pseudo-positive pairs and save it beside the index."""
    index = MixedIndex.load(index_path, load_standardizer=False)
    qvec = None
    if queries is not None:
        if query_modality is None:
            raise SimstdError("--queries needs --query-modality (the modality of those vectors, e.g. text)")
        qvec = load_npy(queries, "--queries")
    elif query_modality is not None:
        raise SimstdError("--query-modality describes --queries; pass the query vectors too")
    std = Standardizer(n_pseudo=n_pseudo, sample=sample or None, seed=seed)
    std.fit(index, queries=qvec, query_modalities=query_modality)
    path = sidecar_paths(index_path)["standardizer"]
    std.save(path)
    upath = sidecar_paths(index_path)["uncertainty"]
    if with_uncertainty:
        from .uncertainty import UncertaintyModel  # lazy, like every optional part: it loads scipy.special

        UncertaintyModel(sample=sample or None, seed=seed).fit(index, std).save(upath)
        note = f"wrote {upath}"
    elif upath.exists():  # it was fitted with the previous standardizer
        upath.unlink()
        note = f"removed {upath}, fitted with the previous standardizer (refit it with --uncertainty)"
    else:
        note = None
    if fmt == "json":
        click.echo(json.dumps(std.to_dict(), indent=2))
    else:
        click.echo(_stats_table(std))
        click.echo(f"wrote {path}", err=True)
    if note:
        click.echo(note, err=True)


@main.command()
@click.argument("text", required=False)
@index_option
@click.option("-k", default=10, show_default=True, type=click.IntRange(min=1), help="Number of results.")
@click.option("--vector", type=click.Path(dir_okay=False), help="Query vector(s), (dim,) or (n, dim) .npy.")
@click.option("--query-modality", default=None, help="Modality of --vector (default: text).")
@click.option("--like", "like", type=int, default=None, metavar="ID", help="Use indexed item ID as the query.")
@click.option("--image", type=click.Path(dir_okay=False), help="Image file to use as the query (needs an encoder).")
@click.option("--target", multiple=True, help="Only return these modalities (repeatable).")
@click.option("--raw", is_flag=True, help="Rank by raw cosine instead of standardized score.")
@click.option("--params", default=None, help="FAISS search parameters, e.g. nprobe=16 or efSearch=128.")
@click.option("--rerank", type=click.Choice(["none", "uncertainty"]), default="none", show_default=True,
              help="uncertainty: order by z-score minus weight x uncertainty (needs simstd fit --uncertainty).")
@click.option("--rerank-weight", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Weight of the uncertainty in --rerank uncertainty.")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True)
def query(text: str | None, index_path: str, k: int, vector: str | None, query_modality: str | None,
          like: int | None, image: str | None, target: tuple[str, ...], raw: bool, params: str | None,
          rerank: str, rerank_weight: float, fmt: str) -> None:
    """Search the index with TEXT, --vector, --like ID or --image.

    When the index has a fitted uncertainty model (simstd fit --uncertainty),
    every hit also gets a confidence (its label-free posterior share, not a
    calibrated probability) and an uncertainty (-ln confidence).
    """
    given = [name for name, v in (("TEXT", text), ("--vector", vector), ("--like", like), ("--image", image))
             if v is not None]
    if len(given) != 1:
        raise SimstdError("give exactly one query: TEXT, --vector FILE.npy, --like ID or --image FILE "
                          f"(got {', '.join(given) or 'none'})")
    index = MixedIndex.load(index_path)
    if params:
        index.set_search_params(params)
    kwargs = {"raw": raw, "targets": list(target) or None}
    upath = sidecar_paths(index_path)["uncertainty"]
    if upath.exists():
        from .uncertainty import UncertaintyModel

        kwargs["uncertainty"] = UncertaintyModel.load(upath)
    if rerank == "uncertainty":
        if not upath.exists():
            raise SimstdError(f"--rerank uncertainty needs the uncertainty model: run simstd fit --uncertainty "
                              f"--index {index_path}")
        kwargs.update(rerank=rerank, rerank_weight=rerank_weight)
    if like is not None:
        result = index.search_like([like], k, **kwargs)
        labels = [f"like:{like}"]
    elif vector is not None:
        vectors = load_npy(vector, "--vector")
        result = index.search(vectors, query_modality or "text", k, **kwargs)
        labels = [f"{vector}#{i}" for i in range(len(result))] if len(result) > 1 else [vector]
    else:
        if index.model is None:
            raise SimstdError(
                "this index records no encoder model (it was built from .npy embeddings), so it cannot embed "
                "a text or image query: use --vector q.npy --query-modality text or --like ID, or build the "
                "index with an encoder (simstd build --images DIR --texts FILE)"
            )
        from .encoders import encoder_for_index

        encoder = encoder_for_index(index)
        if text is not None:
            result = index.search(encoder.encode_texts([text]), query_modality or "text", k, **kwargs)
            labels = [text]
        else:
            result = index.search(encoder.encode_images([image]), query_modality or "image", k, **kwargs)
            labels = [image]
    if fmt == "jsonl":
        for line in result_records(result, labels):
            click.echo(json.dumps(line, ensure_ascii=False))
    else:
        for i, label in enumerate(labels):
            click.echo(_hits_table(result, i, label))


def result_records(result: SearchResult, labels: Sequence[str]) -> Iterable[dict]:
    """One flat dict per hit: query, rank, id, modality, score, raw_score, (confidence, uncertainty,)
    then the metadata fields."""
    for i, label in enumerate(labels):
        for hit in result.hits(i):
            record = {"query": label, **{k: v for k, v in hit.items() if k != "metadata"}}
            for key, value in hit["metadata"].items():
                record[key if key not in record else f"meta_{key}"] = value
            yield record


@main.command()
@index_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def info(index_path: str, fmt: str) -> None:
    """Show counts per modality, dimension, factory and the fitted statistics."""
    index = MixedIndex.load(index_path)
    std = index.standardizer
    stale = None
    if std is not None:
        try:
            std.check_index(index)
        except SimstdError as exc:
            stale = str(exc)
    if fmt == "json":
        click.echo(json.dumps({
            "index": str(index_path), "dim": index.dim, "factory": index.factory, "model": index.model,
            "ntotal": index.ntotal, "counts": index.counts, "fingerprint": index.fingerprint,
            "standardizer": None if std is None else std.to_dict(), "stale": stale,
        }, indent=2))
        return
    click.echo(f"index        {index_path}")
    click.echo(f"dimension    {index.dim}")
    click.echo(f"factory      {index.factory}")
    click.echo(f"model        {index.model or '-'}")
    click.echo(f"fingerprint  {index.fingerprint[:16]}")
    click.echo(f"items        {index.ntotal}  (" + ", ".join(f"{m}: {n}" for m, n in index.counts.items()) + ")")
    if std is None:
        click.echo(f"standardizer not fitted: run simstd fit --index {index_path}")
    else:
        click.echo("standardizer " + ("STALE: " + stale if stale else "fitted"))
        click.echo(_stats_table(std))


@main.command()
@click.option("--data", type=click.Path(exists=True),
              help="Paired embeddings (2, N, D) .npy, or a folder of them; default: generated data.")
@click.option("-k", default=5, show_default=True, type=click.IntRange(min=1), help="Hits shown for the example query.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the A/B split (and generated data).")
@click.option("--modalities", default="image,text", show_default=True,
              help="Names of modality [0] and [1] of the paired data.")
def demo(data: str | None, k: int, seed: int, modalities: str) -> None:
    """Run the whole job offline: build a mixed index, fit, compare raw and standardized."""
    if data is None:
        files: list[tuple[str, np.ndarray, list | None]] = [
            ("generated (1000 pairs, dim 512, CLIP-like modality gap)", synthetic_pairs(1000, seed=seed), None)
        ]
    else:
        paths = sorted(Path(data).glob("*.npy")) if Path(data).is_dir() else [Path(data)]
        if not paths:
            raise SimstdError(f"{data} holds no .npy files; pass a (2, N, D) .npy file or a folder of them")
        files = [(p.name, load_pairs(p), _row_metadata(p)) for p in paths]
    # Show the example query on data with real payloads when there is some.
    example = next((n for n, f in enumerate(files) if f[2] is not None), 0)
    labels = tuple(modalities.split(","))
    if len(labels) != 2:
        raise SimstdError(f"--modalities {modalities!r} must name two modalities, e.g. image,text")
    rows = [_demo_one(name, pairs, meta, k=k, seed=seed, show_example=(n == example), modalities=labels)
            for n, (name, pairs, meta) in enumerate(files)]
    click.echo("\nCross-modal Recall@k on the mixed protocol (half the corpus shares the query's modality):")
    click.echo(_table(["data", "R@1 raw", "R@1 std", "R@10 raw", "R@10 std", "R@20 raw", "R@20 std"], rows))


def _row_metadata(path: Path) -> list | None:
    # The shared feature files ship row metadata beside them as <stem>_*meta.json.
    found = sorted(path.parent.glob(f"{path.stem}_*meta.json"))
    if not found:
        return None
    try:
        meta = json.loads(found[0].read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    ok = isinstance(meta, list) and all(isinstance(r, dict) for r in meta)
    return meta if ok else None


def _demo_one(name: str, pairs: np.ndarray, meta: list | None, k: int, seed: int, show_example: bool,
              modalities: tuple[str, str]) -> list:
    split = mixed_split(pairs, modalities, seed=seed)
    m0, m1 = modalities
    corpus_meta = {  # without payloads, name the pair each item comes from
        m0: [{"text": f"{m0} of pair {i}"} for i in split.rows_a],
        m1: [{"text": f"{m1} of pair {i}"} for i in split.rows_b],
    }
    if meta is not None:
        corpus_meta = {
            m0: [{"url": meta[i].get("coco_url"), "image_id": meta[i].get("image_id")} for i in split.rows_a],
            m1: [{"caption": meta[i].get("caption")} for i in split.rows_b],
        }
    index = MixedIndex.from_arrays(split.corpus, metadata=corpus_meta)
    index.standardizer = Standardizer().fit(index)
    kmax = min(20, index.ntotal)
    recalls = {}
    for raw in (True, False):
        hits = []
        for qm, q in split.queries.items():
            ids = index.search(q, qm, kmax, raw=raw).ids
            hits.append(ids == split.gold[qm][:, None])
        found = np.vstack(hits)
        recalls[raw] = [found[:, :c].any(axis=1).mean() for c in (1, 10, 20)]
    if show_example:
        click.echo(f"data: {name}")
        click.echo(f"index: {', '.join(f'{n} {m}' for m, n in index.counts.items())} items; "
                   "standardizer fitted on pseudo positives of the indexed items (no labels)")
        click.echo(_stats_table(index.standardizer))
        q = split.queries[m1][:1]
        gold = split.gold[m1][0]
        caption = meta[int(split.rows_a[0])].get("caption") if meta else f"{m1} of pair {split.rows_a[0]}"
        for raw in (True, False):
            result = index.search(q, m1, k, raw=raw)
            title = "ranked by raw cosine" if raw else "ranked by standardized score"
            click.echo(_hits_table(result, 0, f"{caption!r} ({title}; its {m0} is id {gold})"))
    fmt = lambda v: f"{v:.3f}"  # noqa: E731
    r_raw, r_std = recalls[True], recalls[False]
    return [name] + [fmt(x) for pair in zip(r_raw, r_std) for x in pair]


# ------------------------------------------------------------------ formatting
def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _stats_table(std: Standardizer) -> str:
    rows = [[r["query_modality"], r["target_modality"], r["n"], f"{r['mean']:.4f}", f"{r['std']:.4f}"]
            for r in std.table()]
    return _table(["query", "target", "n", "mean", "std"], rows)


def _payload(meta: dict) -> str:
    for key in PAYLOAD_FIELDS:
        if meta.get(key):
            return str(meta[key])
    return json.dumps(meta, ensure_ascii=False) if meta else ""


def _hits_table(result: SearchResult, i: int, label: str) -> str:
    width = shutil.get_terminal_size((100, 20)).columns
    rows, header = [], ["rank", "z-score", "cosine", "modality", "id", "item"]
    hits = result.hits(i)
    for h in hits:
        rows.append([h["rank"], f"{h['score']:.3f}", f"{h['raw_score']:.3f}", h["modality"], h["id"],
                     _payload(h["metadata"])])
    if result.confidence is not None:  # the label-free posterior share of each hit
        header.insert(3, "conf")
        rows = [r[:3] + [f"{h['confidence']:.3f}"] + r[3:] for r, h in zip(rows, hits)]
    if not result.standardized:  # the score is the cosine: show it once
        header.pop(1)
        rows = [r[:1] + r[2:] for r in rows]
    body = _table(header, rows)
    clipped = "\n".join(line if len(line) <= width else line[: width - 1] + "…" for line in body.splitlines())
    return f"\nquery: {label}\n{clipped}"


def _echo_counts(index: MixedIndex, what: str) -> None:
    counts = ", ".join(f"{n} {m}" for m, n in index.counts.items())
    click.echo(f"{what}: {counts} (dim {index.dim}, {index.factory})", err=True)


# ------------------------------------------------------------ evaluation
def _two_modalities(value: str) -> tuple[str, str]:
    labels = tuple(x.strip() for x in value.split(","))
    if len(labels) != 2 or labels[0] == labels[1]:
        raise SimstdError(f"--modalities {value!r} must name two different modalities, e.g. image,text")
    return check_label(labels[0]), check_label(labels[1])


def _method_list(value: str) -> list[str]:
    from .methods import make_method

    names = [x.strip() for x in value.split(",") if x.strip()]
    if not names:
        raise SimstdError("--methods is empty; list method names separated by commas (see --list-methods)")
    for name in names:
        make_method(name)
    return names


def _list_methods(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from .methods import BASES, DESCRIPTIONS, WRAPPERS

    click.echo("Methods (simstd eval --methods a,b,...):")
    for name in BASES:
        click.echo(f"  {name:20s} {DESCRIPTIONS.get(name, '')}")
    click.echo("Re-scoring on top of a base, WRAPPER+BASE (WRAPPER alone = on raw cosine):")
    for name in WRAPPERS:
        click.echo(f"  {name:20s} {DESCRIPTIONS.get(name, '')}")
    click.echo("Add [index] to nnn/qb-norm/csls to use the indexed items instead of a query log as the bank.")
    ctx.exit()


@main.command("eval")
@click.argument("pairs", required=False, type=click.Path(dir_okay=False))
@click.argument("second", required=False, type=click.Path(dir_okay=False))
@click.option("--data", "data", type=click.Path(dir_okay=False), default=None,
              help="Paired embeddings (2, N, D) .npy: the same as the PAIRS argument.")
@click.option("--index", "index_path", type=click.Path(dir_okay=False), default=None,
              help="Evaluate an index built with `simstd build` (with --queries, --query-modality, --qrels).")
@click.option("--queries", type=click.Path(dir_okay=False), help="Query vectors for --index, (n, dim) .npy.")
@click.option("--query-modality", default=None, help="Modality of --queries (e.g. text).")
@click.option("--qrels", type=click.Path(dir_okay=False),
              help="Ground truth for --index: lines 'query_row corpus_id' (several per query allowed), "
                   ".json {row: [ids]} or .npy (P, 2).")
@click.option("--modalities", default="image,text", show_default=True,
              help="Names of modality [0] and [1] of paired data.")
@click.option("--methods", default=None, help="Comma-separated methods (default: all; see --list-methods).")
@click.option("--seeds", default=5, show_default=True, type=click.IntRange(min=1),
              help="Number of seeds (A/B splits and query folds).")
@click.option("--seed-start", default=0, show_default=True, type=int, help="First seed.")
@click.option("--folds", default=2, show_default=True, type=click.IntRange(min=2),
              help="Cross-fitting folds for methods that use a query log.")
@click.option("--protocol", type=click.Choice(["all", "mixed", "plain"]), default="all", show_default=True,
              help="Paired data: the mixed-modality protocol, the one-modality ones, or both.")
@click.option("--json", "fmt", flag_value="json", help="Print the full results as JSON.")
@click.option("--markdown", "fmt", flag_value="markdown", help="Print Markdown tables.")
@click.option("--list-methods", is_flag=True, expose_value=False, is_eager=True, callback=_list_methods,
              help="List the methods and exit.")
def eval_command(pairs: str | None, second: str | None, data: str | None, index_path: str | None, queries: str | None,
                 query_modality: str | None, qrels: str | None, modalities: str, methods: str | None,
                 seeds: int, seed_start: int, folds: int, protocol: str, fmt: str | None) -> None:
    """Compare score post-processing methods on paired embeddings or an index.

    PAIRS is a (2, N, D) .npy (row i of [0] paired with row i of [1]), or give
    two aligned (N, D) files PAIRS SECOND. Reports Recall@1/5/10/20, mAP@R,
    R-Precision, NDCG@10, the share of the other modality among the top 10,
    and R@20 as a fraction of the ceiling (ranking the gold's modality only),
    as mean over seeds (± std).
    """
    from .evaluation import index_task, load_qrels, run_pairs, run_task
    from .methods import DEFAULT_METHODS

    if data is not None:
        if pairs is not None:
            raise SimstdError("give the paired embeddings once: as PAIRS or as --data, not both")
        pairs = data

    names = _method_list(methods) if methods else list(DEFAULT_METHODS)
    seed_list = list(range(seed_start, seed_start + seeds))
    if index_path is not None:
        if pairs is not None:
            raise SimstdError("give either paired embeddings (PAIRS) or --index, not both")
        missing = [o for o, v in (("--queries", queries), ("--query-modality", query_modality), ("--qrels", qrels))
                   if v is None]
        if missing:
            raise SimstdError(f"--index needs {', '.join(missing)} (query vectors, their modality, ground truth)")
        index = MixedIndex.load(index_path, load_standardizer=False)
        task = index_task(index, load_npy(queries, "--queries"), check_label(query_modality), load_qrels(qrels))
        report = run_task(task, data=Path(index_path).name, methods=names, seeds=seed_list, folds=folds)
    else:
        if pairs is None:
            raise SimstdError("nothing to evaluate: pass PAIRS.npy (2, N, D), two aligned files, "
                              "or --index db.faiss --queries q.npy --query-modality text --qrels gold.tsv")
        if any(v is not None for v in (queries, query_modality, qrels)):
            raise SimstdError("--queries, --query-modality and --qrels go with --index, not with paired data")
        data = load_pairs(pairs, second)
        protocols = ("mixed", "plain") if protocol == "all" else (protocol,)
        name = Path(pairs).name if second is None else f"{Path(pairs).name}+{Path(second).name}"
        report = run_pairs(data, data=name, modalities=_two_modalities(modalities), methods=names,
                           seeds=seed_list, folds=folds, protocols=protocols)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    elif fmt == "markdown":
        click.echo(report.to_markdown())
    else:
        click.echo(report.to_text())


@main.command("plot")
@click.argument("pairs", type=click.Path(dir_okay=False))
@click.argument("second", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "-o", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the PNG files.")
@click.option("--kind", default="hist,share,recall", show_default=True,
              help="Plots to draw: hist (score histograms), share (modality share vs k), recall (Recall@k).")
@click.option("--modalities", default="image,text", show_default=True,
              help="Names of modality [0] and [1] of the paired data.")
@click.option("--methods", default=None, help="Methods for share/recall (default: a readable subset).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the A/B split (hist, share).")
@click.option("--seeds", default=5, show_default=True, type=click.IntRange(min=1),
              help="Seeds averaged in the recall curves.")
def plot_command(pairs: str, second: str | None, out_dir: str, kind: str, modalities: str, methods: str | None,
                 seed: int, seeds: int) -> None:
    """Draw PNG plots of the modality gap and of the methods (needs simstd[plot])."""
    from .evaluation import run_pairs
    from .plotting import DEFAULT_PLOT_METHODS, plot_modality_share, plot_recall_curves, plot_score_histograms

    kinds = [k.strip() for k in kind.split(",") if k.strip()]
    unknown = set(kinds) - {"hist", "share", "recall"}
    if unknown or not kinds:
        raise SimstdError(f"--kind takes hist, share and/or recall (comma-separated), got {kind!r}")
    names = _method_list(methods) if methods else list(DEFAULT_PLOT_METHODS)
    labels = _two_modalities(modalities)
    data = load_pairs(pairs, second)
    stem = Path(pairs).stem
    out = Path(out_dir)
    written = []
    if "hist" in kinds:
        written.append(plot_score_histograms(data, out / f"{stem}_hist.png", modalities=labels, seed=seed))
    if "share" in kinds:
        written.append(plot_modality_share(data, out / f"{stem}_share.png", methods=names, modalities=labels,
                                           seed=seed))
    if "recall" in kinds:
        report = run_pairs(data, data=stem, modalities=labels, methods=names, seeds=range(seeds),
                           protocols=("mixed",))
        written.append(plot_recall_curves([report], out / f"{stem}_recall.png"))
    for path in written:
        click.echo(f"wrote {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
