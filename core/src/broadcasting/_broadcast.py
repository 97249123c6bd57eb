"""The Broadcast object: configuration in, connected drivers out, publishes through hooks."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, overload

from broadcasting import _auth, _events, _webhooks
from broadcasting._auth import AuthRequest, ChannelRules, Rule
from broadcasting._channels import Channel
from broadcasting._config import ConfigSource, load_config
from broadcasting._delivery import DELIVERY_OPTIONS, DeliveryOptions, drain
from broadcasting._driver import Driver
from broadcasting._errors import (
    BadRequestError,
    CloseError,
    ConfigurationError,
    DriverNotFoundError,
    InputError,
    PluginLoadError,
    detach,
)
from broadcasting._plugins import (
    CORE_PLUGIN,
    acall_firstresult,
    apublish_hook,
    declared_secret_options,
    driver_names,
    driver_plugin,
    make_plugin_manager,
)
from broadcasting._types import Message, Payload, Receipt, Secret, wrap_named
from broadcasting._validate import build_message

if TYPE_CHECKING:
    from typing_extensions import Self

    from broadcasting._state import ChannelInfo, Member
    from broadcasting._webhooks import WebhookEvent, WebhookHandler

#: How a call names its driver: a name, a connected :class:`Driver`, or ``None``
#: for the configured default.
DriverRef: TypeAlias = "str | Driver | None"

#: What ``channel()`` publishes to: a channel name, a :class:`Channel`, or a list
#: of them; or an event object (anything with ``broadcast_on()``).
Target = Any

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
        #: The channel rules added with :meth:`authorize`.
        self.rules = ChannelRules()
        #: The webhook handlers added with :meth:`on_webhook`.
        self.webhook_handlers = _webhooks.WebhookHandlers()

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
        options = wrap_named(options, cls.secret_options)  # wrapped before keying and building
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
        plugin = self._plugin_for(name)
        # options a driver declares secret (``secret_options``) reach its from_config
        # wrapped on every path where the core knows the class before connecting:
        # Broadcast.driver(cls), an entry point or register_driver() naming a class,
        # with_options(). A factory plugin builds a class the core cannot know in
        # advance: it declares the names on itself (its own ``secret_options``).
        hidden = declared_secret_options(name, plugin) if plugin is not None else frozenset()
        if cls is not None:
            hidden |= cls.secret_options
        options = wrap_named(options, hidden)
        delivery, own = DeliveryOptions.from_options(name, options)
        if cls is not None and plugin is None:
            # a class no installed plugin provides (a private or test driver)
            return self._adopt(cls.from_config(own), options, delivery)  # type: ignore[return-value]
        pm = self.plugin_manager
        if plugin is not None and not pm.is_registered(plugin):
            pm.register(plugin, name=f"driver:{name}")
        driver = pm.hook.broadcasting_connect(name=name, options=own)
        if driver is None:
            if plugin is None:
                raise DriverNotFoundError(name, driver_names())
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
            # the copy the core keeps (for with_options): what the driver says is
            # secret is wrapped there too, whoever built it. The configuration is
            # left alone: it keeps every option string sealed already (see Config).
            driver._options = wrap_named(options, type(driver).secret_options)
        with self._lock:
            self._adopted.append(driver)
        return driver

    # -- publishing -----------------------------------------------------------

    def channel(
        self,
        channels: Target,
        message: Payload | None = None,
        event: str | None = None,
        *,
        socket_id: str | None = None,
    ) -> Receipt:
        """Publish ``message`` as ``event`` on the default driver.

        ``channels`` is a channel name, a :class:`Channel` (``PrivateChannel("orders.1")``)
        or a list of them (duplicates are sent once); ``message`` a str or
        JSON-serialisable dict/list; ``event`` defaults to ``"base-event"``.
        ``channels`` may instead be an event object (anything with
        ``broadcast_on()``, such as a :class:`BroadcastEvent`): its channels,
        payload and name are used, and ``event``/``socket_id`` override its own.

        Returns a :class:`Receipt` once the provider acknowledged it (one with no
        channels when the event's ``broadcast_when()`` said not to send it), or
        raises a :class:`BroadcastError`: a :class:`InputError` before any
        network request, a :class:`PublishError` if delivery failed.
        """
        return self._publish(self.driver(), channels, message, event, socket_id)

    async def achannel(
        self,
        channels: Target,
        message: Payload | None = None,
        event: str | None = None,
        *,
        socket_id: str | None = None,
    ) -> Receipt:
        """Async twin of :meth:`channel`; never blocks the event loop."""
        return await self._apublish(self.driver(), channels, message, event, socket_id)

    def _message(
        self,
        driver: Driver,
        channels: Target,
        data: Payload | None,
        event: str | None,
        socket_id: str | None,
    ) -> Message | Receipt:
        """The validated message, or an empty receipt for an event that is not to be sent."""
        if not _events.is_event(channels):
            return build_message(
                driver,
                channels,
                data,
                "base-event" if event is None else event,
                socket_id,
            )
        if data is not None:
            raise TypeError(
                f"channel({type(channels).__qualname__}(...), message) takes no message: "
                "an event object carries its own payload (its broadcast_with()); "
                "pass the event alone, or a channel name and a message"
            )
        resolved = _events.resolve(channels, event, socket_id)
        if not resolved.send:
            # broadcast_when() said no: nothing is validated, sent, or seen by a hook
            return Receipt(driver.name, resolved.name, (), "")
        return build_message(
            driver,
            resolved.channels,
            resolved.data,
            resolved.name,
            resolved.socket_id,
            source=channels,
        )

    def _publish(
        self,
        driver: Driver,
        channels: Target,
        data: Payload | None,
        event: str | None,
        socket_id: str | None,
    ) -> Receipt:
        message = self._message(driver, channels, data, event, socket_id)
        if isinstance(message, Receipt):
            return message
        return self._deliver(driver, message)

    def _deliver(self, driver: Driver, message: Message) -> Receipt:
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
        channels: Target,
        data: Payload | None,
        event: str | None,
        socket_id: str | None,
    ) -> Receipt:
        message = self._message(driver, channels, data, event, socket_id)
        if isinstance(message, Receipt):
            return message
        return await apublish_hook(self.plugin_manager, driver, message)

    # -- authorizing subscriptions ----------------------------------------------

    def rule(self, pattern: str) -> Callable[[Rule], Rule]:
        """Decorator: add a channel rule for channels matching ``pattern``.

        ``pattern`` is matched against the channel name without its
        ``private-``/``presence-``/``private-encrypted-`` prefix (or the
        driver's own); ``{name}`` matches one dot-free segment and is passed
        to the rule by keyword; the pattern is anchored. The rule is called as
        ``rule(user, **params)`` and may be async. It returns ``True`` to allow
        a private or encrypted channel, the member's info (a dict with an
        ``id``) to allow a presence channel, and ``False``/``None`` to refuse.
        Rules are tried in the order they were added; the first match decides.
        """

        def add(rule: Rule) -> Rule:
            self.rules.add(pattern, rule)
            return rule

        return add

    def authorize(
        self,
        user: Any,
        *,
        socket_id: str | None = None,
        channel_name: str | None = None,
        driver: DriverRef = None,
        extra: Mapping[str, str | Secret] | None = None,
    ) -> dict[str, Any]:
        """Authorize ``user``'s subscription to ``channel_name`` and return the signed body.

        The body is what the client library expects from its auth endpoint
        (``{"auth": ...}`` for Pusher, with ``channel_data`` for presence and
        ``shared_secret`` for encrypted channels; a token for Ably). Raises
        :class:`BadRequestError` (400) for a malformed request and
        :class:`ForbiddenError` (403) when no rule allows it. ``extra`` is anything
        else the client sent that the driver may use (Ably's current ``token``).

        Without ``channel_name``, a driver that signs connection tokens (Ably:
        its clients ask for one before naming a channel) signs one for ``user``
        (:meth:`Driver.sign_connection`); any other raises :class:`BadRequestError`.
        ``driver`` is a driver name, a connected driver (a tenant's
        ``with_options()`` variant, say) or ``None`` for the default.
        """
        target = self._target(driver)
        return self._authorize(
            target, self._auth_request(target, user, socket_id, channel_name, extra)
        )

    async def aauthorize(
        self,
        user: Any,
        *,
        socket_id: str | None = None,
        channel_name: str | None = None,
        driver: DriverRef = None,
        extra: Mapping[str, str | Secret] | None = None,
    ) -> dict[str, Any]:
        """Async twin of :meth:`authorize`; async rules are awaited on the caller's loop."""
        target = self._target(driver)
        return await self._aauthorize(
            target, self._auth_request(target, user, socket_id, channel_name, extra)
        )

    @staticmethod
    def _auth_request(
        driver: Driver,
        user: Any,
        socket_id: str | None,
        channel_name: str | None,
        extra: Mapping[str, str | Secret] | None,
    ) -> AuthRequest:
        if channel_name is None or channel_name == "":
            if not driver._signs_connections():
                raise BadRequestError("channel_name is missing")
            request = _auth.connection_request(driver, user, socket_id)
        else:
            request = _auth.channel_request(driver, user, socket_id, channel_name)
        if extra:
            request = _with_extra(request, extra)
        return request

    def _target(self, driver: DriverRef) -> Driver:
        """The driver a call names: a name, a connected driver, or ``None`` for the default."""
        if isinstance(driver, Driver):
            return driver
        return self.driver(driver)

    def authenticate_user(
        self, socket_id: str, user_data: Mapping[str, Any], *, driver: DriverRef = None
    ) -> dict[str, Any]:
        """Sign a user in (``pusher:signin``): ``user_data`` must have an ``id``.

        Raises :class:`NotSupportedError` when the driver has no user sign-in.
        """
        target = self._target(driver)
        return self._authorize(target, _auth.user_request(socket_id, user_data))

    async def aauthenticate_user(
        self, socket_id: str, user_data: Mapping[str, Any], *, driver: DriverRef = None
    ) -> dict[str, Any]:
        """Async twin of :meth:`authenticate_user`."""
        target = self._target(driver)
        return await self._aauthorize(target, _auth.user_request(socket_id, user_data))

    def _authorize(self, driver: Driver, request: AuthRequest) -> dict[str, Any]:
        hook = self.plugin_manager.hook.broadcasting_authorize
        impls = hook.get_hookimpls()
        if len(impls) == 1 and impls[0].plugin is CORE_PLUGIN:
            # only the core's own implementation: call it as pluggy would, without its cost
            return _auth.sign(driver, _auth.decide(self.rules, request, driver))
        return _signed(hook(broadcast=self, driver=driver, request=request))

    async def _aauthorize(self, driver: Driver, request: AuthRequest) -> dict[str, Any]:
        async def core() -> dict[str, Any]:
            return _auth.sign(driver, await _auth.adecide(self.rules, request, driver))

        body = await acall_firstresult(
            self.plugin_manager,
            "broadcasting_authorize",
            {"broadcast": self, "driver": driver, "request": request},
            core,
        )
        return _signed(body)

    def send_to_user(
        self, user_id: str | int, event: str, data: Payload, *, driver: DriverRef = None
    ) -> Receipt:
        """Publish ``event`` to every connection of the signed-in user ``user_id``.

        Raises :class:`NotSupportedError` when the driver cannot address a user.
        """
        target = self._target(driver)
        message = self._user_message(target, user_id, event, data)
        return self._deliver(target, message)

    async def asend_to_user(
        self, user_id: str | int, event: str, data: Payload, *, driver: DriverRef = None
    ) -> Receipt:
        """Async twin of :meth:`send_to_user`."""
        target = self._target(driver)
        message = self._user_message(target, user_id, event, data)
        return await apublish_hook(self.plugin_manager, target, message)

    @staticmethod
    def _user_message(driver: Driver, user_id: str | int, event: str, data: Payload) -> Message:
        if not isinstance(user_id, (str, int)) or isinstance(user_id, bool) or user_id == "":
            raise InputError(f"{driver.name}: user_id must be a non-empty str")
        channel = driver.user_channel(str(user_id))
        return build_message(driver, channel, data, event, None, reserved=True)

    # -- hearing back ---------------------------------------------------------

    def on_webhook(self, name: str = "*") -> Callable[[WebhookHandler], WebhookHandler]:
        """Decorator: call the function with every verified webhook event called ``name``.

        ``name`` is a :class:`WebhookEvent` name such as ``member_added``, or
        ``"*"`` for every event. The handler may be async. The same event may
        arrive twice (services retry deliveries): de-duplicate on ``event.id``.
        """

        def add(handler: WebhookHandler) -> WebhookHandler:
            self.webhook_handlers.add(name, handler)
            return handler

        return add

    def webhook(
        self, headers: Mapping[str, str], body: bytes, *, driver: DriverRef = None
    ) -> list[WebhookEvent]:
        """Verify a webhook delivery, run the hook and handlers on each event, return the events.

        ``body`` must be the raw request body. Raises :class:`UnauthorizedError`
        (401) for a bad signature, an unknown key or an old delivery and
        :class:`BadRequestError` (400) for a malformed one.
        """
        return _webhooks.receive(self, self._target(driver), headers, body)

    async def awebhook(
        self, headers: Mapping[str, str], body: bytes, *, driver: DriverRef = None
    ) -> list[WebhookEvent]:
        """Async twin of :meth:`webhook`; async handlers are awaited on the caller's loop."""
        return await _webhooks.areceive(self, self._target(driver), headers, body)

    def occupied_channels(
        self, prefix: str | None = None, *, driver: DriverRef = None
    ) -> list[ChannelInfo]:
        """The occupied channels whose name starts with ``prefix``."""
        return self._target(driver).occupied_channels(prefix)

    async def aoccupied_channels(
        self, prefix: str | None = None, *, driver: DriverRef = None
    ) -> list[ChannelInfo]:
        """Async twin of :meth:`channels`."""
        return await self._target(driver).aoccupied_channels(prefix)

    def channel_info(self, channel: str | Channel, *, driver: DriverRef = None) -> ChannelInfo:
        """What the service knows of one channel (occupied, subscriptions, users)."""
        target = self._target(driver)
        return target.channel_info(target.channel_name(channel))

    async def achannel_info(
        self, channel: str | Channel, *, driver: DriverRef = None
    ) -> ChannelInfo:
        """Async twin of :meth:`channel_info`."""
        target = self._target(driver)
        return await target.achannel_info(target.channel_name(channel))

    def members(self, channel: str | Channel, *, driver: DriverRef = None) -> list[Member]:
        """Who is in a presence channel."""
        target = self._target(driver)
        return target.members(target.channel_name(channel))

    async def amembers(self, channel: str | Channel, *, driver: DriverRef = None) -> list[Member]:
        """Async twin of :meth:`members`."""
        target = self._target(driver)
        return await target.amembers(target.channel_name(channel))

    def terminate_user(self, user_id: str, *, driver: DriverRef = None) -> None:
        """Disconnect every connection of the signed-in user ``user_id``."""
        self._target(driver).terminate_user(str(user_id))

    async def aterminate_user(self, user_id: str, *, driver: DriverRef = None) -> None:
        """Async twin of :meth:`terminate_user`."""
        await self._target(driver).aterminate_user(str(user_id))

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
        config = getattr(self, "config", None)  # None while __init__ failed to load it
        return f"<Broadcast driver={config.driver if config is not None else '?'!r}>"


def _raise_all(errors: list[Exception]) -> None:
    """Raise the one error of a close, or a CloseError holding every one of them."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise CloseError(errors) from errors[0]


def _with_extra(request: AuthRequest, extra: Mapping[str, str | Secret]) -> AuthRequest:
    from dataclasses import replace

    return replace(request, extra=_auth.wrap_extra(extra))


def _signed(body: object) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise TypeError(f"broadcasting_authorize returned {type(body).__name__}, not a dict")
    return body
