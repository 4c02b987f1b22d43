"""Retrieval metrics and evaluation protocols for mixed-modality search.

* :mod:`.metrics` - per-query metrics (Recall@k, R-Precision, mAP@R, NDCG@10, modality share);
* :mod:`.tasks` - the protocols (mixed, plain, universal, an index with ground truth);
* :mod:`.relevance` - topical relevance for the universal protocol, from labels or human captions;
* :mod:`.run` - scoring every query with every method, cross-fitted where a method uses a query log;
* :mod:`.frontier` - the modality-bias frontier and each method's excess above it;
* :mod:`.report` - aggregation over seeds, text/Markdown/JSON rendering.
"""
from __future__ import annotations

from .metrics import (
    CURVE_K,
    KS,
    METRICS,
    NDCG_K,
    SHARE_KS,
    first_rank,
    map_at_r,
    modality_share,
    ndcg_at,
    query_metrics,
    r_precision,
    rank_order,
    ranked_relevance,
    recall_at,
)
from .relevance import caption_relevance, label_relevance, load_relevance
from .report import PROTOCOLS, Report, affine_changes, markdown_table, run_pairs, run_task
from .run import CHUNK_ELEMENTS, TaskResult, crossfit_scores, cross_share, evaluate, query_folds, single_threaded
from .tasks import Task, index_task, load_qrels, mixed_task, plain_tasks, universal_task

__all__ = [
    "CHUNK_ELEMENTS", "CURVE_K", "KS", "METRICS", "NDCG_K", "SHARE_KS", "Report", "Task", "TaskResult",
    "affine_changes", "cross_share", "crossfit_scores", "evaluate", "first_rank", "index_task", "load_qrels",
    "map_at_r", "markdown_table", "mixed_task", "modality_share", "ndcg_at", "plain_tasks", "query_folds",
    "query_metrics", "r_precision", "rank_order", "ranked_relevance", "recall_at", "run_pairs", "run_task",
    "single_threaded", "universal_task", "caption_relevance", "label_relevance", "load_relevance", "PROTOCOLS",
]
