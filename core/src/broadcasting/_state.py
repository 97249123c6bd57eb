"""What a service says about its channels: typed answers to channel and presence queries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """One channel as the service sees it.

    ``subscription_count`` and ``user_count`` (presence channels only) are
    ``None`` when the service did not report them.
    """

    name: str
    occupied: bool
    subscription_count: int | None = None
    user_count: int | None = None


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a presence channel: its id and, where the service reports it, its info."""

    id: str
    info: Mapping[str, Any] | None = field(default=None, compare=False)


#: The event of the :class:`Heard` a listener yields once per channel when its
#: subscription is confirmed, before any other event of that channel.
SUBSCRIBED = "broadcasting:subscribed"


@dataclass(frozen=True, slots=True)
class Heard:
    """One event a listener received on a channel, as a subscribed client would see it.

    What :meth:`Driver.listen_channels` yields and ``broadcasting listen`` prints.

    Attributes:
        channel: the channel it arrived on.
        event: the event's name (``shipped``; ``pusher:member_added`` and the
            like for a presence channel's own events; :data:`SUBSCRIBED` once
            the subscription is confirmed).
        data: the event's data as sent (a JSON text for JSON payloads).
        received_at: when it arrived, seconds since the epoch (``time.time()``).
        user_id: the member, for a presence channel's member events.
    """

    channel: str
    event: str
    data: str
    received_at: float
    user_id: str | None = None
