"""What every benchmark shares: where things are, sizes, memory, time, and the command behind a result.

A benchmark is a script in this folder that measures one thing and writes its
results JSON under ``benchmarks/results/``; ``benchmarks/report.py`` renders
the pages from those files. Benchmarks import this module (and the data
generator ``synth.py``), never each other.

Importing this module puts the checkout's root first on ``sys.path``, so a
benchmark run as ``python benchmarks/NAME.py`` measures the simstd of this
checkout, not whichever one is installed: import it before ``simstd``.
"""
from __future__ import annotations

import os
import resource
import shlex
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
#: The real features (see its README), beside the project: ../shared/data/modality-gap-features.
FEATURES = ROOT.parent / "shared" / "data" / "modality-gap-features"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The synthetic workloads' shape: CLIP ViT-B/32's width, and the vectors generated and added at once.
DIM = 512
CHUNK = 250_000


def parse_size(text: str) -> int:
    """``"100k"`` -> 100000, ``"1m"`` -> 1000000, ``"2500"`` -> 2500."""
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if text[-1] in "km" else text) * mult)


def size_label(n: int) -> str:
    """100000 -> ``"100k"``, 1000000 -> ``"1M"`` (the labels of the tables)."""
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1_000}k"


def peak_rss_kb() -> int:
    """Peak RSS of this process (VmHWM). Not ``ru_maxrss``: Linux carries the
    parent's peak into a child across fork and exec."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def sgemm_gflops(m: int, k: int, n: int, repeats: int) -> float:
    """The machine's float32 matrix-multiply speed: numpy (m x k) @ (k x n), best of ``repeats``."""
    a = np.random.default_rng(0).standard_normal((m, k), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best / 1e9


def child_env() -> dict[str, str]:
    """The environment of a child process that must import this checkout's simstd too."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def logger() -> Callable[[str], None]:
    """A ``log(msg)`` that prints each message with the seconds since this call."""
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    return log


def command(script: str, argv: Iterable[str], drop: Iterable[str] = ()) -> str:
    """The command line that reproduces a result, as the docs print it: ``python benchmarks/SCRIPT ...``.

    ``drop`` names options that take a value and change where results go, not
    what is measured (``--results PATH``): they are left out.
    """
    drop = set(drop)
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in drop:
            skip = True
        elif not any(a.startswith(d + "=") for d in drop):
            out.append(a)
    return " ".join([f"python benchmarks/{script}", *(shlex.quote(a) for a in out)])
