"""Score statistics shared by every fit: per-pair count/mean/M2, their exact
pooling, and top-k means.

Pure numpy, no index: the standardizer, the distributed (Spark) fit and the
evaluation methods all pool their statistics through these functions.
Pooling is Chan, Golub and LeVeque's parallel update ("Updating formulae and a
pairwise algorithm for computing sample variances", 1979), the same one
scikit-learn's ``StandardScaler.partial_fit`` uses.
"""
from __future__ import annotations

import zlib
from typing import Callable, Iterable

import numpy as np

Moments = tuple[np.ndarray, np.ndarray, np.ndarray]

#: Default precision of an adaptive sample (``sample="auto"``): the standard
#: error of each pair's mean and of its std, in units of that std; about
#: ``1/TARGET_SE**2`` = 10,000 pseudo queries per modality for a light tail.
#: Chosen on real CLIP data (benchmarks/sample_precision.py, splits 0-4) as the
#: largest target whose 95th-percentile NDCG@10 loss stays under 0.001; 0.02
#: (2,500 queries, 4x less work) cost 0.0013 there, a stated trade for speed.
TARGET_SE = 0.01
#: ``sample=SAMPLE_AUTO`` sizes a pseudo-query sample by that precision.
SAMPLE_AUTO = "auto"
#: The smallest extra round of an adaptive sample, per query modality.
MIN_ROUND = 256
#: An extra round asks for this much more than the errors so far extrapolate to.
ROUND_MARGIN = 1.1


def pair_moments(codes: np.ndarray, scores: np.ndarray, size: int) -> Moments:
    """Count, mean and M2 (sum of squared deviations) of ``scores`` grouped by ``codes``.

    ``codes`` are integers in ``[0, size)``; groups without scores get mean
    NaN and M2 0. Two passes (mean first): exact, unlike ``E[s^2] - E[s]^2``.
    """
    codes = np.asarray(codes, dtype=np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    n = np.bincount(codes, minlength=size).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(codes, weights=scores, minlength=size) / n
    dev = scores - mean[codes] if scores.size else scores
    m2 = np.bincount(codes, weights=dev**2, minlength=size)
    return n, mean, m2


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Pool two ``(n, mean, m2)`` triples of the same shape exactly (Chan et al.)."""
    na, mean_a, m2a = (np.asarray(x) for x in a)
    nb, mean_b, m2b = (np.asarray(x) for x in b)
    n = na + nb
    mean_a = np.where(na > 0, mean_a, 0.0)
    mean_b = np.where(nb > 0, mean_b, 0.0)
    safe = np.maximum(n, 1)
    delta = mean_b - mean_a
    mean = np.where(n > 0, mean_a + delta * (nb / safe), np.nan)
    m2 = np.where(na > 0, m2a, 0.0) + np.where(nb > 0, m2b, 0.0) + delta**2 * (na * nb / safe)
    return n.astype(np.int64), mean, m2


def topk_mean(values: np.ndarray, k: int, axis: int = -1) -> np.ndarray:
    """Mean of the ``k`` largest finite values along ``axis`` (fewer if fewer exist; 0 if none).

    The CSLS / NNN neighbourhood term (Conneau et al. 2018; Chowdhury et al. 2024).
    """
    values = np.moveaxis(np.asarray(values), axis, -1)
    k = min(int(k), values.shape[-1])
    if k < 1:
        return np.zeros(values.shape[:-1])
    masked = np.where(np.isfinite(values), values, -np.inf)
    top = -np.partition(-masked, k - 1, axis=-1)[..., :k]
    finite = np.isfinite(top)
    return np.where(finite, top, 0.0).sum(axis=-1) / np.maximum(finite.sum(axis=-1), 1)


def sampling_errors(scores: np.ndarray) -> tuple[int, float, float]:
    """How precisely a sample of pseudo-positive scores fixes its pair's mean and std.

    ``scores`` is ``(queries, k)``: each sampled pseudo query's top-k scores
    (``-inf`` where it has fewer). Returns ``(n, se_mean, se_std)`` with both
    standard errors in units of the pair's std: ``1/sqrt(n)`` for the mean and
    ``sqrt((kurtosis - 1) / 4n)`` for the std (the delta method; ``kurtosis``
    the sample's, 3 for a normal). ``n`` counts queries, not scores: the
    top-k of one query are not independent draws, so this errs on the safe side.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    n = int(np.isfinite(scores[:, 0]).sum()) if scores.size else 0
    x = scores[np.isfinite(scores)]
    if n == 0:
        return 0, float("inf"), float("inf")
    var = float(x.var())
    kurtosis = float(((x - x.mean()) ** 4).mean() / var**2) if var > 0 else 1.0
    return n, 1 / np.sqrt(n), float(np.sqrt(max(kurtosis - 1, 0.0) / (4 * n)))


def rows_for_precision(se_mean: float, se_std: float, n: int, target: float) -> int:
    """Queries a pair needs for both standard errors to reach ``target`` (in std units),
    extrapolated from the errors ``n`` queries gave (both shrink as ``1/sqrt(n)``)."""
    worst = max(se_mean, se_std)
    return int(np.ceil(n * (worst / target) ** 2)) if np.isfinite(worst) else n + 1


def round_rng(seed: int, modality: str) -> np.random.Generator:
    """The random stream of one query modality's adaptive rounds, keyed by its label, so that
    every fit (an index, files, any order of modalities) draws the same rows for the same seed."""
    return np.random.default_rng([int(seed), zlib.crc32(modality.encode())])


class RoundDraw:
    """One query modality's adaptive sample: rounds of positions in ``[0, n)``, drawn
    without replacement from the modality's own stream (:func:`round_rng`).

    The one draw every fit makes, from an index (positions into its ids) or
    from files (row numbers), so both draw the same rows for the same seed.
    """

    def __init__(self, n: int, seed: int, modality: str) -> None:
        self.n = int(n)
        self.rng = round_rng(seed, modality)
        self.taken = np.empty(0, np.int64)

    @property
    def exhausted(self) -> bool:
        return len(self.taken) >= self.n

    def next(self, want: int) -> np.ndarray:
        """Up to ``want`` positions not drawn before, ascending."""
        want = min(int(want), self.n - len(self.taken))
        if len(self.taken) == 0:  # no list of every position: n may be a billion rows
            pick = self.rng.choice(self.n, size=want, replace=False)
        else:  # the positions not drawn yet, ascending
            left = np.setdiff1d(np.arange(self.n), self.taken, assume_unique=True)
            pick = left[self.rng.choice(len(left), size=want, replace=False)]
        self.taken = np.concatenate([self.taken, pick.astype(np.int64)])
        return np.sort(pick).astype(np.int64)


def first_round(target: float) -> int:
    """Queries per modality of an adaptive sample's first round: what the mean
    needs (``1/target^2``); a normal tail's std needs half as many."""
    return int(np.ceil(1 / target**2))


def next_round(pairs: Iterable[np.ndarray], drawn: int, target: float) -> int:
    """How many more pseudo queries of one query modality an adaptive sample draws.

    ``pairs`` holds, per target modality, the ``(drawn, k)`` scores so far.
    0 when every pair's mean and std reach ``target``; otherwise the
    extrapolated shortfall with a margin (so one more round is usually the
    last), at least :data:`MIN_ROUND`.
    """
    need = 0
    for scores in pairs:
        n, se_mean, se_std = sampling_errors(scores)
        if max(se_mean, se_std) > target:
            need = max(need, int(np.ceil(rows_for_precision(se_mean, se_std, n, target) * ROUND_MARGIN)))
    return max(MIN_ROUND, need - drawn) if need else 0


def draw_sample(
    pool: np.ndarray,
    sample: int | str | None,
    score: Callable[[np.ndarray], list[np.ndarray]],
    *,
    rng: np.random.Generator,
    seed: int,
    modality: str,
    target: float = TARGET_SE,
    sized_by: slice = slice(None),
) -> list[np.ndarray]:
    """Score the pseudo queries of one query modality, drawn from ``pool`` (ids or rows).

    ``sample`` is a count (a seeded draw from ``rng`` without replacement),
    ``None`` (the whole pool) or ``"auto"``: rounds of a :class:`RoundDraw`
    until :func:`next_round` finds every pair at
    ``target``. ``score(batch)`` returns, per target modality, the batch's
    ``(len(batch), k)`` scores (``-inf`` where there are none); the result is
    those arrays over all rounds. ``sized_by`` picks the arrays whose
    precision sizes an adaptive sample (default: all of them): a fit sizes its
    sample by the statistics it uses, not by every score it reports.
    """
    if sample != SAMPLE_AUTO:
        if sample is not None and sample < len(pool):
            pool = pool[np.sort(rng.choice(len(pool), size=int(sample), replace=False))]
        return score(pool)
    rounds = RoundDraw(len(pool), seed, modality)
    want, found = first_round(target), None
    while want:
        got = score(pool[rounds.next(want)])
        found = got if found is None else [np.concatenate([a, b]) for a, b in zip(found, got)]
        want = 0 if rounds.exhausted else next_round(found[sized_by], len(rounds.taken), target)
    return found
