"""Verifying Pusher's (and soketi's) webhooks. (Being written.)"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from broadcasting import NotSupported, WebhookEvent

if TYPE_CHECKING:
    from broadcasting_pusher._driver import BroadcastPusherDriver


def verify(
    driver: BroadcastPusherDriver, headers: Mapping[str, str], body: bytes
) -> list[WebhookEvent]:
    raise NotSupported(driver.name, "webhooks", "not written yet")
