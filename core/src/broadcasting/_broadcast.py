"""The Broadcast object: configuration in, broadcasters out, every call through the hooks."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, overload

from broadcasting import _auth, _webhooks
from broadcasting._auth import AuthRequest, ChannelRules, R
from broadcasting._background import NOW, send_mode
from broadcasting._broadcaster import Broadcaster, Publishes, wrong_result
from broadcasting._channels import Channel
from broadcasting._config import ConfigSource, load_config
from broadcasting._delivery import DELIVERY_OPTIONS, DeliveryOptions, drivers_own
from broadcasting._driver import Driver, Feature
from broadcasting._errors import (
    BadRequestError,
    BroadcastError,
    CloseError,
    ConfigurationError,
    DriverNotFoundError,
    InputError,
    NotSupportedError,
    PluginLoadError,
)
from broadcasting._flow import DriverCall, Flow, Hook, awaiting, blocking
from broadcasting._fork import call_after_fork
from broadcasting._plugins import (
    add_driver_plugin,
    built,
    class_note,
    connect_note,
    declared_secret_options,
    driver_names,
    driver_plugin,
    implements,
    make_plugin_manager,
    origin,
)
from broadcasting._state import ChannelInfo, Member
from broadcasting._types import Options, Payload, Receipt, Secret, wrap_named
from broadcasting._validate import build_message
from broadcasting._webhooks import H, WebhookEvent

if TYPE_CHECKING:
    from typing_extensions import Self

    from broadcasting.outbox import Store

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
        if isinstance(value, (set, frozenset)):
            items = tuple(sorted(items, key=repr))
        return (type(value).__name__, items)
    try:
        hash(value)
    except TypeError:
        return ("unhashable", id(value))  # never equal to another object's options
    return (type(value).__name__, value)


class Broadcast(Publishes):
    """Publishes events through the driver named in configuration.

    ``config``: a mapping with ``DRIVER`` and ``DRIVERS``, a module with those names, or a
    ``.py``, ``.toml`` or ``.json`` file's path (docs/configuration.md). ``plugins``: hook
    implementations for this instance. Connections open on first use; :meth:`close` ends them.
    """

    def __init__(self, config: ConfigSource = None, *, plugins: Iterable[object] = ()) -> None:
        self.config = load_config(config)
        self.plugin_manager = make_plugin_manager(plugins)
        self._named: dict[str, Broadcaster[Any]] = {}  # what driver(name) returns
        self._variants: OrderedDict[tuple[object, ...], Broadcaster[Any]] = OrderedDict()
        # every one this instance made and someone still holds (a variant evicted while a
        # caller keeps it still publishes: the core's publish hook finds it here)
        self._of_driver: weakref.WeakValueDictionary[int, Broadcaster[Any]] = (
            weakref.WeakValueDictionary()
        )
        self._lock = threading.RLock()
        call_after_fork(self)
        #: The channel rules added with :meth:`rule`.
        self.rules = ChannelRules()
        #: The webhook handlers added with :meth:`on_webhook`.
        self.webhook_handlers = _webhooks.WebhookHandlers()
        # the outbox's store (outbox.store_for), kept here by the first outbox write
        self._outbox_store: Store | None = None

    @overload
    def driver(self, driver: str | None = None) -> Broadcaster[Driver]: ...

    @overload
    def driver(self, driver: type[D]) -> Broadcaster[D]: ...

    def driver(self, driver: str | type[Driver] | None = None) -> Broadcaster[Any]:
        """The :class:`Broadcaster` of ``driver``: a name, a Driver class (connected directly if
        no installed plugin provides it), or ``None`` (``DRIVER``)."""
        if driver is None:
            name = self.config.driver
        elif isinstance(driver, str):
            name = driver
        elif isinstance(driver, type) and issubclass(driver, Driver):
            return self._for_class(driver)
        else:
            raise TypeError(f"driver() takes a name or a Driver class, not {driver!r}")
        connected = self._named.get(name)
        if connected is None:
            with self._lock:  # checked again: another thread may have connected it meanwhile
                if name not in self._named:
                    self._named[name] = self._connect(name, self.config.options(name))
                connected = self._named[name]
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
        """A broadcaster of ``cls`` with other ``options``, kept by their values (secrets too: two
        tenants' keys never share a driver); the least recently used beyond MAX_VARIANTS is let
        go of, and closed once nobody holds it."""
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
        if evicted is not None:
            # closed once nobody holds it: at once, or once the publishes under way through it
            # (another tenant's, on another task or thread) are done; closed under them, a
            # request that went out would be cut off and end unknown
            weakref.finalize(evicted, evicted.driver.close)
        return existing

    def _connect(
        self, name: str, options: Mapping[str, Any], cls: type[D] | None = None
    ) -> Broadcaster[D]:
        try:
            return self._connect_locked(name, options, cls)
        except ConfigurationError as exc:
            error = exc
        # A configuration mistake names its key: the frames below (their locals may hold a value
        # revealed to check it) and the options here (an option only the driver knows is secret
        # is still text) are left out. Other errors keep their traceback.
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
            wrong: ConfigurationError | None = None
            try:
                delivery, own = DeliveryOptions.from_options(name, options)
            except ConfigurationError as exc:
                wrong = exc
            if wrong is not None:
                raise self._with_the_drivers_problems(wrong, name, plugin, options, cls)
            driver = self._make_driver(name, plugin, own, cls)
            made: Broadcaster[Any] = Broadcaster(
                self, driver, wrap_named(options, type(driver).secret_options), delivery
            )
            given = sorted(DELIVERY_OPTIONS.intersection(options))
            if given and not made._sends:
                problem = (
                    "does not apply: this driver delivers in process (nothing to retry or batch)"
                )
                refused = [ConfigurationError(driver.name, key, problem) for key in given]
                raise ConfigurationError.combine(refused)
            self._of_driver[id(driver)] = made
            return made

    def _with_the_drivers_problems(
        self,
        wrong: ConfigurationError,
        name: str,
        plugin: object | None,
        options: Mapping[str, Any],
        cls: type[Driver] | None,
    ) -> ConfigurationError:
        """``wrong`` (the delivery options' problems) with those the driver's ``from_config``
        finds in its own options, so that every wrong option is named at once, not one
        run after another. A driver that accepts its options is closed unused (a driver
        opens its connections on first use); its plain exception propagates (a bug first)."""
        own = drivers_own(options)
        del options
        try:
            unused = self._make_driver(name, plugin, own, cls)
        except ConfigurationError as exc:
            theirs: ConfigurationError | None = exc
        else:
            theirs = None
            with contextlib.suppress(Exception):  # what a from_config may have opened
                unused.close()
        del own
        if theirs is None or any(e.driver != wrong.driver for e in theirs.problems):
            return wrong  # errors of another name cannot be one error
        return ConfigurationError.combine([wrong, theirs])

    def _make_driver(
        self, name: str, plugin: object | None, own: Options, cls: type[Driver] | None
    ) -> Driver:
        """Driver ``name`` made from its options. A plain exception the driver's code raised
        (a KeyError in ``from_config``) reaches the caller as it is, its traceback whole, with
        a note (PEP 678) naming the driver, the hook and the plugin; a BroadcastError (a
        ConfigurationError) says what it is about already."""
        if cls is not None and plugin is None:  # a private or test driver class
            return _built_noted(name, cls, own)
        try:
            driver = self._from_plugin(name, plugin, own)
        except BroadcastError:
            raise
        except Exception as exc:
            _add_note(exc, connect_note(self.plugin_manager, name, exc))
            raise
        if cls is not None and not isinstance(driver, cls):
            return _built_noted(name, cls, own)
        return driver

    def _from_plugin(self, name: str, plugin: object | None, options: Options) -> Driver:
        pm = self.plugin_manager
        if plugin is not None:  # asked after the plugins passed to Broadcast (docs/hooks.md)
            add_driver_plugin(pm, name, plugin)
        driver = pm.hook.broadcasting_connect(name=name, options=options)
        if driver is None and plugin is None:
            raise DriverNotFoundError(name, driver_names())
        if driver is None and not implements(pm, plugin, "broadcasting_connect"):
            reason = "it implements no broadcasting_connect hook and is not a Driver class"
        elif driver is None:
            reason = f"its broadcasting_connect hook returned None for {name!r}"
        elif not isinstance(driver, Driver):
            reason = f"broadcasting_connect returned {type(driver).__name__}, not a Driver"
        else:
            return driver
        value, distribution = origin(plugin)
        raise PluginLoadError(
            entry_point=name, value=value, distribution=distribution, reason=reason
        )

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

    def _send_to_user_flow(
        self,
        user_id: str | int,
        event: str,
        data: Payload,
        *,
        driver: DriverRef = None,
        send: str | None = None,
        transaction: object = None,
    ) -> Flow[Receipt]:
        """Publish ``event`` to every connection of the signed-in user ``user_id``.

        ``send`` and ``transaction`` as for :meth:`channel` (docs/background.md). Raises
        :class:`NotSupportedError` when the driver cannot address a user.
        """
        target = self._target(driver)
        _require(target.driver, Feature.USER_SIGN_IN, "sending to a user")
        if not isinstance(user_id, (str, int)) or isinstance(user_id, bool) or user_id == "":
            raise InputError(f"{target.name}: user_id must be a non-empty str")
        channel = target.driver.user_channel(str(user_id))
        message = build_message(target.driver, channel, data, event, None, reserved=True)
        how = send_mode(self, send, None)
        if how != NOW:
            return (yield from target._defer(message, how, transaction))
        if transaction is not None and send is not None:
            raise TypeError("transaction= applies to send='after_commit' or 'outbox', not 'now'")
        return (yield from target.publish_message(message))

    def rule(self, pattern: str) -> Callable[[R], R]:
        """Decorator: add a channel rule for the channels matching ``pattern``.

        ``pattern`` matches the name without its prefix, each ``{param}`` one dot-free segment
        passed by keyword (``{param:int}``: a whole number in ASCII digits, passed as an
        ``int``; other text does not match). ``rule(user, **params)``, sync or async, returns
        ``True`` (or a presence member's info, with an ``id``) to allow, ``False``/``None`` to
        refuse. The first matching rule decides (docs/authorization.md#rules).
        """
        if not isinstance(pattern, str):  # @broadcast.rule with no pattern would add nothing
            raise TypeError(
                "rule() takes the channels' pattern first: @broadcast.rule('orders.{order_id}'),"
                f" not {type(pattern).__name__}"
            )
        return self.rules.adding(pattern)

    def _authorize_flow(
        self,
        user: Any,
        *,
        socket_id: str | None = None,
        channel_name: str | None = None,
        driver: DriverRef = None,
        extra: Mapping[str, str | Secret] | None = None,
    ) -> Flow[dict[str, Any]]:
        """Authorize ``user``'s subscription to ``channel_name``: the body the client expects.

        Raises :class:`BadRequestError` (400) for a malformed request and :class:`ForbiddenError`
        (403) when no rule allows it. Without ``channel_name``, a driver that signs connections
        (Ably) signs one for ``user``. ``extra`` is what else the client sent (Ably's
        ``token``), kept wrapped as secrets (docs/authorization.md).
        """
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

    def _authenticate_user_flow(
        self, socket_id: str, user_data: Mapping[str, Any], *, driver: DriverRef = None
    ) -> Flow[dict[str, Any]]:
        """Sign a user in (``pusher:signin``): ``user_data`` must have an ``id``.

        Raises :class:`NotSupportedError` when the driver has no user sign-in.
        """
        target = self._target(driver).driver
        _require(target, Feature.USER_SIGN_IN, "user sign-in")
        request = _auth.user_request(target, socket_id, user_data)
        return (yield from self._signed(target, request))

    def _signed(self, driver: Driver, request: AuthRequest) -> Flow[dict[str, Any]]:
        kwargs = {"broadcast": self, "driver": driver, "request": request}
        body = yield Hook(self.plugin_manager, "broadcasting_authorize", kwargs)
        if not isinstance(body, dict):
            raise wrong_result(self.plugin_manager, "broadcasting_authorize", body, "a dict")
        return body

    @overload
    def on_webhook(self, name: H, /) -> H: ...

    @overload
    def on_webhook(self, name: str = "*") -> Callable[[H], H]: ...

    def on_webhook(self, name: str | H = "*") -> H | Callable[[H], H]:
        """Decorator: call the function with each verified webhook event ``name`` (``*``: all;
        ``@broadcast.on_webhook`` with no parentheses, too).

        The handler may be async. The same event may arrive twice (services
        retry): de-duplicate on ``event.id`` (docs/webhooks.md).
        """
        if callable(name):  # @broadcast.on_webhook: every event
            self.webhook_handlers.add("*", name)
            return name
        if not isinstance(name, str):
            raise TypeError(f"on_webhook() takes an event name, not {type(name).__name__}")
        event = name

        def add(handler: H) -> H:
            self.webhook_handlers.add(event, handler)
            return handler

        return add

    def _webhook_flow(
        self, headers: Mapping[str, str], body: bytes, *, driver: DriverRef = None
    ) -> Flow[list[WebhookEvent]]:
        """Verify a webhook delivery (the raw body), run the hook and handlers, return its events.

        Raises :class:`UnauthorizedError` (401) for a bad signature, an unknown
        key or an old delivery, :class:`BadRequestError` (400) for a malformed one.
        """
        target = self._target(driver).driver
        _require(target, Feature.WEBHOOKS, "webhooks")
        return (yield from _webhooks.receive(self, target, headers, body))

    def _occupied_channels_flow(
        self, prefix: str | None = None, *, driver: DriverRef = None
    ) -> Flow[list[ChannelInfo]]:
        """The occupied channels whose name starts with ``prefix``."""
        return self._ask(driver, "occupied_channels", prefix)

    def _channel_info_flow(
        self, channel: str | Channel, *, driver: DriverRef = None
    ) -> Flow[ChannelInfo]:
        """What the service knows of one channel (occupied, subscriptions, users)."""
        return self._ask(driver, "channel_info", channel)

    def _members_flow(
        self, channel: str | Channel, *, driver: DriverRef = None
    ) -> Flow[list[Member]]:
        """Who is in a presence channel."""
        return self._ask(driver, "members", channel)

    def _terminate_user_flow(self, user_id: str, *, driver: DriverRef = None) -> Flow[None]:
        """Disconnect every connection of the signed-in user ``user_id``."""
        yield from self._ask(driver, "terminate_user", str(user_id))

    def _ask(self, driver: DriverRef, method: str, arg: Any) -> Flow[Any]:
        target = self._target(driver).driver
        _require(target, *_QUERIES[method])
        if isinstance(arg, Channel):
            arg = target.channel_name(arg)
        return (yield DriverCall(target, method, arg))

    def _close_flow(self) -> Flow[None]:
        """Close every connection (idempotent); a driver reconnects on its next use."""
        with self._lock:
            connected = list(self._of_driver.values())
        errors = []
        for broadcaster in connected:
            try:
                yield from broadcaster._close_flow()
            except Exception as exc:  # close every driver, then report
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise CloseError(errors) from errors[0]

    # the public methods: each ``x`` and ``ax`` made from the flow method ``_x_flow`` above
    send_to_user = blocking(_send_to_user_flow)
    asend_to_user = awaiting(_send_to_user_flow)
    authorize = blocking(_authorize_flow)
    aauthorize = awaiting(_authorize_flow, "async rules are awaited on the caller's loop")
    authenticate_user = blocking(_authenticate_user_flow)
    aauthenticate_user = awaiting(_authenticate_user_flow)
    webhook = blocking(_webhook_flow)
    awebhook = awaiting(_webhook_flow, "async handlers are awaited on the caller's loop")
    occupied_channels = blocking(_occupied_channels_flow)
    aoccupied_channels = awaiting(_occupied_channels_flow)
    channel_info = blocking(_channel_info_flow)
    achannel_info = awaiting(_channel_info_flow)
    members = blocking(_members_flow)
    amembers = awaiting(_members_flow)
    terminate_user = blocking(_terminate_user_flow)
    aterminate_user = awaiting(_terminate_user_flow)
    close = blocking(_close_flow)
    aclose = awaiting(_close_flow, "what this loop's batchers queued goes out first")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _after_fork(self) -> None:
        """In a forked child: a lock another thread of the parent held (connecting a driver,
        adding or finding webhook handlers) stays held here, where that thread does not exist;
        fresh ones. (A SettingsBroadcast has no ``_lock`` until it reads the settings.)"""
        if "_lock" in vars(self):
            self._lock = threading.RLock()
        handlers = getattr(self, "webhook_handlers", None)  # none if __init__ failed
        if isinstance(handlers, _webhooks.WebhookHandlers):
            handlers._lock = threading.Lock()

    def __repr__(self) -> str:
        config = getattr(self, "config", None)  # None while __init__ failed to load it
        return f"<Broadcast driver={config.driver if config is not None else '?'!r}>"


_QUERIES = {  # a query method: the feature it needs, and how NotSupportedError words it
    "occupied_channels": (Feature.STATE, "listing channels"),
    "channel_info": (Feature.STATE, "channel info"),
    "members": (Feature.STATE, "presence members"),
    "terminate_user": (Feature.TERMINATE_USER, "terminating a user's connections"),
}


def _built_noted(name: str, cls: type[D], options: Options) -> D:
    """:func:`built`, a plain exception of ``from_config`` noted (:func:`_add_note`)."""
    try:
        return built(cls, options)
    except BroadcastError:
        raise
    except Exception as exc:
        _add_note(exc, class_note(name, cls))
        raise


def _add_note(error: BaseException, note: str) -> None:
    """PEP 678's ``add_note``; on 3.10, which has none, the same ``__notes__`` list (printed
    by the exceptiongroup backport's traceback, read by pytest). Added once."""
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list) and note in notes:
        return
    if hasattr(error, "add_note"):
        error.add_note(note)
    elif isinstance(notes, list):
        notes.append(note)
    else:
        error.__notes__ = [note]  # type: ignore[attr-defined]


def _require(driver: Driver, feature: Feature, what: str) -> None:
    if feature not in driver.features:
        raise NotSupportedError(driver.name, what)
