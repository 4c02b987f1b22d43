"""The Standardizer's file format: a small human-readable JSON document.

``format``/``format_version`` name it; ``settings`` are the constructor's
parameters; ``pairs`` the fitted statistics of every (query, target) pair;
a method's own section (e.g. ``hubness``) is written and read by its backend.
Files written before the ``method`` setting existed load as the paper's method.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CorruptFileError
from ..fileio import check_format
from ..stats import SAMPLE_AUTO
from ..strata import Strata
from ..validation import check_label

FORMAT = "simstd.standardizer"
FORMAT_VERSION = 1


def fit_to_dict(std: Any) -> dict:
    """The fit as the JSON document :meth:`Standardizer.save` writes."""
    std._check_fitted()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metric": "cosine",
        "dim": std.dim_,
        "model": std.model_,
        "index_fingerprint": std.index_fingerprint_,
        "settings": {
            "method": std.method,
            "hubness_k": int(std.hubness_k),
            "hubness_bank": None if std.hubness_bank is None else int(std.hubness_bank),
            "hubness_scale": std.hubness_scale,
            "hubness_quantile": float(std.hubness_quantile),
            "n_pseudo": int(std.n_pseudo),
            "source": std.source,
            "sample": std.sample if std.sample in (None, SAMPLE_AUTO) else int(std.sample),
            "target_se": float(std.target_se),
            "seed": int(std.seed),
            "query_shift": float(std.query_shift),
            "shift_k": int(std.shift_k),
            # Written only for a stratified fit, so unstratified files stay as they were.
            **({"strata": std.strata, "min_stratum": int(std.min_stratum)} if std.strata is not None else {}),
        },
        "modalities": list(std.modalities_),
        "pairs": std.table(),
        **({std.method: section} if (section := std.backend_.to_dict(std)) is not None else {}),
        **({"strata": std.strata_.to_dict()} if getattr(std, "strata_", None) is not None else {}),
    }


def fit_from_dict(cls: type, data: dict, source: str = "<dict>") -> Any:
    """A fitted ``cls`` (a Standardizer) from the document :func:`fit_to_dict` wrote."""
    fix = "refit with `simstd fit` to rewrite it"
    check_format(data, source, FORMAT, FORMAT_VERSION, "simstd standardizer", fix)
    try:
        # Files written before the method setting existed are the paper's method.
        std = cls(**{"method": "paper", **data["settings"]})
        labels = [check_label(x) for x in data["modalities"]]
        m = len(labels)
        n = np.zeros((m, m), dtype=np.int64)
        mean = np.zeros((m, m))
        m2 = np.zeros((m, m))
        for row in data["pairs"]:
            i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
            n[i, j] = int(row["n"])
            mean[i, j] = float(row["mean"])
            var = float(row["var"])
            if n[i, j] < 1 or not np.isfinite(mean[i, j]) or not (np.isfinite(var) and var >= 0):
                raise CorruptFileError(
                    f"{source} is invalid: pair ({row['query_modality']!r}, {row['target_modality']!r}) has "
                    f"n={n[i, j]}, mean={row['mean']!r}, var={row['var']!r} (need n >= 1, a finite mean and "
                    f"a finite variance >= 0); {fix}"
                )
            m2[i, j] = var * n[i, j]
        std._set_stats(labels, n, mean, m2)
        for row in data["pairs"]:
            if "se_mean" in row:
                i, j = labels.index(row["query_modality"]), labels.index(row["target_modality"])
                std.standard_error_[i, j] = float(row["se_mean"]), float(row["se_std"])
        std.dim_ = data.get("dim")
        std.model_ = data.get("model")
        std.index_fingerprint_ = data.get("index_fingerprint")
        std.backend_.from_dict(std, data.get(std.method), data["pairs"], source)
        std.strata_ = None
        if std.strata is not None:
            std.strata_ = Strata.from_dict(data["strata"])
            if std.strata_.labels != labels or std.strata_.spec.text != std.strata:
                raise CorruptFileError(f"{source} is invalid: its strata {std.strata_.labels} do not match its "
                                       f"pairs' labels {labels}; {fix}")
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(f"{source} is malformed ({exc!r}); {fix}") from None
    return std
