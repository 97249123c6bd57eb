"""The Broadcast object: configuration in, broadcasters out, every call through the hooks."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, overload

from broadcasting import _auth, _webhooks
from broadcasting._auth import AuthRequest, ChannelRules, Rule
from broadcasting._broadcaster import Broadcaster, Publishes
from broadcasting._channels import Channel
from broadcasting._config import ConfigSource, load_config
from broadcasting._delivery import DELIVERY_OPTIONS, DeliveryOptions
from broadcasting._driver import Driver, Feature
from broadcasting._errors import (
    BadRequestError,
    CloseError,
    ConfigurationError,
    DriverNotFoundError,
    InputError,
    NotSupportedError,
    PluginLoadError,
)
from broadcasting._flow import DriverCall, Flow, Hook, arun, run
from broadcasting._plugins import (
    declared_secret_options,
    driver_names,
    driver_plugin,
    make_plugin_manager,
)
from broadcasting._types import Options, Payload, Receipt, Secret, wrap_named
from broadcasting._validate import build_message

if TYPE_CHECKING:
    from typing_extensions import Self

    from broadcasting._state import ChannelInfo, Member
    from broadcasting._webhooks import WebhookEvent, WebhookHandler

#: How a call names its driver: a name, a :class:`Broadcaster`, or ``None`` for the default.
DriverRef: TypeAlias = "str | Broadcaster[Any] | None"

D = TypeVar("D", bound=Driver)

#: Broadcasters with other options (``with_options()``, a class) one Broadcast keeps open.
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


class Broadcast(Publishes):
    """Publishes events through the driver named in configuration.

    ``config`` is a mapping with ``DRIVER`` and ``DRIVERS``, a module with those
    names, or the path of a ``.py``, ``.toml`` or ``.json`` file holding them
    (docs/configuration.md). ``plugins`` are hook implementations for this
    instance. Connections open on first use; :meth:`close` releases them.
    """

    def __init__(self, config: ConfigSource = None, *, plugins: Iterable[object] = ()) -> None:
        self.config = load_config(config)
        self.plugin_manager = make_plugin_manager(plugins)
        self._named: dict[str, Broadcaster[Any]] = {}  # what driver(name) returns
        self._variants: OrderedDict[tuple[object, ...], Broadcaster[Any]] = OrderedDict()
        self._of_driver: dict[int, Broadcaster[Any]] = {}  # every one this instance made
        self._lock = threading.RLock()
        #: The channel rules added with :meth:`rule`.
        self.rules = ChannelRules()
        #: The webhook handlers added with :meth:`on_webhook`.
        self.webhook_handlers = _webhooks.WebhookHandlers()

    # -- choosing a driver --------------------------------------------------

    @overload
    def driver(self, driver: str | None = None) -> Broadcaster[Driver]: ...

    @overload
    def driver(self, driver: type[D]) -> Broadcaster[D]: ...

    def driver(self, driver: str | type[Driver] | None = None) -> Broadcaster[Any]:
        """The :class:`Broadcaster` of ``driver``: a name, a Driver class, or ``None`` (``DRIVER``).

        A class that no installed plugin provides is connected directly.
        """
        if driver is None:
            name = self.config.driver
        elif isinstance(driver, str):
            name = driver
        elif isinstance(driver, type) and issubclass(driver, Driver):
            return self._for_class(driver)
        else:
            raise TypeError(f"driver() takes a name or a Driver class, not {driver!r}")
        connected = self._named.get(name)
        if connected is not None:
            return connected
        with self._lock:
            connected = self._named.get(name)
            if connected is None:
                connected = self._connect(name, self.config.options(name))
                self._named[name] = connected
            return connected

    def _for_class(self, cls: type[D]) -> Broadcaster[D]:
        name = cls.name
        if not name:
            raise TypeError(f"{cls.__qualname__} has no driver name (set its `name` attribute)")
        with self._lock:
            connected = self._named.get(name)
            if connected is None and driver_plugin(name) is not None:
                connected = self.driver(name)
            if connected is not None and isinstance(connected.driver, cls):
                return connected
            return self._variant(cls, name, self.config.options(name))

    def _variant(self, cls: type[D], name: str, options: Mapping[str, Any]) -> Broadcaster[D]:
        """A broadcaster of ``cls`` with other ``options``, kept by their values.

        Secrets compare by value, so two tenants' keys never share a driver; the
        least recently used beyond :data:`MAX_VARIANTS` is closed.
        """
        options = wrap_named(options, cls.secret_options)  # wrapped before keying and building
        key = (cls, name, _frozen(options))
        evicted: Broadcaster[Any] | None = None
        with self._lock:
            existing = self._variants.get(key)
            if existing is not None:
                self._variants.move_to_end(key)
                return existing
            existing = self._variants[key] = self._connect(name, options, cls)
            if len(self._variants) > MAX_VARIANTS:
                _, evicted = self._variants.popitem(last=False)
                del self._of_driver[id(evicted.driver)]
        if evicted is not None:
            evicted.close()
        return existing

    def _connect(
        self, name: str, options: Mapping[str, Any], cls: type[D] | None = None
    ) -> Broadcaster[D]:
        error: ConfigurationError | None = None
        try:
            return self._connect_locked(name, options, cls)
        except ConfigurationError as exc:
            error = exc
        # A configuration mistake names its key: the frames below, whose locals may hold
        # a value revealed to check it, and the options here (an option only the driver
        # knows is secret is still text) are left out. Other errors keep their traceback.
        del options
        raise error.with_traceback(None)

    def _connect_locked(
        self, name: str, options: Mapping[str, Any], cls: type[D] | None
    ) -> Broadcaster[D]:
        with self._lock:
            plugin = driver_plugin(name)
            # the options a driver (or a factory plugin) declares secret reach it wrapped
            hidden = declared_secret_options(name, plugin) if plugin is not None else frozenset()
            if cls is not None:
                hidden |= cls.secret_options
            options = wrap_named(options, hidden)
            delivery, own = DeliveryOptions.from_options(name, options)
            if cls is not None and plugin is None:  # a private or test driver class
                driver: Driver = cls.from_config(own)
            else:
                driver = self._from_plugin(name, plugin, own)
                if cls is not None and not isinstance(driver, cls):
                    driver = cls.from_config(own)
            made: Broadcaster[Any] = Broadcaster(
                self, driver, wrap_named(options, type(driver).secret_options), delivery
            )
            given = sorted(DELIVERY_OPTIONS.intersection(options))
            if given and not made._sends:
                raise ConfigurationError(
                    driver.name,
                    given[0],
                    "does not apply: this driver delivers in process (nothing to retry or batch)",
                )
            self._of_driver[id(driver)] = made
            return made

    def _from_plugin(self, name: str, plugin: object | None, options: Options) -> Driver:
        pm = self.plugin_manager
        if plugin is not None and not pm.is_registered(plugin):
            pm.register(plugin, name=f"driver:{name}")
        driver = pm.hook.broadcasting_connect(name=name, options=options)
        if driver is None and plugin is None:
            raise DriverNotFoundError(name, driver_names())
        if not isinstance(driver, Driver):
            reason = (
                f"its broadcasting_connect hook returned None for {name!r}"
                if driver is None
                else f"broadcasting_connect returned {type(driver).__name__}, not a Driver"
            )
            raise PluginLoadError(
                entry_point=name, value=repr(plugin), distribution=None, reason=reason
            )
        return driver

    def broadcaster_of(self, driver: Driver) -> Broadcaster[Any]:
        """The :class:`Broadcaster` this instance made for ``driver`` (the hooks get drivers)."""
        found = self._of_driver.get(id(driver))
        if found is None or found.driver is not driver:
            raise LookupError(f"{driver!r} was not connected by {self!r}")
        return found

    def _publisher(self) -> Broadcaster[Any]:
        return self.driver()  # channel() and achannel() publish on the default driver

    def _target(self, driver: DriverRef) -> Broadcaster[Any]:
        if isinstance(driver, Broadcaster):
            return driver
        return self.driver(driver)

    # -- publishing -----------------------------------------------------------

    def send_to_user(
        self, user_id: str | int, event: str, data: Payload, *, driver: DriverRef = None
    ) -> Receipt:
        """Publish ``event`` to every connection of the signed-in user ``user_id``.

        Raises :class:`NotSupportedError` when the driver cannot address a user.
        """
        return run(self._to_user(self._target(driver), user_id, event, data))

    async def asend_to_user(
        self, user_id: str | int, event: str, data: Payload, *, driver: DriverRef = None
    ) -> Receipt:
        """Async twin of :meth:`send_to_user`."""
        return await arun(self._to_user(self._target(driver), user_id, event, data))

    @staticmethod
    def _to_user(
        target: Broadcaster[Any], user_id: str | int, event: str, data: Payload
    ) -> Flow[Receipt]:
        driver = target.driver
        _require(driver, Feature.USER_SIGN_IN, "sending to a user")
        if not isinstance(user_id, (str, int)) or isinstance(user_id, bool) or user_id == "":
            raise InputError(f"{driver.name}: user_id must be a non-empty str")
        channel = driver.user_channel(str(user_id))
        message = build_message(driver, channel, data, event, None, reserved=True)
        return (yield from target.publish_message(message))

    # -- authorizing subscriptions ----------------------------------------------

    def rule(self, pattern: str) -> Callable[[Rule], Rule]:
        """Decorator: add a channel rule for the channels matching ``pattern``.

        ``pattern`` matches the name without its prefix; each ``{param}`` one
        dot-free segment, passed by keyword. ``rule(user, **params)``, sync or
        async, returns ``True`` (or a presence member's info, with an ``id``) to
        allow, ``False``/``None`` to refuse. The first matching rule decides
        (docs/authorization.md#rules).
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
        """Authorize ``user``'s subscription to ``channel_name``: the body the client expects.

        Raises :class:`BadRequestError` (400) for a malformed request and
        :class:`ForbiddenError` (403) when no rule allows it. Without
        ``channel_name``, a driver that signs connections (Ably) signs one for
        ``user``. ``extra`` is what else the client sent (Ably's ``token``), kept
        wrapped as secrets (docs/authorization.md).
        """
        return run(self._authorize(driver, user, socket_id, channel_name, extra))

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
        return await arun(self._authorize(driver, user, socket_id, channel_name, extra))

    def _authorize(
        self,
        driver: DriverRef,
        user: Any,
        socket_id: str | None,
        channel_name: str | None,
        extra: Mapping[str, str | Secret] | None,
    ) -> Flow[dict[str, Any]]:
        """:meth:`authorize` as a flow (the web endpoints run it too)."""
        target = self._target(driver).driver
        if channel_name is None or channel_name == "":
            if Feature.CONNECTION_TOKENS not in target.features:
                raise BadRequestError("channel_name is missing")
            request = _auth.connection_request(target, user, socket_id)
        else:
            _require(target, Feature.AUTHORIZE, "channel authorization")
            request = _auth.channel_request(target, user, socket_id, channel_name)
        if extra:
            request = _auth.with_extra(request, extra)
        return (yield from self._signed(target, request))

    def authenticate_user(
        self, socket_id: str, user_data: Mapping[str, Any], *, driver: DriverRef = None
    ) -> dict[str, Any]:
        """Sign a user in (``pusher:signin``): ``user_data`` must have an ``id``.

        Raises :class:`NotSupportedError` when the driver has no user sign-in.
        """
        return run(self._authenticate_user(driver, socket_id, user_data))

    async def aauthenticate_user(
        self, socket_id: str, user_data: Mapping[str, Any], *, driver: DriverRef = None
    ) -> dict[str, Any]:
        """Async twin of :meth:`authenticate_user`."""
        return await arun(self._authenticate_user(driver, socket_id, user_data))

    def _authenticate_user(
        self, driver: DriverRef, socket_id: str, user_data: Mapping[str, Any]
    ) -> Flow[dict[str, Any]]:
        """:meth:`authenticate_user` as a flow (the web endpoints run it too)."""
        target = self._target(driver).driver
        _require(target, Feature.USER_SIGN_IN, "user sign-in")
        request = _auth.user_request(target, socket_id, user_data)
        return (yield from self._signed(target, request))

    def _signed(self, driver: Driver, request: AuthRequest) -> Flow[dict[str, Any]]:
        kwargs = {"broadcast": self, "driver": driver, "request": request}
        body = yield Hook(self.plugin_manager, "broadcasting_authorize", kwargs)
        if not isinstance(body, dict):
            raise TypeError(f"broadcasting_authorize returned {type(body).__name__}, not a dict")
        return body

    # -- hearing back ---------------------------------------------------------

    def on_webhook(self, name: str = "*") -> Callable[[WebhookHandler], WebhookHandler]:
        """Decorator: call the function with each verified webhook event ``name`` (``*``: all).

        The handler may be async. The same event may arrive twice (services
        retry): de-duplicate on ``event.id`` (docs/webhooks.md).
        """

        def add(handler: WebhookHandler) -> WebhookHandler:
            self.webhook_handlers.add(name, handler)
            return handler

        return add

    def webhook(
        self, headers: Mapping[str, str], body: bytes, *, driver: DriverRef = None
    ) -> list[WebhookEvent]:
        """Verify a webhook delivery (the raw body), run the hook and handlers, return its events.

        Raises :class:`UnauthorizedError` (401) for a bad signature, an unknown
        key or an old delivery, :class:`BadRequestError` (400) for a malformed one.
        """
        return run(self._webhook(driver, headers, body))

    async def awebhook(
        self, headers: Mapping[str, str], body: bytes, *, driver: DriverRef = None
    ) -> list[WebhookEvent]:
        """Async twin of :meth:`webhook`; async handlers are awaited on the caller's loop."""
        return await arun(self._webhook(driver, headers, body))

    def _webhook(
        self, driver: DriverRef, headers: Mapping[str, str], body: bytes
    ) -> Flow[list[WebhookEvent]]:
        """:meth:`webhook` as a flow (the web endpoints run it too)."""
        target = self._target(driver).driver
        _require(target, Feature.WEBHOOKS, "webhooks")
        return (yield from _webhooks.receive(self, target, headers, body))

    def occupied_channels(
        self, prefix: str | None = None, *, driver: DriverRef = None
    ) -> list[ChannelInfo]:
        """The occupied channels whose name starts with ``prefix``."""
        return run(self._ask(driver, Feature.STATE, "occupied_channels", prefix))

    async def aoccupied_channels(
        self, prefix: str | None = None, *, driver: DriverRef = None
    ) -> list[ChannelInfo]:
        """Async twin of :meth:`occupied_channels`."""
        return await arun(self._ask(driver, Feature.STATE, "occupied_channels", prefix))

    def channel_info(self, channel: str | Channel, *, driver: DriverRef = None) -> ChannelInfo:
        """What the service knows of one channel (occupied, subscriptions, users)."""
        info: ChannelInfo = run(self._ask(driver, Feature.STATE, "channel_info", channel))
        return info

    async def achannel_info(
        self, channel: str | Channel, *, driver: DriverRef = None
    ) -> ChannelInfo:
        """Async twin of :meth:`channel_info`."""
        return await arun(self._ask(driver, Feature.STATE, "channel_info", channel))

    def members(self, channel: str | Channel, *, driver: DriverRef = None) -> list[Member]:
        """Who is in a presence channel."""
        return run(self._ask(driver, Feature.STATE, "members", channel))

    async def amembers(self, channel: str | Channel, *, driver: DriverRef = None) -> list[Member]:
        """Async twin of :meth:`members`."""
        return await arun(self._ask(driver, Feature.STATE, "members", channel))

    def terminate_user(self, user_id: str, *, driver: DriverRef = None) -> None:
        """Disconnect every connection of the signed-in user ``user_id``."""
        run(self._ask(driver, Feature.TERMINATE_USER, "terminate_user", str(user_id)))

    async def aterminate_user(self, user_id: str, *, driver: DriverRef = None) -> None:
        """Async twin of :meth:`terminate_user`."""
        await arun(self._ask(driver, Feature.TERMINATE_USER, "terminate_user", str(user_id)))

    def _ask(self, driver: DriverRef, feature: Feature, method: str, arg: Any) -> Flow[Any]:
        target = self._target(driver).driver
        _require(target, feature, _FEATURE_WORDS[method])
        if isinstance(arg, Channel):
            arg = target.channel_name(arg)
        return (yield DriverCall(target, method, arg))

    # -- lifecycle ----------------------------------------------------------------

    def _connected(self) -> list[Broadcaster[Any]]:
        with self._lock:
            return list(self._of_driver.values())

    def close(self) -> None:
        """Close every connection (idempotent); a driver reconnects on its next use."""
        errors = []
        for broadcaster in self._connected():
            try:
                broadcaster.close()
            except Exception as exc:  # close every driver, then report
                errors.append(exc)
        _raise_all(errors)

    async def aclose(self) -> None:
        """Async twin of :meth:`close`: what this loop's batchers queued goes out first."""
        errors = []
        for broadcaster in self._connected():
            try:
                await broadcaster.aclose()
            except Exception as exc:
                errors.append(exc)
        _raise_all(errors)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        config = getattr(self, "config", None)  # None while __init__ failed to load it
        return f"<Broadcast driver={config.driver if config is not None else '?'!r}>"


_FEATURE_WORDS = {
    "occupied_channels": "listing channels",
    "channel_info": "channel info",
    "members": "presence members",
    "terminate_user": "terminating a user's connections",
}


def _require(driver: Driver, feature: Feature, what: str) -> None:
    if feature not in driver.features:
        raise NotSupportedError(driver.name, what)


def _raise_all(errors: list[Exception]) -> None:
    """Raise the one error of a close, or a CloseError holding them all."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise CloseError(errors) from errors[0]
