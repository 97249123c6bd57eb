"""The ``broadcast_fake`` pytest fixture (entry point ``pytest11``).

pytest loads it in every run of every project that installed ``broadcasting``,
so the fake is imported only when a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from broadcasting.testing._fake import BroadcastFake


@pytest.fixture
def broadcast_fake() -> Iterator[BroadcastFake]:
    """Record every publish of every Broadcast instead of sending it, for one test.

    Assert with ``assert_sent()``, ``assert_not_sent()``, ``assert_nothing_sent()``.
    """
    from broadcasting.testing._fake import BroadcastFake

    with BroadcastFake() as fake:
        yield fake
