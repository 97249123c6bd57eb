"""Channel kinds, and the helpers that name a channel without naming a service's prefix."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

#: What a channel is: ``public`` (anyone may subscribe), ``private`` (the
#: application authorizes each subscription), ``presence`` (private, and the
#: service tracks who is in it) or ``encrypted`` (private, and the payload is
#: end-to-end encrypted).
ChannelKind = Literal["public", "private", "presence", "encrypted"]

#: Pusher's (and Laravel's, soketi's, Reverb's) prefixes: the default convention.
PUSHER_PREFIXES: Mapping[ChannelKind, str] = {
    "private": "private-",
    "presence": "presence-",
    "encrypted": "private-encrypted-",
}


@dataclass(frozen=True, slots=True)
class Channel:
    """A public channel, named without any service's prefix.

    ``Channel("orders")``, :class:`PrivateChannel`, :class:`PresenceChannel`
    and :class:`EncryptedPrivateChannel` may be passed wherever a channel name
    is: each driver renders them by its own convention (``private-orders.1``
    on Pusher), so code that names channels this way does not depend on the
    driver.
    """

    name: str
    kind: ClassVar[ChannelKind] = "public"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"{type(self).__name__} needs a non-empty str name")
        if self.kind != "public":
            for prefix in sorted(PUSHER_PREFIXES.values(), key=len, reverse=True):
                if self.name.startswith(prefix):
                    from broadcasting._errors import InvalidChannelError

                    kind = type(self).__name__
                    raise InvalidChannelError(
                        f"{kind}({self.name!r}): give the name without its prefix, "
                        f"{kind}({self.name[len(prefix) :]!r}); each driver adds its own"
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
        from broadcasting._errors import InvalidChannelError

        raise InvalidChannelError(f"this driver has no {channel.kind} channels ({channel.name!r})")
    return prefix + channel.name


def parse(prefixes: Mapping[ChannelKind, str], channel: str) -> tuple[ChannelKind, str]:
    """The kind of the full channel name ``channel`` and its name without the prefix.

    The longest matching prefix wins (``private-encrypted-`` before ``private-``).
    """
    best: tuple[ChannelKind, str] | None = None
    for kind, prefix in prefixes.items():
        if channel.startswith(prefix) and (best is None or len(prefix) > len(best[1])):
            best = (kind, prefix)
    if best is None:
        return "public", channel
    return best[0], channel[len(best[1]) :]
