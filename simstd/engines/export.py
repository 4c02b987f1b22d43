"""Fitted statistics as configuration for engines simstd cannot drive from Python.

OpenSearch and Vespa run as servers; simstd writes the fragments that make
them rank by the paper's standardized score (Yamashita, Shirafuji and Saito,
2025) from their documented formulas. These fragments were NOT run against a
live OpenSearch or Vespa here: the tests re-evaluate the formulas in Python
(:func:`opensearch_scores`, :func:`vespa_scores`) and check that they give the
standardized order.

OpenSearch (3.2+, neural-search): its ``z_score`` normalizer uses each result
window's own statistics, so fitted ones go in through ``min_max`` instead. A
``hybrid`` query has one k-NN subquery per target modality (filtered on the
modality field); the search pipeline's ``min_max`` normalization gets, per
subquery, ``lower_bounds``/``upper_bounds`` in ``clip`` mode at
``mean -/+ c * std`` (in OpenSearch's k-NN score scale), so a document of
modality ``t`` scores ``z / (2c) + 1/2`` for ``|z| <= c`` and is clipped
outside; ``arithmetic_mean`` combination leaves it unchanged, because each
document matches one subquery only (the others count as absent, not 0).
OpenSearch's k-NN score is ``(1 + cos) / 2`` for ``cosinesimil``
(``Math.max((2 - (1 - cos)) / 2, 0)``, k-NN's SpaceType) and ``1 + ip`` for
``innerproduct`` when ``ip > 0`` (``1 / (1 - ip)`` below 0, which is not
affine: the bounds use the affine branch, so the map is exact for every
document with ``ip > 0``; one with ``ip <= 0`` keeps its order within its
modality but scores a little high against the others).

Vespa: the statistics travel as two query tensors ``mean``/``std`` over a
mapped dimension ``m`` (one cell per target modality), each document carries a
one-hot mapped tensor attribute of its modality, and the rank profile computes
``(cos(distance(field, embedding)) - sum(mean * onehot)) / sum(std * onehot)``
(``angular`` distance: ``cos`` of the angle is the cosine). The YQL ORs one
``nearestNeighbor`` per modality, each with its modality filter, so every
modality's top-k is retrieved (the exactness argument of simstd.engines).
"""
from __future__ import annotations

import json
import math
import re
from typing import Sequence

import numpy as np

from ..errors import SimstdError
from ..validation import check_label

SPACE_TYPES = ("cosinesimil", "innerproduct")
#: Clip band in standard deviations: z in [-c, c] is mapped exactly.
DEFAULT_CLIP = 8.0
#: neural-search's bounds must lie in [-10000, 10000].
OPENSEARCH_BOUND = 10_000.0
QUERY_VECTOR = "{{query_vector}}"


def _maps(std, query_modality: str, targets: Sequence[str] | None) -> list[tuple[str, float, float]]:
    if getattr(std, "has_item_terms", False):
        raise SimstdError(f"export covers the paper's per-pair map; a method={std.method!r} fit also needs per-item "
                          "terms inside the engine (docs/default.md): refit with method='paper' to export")
    check_label(query_modality, "query modality")
    std._check_fitted()
    if targets is None:
        row = std._code(query_modality)  # NotFittedError naming the fitted modalities
        names = [m for j, m in enumerate(std.modalities_) if std.n_[row, j] > 0]
    else:
        names = list(targets)
    if not names:
        raise SimstdError(f"no target modality was fitted for queries of modality {query_modality!r}")
    return [(m, *std.affine(query_modality, m)) for m in names]


def opensearch_score(cosine: np.ndarray | float, space_type: str = "cosinesimil") -> np.ndarray:
    """OpenSearch's k-NN score of a cosine (unit vectors), per k-NN's ``SpaceType``."""
    c = np.asarray(cosine, dtype=np.float64)
    if space_type == "cosinesimil":
        return np.maximum((1.0 + c) / 2.0, 0.0)
    if space_type == "innerproduct":
        return np.where(c > 0, 1.0 + c, 1.0 / (1.0 - np.minimum(c, 0.0)))
    raise SimstdError(f"space_type must be one of {SPACE_TYPES}, got {space_type!r}")


def _linear_score(cosine: float, space_type: str) -> float:
    """The affine branch of OpenSearch's k-NN score, extended past its range, so
    that min_max between two bounds is affine in the cosine: ``(1 + cos) / 2``
    for ``cosinesimil``, ``1 + ip`` for ``innerproduct`` (exact for every
    document with ``ip > 0``)."""
    return float((1.0 + cosine) / 2.0 if space_type == "cosinesimil" else 1.0 + cosine)


def opensearch(
    std,
    query_modality: str,
    *,
    k: int = 10,
    vector_field: str = "embedding",
    modality_field: str = "modality",
    space_type: str = "cosinesimil",
    clip: float = DEFAULT_CLIP,
    targets: Sequence[str] | None = None,
    pipeline: str | None = None,
) -> dict:
    """The search pipeline and the hybrid query for queries of ``query_modality``.

    Returns ``{"pipeline_name", "pipeline", "query", "notes"}``: PUT
    ``pipeline`` at ``/_search/pipeline/<pipeline_name>``, then search with
    ``?search_pipeline=<pipeline_name>`` and ``query`` (replace
    ``"{{query_vector}}"`` with the query's unit vector).
    """
    if space_type not in SPACE_TYPES:
        raise SimstdError(f"space_type must be one of {SPACE_TYPES}, got {space_type!r}")
    if not (isinstance(clip, (int, float)) and 0 < clip < math.inf):
        raise SimstdError(f"clip must be a positive number of standard deviations, got {clip!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SimstdError(f"k must be a positive integer, got {k!r}")
    maps = _maps(std, query_modality, targets)
    lower, upper = [], []
    for _, mean, sd in maps:
        lo, hi = (_linear_score(mean + s * clip * sd, space_type) for s in (-1, 1))
        if not (-OPENSEARCH_BOUND <= lo < hi <= OPENSEARCH_BOUND):
            raise SimstdError(f"bounds {lo}, {hi} fall outside OpenSearch's [-10000, 10000]; use a smaller clip")
        lower.append({"mode": "clip", "min_score": lo})
        upper.append({"mode": "clip", "max_score": hi})
    name = pipeline or f"simstd-{query_modality}"
    subqueries = [
        {"knn": {vector_field: {"vector": QUERY_VECTOR, "k": k, "filter": {"term": {modality_field: m}}}}}
        for m, _, _ in maps
    ]
    return {
        "pipeline_name": name,
        "pipeline": {
            "description": f"simstd: standardized scores for {query_modality!r} queries "
                           f"(score = z / {2 * clip:g} + 0.5, clipped at |z| = {clip:g})",
            "phase_results_processors": [{
                "normalization-processor": {
                    "normalization": {"technique": "min_max",
                                      "parameters": {"lower_bounds": lower, "upper_bounds": upper}},
                    "combination": {"technique": "arithmetic_mean"},
                }
            }],
        },
        "query": {"size": k, "query": {"hybrid": {"queries": subqueries}}},
        "notes": [
            "Not run against a live OpenSearch: generated from the documented formulas (OpenSearch >= 3.2, "
            "neural-search min_max with lower_bounds and upper_bounds).",
            f"Subquery order = {[m for m, _, _ in maps]}; the bounds follow it.",
            f"Index the vectors with space_type {space_type!r} and unit vectors; score = z / {2 * clip:g} + 0.5.",
        ],
    }


def opensearch_scores(fragments: dict, subquery_scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Re-evaluate the exported pipeline as OpenSearch would (neural-search's
    ``MinMaxScoreNormalizationTechnique`` in ``clip`` mode, then
    ``arithmetic_mean``), given each subquery's k-NN scores of its own hits.
    For tests and for checking a deployment by hand."""
    params = fragments["pipeline"]["phase_results_processors"][0]["normalization-processor"]["normalization"]
    lows = params["parameters"]["lower_bounds"]
    highs = params["parameters"]["upper_bounds"]
    out = []
    for scores, lo_b, hi_b in zip(subquery_scores, lows, highs):
        s = np.asarray(scores, dtype=np.float32)
        if s.size == 0:
            out.append(s)
            continue
        lo, hi = np.float32(lo_b["min_score"]), np.float32(hi_b["max_score"])
        wmin, wmax = s.min(), s.max()
        eff_lo = wmin if wmax < lo else lo  # LowerBound.determineEffectiveScore, CLIP
        eff_hi = wmax if wmin > hi else hi  # UpperBound.determineEffectiveScore, CLIP
        norm = (s - eff_lo) / (eff_hi - eff_lo)
        norm = np.where(norm == 0, np.float32(0.001), norm)
        norm = np.where(s < eff_lo, np.float32(0.001), np.where(s > eff_hi, np.float32(1.0), norm))
        out.append(norm.astype(np.float32))  # one subquery per document: the mean is the score itself
    return out


def vespa(
    std,
    query_modality: str,
    *,
    k: int = 10,
    vector_field: str = "embedding",
    modality_field: str = "modality",
    onehot_field: str = "modality_onehot",
    profile: str | None = None,
    targets: Sequence[str] | None = None,
    dim: int | None = None,
) -> dict:
    """Schema and rank-profile fragments, YQL and query tensors for ``query_modality``.

    Returns ``{"schema", "rank_profile", "yql", "query_tensors", "document_example", "notes"}``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SimstdError(f"k must be a positive integer, got {k!r}")
    for field in (vector_field, modality_field, onehot_field):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field):
            raise SimstdError(f"Vespa field names are identifiers; got {field!r}")
    maps = _maps(std, query_modality, targets)
    dim = dim or getattr(std, "dim_", None)
    if not dim:
        raise SimstdError("the vector dimension is unknown (a fit from scores): pass dim=")
    name = profile or f"simstd_{re.sub(r'[^A-Za-z0-9_]', '_', query_modality)}"
    expression = (f"(cos(distance(field, {vector_field})) - reduce(query(simstd_mean) * attribute({onehot_field}), sum))"
                  f" / reduce(query(simstd_std) * attribute({onehot_field}), sum)")
    rank_profile = "\n".join([
        f"rank-profile {name} {{",
        "    inputs {",
        f"        query(q) tensor<float>(x[{dim}])",
        "        query(simstd_mean) tensor<float>(m{})",
        "        query(simstd_std) tensor<float>(m{})",
        "    }",
        "    first-phase {",
        f"        expression: {expression}",
        "    }",
        "}",
    ])
    schema = "\n".join([
        f"field {vector_field} type tensor<float>(x[{dim}]) {{",
        "    indexing: attribute | index",
        "    attribute { distance-metric: angular }",
        "}",
        f"field {modality_field} type string {{",
        "    indexing: attribute | summary",
        "    attribute: fast-search",
        "}",
        f"field {onehot_field} type tensor<float>(m{{}}) {{",
        "    indexing: attribute",
        "}",
    ])
    clauses = [f'({{targetHits:{k}}}nearestNeighbor({vector_field}, q) and {modality_field} contains "{m}")'
               for m, _, _ in maps]
    yql = f"select * from sources * where {' or '.join(clauses)}"
    return {
        "schema": schema,
        "rank_profile": rank_profile,
        "yql": yql,
        "query_tensors": {
            "input.query(simstd_mean)": {m: mean for m, mean, _ in maps},
            "input.query(simstd_std)": {m: sd for m, _, sd in maps},
        },
        "request": {"yql": yql, "hits": k, "ranking.profile": name, "input.query(q)": QUERY_VECTOR,
                    "input.query(simstd_mean)": {m: mean for m, mean, _ in maps},
                    "input.query(simstd_std)": {m: sd for m, _, sd in maps}},
        "document_example": {"fields": {modality_field: maps[0][0], onehot_field: {maps[0][0]: 1.0},
                                        vector_field: "[... unit vector ...]"}},
        "notes": [
            "Not run against a live Vespa: generated from the documented ranking-expression and tensor formats.",
            f"Feed every document with {onehot_field} = {{<its modality>: 1.0}}.",
        ],
    }


def vespa_scores(fragments: dict, cosines: np.ndarray, modalities: Sequence[str]) -> np.ndarray:
    """Re-evaluate the exported first-phase expression in Python for documents
    with the given cosines and modalities (``reduce(query(t) * onehot, sum)``
    picks the document's cell of a query tensor). For tests and by-hand checks."""
    expr = re.search(r"expression: (.*)", fragments["rank_profile"]).group(1)
    tensors = fragments["query_tensors"]

    def cell(name: str, m: str) -> float:
        return float(tensors[f"input.query({name})"].get(m, 0.0))

    out = []
    for cos, m in zip(np.asarray(cosines, dtype=np.float64), modalities):
        text = re.sub(r"cos\(distance\(field, \w+\)\)", repr(float(cos)), expr)
        text = re.sub(r"reduce\(query\((\w+)\) \* attribute\(\w+\), sum\)", lambda g: repr(cell(g.group(1), m)), text)
        if not re.fullmatch(r"[0-9eE.+\-*/() ]+", text):
            raise SimstdError(f"unexpected expression {text!r}")
        out.append(eval(text, {"__builtins__": {}}))  # arithmetic only (checked above)
    return np.asarray(out)


def to_json(fragments: dict) -> str:
    return json.dumps(fragments, indent=2, ensure_ascii=False) + "\n"
