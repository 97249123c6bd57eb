"""The ``broadcast_fake`` pytest fixture (entry point ``pytest11``).

pytest loads this module in every run of every project that installed
``broadcasting``, so it imports nothing of its own at start-up: the fake is
imported when a test first asks for the fixture.
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

    Each message is still validated against the configured driver's limits,
    then recorded in ``broadcast_fake.sent`` without reaching the driver (no
    network). Assert with ``assert_sent(event, channel, data, times)``,
    ``assert_not_sent(...)`` and ``assert_nothing_sent()``. The fake is
    removed when the test ends, pass or fail.
    """
    from broadcasting.testing._fake import BroadcastFake

    with BroadcastFake() as fake:
        yield fake
