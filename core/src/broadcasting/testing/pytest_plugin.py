"""The ``broadcast_fake`` pytest fixture (entry point ``pytest11``). (Being written.)"""

from __future__ import annotations
