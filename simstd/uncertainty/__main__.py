"""``python -m simstd.uncertainty``: reproduce the numbers and the plot of docs/uncertainty.md
(``python -m simstd.uncertainty pmatch ...``: the match-probability tables)."""
from __future__ import annotations

import sys

from .analysis import main, pmatch_main

if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:2] == ["pmatch"]:
        raise SystemExit(pmatch_main(sys.argv[2:]))
    raise SystemExit(main())
