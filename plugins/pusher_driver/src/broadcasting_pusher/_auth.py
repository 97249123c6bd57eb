"""Signing subscriptions and sign-ins the way Pusher's clients check them. (Being written.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broadcasting import AuthRequest, NotSupported

if TYPE_CHECKING:
    from broadcasting_pusher._driver import BroadcastPusherDriver


def sign_channel(driver: BroadcastPusherDriver, request: AuthRequest) -> dict[str, Any]:
    raise NotSupported(driver.name, "channel authorization", "not written yet")


def sign_user(driver: BroadcastPusherDriver, request: AuthRequest) -> dict[str, Any]:
    raise NotSupported(driver.name, "user sign-in", "not written yet")


def user_channel(user_id: str) -> str:
    raise NotSupported("pusher", "sending to a user", "not written yet")
