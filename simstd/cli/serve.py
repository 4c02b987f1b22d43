"""``simstd serve``: the HTTP service and web page (simstd.serve), from the command line."""
from __future__ import annotations

import click

from ._common import index_option, main


@main.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. The service has no authentication: keep it on loopback "
                   "unless a proxy in front of it controls access.")
@click.option("--port", default=1234, show_default=True, type=click.IntRange(1, 65535),
              help="TCP port (clip-retrieval's clip back uses 1234 too).")
@click.option("--no-encoder", is_flag=True,
              help="Do not load the index's encoder: serve vector and id queries only (no torch needed).")
@click.option("--device", default="cpu", show_default=True, help="Torch device of the encoder.")
@click.option("--params", default=None, help="FAISS search parameters, e.g. nprobe=16 or efSearch=128.")
@click.option("--name", default=None, help="Index name for clip-retrieval clients (default: the file's stem).")
@click.option("--max-k", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Most results one query may ask for.")
@click.option("--max-body-mb", default=16.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Largest request body (uploads included), in MiB.")
@click.option("--cors-origin", multiple=True, metavar="ORIGIN",
              help="Allow browser pages from ORIGIN (e.g. http://localhost:3000) to call the API; repeatable. "
                   "Off by default.")
@click.option("--reload-interval", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between checks for a new index version (0 = no hot reload).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(index_path: str, host: str, port: int, no_encoder: bool, device: str, params: str | None,
          name: str | None, max_k: int, max_body_mb: float, cors_origin: tuple[str, ...],
          reload_interval: float, log_level: str) -> None:
    """Serve the index over HTTP: a JSON API, clip-retrieval's API and a web page.

    \b
    Open http://127.0.0.1:1234/ for the page, /docs for the API.
    A new index version (simstd fit, simstd add) is picked up while serving.
    """
    from ..serve import create_app, run  # lazy: the serve extra is optional

    app = create_app(index_path, encoder=None if no_encoder else "auto", device=device, params=params, name=name,
                     max_k=max_k, max_body_bytes=int(max_body_mb * 2**20), cors_origins=cors_origin,
                     reload_interval=reload_interval)
    snap = app.state.holder.current()
    counts = ", ".join(f"{n} {m}" for m, n in snap.index.counts.items())
    click.echo(f"serving {index_path} ({counts}; version {snap.version}) on http://{_url_host(host)}:{port}/",
               err=True)
    if snap.encoder is None:
        click.echo(f"note: text and image queries are off: {snap.encoder_note}", err=True)
    if not snap.standardized:
        click.echo(f"note: the index is not fitted, so only raw scores are served: run simstd fit --index "
                   f"{index_path} (the server picks the fit up)", err=True)
    run(app, host, port, log_level)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
