"""The methods by name: :data:`BASES`, :data:`WRAPPERS` and :func:`make_method`.

The names the CLI and the reports use, what ``simstd eval`` runs by default
and one line describing each; the papers are named in the modules of the
methods (:mod:`.baselines`, :mod:`.standardization`, :mod:`.rescore`,
:mod:`.hubness`).
"""
from __future__ import annotations

from typing import Callable

from ..errors import SimstdError
from .base import ScoreMethod
from .baselines import MeanCentering, PairZScore, PerQueryZ, Raw
from .hubness import HubnessCorrection, _parse_hubness
from .rescore import CSLS, NNN, QBNorm, QueryShift, _Rescore
from .standardization import LibraryHubness, PseudoStandardization

BASES: dict[str, Callable[[], ScoreMethod]] = {
    "raw": Raw,
    "gr-clip": MeanCentering,
    "zscore-all": PairZScore,
    "simstd-index": lambda: PseudoStandardization("index", 1),
    "simstd-index-top10": lambda: PseudoStandardization("index", 10),
    "simstd-log": lambda: PseudoStandardization("log", 1),
    "simstd-log-top10": lambda: PseudoStandardization("log", 10),
    "simstd-labeled": lambda: PseudoStandardization("labeled"),
    "per-query": PerQueryZ,
    "simstd-qshift": lambda: PseudoStandardization("index", 1, query_shift=0.5, shift_k=10),
    "hubness": HubnessCorrection,
    "simstd-hubness": LibraryHubness,
    "simstd-hubness[search]": lambda: LibraryHubness(search=True),
}
WRAPPERS: dict[str, Callable[..., ScoreMethod]] = {
    "nnn": NNN,
    "qb-norm": QBNorm,
    "csls": CSLS,
    "qshift": QueryShift,
}
#: What ``simstd eval`` runs when no ``--methods`` are given.
DEFAULT_METHODS = (
    "raw",
    "gr-clip",
    "zscore-all",
    "per-query",
    "simstd-index",
    "simstd-index-top10",
    "simstd-log",
    "simstd-log-top10",
    "simstd-labeled",
    "nnn",
    "nnn+simstd-index",
    "qb-norm",
    "qb-norm+simstd-index",
    "csls",
    "csls+simstd-index",
    "simstd-qshift",
    "hubness",
)
#: One line per name, for ``--help`` and the docs.
DESCRIPTIONS = {
    "raw": "raw cosine",
    "gr-clip": "GR-CLIP: per-modality mean centring of embeddings, renormalised (Li et al. 2025)",
    "zscore-all": "z-score over all scores of each modality pair (indexed items)",
    "per-query": "per-query z-score over each target modality, closed form q.mu_m, q'Sigma_m q",
    "simstd-index": "the paper: pseudo pairs = top-1 of each indexed item (Yamashita et al. 2025)",
    "simstd-index-top10": "the paper with top-10 pseudo positives per indexed item",
    "simstd-log": "the paper with pseudo queries from a held-out query log, top-1",
    "simstd-log-top10": "the paper with pseudo queries from a held-out query log, top-10",
    "simstd-labeled": "standardization from gold pairs of held-out queries (oracle: uses labels)",
    "nnn": "Nearest Neighbor Normalization on raw cosine, query-log bank (Chowdhury et al. 2024)",
    "qb-norm": "QB-Norm, dynamic inverted softmax on raw cosine, query-log bank (Bogolin et al. 2022)",
    "csls": "CSLS on raw cosine, query-log bank (Conneau et al. 2018)",
    "qshift": "CSLS's query-side term alone: s - 1/2 mean top-10 per target modality",
    "simstd-qshift": "the paper + CSLS query-side shift: Standardizer(method='paper', query_shift=0.5)",
    "hubness": "per-item hubness correction (2s - rho_q - rho_c) / beta_ab, index bank; "
               "hubness[k=..,beta=tail|pseudo,q=..]",
    "simstd-hubness": 'the library\'s Standardizer(method="hubness") on the score matrix',
    "simstd-hubness[search]": 'the same through MixedIndex.search on a Flat index (what users get)',
}


def method_names() -> list[str]:
    """Every base name and every ``wrapper`` / ``wrapper+base`` combination."""
    plain = [b for b in BASES if b not in ("raw", "hubness")]  # hubness is a re-scoring already
    return list(BASES) + [w for w in WRAPPERS] + [f"{w}+{b}" for w in WRAPPERS for b in plain]


def make_method(name: str) -> ScoreMethod:
    """Build an unfitted method from its name (see :func:`method_names`)."""
    spec = name.strip()
    if spec.startswith("hubness") and not spec.startswith("hubness+"):
        return _parse_hubness(spec)
    bank = "log"
    if spec.endswith("[index]"):
        spec, bank = spec[: -len("[index]")], "index"
    wrapper, _, base = spec.partition("+")
    if wrapper in WRAPPERS:
        base_method = make_method(base) if base else Raw()
        if isinstance(base_method, _Rescore):
            raise SimstdError(f"{name!r}: apply one re-scoring method at a time (WRAPPER+BASE)")
        if wrapper == "qshift":
            if bank != "log":
                raise SimstdError(f"{name!r}: qshift uses no bank; drop [index]")
            return WRAPPERS[wrapper](base_method)
        return WRAPPERS[wrapper](base_method, bank=bank)
    if spec in BASES and bank == "log" and not base:
        return BASES[spec]()
    raise SimstdError(
        f"unknown method {name!r}; known: {', '.join(BASES)}, or WRAPPER+BASE with WRAPPER in "
        f"{', '.join(WRAPPERS)} (e.g. nnn+simstd-index; add [index] to use the indexed items as the bank)"
    )
