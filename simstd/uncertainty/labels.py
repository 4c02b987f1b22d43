"""Gold pairs for calibrating match probabilities (``simstd fit --labels pairs.jsonl``).

One JSON object per line, all lines of one kind:

* ``{"query_id": 12, "target_id": 503}``: stored item 12, used as a query
  (like ``simstd query --like 12``), matches stored item 503;
* ``{"query_vector": [0.01, ...], "query_modality": "text", "target_id": 503}``:
  a query vector that is not stored (e.g. from a query log) matches item 503.

Blank lines are skipped. 10 to 200 pairs are the intended range
(docs/uncertainty.md measures the calibration error against their number).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SimstdError
from ..validation import as_embeddings, check_label

FORMAT_HELP = ('each line is {"query_id": ID, "target_id": ID} or '
               '{"query_vector": [...], "query_modality": "text", "target_id": ID}')


@dataclass
class GoldPairs:
    """Parsed gold pairs: ``target_ids`` with either ``query_ids`` or ``queries`` and their ``query_modalities``."""

    target_ids: np.ndarray
    query_ids: np.ndarray | None = None
    queries: np.ndarray | None = None
    query_modalities: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.target_ids)

    def calibrate_kwargs(self) -> dict:
        """The keyword arguments of :meth:`UncertaintyModel.calibrate` (after the index)."""
        if self.query_ids is not None:
            return {"target_ids": self.target_ids, "query_ids": self.query_ids}
        return {"target_ids": self.target_ids, "queries": self.queries, "query_modality": self.query_modalities}


def _int_id(value: object, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SimstdError(f"{where}: {key} must be a non-negative integer id, got {value!r}; {FORMAT_HELP}")
    return value


def read_gold_pairs(path: str | Path, dim: int | None = None) -> GoldPairs:
    """Read a gold-pairs JSONL file (see the module docstring), with one-line errors naming the line."""
    path = Path(path)
    if not path.is_file():
        raise SimstdError(f"the gold-pairs file {path} does not exist; {FORMAT_HELP}")
    targets, qids, vectors, modalities = [], [], [], []
    kinds = set()
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SimstdError(f"{where} is not JSON ({exc.msg}); {FORMAT_HELP}") from None
            if not isinstance(row, dict) or "target_id" not in row:
                raise SimstdError(f"{where} has no \"target_id\"; {FORMAT_HELP}")
            targets.append(_int_id(row["target_id"], "target_id", where))
            if "query_id" in row:
                kinds.add("id")
                qids.append(_int_id(row["query_id"], "query_id", where))
            elif "query_vector" in row:
                kinds.add("vector")
                vec = row["query_vector"]
                if not isinstance(vec, list) or not vec or not all(
                        isinstance(x, (int, float)) and not isinstance(x, bool) for x in vec):
                    raise SimstdError(f"{where}: query_vector must be a list of numbers; {FORMAT_HELP}")
                if "query_modality" not in row:
                    raise SimstdError(f"{where}: a query_vector needs its \"query_modality\"; {FORMAT_HELP}")
                vectors.append(vec)
                modalities.append(check_label(row["query_modality"], f"{where}: query_modality"))
            else:
                raise SimstdError(f"{where} has neither \"query_id\" nor \"query_vector\"; {FORMAT_HELP}")
            if len(kinds) > 1:
                raise SimstdError(f"{where} mixes query ids and query vectors in one file; use one kind per file")
    if not targets:
        raise SimstdError(f"the gold-pairs file {path} holds no pairs; {FORMAT_HELP}")
    if "id" in kinds:
        return GoldPairs(np.asarray(targets, dtype=np.int64), query_ids=np.asarray(qids, dtype=np.int64))
    lengths = {len(v) for v in vectors}
    if len(lengths) > 1:
        raise SimstdError(f"the query vectors in {path} have different lengths {sorted(lengths)}")
    X = as_embeddings(np.asarray(vectors, dtype=np.float32), f"query vectors of {path}", dim)
    return GoldPairs(np.asarray(targets, dtype=np.int64), queries=X, query_modalities=np.asarray(modalities))
