"""Label-free uncertainty for standardized mixed-modality search (after VACSR,
Wei et al., 2026).

:mod:`.model` holds :class:`UncertaintyModel` and its math (it never imports
the index); :mod:`.analysis` the research code that measures it, loaded only
when one of its names is asked for (it builds indexes).
"""
from __future__ import annotations

from .model import (
    FORMAT,
    FORMAT_VERSION,
    RERANKS,
    UncertaintyModel,
    background_moments,
    check_rerank,
    condition_out,
    log_tail_mean,
    lr_vertex,
    monotone_log_lr,
    surprisal,
)

_ANALYSIS = frozenset({
    "FEATURE_FILES", "TRAINED", "benchmark", "decile_recall", "expected_calibration_error", "fit_platt",
    "main", "mixed_protocol_run", "platt", "plot_reliability", "recall_at", "reliability", "report_markdown",
})


def __getattr__(name: str) -> object:
    if name in _ANALYSIS:
        from . import analysis

        return getattr(analysis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FORMAT", "FORMAT_VERSION", "RERANKS", "UncertaintyModel", "background_moments", "check_rerank",
    "condition_out", "log_tail_mean", "lr_vertex", "monotone_log_lr", "surprisal", *sorted(_ANALYSIS),
]
