"""The Broadcaster: a driver as one Broadcast uses it (its options, delivery and hooks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from broadcasting import _background, _events
from broadcasting._delivery import DeliveryOptions, deliver
from broadcasting._driver import Driver
from broadcasting._errors import NotSupportedError
from broadcasting._flow import DriverCall, Effect, Flow, Hook, awaiting, blocking, drive, implements
from broadcasting._health import Health
from broadcasting._plugins import core_alone
from broadcasting._types import Message, Options, Payload, Receipt, wrap_named, wrap_secrets
from broadcasting._validate import build_message

if TYPE_CHECKING:
    from broadcasting._batcher import Batcher
    from broadcasting._broadcast import Broadcast
    from broadcasting._perloop import PerLoop

D = TypeVar("D", bound=Driver)

#: What ``channel()`` publishes to: a channel name, a :class:`Channel`, or a list
#: of them; or an event object (anything with ``broadcast_on()``).
Target = Any


def wrong_result(pm: Any, hook: str, result: object, expected: str) -> TypeError:
    """The error for hook ``hook`` returning ``result`` instead of ``expected``: it names the
    plugins that implement it (any installed package may bring one), the core's left out."""
    found = []
    for impl in getattr(pm.hook, hook).get_hookimpls():
        plugin = impl.plugin
        if pm.get_name(plugin) == "broadcasting.core":
            continue
        if isinstance(plugin, ModuleType):
            found.append(plugin.__name__)
        else:
            cls = plugin if isinstance(plugin, type) else type(plugin)
            found.append(f"{cls.__module__}.{cls.__qualname__}")
    said = f"{hook} returned {type(result).__name__}, not {expected}"
    if found:
        said += f" (implemented by {', '.join(found)})"
    return TypeError(said)


class Publishes:
    """``channel()`` and ``achannel()``, for a Broadcast (its default driver) and a Broadcaster."""

    __slots__ = ()

    def _channel_flow(
        self,
        channels: Target,
        message: Payload | None = None,
        event: str | None = None,
        *,
        socket_id: str | None = None,
        send: str | None = None,
        transaction: object = None,
    ) -> Flow[Receipt]:
        """Publish ``message`` as ``event`` (default ``"base-event"``) to one or more channels.

        ``channels`` is a channel name, a :class:`Channel`, a list of them, or an event object
        (anything with ``broadcast_on()``) that carries its own payload and name. ``socket_id``
        leaves the sender's connection out. Returns a :class:`Receipt` once the service
        acknowledged every channel; raises :class:`InputError` before any request,
        :class:`PublishError` if delivery failed (docs/publishing.md).

        ``send`` says when: ``"now"``, ``"after_commit"`` (once ``transaction`` commits, never
        if it rolls back) or ``"outbox"`` (written to the outbox inside ``transaction`` and
        delivered by the relay), or a queue plugin's name; by default the event's
        ``broadcast_send``, else the config's ``SEND``. Those return a pending receipt
        (docs/background.md).
        """
        target = self._publisher()
        built = target._message(channels, message, event, socket_id)
        if isinstance(built, Receipt):
            return built
        broadcast = target._broadcast
        if send is None and type(channels) is str:  # a name has no broadcast_send: SEND
            how = broadcast.config.send
        else:
            how = _background.send_mode(broadcast, send, channels)
        if how != _background.NOW:
            return (yield from target._defer(built, how, transaction))
        if transaction is not None and send is not None:
            raise TypeError("transaction= applies to send='after_commit' or 'outbox', not 'now'")
        return (yield from target.publish_message(built, bridge=None))

    channel = blocking(_channel_flow)
    achannel = awaiting(_channel_flow, "never blocks the event loop")

    def _publisher(self) -> Broadcaster[Any]:
        raise NotImplementedError(f"{type(self).__qualname__} must say which broadcaster publishes")


class Broadcaster(Publishes, Generic[D]):
    """What ``broadcast.driver(name)`` returns: one driver as that Broadcast publishes through it.

    Its ``driver`` (for driver-specific calls), the ``options`` it was configured with
    (secrets wrapped), and the core's ``delivery`` options for it (retries, batching).
    """

    __slots__ = (
        "__weakref__",
        "_batchers",
        "_broadcast",
        "_sends",
        "delivery",
        "driver",
        "options",
    )

    def __init__(
        self, broadcast: Broadcast, driver: D, options: Mapping[str, Any], delivery: DeliveryOptions
    ) -> None:
        self._broadcast = broadcast
        self.driver: D = driver
        self.options = options if isinstance(options, Options) else Options(options)
        self.delivery = delivery
        # whether the core delivers (the driver implements send), or the driver in process
        self._sends = implements(driver, "send") or implements(driver, "asend")
        self._batchers: PerLoop[Batcher] | None = None
        if self._sends and driver.capabilities.batches and delivery.batch:
            from broadcasting._batcher import Batcher  # asyncio: imported on first use
            from broadcasting._perloop import PerLoop

            budget = 1 + delivery.retry.retries
            self._batchers = PerLoop(
                lambda: Batcher(driver, delivery.batch_in_flight, budget, delivery.batch_linger),
                Batcher.wait_idle,
            )

    @property
    def name(self) -> str:
        """The driver's name."""
        return self.driver.name

    def _publisher(self) -> Broadcaster[D]:
        return self

    def publish_message(self, message: Message, bridge: bool | None = True) -> Flow[Receipt]:
        """Publish a validated message through the publish hook, as a flow. ``bridge=None``:
        the async path calls the hook in a greenlet only if its call may wait (the core's
        delivery, another plugin's part)."""
        pm = self._broadcast.plugin_manager
        if self._sends and core_alone(pm, "broadcasting_publish"):
            # what the hook would run: the core's delivery, here without pluggy or a greenlet
            receipt = yield from deliver(self, message)
        else:
            if bridge is None:  # in process, the core's part never waits: another plugin's may
                hook = pm.hook.broadcasting_publish
                bridge = self._sends or len(hook.get_hookimpls()) > 1
            kwargs = {"broadcast": self._broadcast, "driver": self.driver, "message": message}
            receipt = yield Hook(pm, "broadcasting_publish", kwargs, bridge=bridge)
        if not isinstance(receipt, Receipt):
            raise wrong_result(pm, "broadcasting_publish", receipt, "a Receipt")
        if receipt.via != message.via:  # sent by the relay, after commit or from a queue
            receipt = replace(receipt, via=message.via)
        return receipt

    def _defer(self, message: Message, via: str, transaction: object) -> Flow[Receipt]:
        """Hand ``message`` to the ``broadcasting_defer`` hook, to be sent ``via`` that way."""
        message.via = via
        pm = self._broadcast.plugin_manager
        kwargs = {"broadcast": self._broadcast, "transaction": transaction}
        adapted = yield Hook(pm, "broadcasting_transaction", kwargs, bridge=False)
        if adapted is None and transaction is not None:
            raise TypeError(
                f"transaction={type(transaction).__qualname__}: no plugin adapts it (a "
                "SQLAlchemy Session, AsyncSession or Connection, a Django database alias, "
                "a sqlite3.Connection; docs/background.md)"
            )
        if core_alone(pm, "broadcasting_defer"):
            # what the hook would run: the core's part, here without pluggy or a greenlet
            receipt = yield from _background.deferred(self, message, adapted)
        else:
            kwargs = {
                "broadcast": self._broadcast,
                "driver": self.driver,
                "message": message,
                "transaction": adapted,
            }
            receipt = yield Hook(pm, "broadcasting_defer", kwargs)
        if not isinstance(receipt, Receipt):
            raise wrong_result(pm, "broadcasting_defer", receipt, "a Receipt")
        return receipt if receipt.via == via else replace(receipt, via=via)

    def deliver(self, message: Message) -> Receipt:
        """The core's publish hook: its delivery, or the driver's own in-process publish."""
        if self._sends:
            return drive(deliver(self, message))
        return self.driver.publish(message)  # it never waits, so it serves both paths

    def _message(
        self, channels: Target, data: Payload | None, event: str | None, socket_id: str | None
    ) -> Message | Receipt:
        """The validated message, or an empty receipt for an event that is not to be sent."""
        driver = self.driver
        if type(channels) is str or not _events.is_event(channels):
            name = "base-event" if event is None else event
            return build_message(driver, channels, data, name, socket_id)
        if data is not None:
            raise TypeError(
                f"channel({type(channels).__qualname__}(...), message) takes no message: "
                "an event object carries its own payload (its broadcast_with()); "
                "pass the event alone, or a channel name and a message"
            )
        resolved = _events.resolve(channels, event, socket_id)
        if not resolved.send:  # broadcast_when() said no: nothing is validated, sent or hooked
            return Receipt(driver.name, resolved.name, (), "")
        return build_message(driver, *resolved[:4], source=channels)  # all but its send

    def batcher(self, channels: tuple[str, ...]) -> Batcher | None:
        """This loop's batcher if a publish to ``channels`` may share a request with others."""
        if self._batchers is None or len(channels) > self.driver.capabilities.batch_channels:
            return None
        return self._batchers.get()

    def with_options(self, **overrides: Any) -> Broadcaster[D]:
        """A broadcaster of the same driver with some options replaced (kept, and reused)."""
        # wrapped first, and the text let go of: this frame is in the traceback of what the
        # variant raises (a wrong option's ConfigurationError), its locals with it
        given = wrap_named(wrap_secrets(overrides), type(self.driver).secret_options)
        del overrides
        options = Options({**self.options, **given})
        return self._broadcast._variant(type(self.driver), self.name, options)

    def ssl(self, enabled: bool) -> Broadcaster[D]:
        """A broadcaster of the same driver with TLS on or off (the driver's ssl option)."""
        option = self.driver.ssl_option
        if option is None:
            raise NotSupportedError(self.name, "an ssl setting")
        return self.with_options(**{option: enabled})

    def _check_flow(self) -> Flow[Health]:
        """Check that the service answers and accepts the credentials (one request, no retry)."""
        health: Health = yield DriverCall(self.driver, "check")
        return health

    def _close_flow(self) -> Flow[None]:
        """Release the driver's connections; it reconnects on next use."""
        yield _Close(self)

    check = blocking(_check_flow)
    acheck = awaiting(_check_flow)
    close = blocking(_close_flow)
    aclose = awaiting(_close_flow, "what this loop's batcher queued goes out first")

    def __repr__(self) -> str:
        return f"<Broadcaster {self.name!r}: {type(self.driver).__qualname__}>"


@dataclass(slots=True)
class _Close(Effect):
    """Release a broadcaster's connections; awaited, after what this loop's batcher queued."""

    broadcaster: Broadcaster[Any]

    def run(self) -> None:
        self.broadcaster.driver.close()

    async def arun(self) -> None:
        batchers = self.broadcaster._batchers
        batcher = batchers.peek() if batchers is not None else None
        if batcher is not None:
            await batcher.wait_idle()
        await self.broadcaster.driver.aclose()
