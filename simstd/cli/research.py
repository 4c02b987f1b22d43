"""Research commands: demo, eval, plot (paired embeddings, no index needed)."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..datasets import load_pairs, mixed_split, synthetic_pairs
from ..errors import SimstdError
from ..index import MixedIndex
from ..standardizer import Standardizer
from ..validation import check_label, load_npy
from ._common import _hits_table, _stats_table, _table, main


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


# ------------------------------------------------------------ evaluation
def _two_modalities(value: str) -> tuple[str, str]:
    labels = tuple(x.strip() for x in value.split(","))
    if len(labels) != 2 or labels[0] == labels[1]:
        raise SimstdError(f"--modalities {value!r} must name two different modalities, e.g. image,text")
    return check_label(labels[0]), check_label(labels[1])


def _method_list(value: str) -> list[str]:
    from ..methods import make_method

    names = [x.strip() for x in value.split(",") if x.strip()]
    if not names:
        raise SimstdError("--methods is empty; list method names separated by commas (see --list-methods)")
    for name in names:
        make_method(name)
    return names


def _list_methods(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from ..methods import BASES, DESCRIPTIONS, WRAPPERS

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
@click.option("--protocol", type=click.Choice(["all", "mixed", "plain", "universal"]), default="all",
              show_default=True,
              help="Paired data: mixed (all gold in the other modality), plain (one-modality search), universal "
                   "(topically relevant items in both modalities; needs --relevance or caption metadata beside "
                   "PAIRS), or all of those the data allows.")
@click.option("--relevance", "relevance_path", type=click.Path(dir_okay=False), default=None,
              help="Topical relevance between pairs for --protocol universal: caption metadata .json (a list with "
                   "'all_captions' per pair) or one label per pair .npy. Default: <stem>_*meta.json beside PAIRS.")
@click.option("--json", "fmt", flag_value="json", help="Print the full results as JSON.")
@click.option("--markdown", "fmt", flag_value="markdown", help="Print Markdown tables.")
@click.option("--list-methods", is_flag=True, expose_value=False, is_eager=True, callback=_list_methods,
              help="List the methods and exit.")
def eval_command(pairs: str | None, second: str | None, data: str | None, index_path: str | None, queries: str | None,
                 query_modality: str | None, qrels: str | None, modalities: str, methods: str | None,
                 seeds: int, seed_start: int, folds: int, protocol: str, relevance_path: str | None,
                 fmt: str | None) -> None:
    """Compare score post-processing methods on paired embeddings or an index.

    PAIRS is a (2, N, D) .npy (row i of [0] paired with row i of [1]), or give
    two aligned (N, D) files PAIRS SECOND. Reports Recall@1/5/10/20, mAP@R,
    R-Precision, NDCG@10, the share of the other modality among the top 10,
    R@20 as a fraction of the ceiling (ranking the gold's modality only) and
    its excess above the modality-bias frontier, as mean over seeds (± std).
    The universal protocol reports NDCG@10 and the recall of same-modality
    and of cross-modal relevant items.
    """
    from ..evaluation import index_task, load_qrels, run_pairs, run_task
    from ..methods import DEFAULT_METHODS

    if data is not None:
        if pairs is not None:
            raise SimstdError("give the paired embeddings once: as PAIRS or as --data, not both")
        pairs = data

    names = _method_list(methods) if methods else list(DEFAULT_METHODS)
    seed_list = list(range(seed_start, seed_start + seeds))
    if index_path is not None:
        if pairs is not None:
            raise SimstdError("give either paired embeddings (PAIRS) or --index, not both")
        if relevance_path is not None or protocol != "all":
            raise SimstdError("--protocol and --relevance go with paired embeddings; --index uses its --qrels")
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
        from ..evaluation.relevance import find_caption_metadata, load_relevance

        data = load_pairs(pairs, second)
        if relevance_path is None and protocol in ("all", "universal"):
            found = find_caption_metadata(pairs)
            relevance_path = str(found) if found is not None else None
        relevance = load_relevance(relevance_path, data.shape[1]) if relevance_path is not None else None
        if protocol == "universal" and relevance is None:
            raise SimstdError("--protocol universal needs topical relevance between the pairs: pass --relevance "
                              "captions.json (a list with 'all_captions' per pair) or labels.npy (one per pair)")
        if protocol == "all":
            protocols = ("mixed", "plain") + (("universal",) if relevance is not None else ())
        else:
            protocols = (protocol,)
        name = Path(pairs).name if second is None else f"{Path(pairs).name}+{Path(second).name}"
        report = run_pairs(data, data=name, modalities=_two_modalities(modalities), methods=names,
                           seeds=seed_list, folds=folds, protocols=protocols, relevance=relevance)
    if fmt == "json":
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    elif fmt == "markdown":
        click.echo(report.to_markdown())
    else:
        click.echo(report.to_text())


#: Fewest pairs `simstd plot` draws from: below, a modality pair has one or two
#: pseudo positives (no spread to standardize with) or no gold pair at all.
MIN_PLOT_PAIRS = 10


@main.command("plot")
@click.argument("pairs", type=click.Path(dir_okay=False))
@click.argument("second", required=False, type=click.Path(dir_okay=False))
@click.option("--out", "-o", "out_dir", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the PNG files.")
@click.option("--kind", default="hist,share,recall,frontier", show_default=True,
              help="Plots to draw: hist (score histograms), share (modality share vs k), recall (Recall@k), "
                   "frontier (the modality-bias frontier with every method as a point), reliability (the "
                   "reliability diagram of the top-1 hit's p_match, label-free and calibrated on 50 of the "
                   "file's own pairs, --seeds pooled).")
@click.option("--modalities", default="image,text", show_default=True,
              help="Names of modality [0] and [1] of the paired data.")
@click.option("--methods", default=None, help="Methods for share/recall (default: a readable subset).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the A/B split (hist, share).")
@click.option("--seeds", default=5, show_default=True, type=click.IntRange(min=1),
              help="Seeds averaged in the recall curves.")
def plot_command(pairs: str, second: str | None, out_dir: str, kind: str, modalities: str, methods: str | None,
                 seed: int, seeds: int) -> None:
    """Draw PNG plots of the modality gap and of the methods (needs simstd[plot])."""
    from ..evaluation import run_pairs
    from ..plotting import (DEFAULT_PLOT_METHODS, plot_frontier, plot_modality_share, plot_recall_curves,
                            plot_reliability_diagram, plot_score_histograms, reliability_curves)

    kinds = [k.strip() for k in kind.split(",") if k.strip()]
    unknown = set(kinds) - {"hist", "share", "recall", "frontier", "reliability"}
    if unknown or not kinds:
        raise SimstdError(f"--kind takes hist, share, recall, frontier and/or reliability (comma-separated), "
                          f"got {kind!r}")
    names = _method_list(methods) if methods else list(DEFAULT_PLOT_METHODS)
    labels = _two_modalities(modalities)
    data = load_pairs(pairs, second)
    if data.shape[1] < MIN_PLOT_PAIRS:  # the mixed split leaves each modality too few items to fit and draw
        raise SimstdError(f"{pairs} holds {data.shape[1]} pairs; plot needs at least {MIN_PLOT_PAIRS} "
                          "(half of them become the mixed corpus, the rest the queries)")
    stem = Path(pairs).stem
    out = Path(out_dir)
    written = []
    if "hist" in kinds:
        written.append(plot_score_histograms(data, out / f"{stem}_hist.png", modalities=labels, seed=seed))
    if "share" in kinds:
        written.append(plot_modality_share(data, out / f"{stem}_share.png", methods=names, modalities=labels,
                                           seed=seed))
    if "recall" in kinds or "frontier" in kinds:
        report = run_pairs(data, data=stem, modalities=labels, methods=names, seeds=range(seeds),
                           protocols=("mixed",))
        if "recall" in kinds:
            written.append(plot_recall_curves([report], out / f"{stem}_recall.png"))
        if "frontier" in kinds:
            written.append(plot_frontier([report], out / f"{stem}_frontier.png"))
    if "reliability" in kinds:  # the mixed protocol: every query's partner is indexed
        curves = reliability_curves(data, seeds=range(seeds))
        written.append(plot_reliability_diagram(curves, out / f"{stem}_reliability.png",
                                                title=f"{stem}: top-1 hit, mixed protocol, {seeds} seeds pooled"))
    for path in written:
        click.echo(f"wrote {path}")
