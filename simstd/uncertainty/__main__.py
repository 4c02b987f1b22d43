"""``python -m simstd.uncertainty``: reproduce the numbers and the plot of docs/uncertainty.md."""
from __future__ import annotations

from .analysis import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
