"""``simstd check`` verifies every file of an index; ``simstd rollback`` undoes
the last write (docs/reliability.md)."""
from __future__ import annotations

import json

import click

from ..errors import SimstdError
from ..index import MixedIndex
from ..storage import rollback as rollback_version
from ..storage.layout import check_index
from ._common import index_option, lock_timeout_option, main


@main.command()
@index_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def check(index_path: str, fmt: str) -> None:
    """Verify the index: checksums of every file, then their content.

    Prints one line per problem and exits 1 if there is any. Reads only; takes
    no lock (a concurrent writer's new version is not checked).
    """
    report = check_index(index_path, MixedIndex)
    if fmt == "json":
        click.echo(json.dumps({"index": report.path, "version": report.version, "ok": report.ok,
                               "files": report.files, "problems": report.problems, "notes": report.notes},
                              indent=2))
    else:
        for problem in report.problems:
            click.echo(f"problem: {problem}")
        for note in report.notes:
            click.echo(f"note: {note}")
        if report.ok:
            total = sum(report.files.values())
            click.echo(f"{index_path}: ok (version {report.version}; {len(report.files)} files, {total} bytes "
                       "verified: checksums, FAISS shards, SQLite integrity, fitted statistics)")
    if not report.ok:
        raise SimstdError(f"{index_path}: {len(report.problems)} problem(s) found; restore the named file(s) "
                          "from a backup, or rebuild the index with `simstd build`")


@main.command()
@index_option
@lock_timeout_option
def rollback(index_path: str, lock_timeout: float) -> None:
    """Make the previous version current again: undoes the last build, add or fit.

    The previous version is kept until the next write; it is checked file by
    file before it becomes current. Use it when `simstd check` finds the
    current version damaged, or to undo a write.
    """
    manifest = rollback_version(index_path, lock_timeout=lock_timeout)
    report = check_index(index_path, MixedIndex)
    click.echo(f"{index_path} is back at version {manifest.version} ({manifest.created}): "
               + ", ".join(f"{n} {m}" for m, n in manifest.index.get("counts", [])), err=True)
    if not report.ok:
        raise SimstdError("the restored version has problems too: " + "; ".join(report.problems))
