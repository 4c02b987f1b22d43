"""``python -m simstd``: the command line (same as the ``simstd`` script)."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
