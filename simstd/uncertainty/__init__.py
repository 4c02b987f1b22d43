"""Label-free uncertainty for standardized mixed-modality search (after VACSR,
Wei et al., 2026).

:mod:`.model` holds :class:`UncertaintyModel` (it never imports the index),
including the match probability ``p_match`` and its calibration on gold pairs;
:mod:`.likelihood` its formulas (pure array functions); :mod:`.labels` reads
gold-pair files. The research code that measures
it (ECE, reliability, deciles, the benchmarks; it builds indexes) is
:mod:`simstd.evaluation.uncertainty`.
"""
from __future__ import annotations

from .labels import GoldPairs, read_gold_pairs
from .likelihood import (
    background_moments,
    condition_out,
    log_tail_mean,
    lr_vertex,
    monotone_log_lr,
    surprisal,
)
from .model import (
    FORMAT,
    FORMAT_VERSION,
    LABEL_FREE_MAPS,
    LABEL_PRIOR,
    RERANKS,
    UncertaintyModel,
    apply_logistic,
    check_rerank,
    fit_logistic,
    logit,
)
