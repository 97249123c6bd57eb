"""The Broadcast object: configuration in, connected drivers out, publishes through hooks."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from broadcasting._config import ConfigSource, load_config
from broadcasting._delivery import DELIVERY_OPTIONS, DeliveryOptions, drain
from broadcasting._driver import Driver
from broadcasting._errors import (
    CloseError,
    ConfigurationError,
    DriverNotFound,
    PluginLoadError,
    detach,
)
from broadcasting._plugins import (
    CORE_PLUGIN,
    apublish_hook,
    driver_names,
    driver_plugin,
    make_plugin_manager,
)
from broadcasting._types import Options, Payload, Receipt
from broadcasting._validate import build_message

if TYPE_CHECKING:
    from typing_extensions import Self

D = TypeVar("D", bound=Driver)

#: Drivers with other options (``with_options``, a class) one Broadcast keeps open.
MAX_VARIANTS = 32


def _frozen(value: object) -> object:
    """A hashable stand-in for an options value, equal exactly when the values are."""
    if isinstance(value, Mapping):
        return tuple(sorted(((str(k), _frozen(v)) for k, v in value.items()), key=lambda i: i[0]))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = tuple(_frozen(v) for v in value)
        return (
            type(value).__name__,
            tuple(sorted(items, key=repr)) if isinstance(value, (set, frozenset)) else items,
        )
    try:
        hash(value)
    except TypeError:
        return ("unhashable", id(value))  # never equal to another object's options
    return (type(value).__name__, value)


class Broadcast:
    """Publishes events through the driver named in configuration.

    ``config`` is a mapping with ``DRIVER`` and ``DRIVERS`` (the shape of a
    Masonite ``config/broadcast.py``), a module with those names, or a path to
    a ``.py``, ``.toml`` or ``.json`` file that holds them. With no config,
    ``$BROADCAST_DRIVER`` or ``log`` is used. ``plugins`` are extra hook
    implementations for this instance.

    Connections are opened on first use and reused; release them with
    :meth:`close` / :meth:`aclose` or by using the object as a context manager.
    """

    def __init__(self, config: ConfigSource = None, *, plugins: Iterable[object] = ()) -> None:
        self.config = load_config(config)
        self.plugin_manager = make_plugin_manager(plugins)
        self._drivers: dict[str, Driver] = {}  # by name: what driver(name) returns
        self._adopted: list[Driver] = []  # every driver this instance connected, to close
        self._variants: OrderedDict[tuple[object, ...], Driver] = OrderedDict()
        self._lock = threading.RLock()

    # -- choosing a driver --------------------------------------------------

    @overload
    def driver(self, driver: str | None = None) -> Driver: ...

    @overload
    def driver(self, driver: type[D]) -> D: ...

    def driver(self, driver: str | type[Driver] | None = None) -> Driver:
        """Return the connected driver called ``driver`` (default: ``DRIVER``).

        ``driver`` may also be a Driver class, e.g. ``BroadcastAblyDriver``;
        a class that no installed plugin provides is connected directly.
        """
        if driver is None:
            name = self.config.driver
        elif isinstance(driver, str):
            name = driver
        elif isinstance(driver, type) and issubclass(driver, Driver):
            return self._driver_for_class(driver)
        else:
            raise TypeError(f"driver() takes a name or a Driver class, not {driver!r}")
        connected = self._drivers.get(name)
        if connected is not None:
            return connected
        with self._lock:
            connected = self._drivers.get(name)
            if connected is None:
                connected = self._connect_new(name, self.config.options(name))
                self._drivers[name] = connected
            return connected

    def _driver_for_class(self, cls: type[D]) -> D:
        name = cls.name
        if not name:
            raise TypeError(f"{cls.__qualname__} has no driver name (set its `name` attribute)")
        with self._lock:
            connected = self._drivers.get(name)
            if isinstance(connected, cls):
                return connected
            if connected is None and self._plugin_for(name) is not None:
                connected = self.driver(name)
                if isinstance(connected, cls):
                    return connected
            # a class no installed plugin provides: build it on this instance only
            return self._variant(cls, name, self.config.options(name))

    def _variant(self, cls: type[D], name: str, options: Mapping[str, Any]) -> D:
        """A driver of ``cls`` with ``options`` other than the default one; cached by value.

        Keyed by the options' values (a :class:`Secret` compares by value without
        showing it), so two tenants' keys never share a driver. At most
        :data:`MAX_VARIANTS` are kept; the least recently used one is closed.
        """
        key = (cls, name, _frozen(options))
        evicted: Driver | None = None
        with self._lock:
            existing = self._variants.get(key)
            if existing is not None:
                self._variants.move_to_end(key)
                return existing  # type: ignore[return-value]
            existing = self._variants[key] = self._connect_new(name, options, cls)
            if len(self._variants) > MAX_VARIANTS:
                _, evicted = self._variants.popitem(last=False)
                self._adopted.remove(evicted)
        if evicted is not None:
            evicted.close()
        return existing

    def _plugin_for(self, name: str) -> object | None:
        return driver_plugin(name)

    def _connect_new(self, name: str, options: Mapping[str, Any], cls: type[D] | None = None) -> D:
        error: ConfigurationError | None = None
        with self._lock:
            try:
                return self._connect_locked(name, options, cls)
            except ConfigurationError as exc:
                # a driver's frames may hold a revealed secret at the moment it
                # raised: raise it again from here, with none of those frames
                error = exc
        raise detach(error)  # outside the except block: a traceback from here on only

    def _connect_locked(self, name: str, options: Mapping[str, Any], cls: type[D] | None) -> D:
        delivery, own = DeliveryOptions.from_options(name, options)
        plugin = self._plugin_for(name)
        if cls is not None and plugin is None:
            # a class no installed plugin provides (a private or test driver)
            return self._adopt(cls.from_config(own), options, delivery)  # type: ignore[return-value]
        pm = self.plugin_manager
        if plugin is not None and not pm.is_registered(plugin):
            pm.register(plugin, name=f"driver:{name}")
        driver = pm.hook.broadcasting_connect(name=name, options=own)
        if driver is None:
            if plugin is None:
                raise DriverNotFound(name, driver_names())
            raise PluginLoadError(
                entry_point=name,
                value=repr(plugin),
                distribution=None,
                reason=f"its broadcasting_connect hook returned None for {name!r}",
            )
        if not isinstance(driver, Driver):
            raise PluginLoadError(
                entry_point=name,
                value=repr(plugin),
                distribution=None,
                reason=f"broadcasting_connect returned {type(driver).__name__}, not a Driver",
            )
        if cls is not None and not isinstance(driver, cls):
            driver = cls.from_config(own)
        return self._adopt(driver, options, delivery)  # type: ignore[return-value]

    def _adopt(
        self,
        driver: Driver,
        options: Mapping[str, Any] | None = None,
        delivery: DeliveryOptions | None = None,
    ) -> Driver:
        if delivery is not None and options is not None:
            given = sorted(DELIVERY_OPTIONS.intersection(options))
            if given and not driver._uses_core_delivery():
                raise ConfigurationError(
                    driver.name,
                    given[0],
                    "does not apply: this driver delivers in process (nothing to retry or batch)",
                )
            driver.delivery = delivery
        driver._broadcast = self
        if options is not None:
            driver._options = options if isinstance(options, Options) else Options(options)
        with self._lock:
            self._adopted.append(driver)
        return driver

    # -- publishing -----------------------------------------------------------

    def channel(
        self,
        channels: str | Sequence[str],
        message: Payload,
        event: str = "base-event",
        *,
        socket_id: str | None = None,
    ) -> Receipt:
        """Publish ``message`` as ``event`` on the default driver.

        ``channels`` is a channel name or a list of them (duplicates are sent
        once); ``message`` a str or JSON-serialisable dict/list. Returns a
        :class:`Receipt` once the provider acknowledged it, or raises a
        :class:`BroadcastError`: a :class:`ValidationError` before any network
        request, a :class:`PublishError` if delivery failed.
        """
        return self._publish(self.driver(), channels, message, event, socket_id)

    async def achannel(
        self,
        channels: str | Sequence[str],
        message: Payload,
        event: str = "base-event",
        *,
        socket_id: str | None = None,
    ) -> Receipt:
        """Async twin of :meth:`channel`; never blocks the event loop."""
        return await self._apublish(self.driver(), channels, message, event, socket_id)

    def _publish(
        self,
        driver: Driver,
        channels: str | Sequence[str],
        data: Payload,
        event: str,
        socket_id: str | None,
    ) -> Receipt:
        message = build_message(driver, channels, data, event, socket_id)
        hook = self.plugin_manager.hook.broadcasting_publish
        impls = hook.get_hookimpls()
        if len(impls) == 1 and impls[0].plugin is CORE_PLUGIN:
            # only the core's own implementation (which calls driver.publish) is
            # registered: call it directly, as pluggy would, without its ~4 µs
            receipt: object = driver.publish(message)
        else:
            receipt = hook(driver=driver, message=message)
        if not isinstance(receipt, Receipt):
            raise TypeError(
                f"broadcasting_publish returned {type(receipt).__name__}, not a Receipt"
            )
        return receipt

    async def _apublish(
        self,
        driver: Driver,
        channels: str | Sequence[str],
        data: Payload,
        event: str,
        socket_id: str | None,
    ) -> Receipt:
        message = build_message(driver, channels, data, event, socket_id)
        return await apublish_hook(self.plugin_manager, driver, message)

    # -- lifecycle --------------------------------------------------------------

    def _connected(self) -> list[Driver]:
        with self._lock:
            return list(self._adopted)

    def close(self) -> None:
        """Close every connection. Idempotent.

        The ``Broadcast`` and its drivers stay usable: a driver reconnects on its
        next publish, and a later ``close()`` closes it again.
        """
        errors = []
        for driver in self._connected():
            try:
                driver.close()
            except Exception as exc:  # close every driver, then report
                errors.append(exc)
        _raise_all(errors)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        errors = []
        for driver in self._connected():
            try:
                await drain(driver)  # publishes queued for a shared request go out first
                await driver.aclose()
            except Exception as exc:
                errors.append(exc)
        _raise_all(errors)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Broadcast driver={self.config.driver!r}>"


def _raise_all(errors: list[Exception]) -> None:
    """Raise the one error of a close, or a CloseError holding every one of them."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise CloseError(errors) from errors[0]
