"""Channel and presence queries over Pusher's HTTP API. (Being written.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broadcasting import ChannelInfo, Member, NotSupported

if TYPE_CHECKING:
    from broadcasting_pusher._driver import BroadcastPusherDriver


def channels(driver: BroadcastPusherDriver, prefix: str | None) -> list[ChannelInfo]:
    raise NotSupported(driver.name, "listing channels", "not written yet")


async def achannels(driver: BroadcastPusherDriver, prefix: str | None) -> list[ChannelInfo]:
    raise NotSupported(driver.name, "listing channels", "not written yet")


def channel_info(driver: BroadcastPusherDriver, channel: str) -> ChannelInfo:
    raise NotSupported(driver.name, "channel info", "not written yet")


async def achannel_info(driver: BroadcastPusherDriver, channel: str) -> ChannelInfo:
    raise NotSupported(driver.name, "channel info", "not written yet")


def members(driver: BroadcastPusherDriver, channel: str) -> list[Member]:
    raise NotSupported(driver.name, "presence members", "not written yet")


async def amembers(driver: BroadcastPusherDriver, channel: str) -> list[Member]:
    raise NotSupported(driver.name, "presence members", "not written yet")


def terminate_user(driver: BroadcastPusherDriver, user_id: str) -> None:
    raise NotSupported(driver.name, "terminating a user's connections", "not written yet")


async def aterminate_user(driver: BroadcastPusherDriver, user_id: str) -> None:
    raise NotSupported(driver.name, "terminating a user's connections", "not written yet")
