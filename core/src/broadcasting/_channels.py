"""Channel kinds, and the helpers that name a channel without naming a service's prefix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from broadcasting._errors import InvalidChannelError

#: ``public`` (anyone subscribes), ``private`` (each subscription authorized),
#: ``presence`` (private, with members) or ``encrypted`` (private, end to end).
ChannelKind = Literal["public", "private", "presence", "encrypted"]

#: Pusher's (and Laravel's, soketi's, Reverb's) prefixes: the default convention.
PUSHER_PREFIXES: Mapping[ChannelKind, str] = {
    "private": "private-",
    "presence": "presence-",
    "encrypted": "private-encrypted-",
}


@dataclass(frozen=True, slots=True)
class Channel:
    """A public channel, named without any service's prefix; it and its subclasses go wherever
    a channel name does, and each driver adds its own prefix (``private-orders.1`` on Pusher)."""

    name: str
    kind: ClassVar[ChannelKind] = "public"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"{type(self).__name__} needs a non-empty str name")
        bare = parse(PUSHER_PREFIXES, self.name)[1]
        if self.kind != "public" and bare != self.name:
            kind = type(self).__name__
            raise InvalidChannelError(
                f"{kind}({self.name!r}): give the name without its prefix, "
                f"{kind}({bare!r}); each driver adds its own"
            )


@dataclass(frozen=True, slots=True)
class PrivateChannel(Channel):
    """A private channel: each subscription is authorized by a channel rule."""

    kind: ClassVar[ChannelKind] = "private"


@dataclass(frozen=True, slots=True)
class PresenceChannel(Channel):
    """A presence channel: authorized, and the service tracks its members."""

    kind: ClassVar[ChannelKind] = "presence"


@dataclass(frozen=True, slots=True)
class EncryptedPrivateChannel(Channel):
    """A private channel whose payloads are encrypted end to end."""

    kind: ClassVar[ChannelKind] = "encrypted"


def render(prefixes: Mapping[ChannelKind, str], channel: str | Channel) -> str:
    """The full name of ``channel`` under ``prefixes``; a ``str`` is returned as it is."""
    if isinstance(channel, str):
        return channel
    if channel.kind == "public":
        return channel.name
    prefix = prefixes.get(channel.kind)
    if prefix is None:
        raise InvalidChannelError(f"this driver has no {channel.kind} channels ({channel.name!r})")
    return prefix + channel.name


def parse(prefixes: Mapping[ChannelKind, str], channel: str) -> tuple[ChannelKind, str]:
    """The kind of the full channel name ``channel`` and its name without the (longest) prefix."""
    found = [(kind, prefix) for kind, prefix in prefixes.items() if channel.startswith(prefix)]
    if not found:
        return "public", channel
    kind, prefix = max(found, key=lambda pair: len(pair[1]))  # the first of the longest
    return kind, channel[len(prefix) :]
