"""What a service says about its channels: typed answers to channel and presence queries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """One channel as the service sees it; a count (``user_count``: presence channels only)
    is ``None`` where the service did not report it."""

    name: str
    occupied: bool
    subscription_count: int | None = None
    user_count: int | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a presence channel: its id and, where the service reports it, its info."""

    id: str
    info: Mapping[str, Any] | None = field(default=None, compare=False)


#: The event a listener yields once per channel, first, when its subscription is confirmed.
SUBSCRIBED = "broadcasting:subscribed"


@dataclass(frozen=True, slots=True)
class Heard:
    """One event a listener received on a channel (what :meth:`Driver.listen_channels` yields).

    ``event`` is its name (or ``pusher:member_added`` and the like, or :data:`SUBSCRIBED`),
    ``data`` its text as sent, ``received_at`` a ``time.time()``, ``user_id`` a member
    event's member.
    """

    channel: str
    event: str
    data: str
    received_at: float
    user_id: str | None = None
