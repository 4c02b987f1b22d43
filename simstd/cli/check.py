"""``simstd check`` verifies every file of an index and names the one command
that fixes what it finds; ``simstd repair``, ``simstd rollback`` and ``simstd
versions`` recover (docs/reliability.md, "Recovering")."""
from __future__ import annotations

import json
import shlex

import click

from ..errors import SimstdError
from ..index import MixedIndex
from ..storage.layout import check_index
from ..storage.lock import writer_lock
from ..storage.listing import list_versions
from ..storage.recovery import plan_repair, recover
from ..storage.recovery import repair as repair_index
from ..storage.versions import clean_leftovers, get_keep, open_version, set_keep, version_summary
from ._common import _table, index_option, lock_timeout_option, main


def _fix(index_path: str) -> tuple[str | None, str]:
    """The command that fixes what check found, and what it does (or what is lost)."""
    plan = plan_repair(index_path)
    if plan.needed:
        return plan.command(), plan.describe()
    try:  # checksums are right but the content is not: go back to the previous version if there is one
        current = open_version(index_path).manifest
    except SimstdError:
        return None, "restore from a backup or rebuild with `simstd build --overwrite`"
    parent = current.parent
    if parent and any(v.version == parent and v.intact for v in list_versions(index_path)):
        return (f"simstd rollback --index {shlex.quote(index_path)}",
                f"goes back to version {parent}; what version {current.version} changed is lost")
    return None, "no kept version to go back to: restore from a backup or rebuild with `simstd build --overwrite`"


@main.command()
@index_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def check(index_path: str, fmt: str) -> None:
    """Verify the index: checksums of every file, then their content.

    Prints one line per problem, then the one command that fixes them (`simstd
    repair` or `simstd rollback`), and exits 1 if there is any problem. Reads
    only; takes no lock (a concurrent writer's new version is not checked).
    """
    report = check_index(index_path, MixedIndex)
    command, effect = _fix(index_path) if not report.ok else (None, "")
    if fmt == "json":
        click.echo(json.dumps({"index": report.path, "version": report.version, "ok": report.ok,
                               "files": report.files, "problems": report.problems, "notes": report.notes,
                               "fix": command, "fix_effect": effect or None}, indent=2))
    else:
        for problem in report.problems:
            click.echo(f"problem: {problem}")
        for note in report.notes:
            click.echo(f"note: {note}")
        if report.ok:
            total = sum(report.files.values())
            click.echo(f"{index_path}: ok (version {report.version}; {len(report.files)} files, {total} bytes "
                       "verified: checksums, FAISS shards, SQLite integrity, fitted statistics)")
        elif command:
            click.echo(f"fix: {command}   ({effect})")
    if not report.ok:
        fix = f"run `{command}` ({effect})" if command else effect
        raise SimstdError(f"{index_path}: {len(report.problems)} problem(s) found; {fix}")


@main.command()
@index_option
@lock_timeout_option
def repair(index_path: str, lock_timeout: float) -> None:
    """Repair a damaged index without losing anything, when that is possible.

    A damaged handle (db.faiss) is restored to the version that was current
    (by the history); a damaged file of the current version is restored from a
    kept version holding the same bytes (same checksum); a damaged copy of the
    manifest in the version's folder is rewritten from db.faiss. When a file
    has no intact copy, nothing is changed and the message says what is lost
    and which `simstd rollback` goes back to an intact version.
    """
    plan = repair_index(index_path, lock_timeout=lock_timeout)
    if not plan.needed:
        click.echo(f"{index_path}: nothing to repair (every file matches its checksum)", err=True)
    else:
        click.echo(f"repaired {index_path}: {plan.describe(done=True)}", err=True)
    report = check_index(index_path, MixedIndex)
    if not report.ok:
        raise SimstdError("the index still has problems: " + "; ".join(report.problems)
                          + f"; `simstd check --index {shlex.quote(index_path)}` names the fix")


@main.command()
@index_option
@click.option("--to", "to", default=None, metavar="VERSION",
              help="Make this kept version current (its name, or its number: 4 or 000004); "
                   "`simstd versions` lists them.")
@lock_timeout_option
def rollback(index_path: str, to: str | None, lock_timeout: float) -> None:
    """Make the previous version current again: undoes the last build, add or fit.

    The version made current keeps its own previous version, so rollback
    after rollback walks further back (as far as --keep kept versions);
    `--to VERSION` goes to any kept version, forward again included, until
    the next write drops the undone versions. Every file of the version is
    checked before it becomes current. If db.faiss itself is damaged, rollback
    restores the version that was current (like `simstd repair`).
    """
    done = recover(index_path, to=to, lock_timeout=lock_timeout)
    index = shlex.quote(index_path)
    if done.action == "repair":
        click.echo(f"{index_path} was damaged: restored {version_summary(done.manifest)}, {done.note}", err=True)
    else:
        click.echo(f"{index_path} is back at {version_summary(done.manifest)}", err=True)
        if done.replaced is not None and done.replaced.version != done.manifest.version:
            click.echo(f"left {version_summary(done.replaced)}: `simstd rollback --index {index} --to "
                       f"{done.replaced.version}` returns to it (until the next write)", err=True)
        parent = done.manifest.parent
        kept = {v.version for v in list_versions(index_path)}
        if parent and parent in kept:
            click.echo(f"`simstd rollback --index {index}` again goes back to version {parent}", err=True)
        else:
            click.echo("no older version is kept (`simstd rollback` again has nowhere to go)", err=True)
    report = check_index(index_path, MixedIndex)
    if not report.ok:
        raise SimstdError("the restored version has problems too: " + "; ".join(report.problems))


@main.command()
@index_option
@click.option("--keep", default=None, type=click.IntRange(min=2), metavar="N",
              help="Keep N versions from now on (the current one included) and drop the others now.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@lock_timeout_option
def versions(index_path: str, keep: int | None, fmt: str, lock_timeout: float) -> None:
    """List the kept versions: name, when made and last made current, counts, fitted or not, size.

    `*` marks the current one. `simstd rollback --to VERSION` makes one current.
    """
    if keep is not None:
        with writer_lock(index_path, lock_timeout, create=False):
            set_keep(index_path, keep)
            clean_leftovers(index_path)
    rows = list_versions(index_path)
    if not rows:
        raise SimstdError(f"{index_path} keeps no versions (it does not exist, or is in the old single-file layout)")
    if fmt == "json":
        click.echo(json.dumps({"index": index_path, "keep": get_keep(index_path), "versions": [
            {"version": v.version, "current": v.current, "created": v.created, "became_current": v.became_current,
             "counts": dict(v.counts), "fitted": v.fitted, "bytes": v.size, "intact": v.intact} for v in rows]},
            indent=2))
        return
    table = [["*" if v.current else "", v.version, v.created or "?", v.became_current or "-",
              ", ".join(f"{n} {m}" for m, n in v.counts) or "-", "yes" if v.fitted else "no", f"{v.size:,}",
              "ok" if v.intact else "WRONG"] for v in rows]
    click.echo(_table(["", "version", "created", "last current", "items", "fitted", "bytes", "sizes"], table))
    click.echo(f"keep {get_keep(index_path)} (change with --keep N); `simstd rollback --index "
               f"{shlex.quote(index_path)} --to VERSION` makes one current", err=True)
