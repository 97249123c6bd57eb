"""Make the ``shop`` package importable: the example is not installed."""

from __future__ import annotations

import sys
from pathlib import Path

SHOP = str(Path(__file__).resolve().parents[1])
if SHOP not in sys.path:
    sys.path.insert(0, SHOP)
