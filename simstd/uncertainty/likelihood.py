"""The uncertainty model's formulas (docs/uncertainty.md), as pure array functions:
the background moments of a cosine sample, the monotone Gaussian likelihood ratio
of pseudo-positive against background cosines, its expectation over a shard's
unretrieved tail, and the posterior share (surprisal) of each candidate. VACSR's
idea (Wei et al., 2026) that a similarity is a distribution, fitted without labels.

:class:`~simstd.uncertainty.model.UncertaintyModel` fits their parameters and
applies them; this module holds no state and imports no index.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import log_ndtr


def background_moments(samples: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (ddof=0) of the cosines between every pair of samples, ``(M, M)`` each.

    Exact over all pairs ``(x in samples[a], y in samples[t])``, ``x != y``
    when ``a == t``, from the sums ``S = sum x`` and Gram matrices
    ``G = X^T X``: ``E[x.y] = S_a.S_t / (n_a n_t)`` and
    ``E[(x.y)^2] = <G_a, G_t>_F / (n_a n_t)`` (for ``a == t`` the ``n`` self
    pairs are subtracted: ``(|S|^2 - sum |x|^2)`` and ``(|G|_F^2 - sum |x|^4)``
    over ``n (n - 1)``).
    """
    sums = [x.sum(axis=0) for x in samples]
    grams = [x.T @ x for x in samples]
    sq = [np.einsum("ij,ij->i", x, x) for x in samples]
    m = len(samples)
    mean, std = np.full((m, m), np.nan), np.full((m, m), np.nan)
    for a in range(m):
        for t in range(m):
            na, nt = len(samples[a]), len(samples[t])
            if a == t:
                pairs = na * (na - 1)
                if pairs == 0:
                    continue
                first = (sums[a] @ sums[a] - sq[a].sum()) / pairs
                second = (np.sum(grams[a] * grams[a]) - np.sum(sq[a] ** 2)) / pairs
            else:
                first = sums[a] @ sums[t] / (na * nt)
                second = np.sum(grams[a] * grams[t]) / (na * nt)
            mean[a, t] = first
            std[a, t] = np.sqrt(max(second - first**2, 0.0))
    return mean, std


def lr_vertex(mu_p: float, sigma_p: float, mu_b: float, sigma_b: float) -> float:
    """The cosine where ``ln LR`` (a parabola when ``sigma_p != sigma_b``) has its extremum."""
    if sigma_p == sigma_b:
        return np.inf
    return (mu_p * sigma_b**2 - mu_b * sigma_p**2) / (sigma_b**2 - sigma_p**2)


def _raw_log_lr(s: np.ndarray, mu_p: float, sigma_p: float, mu_b: float, sigma_b: float) -> np.ndarray:
    return np.log(sigma_b / sigma_p) - 0.5 * ((s - mu_p) / sigma_p) ** 2 + 0.5 * ((s - mu_b) / sigma_b) ** 2


def monotone_log_lr(s: np.ndarray, mu_p: float, sigma_p: float, mu_b: float, sigma_b: float) -> np.ndarray:
    """``ln N(s; mu_p, sigma_p) - ln N(s; mu_b, sigma_b)``, clamped to be non-decreasing in ``s``.

    With ``sigma_p < sigma_b`` the log ratio is a concave parabola: above its
    vertex ``s_v`` it would fall, so ``s`` is capped at ``s_v``. With
    ``sigma_p > sigma_b`` it is convex: below ``s_v`` it would rise, so ``s``
    is floored at ``s_v``. (Assumes ``mu_p > mu_b``: top-1 scores exceed the
    average score.)
    """
    s = np.asarray(s, dtype=np.float64)
    v = lr_vertex(mu_p, sigma_p, mu_b, sigma_b)
    if sigma_p < sigma_b:
        s = np.minimum(s, v)
    elif sigma_p > sigma_b:
        s = np.maximum(s, v)
    return _raw_log_lr(s, mu_p, sigma_p, mu_b, sigma_b)


def _log_diff(log_hi: np.ndarray, log_lo: np.ndarray) -> np.ndarray:
    """``ln(exp(log_hi) - exp(log_lo))`` for ``log_hi >= log_lo``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return log_hi + np.log(-np.expm1(np.minimum(log_lo - log_hi, 0.0)))


def log_tail_mean(cutoff: np.ndarray, mu_p: float, sigma_p: float, mu_b: float, sigma_b: float) -> np.ndarray:
    """``ln E_b[LR~(s) | s < c]`` for the monotone ratio ``LR~`` and background ``N(mu_b, sigma_b)``.

    Where ``LR~ = LR`` the integral ``int f_b LR ds = int f_p ds`` is a
    pseudo-positive probability; where ``LR~`` is clamped it is
    ``LR(s_v)`` times a background probability. Without clamping the result is
    ``ln F_p(c) - ln F_b(c)``; ``c = inf`` gives the mean over the whole shard.
    """
    c = np.asarray(cutoff, dtype=np.float64)
    v = lr_vertex(mu_p, sigma_p, mu_b, sigma_b)
    zp = lambda x: (x - mu_p) / sigma_p  # noqa: E731
    zb = lambda x: (x - mu_b) / sigma_b  # noqa: E731
    log_fb_c = log_ndtr(zb(c))
    if sigma_p == sigma_b:
        return log_ndtr(zp(c)) - log_fb_c
    log_lr_v = float(_raw_log_lr(np.float64(v), mu_p, sigma_p, mu_b, sigma_b))
    if sigma_p < sigma_b:  # LR~ = LR below v, LR(v) above
        below = log_ndtr(zp(np.minimum(c, v)))
        # F_b(c) - F_b(v) as survival functions, accurate in the upper tail
        above = _log_diff(log_ndtr(-zb(np.float64(v))), log_ndtr(-zb(np.maximum(c, v))))
        total = np.where(c > v, np.logaddexp(below, log_lr_v + above), below)
    else:  # LR~ = LR(v) below v, LR above
        below = log_lr_v + log_ndtr(zb(np.minimum(c, v)))
        above = _log_diff(log_ndtr(zp(np.maximum(c, v))), log_ndtr(zp(np.float64(v))))
        total = np.where(c > v, np.logaddexp(below, above), below)
    return total - log_fb_c


def surprisal(logits: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
    """``-ln softmax(logits)`` over each row of ``logits`` together with ``extra``
    (more terms of the normaliser, e.g. unretrieved tails), accurate for the
    largest term: its value is ``log1p(sum of the others / it)`` with no
    cancellation, so a near-certain result keeps a meaningful tiny ``u``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    parts = logits if extra is None else np.concatenate([logits, np.asarray(extra, dtype=np.float64)], axis=1)
    top = parts.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(parts - top)
        first = np.argmax(parts, axis=1)
        e[np.arange(len(e)), first] = 0.0
        rest = np.log1p(e.sum(axis=1, keepdims=True))
        return (top - logits) + rest


def condition_out(u: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Posterior surprisals after learning that the ``drop`` results are not the match.

    ``p_j / (1 - sum p_drop)`` for the others, i.e. ``u_j + ln(1 - sum p_drop)``
    (used by ``search_like``, whose query item is its own best hit).
    """
    u = np.asarray(u, dtype=np.float64)
    drop = np.asarray(drop, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        if drop.sum(axis=1).max(initial=0) <= 1:
            us = np.where(drop, u, np.inf).min(axis=1, keepdims=True)
            shift = np.where(np.isfinite(us), np.log(-np.expm1(-us)), 0.0)
        else:
            gone = np.where(drop, np.exp(-u), 0.0).sum(axis=1, keepdims=True)
            shift = np.log1p(-np.minimum(gone, 1.0))
    return u + shift
