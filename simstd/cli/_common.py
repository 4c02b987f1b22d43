"""Shared parts of the ``simstd`` command line: the command group, the
``--index`` option, input readers and the tables printed for people.

Every simstd error is a :class:`~simstd.errors.SimstdBaseError`; the group below
prints its message and exits with status 1, without a traceback. Output for
machines is JSON lines (``--format jsonl``), for people a table.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import click

from ..errors import SimstdBaseError, SimstdError
from ..index import MixedIndex, SearchResult
from ..standardizer import Standardizer
from ..stats import SAMPLE_AUTO
from ..storage.lock import DEFAULT_TIMEOUT
from ..validation import check_label, load_npy

INDEX_ENV = "SIMSTD_INDEX"
#: Metadata fields shown in the table's "item" column, in order of preference.
PAYLOAD_FIELDS = ("text", "caption", "title", "path", "url", "coco_url")


class SampleSize(click.ParamType):
    """A sample size: a count (0 = all) or ``auto`` (sized by the precision it buys)."""

    name = "N|auto"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
        else:
            text = str(value).strip().lower()
        if text == SAMPLE_AUTO:
            return SAMPLE_AUTO
        if text.isdigit():
            return int(text)
        self.fail(f"{value!r} is not a count of pseudo queries (0 = all) or 'auto'", param, ctx)


SAMPLE = SampleSize()


class SimstdGroup(click.Group):
    """Turns every simstd error (SimstdBaseError: bad input, a lock timeout, a concurrent
    write) and file-system errors into a clean message and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except BrokenPipeError:  # `simstd query ... | head -1`: the reader has all it wants
                _silence_stdout()
                raise click.exceptions.Exit(0) from None
            except SimstdBaseError as exc:
                raise click.ClickException(str(exc)) from None
            except OSError as exc:
                raise click.ClickException(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


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


def index_option(f=None, *, required: bool = True):  # noqa: ANN001, ANN201
    if f is None:  # @index_option(required=False)
        return lambda g: index_option(g, required=required)
    return click.option(
        "--index",
        "index_path",
        envvar=INDEX_ENV,
        show_envvar=True,
        required=required,
        type=click.Path(dir_okay=False),
        help="Index file written by `simstd build` (e.g. db.faiss).",
    )(f)


def lock_timeout_option(f):  # noqa: ANN001, ANN201
    return click.option(
        "--lock-timeout",
        default=DEFAULT_TIMEOUT,
        show_default=True,
        type=click.FloatRange(min=0),
        metavar="SECONDS",
        help="Wait this long for another writer of the index to finish (0: fail at once if one is writing).",
    )(f)


def keep_option(f):  # noqa: ANN001, ANN201
    return click.option(
        "--keep",
        default=None,
        type=click.IntRange(min=2),
        metavar="N",
        help="Versions of the index to keep from now on, the current one included (recorded in the index; "
             "default 2): `simstd rollback` walks back through them, `simstd versions` lists them.",
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
    """Read one JSON object per line (UTF-8); errors name the line."""
    path = Path(path)
    if not path.exists():
        raise SimstdError(f"metadata file {path} does not exist; check the path")
    records = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise SimstdError(
                    f"{path}:{lineno} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "save the metadata as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from None
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
    # Before any array is checked or normalised (notes included): no index exists yet to compare with.
    dims = {m: arrays[m].shape[-1] for m in labels if arrays[m].ndim in (1, 2)}
    if len(set(dims.values())) > 1:
        listed = ", ".join(f"{p} ({m}) has dimension {dims[m]}" for m, p in files if m in dims)
        raise SimstdError(f"the embedding files disagree: {listed}; every modality must be embedded by the same "
                          "model, into one space of one dimension")
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


def shown_cosine(value: float) -> float:
    """A cosine as shown to people and machines: float32 rounding of unit
    vectors gives 1.0003; the search keeps the raw score, the output clips it."""
    return min(1.0, max(-1.0, float(value)))


def result_records(result: SearchResult, labels: Sequence[str]) -> Iterable[dict]:
    """One flat dict per hit: query, rank, id, modality, score, raw_score, (confidence, uncertainty,
    p_match,) then the metadata fields."""
    for i, label in enumerate(labels):
        for hit in result.hits(i):
            record = {"query": label, **{k: v for k, v in hit.items() if k != "metadata"}}
            record["raw_score"] = shown_cosine(record["raw_score"])
            for key, value in hit["metadata"].items():
                record[key if key not in record else f"meta_{key}"] = value
            yield record



# ------------------------------------------------------------------ formatting
def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


#: The legend printed under every table of fitted pairs (the README is not at hand when it is read).
STATS_LEGEND = ("n: positive pairs; mean, std: of their scores; ± std: sampling error of the pair's mean and std "
                "(the larger), in units of its std (–: unknown, e.g. after a merge)")


def _method_lines(std: Standardizer, indent: int = 13) -> str:
    """Which method is fitted, with its settings and the work it implements (``Standardizer.describe``)."""
    d = std.describe()
    rows = [("method", d["summary"]), ("cite", d["citation"])]
    if "strata" in d:  # a stratified fit: its strata, and every one the sharing rule merged
        rows += [("strata", d["strata"])] + [("shares", note) for note in d["strata_shared"]]
    return "\n".join(f"{key:<{indent - 1}} {value}" for key, value in rows)


#: The legend's line for a fit that ranks with a per-pair scale of its own (the hubness default).
SCALE_LEGEND = ("scale: the pair's scale the ranking divides by (the tail of its cosines); ± scale: its sampling "
                "error, in units of itself")


def _stats_table(std: Standardizer) -> str:
    """The fitted pairs; ``± std`` is the larger sampling error of the pair's mean and std, in units of its std.
    A fit whose ranking uses a scale of its own (``scale`` in its rows) shows it and its error too."""
    table = std.table()
    scaled = any("scale" in r for r in table)
    rows = [[r["query_modality"], r["target_modality"], r["n"], f"{r['mean']:.4f}", f"{r['std']:.4f}",
             f"{max(r['se_mean'], r['se_std']):.3f}" if "se_mean" in r else "–"]
            + ([f"{r['scale']:.4f}", f"{r['scale_se']:.3f}" if "scale_se" in r else "–"] if scaled else [])
            for r in table]
    header = ["query", "target", "n", "mean", "std", "± std"] + (["scale", "± scale"] if scaled else [])
    return _table(header, rows) + "\n" + STATS_LEGEND + ("\n" + SCALE_LEGEND if scaled else "")


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
        rows.append([h["rank"], f"{h['score']:.3f}", f"{shown_cosine(h['raw_score']):.3f}", h["modality"], h["id"],
                     _payload(h["metadata"])])
    if result.confidence is not None:  # the label-free posterior share of each hit
        header.insert(3, "conf")
        rows = [r[:3] + [f"{h['confidence']:.3f}"] + r[3:] for r, h in zip(rows, hits)]
    if result.p_match is not None:  # its match probability (label-free or calibrated on gold pairs)
        header.insert(4, "p_match")
        rows = [r[:4] + [f"{h['p_match']:.3f}"] + r[4:] for r, h in zip(rows, hits)]
    if not result.standardized:  # the score is the cosine: show it once
        header.pop(1)
        rows = [r[:1] + r[2:] for r in rows]
    body = _table(header, rows)
    clipped = "\n".join(line if len(line) <= width else line[: width - 1] + "…" for line in body.splitlines())
    return f"\nquery: {label}\n{clipped}"


def _echo_counts(index: MixedIndex, what: str) -> None:
    counts = ", ".join(f"{n} {m}" for m, n in index.counts.items())
    click.echo(f"{what}: {counts} (dim {index.dim}, {index.factory})", err=True)

