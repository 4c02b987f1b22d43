"""The history of an index: which version became current when, and by what action.

``db.faiss.d/history`` gets one line per switch of the current version
(commit, rollback, repair): time, version, action. A damaged handle is
restored to the last version in it that is intact (docs/reliability.md).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..fileio import default_mode
from .lock import store_dir
from .manifest import NAME_RE

HISTORY = "history"


# ------------------------------------------------------------------- history
@dataclass(frozen=True)
class HistoryEntry:
    """One line of ``db.faiss.d/history``: a version became current."""

    time: str
    version: str
    action: str


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _log(path: Path, version: str, action: str) -> None:
    """Append one line to the history, after the rename that made ``version`` current
    (a crash in between leaves the handle intact: the history lags one switch)."""
    line = f"{_now()}\t{version}\t{action}\n".encode()
    fd = os.open(store_dir(path) / HISTORY, os.O_WRONLY | os.O_APPEND | os.O_CREAT, default_mode())
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_history(path: str | Path) -> list[HistoryEntry]:
    """Which version became current when, oldest first (lines that do not parse are skipped)."""
    try:
        text = (store_dir(path) / HISTORY).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    entries = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and NAME_RE.match(parts[1]):
            entries.append(HistoryEntry(*parts))
    return entries


