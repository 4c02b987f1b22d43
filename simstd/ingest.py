"""Indexing raw files: a folder of images and a file of texts, embedded with an
encoder into one :class:`~simstd.MixedIndex`.

Resumable: items whose path (images) or source line (texts) the index already
holds are not embedded again, so an interrupted or growing collection is
brought up to date by running the same build again. Bad files are reported and
skipped; they never abort the build.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .encoders import Encoder, encode_image_files, iter_image_files, read_texts
from .errors import SimstdError
from .index import MixedIndex

#: Images embedded per chunk: bounds memory and sets the progress granularity.
CHUNK = 256


@dataclass
class IngestReport:
    """What one ingest run did."""

    added: dict[str, int] = field(default_factory=dict)
    already_indexed: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, why)


def ingest(
    encoder: Encoder,
    *,
    images: str | Path | None = None,
    texts: str | Path | None = None,
    text_field: str = "text",
    index: MixedIndex | None = None,
    factory: str = "Flat",
    progress: bool = False,
) -> tuple[MixedIndex, IngestReport]:
    """Embed the images under ``images`` and the texts in ``texts`` into ``index``
    (a new one with ``factory`` when None); returns the index and a report."""
    if images is None and texts is None:
        raise SimstdError("nothing to index: pass an image folder, a text file, or both")
    if index is None:
        index = MixedIndex(encoder.dim, factory, model=encoder.name)
    elif index.model != encoder.name:
        raise SimstdError(
            f"the index was built with encoder {index.model!r}, not {encoder.name!r}: embeddings of "
            "different models are not comparable; use the same --model/--pretrained or a new --out"
        )
    report = IngestReport()
    if images is not None:
        _ingest_images(encoder, Path(images), index, report, progress)
    if texts is not None:
        _ingest_texts(encoder, Path(texts), text_field, index, report)
    return index, report


def _ingest_images(encoder: Encoder, root: Path, index: MixedIndex, report: IngestReport, progress: bool) -> None:
    paths = iter_image_files(root)  # raises, naming the folder, when it holds no image
    done = index.store.field_values("image", "path")
    todo = [p for p in paths if str(p.resolve()) not in done]
    report.already_indexed["image"] = len(paths) - len(todo)
    named = [p for p in todo if _utf8_name(p)]  # the payload (JSON in SQLite) must be UTF-8
    report.skipped.extend((_shown(p), "file name is not valid UTF-8: rename the file") for p in todo if p not in named)
    todo = named
    added = 0
    bar = _progress(len(todo), "images", progress)
    for start in range(0, len(todo), CHUNK):
        chunk = encode_image_files(encoder, todo[start : start + CHUNK], chunk_size=CHUNK)
        report.skipped.extend((str(p), why) for p, why in chunk.failures)
        if len(chunk.paths):
            index.add(chunk.embeddings, "image", [{"path": str(p.resolve())} for p in chunk.paths])
            added += len(chunk.paths)
        if bar is not None:
            bar.update(len(todo[start : start + CHUNK]))
    if bar is not None:
        bar.close()
    report.added["image"] = added


def _ingest_texts(encoder: Encoder, path: Path, text_field: str, index: MixedIndex, report: IngestReport) -> None:
    records = read_texts(path, field=text_field)
    report.skipped.extend((f"{path}:{line}", why) for line, why in records.skipped)
    source = str(path.resolve())
    done = index.store.field_values("text", "source_line", where=("source", source))
    todo = [(t, n) for t, n in zip(records.texts, records.line_numbers) if n not in done]
    report.already_indexed["text"] = len(records.texts) - len(todo)
    if todo:
        vectors = encoder.encode_texts([t for t, _ in todo])
        index.add(vectors, "text", [{"text": t, "source": source, "source_line": n} for t, n in todo])
    report.added["text"] = len(todo)


def _utf8_name(path: Path) -> bool:
    try:
        str(path.resolve()).encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogates
        return False
    return True


def _shown(path: Path) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _progress(total: int, unit: str, enabled: bool):  # noqa: ANN202
    if not enabled or total == 0:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety; tqdm comes with the clip extra
        return None
    return tqdm(total=total, unit=unit[:-1], desc=f"embedding {unit}")
