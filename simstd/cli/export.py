"""``simstd export``: fitted statistics as OpenSearch or Vespa configuration.

A thin layer over :mod:`simstd.engines.export`; the fragments were not run
against a live server (see docs/engines.md).
"""
from __future__ import annotations

from pathlib import Path

import click

from ..engines import export as fragments
from ..errors import SimstdError
from ..fileio import atomic_path
from ..standardizer import Standardizer
from ._common import main


@main.command("export")
@click.option("--to", "target", required=True, type=click.Choice(["opensearch", "vespa"]), help="Engine.")
@click.option("--standardizer", "std_path", type=click.Path(dir_okay=False),
              help="A fitted standardizer JSON (db.standardizer.json or Standardizer.save).")
@click.option("--index", "index_path", envvar="SIMSTD_INDEX", type=click.Path(dir_okay=False),
              help="Or an index whose fitted standardizer to export.")
@click.option("--query-modality", required=True, help="Modality of the queries (e.g. text).")
@click.option("-k", default=10, show_default=True, type=click.IntRange(min=1), help="Hits per query.")
@click.option("--vector-field", default="embedding", show_default=True, help="The engine's vector field.")
@click.option("--modality-field", default="modality", show_default=True, help="The engine's modality field.")
@click.option("--space-type", default="cosinesimil", show_default=True, type=click.Choice(fragments.SPACE_TYPES),
              help="OpenSearch k-NN space type of the vector field.")
@click.option("--clip", default=fragments.DEFAULT_CLIP, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="OpenSearch: z in [-clip, clip] is mapped exactly (score = z / (2 clip) + 0.5).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Write the JSON here (default: stdout).")
def export(target: str, std_path: str | None, index_path: str | None, query_modality: str, k: int,
           vector_field: str, modality_field: str, space_type: str, clip: float, out: str | None) -> None:
    """Write OpenSearch or Vespa fragments that rank by the fitted standardized score.

    \b
    simstd export --to opensearch --index db.faiss --query-modality text -o opensearch.json
    simstd export --to vespa --standardizer db.standardizer.json --query-modality text
    """
    if (std_path is None) == (index_path is None):
        raise SimstdError("pass either --standardizer FILE or --index FILE (the fit to export)")
    if std_path is not None:
        std = Standardizer.load(std_path)
    else:
        from ..index import MixedIndex  # lazy: loads FAISS

        std = MixedIndex.load(index_path).standardizer
        if std is None:
            raise SimstdError(f"{index_path} has no fitted standardizer: run `simstd fit --index {index_path}` first")
    if target == "opensearch":
        result = fragments.opensearch(std, query_modality, k=k, vector_field=vector_field,
                                      modality_field=modality_field, space_type=space_type, clip=clip)
    else:
        result = fragments.vespa(std, query_modality, k=k, vector_field=vector_field, modality_field=modality_field)
    text = fragments.to_json(result)
    if out is None:
        click.echo(text, nl=False)
        return
    with atomic_path(out) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    click.echo(f"wrote {out} ({target}, {query_modality!r} queries; not run against a live server)", err=True)
