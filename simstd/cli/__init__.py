"""The ``simstd`` command line: a thin layer over the Python API.

One module per command group; each registers its commands on :data:`main`.
"""
from __future__ import annotations

from . import check, export, fitting, indexing, research, serve  # noqa: F401  (registers the commands)
from ._common import main

__all__ = ["main"]
