"""Search-time parameters per (query modality, shard) pair.

Cross-modal graph search needs a wider beam than a search in the query's own
modality (docs/performance.md), so an HNSW shard's ``efSearch`` or an IVF
shard's ``nprobe`` can be set per pair. :class:`PairParams` owns those
settings; they are applied per call as FAISS ``SearchParameters`` (the shards
are not changed) and saved with the index as ``search_params.json``.
"""
from __future__ import annotations

from pathlib import Path

import faiss

from ..engines.faiss import parse_pair_params, search_parameters
from ..errors import CorruptFileError, SimstdError
from ..fileio import check_format, dump_json, read_json
from ..validation import check_label
from .shards import ShardSet

#: The named file of an index version that holds the per-pair search parameters.
SEARCH_PARAMS = "search_params.json"
_FORMAT = "simstd-search-params"


class PairParams:
    """``{(query modality, target): {"efSearch": 256}}`` over a :class:`ShardSet`."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], dict[str, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.values)

    def get(self, query_modality: str, target: str) -> dict[str, int]:
        return dict(self.values.get((query_modality, target), {}))

    def set(self, shards: ShardSet, params: str, query_modality: str | None, target: str | None) -> None:
        """See :meth:`simstd.MixedIndex.set_search_params`."""
        if not isinstance(params, str):
            raise SimstdError(f"search parameters must be a string such as 'efSearch=128', got {params!r}")
        if query_modality is None and target is None:
            space = faiss.ParameterSpace()
            for shard in shards.shards.values():
                try:
                    space.set_index_parameters(shard.index, params)
                except RuntimeError as exc:
                    raise SimstdError(
                        f"invalid FAISS search parameters {params!r} for {shards.factory!r} ({exc})") from None
            names = {item.split("=", 1)[0].strip() for item in params.split(",")}
            for key in list(self.values):
                left = {n: v for n, v in self.values[key].items() if n not in names}
                if left:
                    self.values[key] = left
                else:
                    del self.values[key]
            return
        if query_modality is not None:
            check_label(query_modality, "query modality")
        if target is not None:
            shards.check_modality(target, "target modality")
        parsed = {t: parse_pair_params(params, shards.shards[t], t)
                  for t in ([target] if target else shards.modalities)}
        queries = [query_modality] if query_modality is not None else shards.modalities
        for q in queries:
            for t, values in parsed.items():
                self.values[(q, t)] = {**self.values.get((q, t), {}), **values}

    def as_strings(self) -> dict[tuple[str, str], str]:
        return {key: ",".join(f"{n}={v}" for n, v in values.items()) for key, values in self.values.items()}

    def for_shards(self, shards: ShardSet, query_modality: str | None, names: list[str]) -> list:
        """FAISS ``SearchParameters`` (or None: the shard's own) of each named shard for
        queries of ``query_modality``."""
        if query_modality is None or not self.values:
            return [None] * len(names)
        return [search_parameters(shards.shards[m], self.values.get((query_modality, m))) for m in names]

    # ------------------------------------------------------------ persistence
    def save(self, path: Path) -> bool:
        if not self.values:
            return False
        pairs = [{"query_modality": q, "target": t, "params": dict(v)} for (q, t), v in self.values.items()]
        path.write_text(dump_json({"format": _FORMAT, "format_version": 1, "pairs": pairs}, SEARCH_PARAMS),
                        encoding="utf-8")
        return True

    def load(self, shards: ShardSet, path: Path) -> None:
        fix = "rewrite it with index.set_search_params(...) and save, or delete the version's search parameters"
        data = check_format(read_json(path, "search parameters file", fix), str(path), _FORMAT, 1,
                            "simstd search parameters", fix)
        pairs = data.get("pairs")
        try:
            for pair in pairs:
                q, t = check_label(pair["query_modality"], "query modality"), pair["target"]
                if t not in shards.shards:
                    raise SimstdError(f"unknown target modality {t!r}")
                text = ",".join(f"{n}={v}" for n, v in pair["params"].items())
                self.values[(q, t)] = parse_pair_params(text, shards.shards[t], t)
        except (SimstdError, TypeError, KeyError, AttributeError) as exc:
            raise CorruptFileError(f"{path} holds invalid search parameters ({exc}); {fix}") from None


def shard_search_params(shards: ShardSet, target: str) -> dict[str, int]:
    """A shard's own search parameters (``efSearch`` for HNSW, ``nprobe`` for IVF)."""
    shards.check_modality(target, "target modality")
    inner = faiss.downcast_index(shards.shards[target].index)
    if isinstance(inner, faiss.IndexHNSW):
        return {"efSearch": int(inner.hnsw.efSearch)}
    try:
        return {"nprobe": int(faiss.extract_index_ivf(inner).nprobe)}
    except RuntimeError:
        return {}
