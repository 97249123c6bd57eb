"""The Driver base class: what a driver implements, and the seed's per-driver methods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from broadcasting._errors import ConfigurationError
from broadcasting._loop import run_sync
from broadcasting._types import Limits, Message, Payload, Receipt

if TYPE_CHECKING:
    from typing_extensions import Self

    from broadcasting._broadcast import Broadcast


class Driver:
    """Base class of every driver.

    A driver implements :meth:`publish` or :meth:`apublish` (or both; the
    other is derived), declares :attr:`name` and :attr:`limits`, and builds
    itself from its ``DRIVERS`` options in :meth:`from_config`. The core
    validates every message against :attr:`limits` before calling it.

    Users reach drivers through ``Broadcast.driver(...)``, which returns the
    connected instance; :meth:`channel` and :meth:`achannel` on it publish
    through that ``Broadcast``'s hooks.
    """

    #: The driver's name: its ``broadcasting.drivers`` entry-point name.
    name: ClassVar[str] = ""
    #: Limits the core enforces before any request (instances may override).
    limits: Limits = Limits()
    #: Whether the driver can exclude a sender's connection (``socket_id``).
    supports_socket_id: ClassVar[bool] = False

    _broadcast: Broadcast | None = None
    _options: Mapping[str, Any] = {}

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Self:
        """Build a driver from its ``DRIVERS`` mapping.

        The default accepts no options. Override it to read yours, raising
        :class:`ConfigurationError` (key named, value never shown) for a
        missing or bad one.
        """
        for key in options:
            raise ConfigurationError(cls.name, key, "unknown option")
        return cls()

    # -- what a driver implements -------------------------------------------

    def publish(self, message: Message) -> Receipt:
        """Deliver ``message`` and return a receipt once it is acknowledged.

        The default runs :meth:`apublish` on the core's background loop.
        """
        if type(self).apublish is Driver.apublish:
            raise TypeError(f"{type(self).__name__} must implement publish() or apublish()")
        return run_sync(self.apublish(message))

    async def apublish(self, message: Message) -> Receipt:
        """Async twin of :meth:`publish`; must not block the event loop.

        The default runs :meth:`publish` in a worker thread.
        """
        if type(self).publish is Driver.publish:
            raise TypeError(f"{type(self).__name__} must implement publish() or apublish()")
        import asyncio

        return await asyncio.to_thread(self.publish, message)

    def validate(self, message: Message) -> None:
        """Check driver-specific rules beyond :attr:`limits`; raise a ValidationError.

        Called by the core before the publish hook. The default does nothing.
        """

    def payload_size(self, message: Message) -> int:
        """Bytes of the message as this driver will send it (checked against the limit)."""
        return message.size

    def close(self) -> None:
        """Release connections. Idempotent; the driver may reconnect on next use."""

    async def aclose(self) -> None:
        """Async twin of :meth:`close`. The default calls :meth:`close`."""
        self.close()

    # -- what users call (the seed's API) -----------------------------------

    def channel(
        self,
        channels: str | Sequence[str],
        message: Payload,
        event: str = "base-event",
        *,
        socket_id: str | None = None,
    ) -> Receipt:
        """Publish ``message`` as ``event`` to one channel or a list of channels."""
        return self._owner()._publish(self, channels, message, event, socket_id)

    async def achannel(
        self,
        channels: str | Sequence[str],
        message: Payload,
        event: str = "base-event",
        *,
        socket_id: str | None = None,
    ) -> Receipt:
        """Async twin of :meth:`channel`."""
        return await self._owner()._apublish(self, channels, message, event, socket_id)

    def with_options(self, **overrides: Any) -> Self:
        """Return a new connected driver of this kind with some options replaced."""
        options = {**self._options, **overrides}
        return self._owner()._variant(type(self), self.name, options)

    def _owner(self) -> Broadcast:
        if self._broadcast is None:
            from broadcasting._broadcast import Broadcast

            owner = Broadcast({"DRIVER": self.name, "DRIVERS": {self.name: self._options}})
            owner._adopt(self)
        assert self._broadcast is not None
        return self._broadcast

    def __repr__(self) -> str:
        return f"<{type(self).__name__} driver={self.name!r}>"
