"""Label-free uncertainty for standardized mixed-modality search (after VACSR,
Wei et al., 2026).

:mod:`.model` holds :class:`UncertaintyModel` and its math (it never imports
the index), including the match probability ``p_match`` and its calibration on
gold pairs; :mod:`.labels` reads gold-pair files; :mod:`.analysis` the research code that measures it, loaded only
when one of its names is asked for (it builds indexes).
"""
from __future__ import annotations

from .labels import GoldPairs, read_gold_pairs
from .model import (
    FORMAT,
    FORMAT_VERSION,
    LABEL_FREE_MAPS,
    LABEL_PRIOR,
    RERANKS,
    UncertaintyModel,
    apply_logistic,
    background_moments,
    check_rerank,
    condition_out,
    fit_logistic,
    log_tail_mean,
    logit,
    lr_vertex,
    monotone_log_lr,
    surprisal,
)

_ANALYSIS = frozenset({
    "FEATURE_FILES", "TRAINED", "benchmark", "decile_recall", "expected_calibration_error", "fit_platt",
    "main", "mixed_protocol_run", "platt", "plot_reliability", "recall_at", "reliability", "report_markdown",
    "PROTOCOLS", "partnered_split", "pmatch_benchmark", "pmatch_main", "pmatch_markdown", "pmatch_run",
})


def __getattr__(name: str) -> object:
    if name in _ANALYSIS:
        from . import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMAT", "FORMAT_VERSION", "GoldPairs", "LABEL_FREE_MAPS", "LABEL_PRIOR", "RERANKS", "UncertaintyModel",
    "apply_logistic", "background_moments", "check_rerank", "condition_out", "fit_logistic", "log_tail_mean",
    "logit", "lr_vertex", "monotone_log_lr", "read_gold_pairs", "surprisal", *sorted(_ANALYSIS),
]
