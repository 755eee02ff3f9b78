"""``python -m pygearman`` and the ``pygearman`` console script (the commands are in cli.py)."""
from __future__ import annotations

import sys

from pygearman.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
