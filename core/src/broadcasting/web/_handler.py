"""The framework-agnostic side of the web endpoints: parse, authorize, answer.

Every adapter (Starlette/FastAPI, Django, Flask) reads what its framework
gives (method, headers, query string, raw body) and hands it to one
:class:`AuthEndpoints`, which answers with a :class:`Response`. Nothing here
imports a web framework.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict
from urllib.parse import parse_qsl

from broadcasting._auth import MAX_SOCKET_ID_LENGTH
from broadcasting._broadcaster import Broadcaster
from broadcasting._driver import PUSHER_SOCKET_ID, Driver, Feature
from broadcasting._errors import (
    BadRequestError,
    BroadcastError,
    ForbiddenError,
    NotSupportedError,
    RuleError,
    UnauthorizedError,
)
from broadcasting._flow import Call, Flow, arun, run
from broadcasting._types import Secret

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from broadcasting._broadcast import Broadcast, DriverRef

logger = logging.getLogger("broadcasting.web")

#: ``user(request)``: the application's current user, or ``None`` when nobody
#: is signed in. ``request`` is the framework's own request object. It may be
#: a coroutine function.
UserFunction = Callable[[Any], Any]

#: ``user_data(request, user)``: the signed-in user's data for ``pusher:signin``,
#: a dict with an ``id`` (Pusher shows the rest, such as ``name``, to nobody
#: but the server's webhooks and ``members()``). It may be a coroutine function.
UserDataFunction = Callable[[Any, Any], Any]

#: ``offload(function, *args)``: runs a plain function off the event loop and
#: returns an awaitable of its result (``asyncio.to_thread``, Starlette's
#: ``run_in_threadpool``).
Offload = Callable[..., Awaitable[Any]]

#: Which endpoint a request is for.
Route = Literal["auth", "user-auth", "webhook"]


class _Needed(TypedDict):
    method: str
    headers: Mapping[str, str] | Any


class Sent(_Needed, total=False):
    """What :meth:`AuthEndpoints.handle` takes, by keyword, besides the route and request.

    ``method`` (the HTTP method), ``headers`` (any mapping or list of pairs),
    ``body`` (the raw body, byte for byte: a webhook's signature covers it;
    default empty) and ``query`` (the raw query string; default empty).
    """

    body: bytes
    query: bytes | str


#: The methods each route answers (405 for any other).
METHODS: Mapping[Route, tuple[str, ...]] = {
    "auth": ("GET", "POST"),
    "user-auth": ("POST",),
    "webhook": ("POST",),
}

#: The default paths the adapters mount.
AUTH_PATH = "/broadcasting/auth"
USER_AUTH_PATH = "/broadcasting/user-auth"
WEBHOOK_PATH = "/broadcasting/webhook"

#: The largest authorization request body accepted (413 above it). A
#: pusher-js request is under 100 bytes; an Ably client's current token
#: (a JWT) fits easily.
MAX_AUTH_BODY = 8 * 1024
#: The largest webhook delivery accepted (413 above it).
MAX_WEBHOOK_BODY = 1024 * 1024

#: The fields the auth endpoints read themselves; every other field the
#: client sends goes to ``extra`` (see :meth:`Broadcast.authorize`).
SOCKET_ID = "socket_id"
CHANNEL_NAME = "channel_name"
#: Form fields that carry a CSRF token: never handed on as ``extra``.
_CSRF_FIELDS = frozenset({"csrfmiddlewaretoken", "_token"})
_MAX_FIELDS = 64

_JSON_HEADERS = {"content-type": "application/json", "cache-control": "no-store"}
_FIXED = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    413: "request body too large",
    500: "internal server error",
    501: "not supported",
}


@dataclass(frozen=True, slots=True)
class Response:
    """What an endpoint answers: an HTTP status, a JSON body and extra headers.

    ``headers`` always holds ``content-type: application/json`` and
    ``cache-control: no-store`` (an authorization must never be cached).
    """

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=lambda: dict(_JSON_HEADERS))

    @property
    def content(self) -> bytes:
        """The body as compact UTF-8 JSON."""
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300


class Headers(Mapping[str, str]):
    """A case-insensitive, read-only view of request headers.

    Built from any mapping or list of pairs; a name given twice keeps its
    first value. Webhook verification receives one of these.
    """

    __slots__ = ("_items",)

    def __init__(self, headers: Any = ()) -> None:
        if isinstance(headers, Headers):
            self._items: dict[str, tuple[str, str]] = headers._items
            return
        items: dict[str, tuple[str, str]] = {}
        pairs: Iterable[tuple[Any, Any]] = headers.items() if hasattr(headers, "items") else headers
        for name, value in pairs:
            if name.__class__ is not str:
                name = name.decode("latin-1") if isinstance(name, bytes) else str(name)
            if value.__class__ is not str:
                value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            key = name.lower()
            if key not in items:
                items[key] = (name, value)
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __repr__(self) -> str:
        return f"Headers({sorted(self._items)!r})"


def socket_id_from(headers: Any, driver: Broadcaster[Any] | Driver | None = None) -> str | None:
    """The ``X-Socket-ID`` header's socket id if it has the shape of one, else ``None``.

    Laravel Echo sends it on the application's own requests (its axios,
    jQuery and Vue interceptors), so a view can publish to everyone but the
    sender's own tab::

        broadcast.channel("orders", data, "shipped", socket_id=socket_id_from(request.headers))

    ``headers`` may be any framework's header mapping (``request.headers``
    of Starlette, Django or Flask), a plain dict, or Django's
    ``request.META`` (``HTTP_X_SOCKET_ID``). The shape is Pusher's
    ``digits.digits`` (soketi, Reverb, the ``memory`` driver), or with
    ``driver`` (a :class:`~broadcasting.Broadcaster` or a driver) that
    driver's ``socket_id_pattern``. A malformed value is ignored, so a forged
    header cannot break the publish.
    """
    if not hasattr(headers, "get"):  # a list of (name, value) pairs
        headers = Headers(headers)
    value: object = None
    for name in ("X-Socket-ID", "x-socket-id", "HTTP_X_SOCKET_ID"):
        value = headers.get(name)
        if value is not None:
            break
    else:  # a plain dict with other casing
        for key in headers:
            if isinstance(key, str) and key.lower() == "x-socket-id":
                value = headers[key]
                break
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    value = value.strip()
    if driver is None:
        pattern = PUSHER_SOCKET_ID
    elif isinstance(driver, Broadcaster):
        pattern = driver.driver.socket_id_pattern
    else:
        pattern = driver.socket_id_pattern
    if len(value) <= MAX_SOCKET_ID_LENGTH and pattern.fullmatch(value):
        return value
    return None


def default_user_data(user: Any) -> dict[str, Any]:
    """The sign-in data derived from a user: ``{"id": "<the user's id as text>"}``, nothing more.

    The id is ``user["id"]`` for a mapping, else the user's ``id``
    attribute, else ``pk`` (Django), else ``get_id()`` (Flask-Login). Only
    the id: the sign-in data goes back to the browser and to the service, so
    nothing else of the user is sent unless ``user_data=`` says so. A user
    with no id is a :class:`RuleError`: pass ``user_data=`` to the endpoints.
    """
    if isinstance(user, Mapping):
        if user.get("id") is not None:
            return {"id": str(user["id"])}
    else:
        for attribute in ("id", "pk"):
            ident = getattr(user, attribute, None)
            if ident is not None and not callable(ident):
                return {"id": str(ident)}
        get_id = getattr(user, "get_id", None)
        if callable(get_id):
            ident = get_id()
            if ident is not None:
                return {"id": str(ident)}
    raise RuleError(
        f"cannot derive sign-in data from a {type(user).__name__}: it has no 'id', 'pk' or "
        "get_id(); pass user_data=lambda request, user: {'id': ..., ...} to the endpoints"
    )


class _Hidden:
    """What a client sent (the framework's request, method, headers, raw body and query).

    Its ``repr`` shows none of it: the body, the query string and the headers
    may hold a credential (an Ably client's current ``token``, an
    ``Authorization`` header), and Django's and Flask's request ``repr`` shows
    the query string, while an error tracker records the ``repr`` of every
    local of a logged traceback's frames. The flows hold only this while user
    code runs.
    """

    __slots__ = ("body", "headers", "method", "query", "request")

    def __init__(
        self, request: Any, method: str, headers: Any, body: bytes = b"", query: bytes | str = b""
    ) -> None:
        self.request = request
        self.method = method.upper()
        self.headers = Headers(headers)
        self.body = body
        self.query = query

    def __repr__(self) -> str:
        return f"<{self.method} request ({len(self.body)}-byte body), not shown>"


class _BadRequest(Exception):
    """A request the endpoint refuses before authorizing (status and short message)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _content_length(value: object) -> int | None:
    """A ``Content-Length`` value as an int, or ``None`` if it is not ASCII digits.

    Past 18 digits it is larger than any body limit, and ``int()`` would refuse
    it past 4300 (Python's limit on converting text): it counts as unbounded.
    """
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 18 else 2**63


def _media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _decode(raw: bytes | str, what: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadRequest(400, f"{what} is not valid UTF-8") from None


def _form(text: str, what: str) -> list[tuple[str, str]]:
    if "%" not in text and "+" not in text and ";" not in text and text.count("&") < _MAX_FIELDS:
        # nothing to unquote (pusher-js's usual form): split it directly
        pairs = []
        for field in text.split("&"):
            if field:
                name, _, value = field.partition("=")
                pairs.append((name, value))
        return pairs
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except ValueError:
        raise _BadRequest(400, f"{what} has too many fields") from None


def _multipart_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """The text fields of a ``multipart/form-data`` body (a browser's ``FormData``)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    if "boundary=" not in content_type:
        raise _BadRequest(400, "the multipart body has no boundary")
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise _BadRequest(400, "the multipart body does not parse")
    pairs: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            raise _BadRequest(400, "the multipart body may hold only named text fields")
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            raise _BadRequest(400, "the multipart body does not parse")
        pairs.append((name, _decode(payload, "the body")))
        if len(pairs) > _MAX_FIELDS:
            raise _BadRequest(400, "the body has too many fields")
    return pairs


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_fields(text: str) -> list[tuple[str, str]]:
    twice: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # Called as each object closes, the outermost last: what it leaves in
        # ``twice`` is about the top-level object, whose fields these are.
        value = dict(pairs)
        twice.clear()
        if len(value) < len(pairs):  # a name given twice: json.loads keeps the last
            names = [name for name, _ in pairs]
            twice.extend(key for key in (SOCKET_ID, CHANNEL_NAME) if names.count(key) > 1)
        return value

    try:
        value = json.loads(text, object_pairs_hook=pairs_hook)
    except ValueError:
        raise _BadRequest(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _BadRequest(400, "the JSON body must be an object")
    if twice:
        raise _BadRequest(400, f"{twice[0]} is given twice")
    if len(value) > _MAX_FIELDS:
        raise _BadRequest(400, "the JSON body has too many fields")
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        if key in (SOCKET_ID, CHANNEL_NAME) and not isinstance(item, str):
            if item is None:
                continue
            raise _BadRequest(400, f"{key} must be a string")
        if not _is_utf8(key) or (isinstance(item, str) and not _is_utf8(item)):
            # a "\ud800" escape decodes to a lone surrogate, which no signature can encode
            raise _BadRequest(400, "the JSON body holds a lone surrogate")
        if isinstance(item, str):
            pairs.append((key, item))
        elif item is not None:
            pairs.append((key, json.dumps(item, separators=(",", ":"))))
    return pairs


def parse_fields(
    method: str,
    headers: Headers,
    body: bytes,
    query: bytes | str,
    *,
    channel: bool,
    socket_required: bool = True,
) -> tuple[str | None, str | None, dict[str, Secret]]:
    """``(socket_id, channel_name, extra)`` from what a client sent; raises ``_BadRequest``.

    GET reads the query string; POST reads the body (form-encoded or JSON)
    over the query string. ``socket_id`` is required when ``socket_required``
    (Pusher's clients send one, Ably's do not), ``channel_name`` when
    ``channel``; the core checks their shapes. Every ``extra`` value comes
    back in a :class:`~broadcasting.plugin.Secret` (it may be a credential).
    """
    pairs = _form(_decode(query, "the query string"), "the query string") if query else []
    if method == "POST" and body:
        media = _media_type(headers)
        try:
            if media == "application/x-www-form-urlencoded":
                body_pairs = _form(_decode(body, "the body"), "the body")
            elif media == "application/json" or media.endswith("+json"):
                body_pairs = _json_fields(_decode(body, "the body"))
            elif media == "multipart/form-data":
                body_pairs = _multipart_fields(headers.get("content-type", ""), body)
            else:
                shown = media[:60] or "none"
                raise _BadRequest(
                    400,
                    f"unsupported content type {shown!r}: send "
                    "application/x-www-form-urlencoded, application/json or multipart/form-data",
                )
        except RecursionError:
            # a few KB of "[" (or nested multiparts) is deeper than a parser recurses
            raise _BadRequest(400, "the body is nested too deeply") from None
        body_keys = {key for key, _ in body_pairs}
        pairs = [(k, v) for k, v in pairs if k not in body_keys] + body_pairs
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in (SOCKET_ID, CHANNEL_NAME) and key in fields:
            raise _BadRequest(400, f"{key} is given twice")
        fields[key] = value
    socket_id = fields.pop(SOCKET_ID, None) or None
    if socket_required and socket_id is None:
        raise _BadRequest(400, "socket_id is missing")
    channel_name = fields.pop(CHANNEL_NAME, None)
    if channel and not channel_name:
        raise _BadRequest(400, "channel_name is missing")
    extra = {k: Secret(v) for k, v in fields.items() if k not in _CSRF_FIELDS}
    return socket_id, channel_name, extra


class AuthEndpoints:
    """The authorization, sign-in and webhook endpoints of one :class:`~broadcasting.Broadcast`.

    Args:
        broadcast: whose channel rules authorize and whose driver signs.
        user: ``user(request)`` returns the current user or ``None``; it is
            handed the framework's own request object, and may be async.
        user_data: ``user_data(request, user)`` returns the sign-in data (a
            dict with an ``id``) for ``/broadcasting/user-auth``; by default
            :func:`default_user_data` derives ``{"id": ...}`` from the user.
        driver: the driver to sign with, a name or a
            :class:`~broadcasting.Broadcaster` (default: the ``DRIVER``).
        max_body: the largest auth request body accepted (413 above).
        max_webhook_body: the largest webhook delivery accepted (413 above).

    :meth:`handle` (blocking) and :meth:`ahandle` (awaited, with async user
    functions and rules awaited on the caller's loop) take the route, the
    framework's request (for ``user``), the HTTP method, the headers, the
    raw body and the raw query string, and return a :class:`Response`.

    Statuses: 200 with the driver's body; 400 (malformed request, with a
    short message); 403 ``forbidden`` whatever the reason (the
    reason is logged at DEBUG on ``broadcasting.web``); 405; 413; 501 (the
    driver lacks the feature); 500 ``internal server error``
    for anything else (a rule or user function that raised), logged with
    its traceback on ``broadcasting.web``. An error's body is the signing
    driver's :meth:`~broadcasting.plugin.Driver.error_body`.
    """

    def __init__(
        self,
        broadcast: Broadcast,
        *,
        user: UserFunction,
        user_data: UserDataFunction | None = None,
        driver: DriverRef = None,
        max_body: int = MAX_AUTH_BODY,
        max_webhook_body: int = MAX_WEBHOOK_BODY,
    ) -> None:
        if not callable(user):
            raise TypeError("user= must be a function: user(request) -> the user or None")
        if user_data is not None and not callable(user_data):
            raise TypeError("user_data= must be a function: user_data(request, user) -> dict")
        for name, value in (("max_body", max_body), ("max_webhook_body", max_webhook_body)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int")
        self.broadcast = broadcast
        self.user = user
        self.user_data = user_data
        self.driver = driver
        self.max_body = max_body
        self.max_webhook_body = max_webhook_body

    def limit(self, route: Route) -> int:
        """The body size limit of ``route``: adapters read at most one byte more."""
        return self.max_webhook_body if route == "webhook" else self.max_body

    def __repr__(self) -> str:
        return f"<AuthEndpoints {self.broadcast!r} driver={self.driver!r}>"

    def handle(self, route: Route, request: Any, **sent: Unpack[Sent]) -> Response:
        """Answer a request for ``route`` (``auth``, ``user-auth`` or ``webhook``).

        ``request`` is the framework's request, for ``user``; ``method=``,
        ``headers=``, ``body=`` and ``query=`` are what the client sent (see
        :class:`Sent`). An async ``user`` function or rule runs on
        broadcasting's own loop.
        """
        return run(self._respond(route, _Hidden(request, **sent), None))

    async def ahandle(
        self, route: Route, request: Any, *, offload: Offload | None = None, **sent: Unpack[Sent]
    ) -> Response:
        """:meth:`handle`, awaited; ``offload`` runs a sync ``user``/``user_data`` off the loop.

        Without ``offload`` a sync user function is called on the loop.
        """
        return await arun(self._respond(route, _Hidden(request, **sent), offload))

    def error(self, status: int, message: str | None = None, **headers: str) -> Response:
        """An error answer in the shape the signing driver's clients read.

        For an adapter that refuses a request before :meth:`handle` (a client
        that disconnected mid-body, say). ``message`` defaults to the status's
        fixed text.
        """
        try:
            target: Broadcaster[Any] | None = self.broadcast._target(self.driver)
        except Exception:  # the driver cannot be connected: handle() logs why
            target = None
        return _answer(target, status, message, headers)

    # -- one flow per request, run by handle() and ahandle() --------------------------

    def _respond(self, route: Route, sent: _Hidden, offload: Offload | None) -> Flow[Response]:
        if route not in METHODS:
            raise ValueError(f"unknown route {route!r}")
        target: Broadcaster[Any] | None = None
        try:
            target = self.broadcast._target(self.driver)
            _precheck(route, sent, self.limit(route))
            if route == "auth":
                body = yield from self._authorize(target, sent, offload)
            elif route == "user-auth":
                body = yield from self._sign_in(target, sent, offload)
            else:
                events = yield from self.broadcast._webhook(target, sent.headers, sent.body)
                body = {"ok": True, "events": len(events)}
        except Exception as exc:
            return _failure(route, target, exc)
        return Response(200, body)

    def _authorize(
        self, target: Broadcaster[Any], sent: _Hidden, offload: Offload | None
    ) -> Flow[dict[str, Any]]:
        """Authorize a subscription, or sign a connection token (GET or POST).

        ``channel_name`` may be missing only for a driver that signs connection
        tokens (Ably's clients ask for one before any channel); ``socket_id``
        only for one whose clients send none (Ably's). Both are refused here,
        before the user function runs.
        """
        driver = target.driver
        socket_id, channel, extra = parse_fields(
            sent.method,
            sent.headers,
            sent.body,
            sent.query,
            channel=Feature.CONNECTION_TOKENS not in driver.features,
            socket_required=driver.requires_socket_id,
        )
        user = yield Call(self.user, sent.request, offload=offload)
        return (yield from self.broadcast._authorize(target, user, socket_id, channel, extra))

    def _sign_in(
        self, target: Broadcaster[Any], sent: _Hidden, offload: Offload | None
    ) -> Flow[dict[str, Any]]:
        """Sign the current user in (POST); 403 if nobody is."""
        socket_id, _, _ = parse_fields(
            sent.method, sent.headers, sent.body, sent.query, channel=False
        )
        user = yield Call(self.user, sent.request, offload=offload)
        if user is None:
            raise ForbiddenError("user sign-in: nobody is signed in")
        if self.user_data is None:
            data = default_user_data(user)
        else:
            data = yield Call(self.user_data, sent.request, user, offload=offload)
        # parse_fields refused a missing socket id already
        return (yield from self.broadcast._authenticate_user(target, socket_id or "", data))


def _precheck(route: Route, sent: _Hidden, limit: int) -> None:
    if sent.method not in METHODS[route]:
        raise _BadRequest(405, _FIXED[405], {"allow": ", ".join(METHODS[route])})
    length = _content_length(sent.headers.get("content-length"))
    if len(sent.body) > limit or (length is not None and length > limit):
        raise _BadRequest(413, _FIXED[413])


def _answer(
    target: Broadcaster[Any] | None,
    status: int,
    message: str | None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An error answer whose body is the driver's ``error_body``.

    pusher-js and Echo read only the status; Ably's SDKs parse the body as
    Ably's error shape, which the Ably driver's ``error_body`` gives. Without
    a driver (it could not be connected), the Driver base's default shape.
    """
    text = message if message is not None else _FIXED.get(status, "error")
    body = target.driver.error_body(status, text) if target is not None else {"error": text}
    return Response(status, body, {**_JSON_HEADERS, **(headers or {})})


def _failure(route: Route, target: Broadcaster[Any] | None, exc: BaseException) -> Response:
    """The response for an exception raised while handling ``route``.

    The client's own mistakes and refusals are logged at DEBUG; a 4xx the
    application caused (a presence rule's info over the service's limit,
    say) and a 501 at WARNING, without a traceback; anything else at ERROR
    with its traceback. Only the client's mistakes and 501s show their
    message in the body.
    """
    if isinstance(exc, _BadRequest):
        logger.debug("%s: %s", route, exc.message)
        return _answer(target, exc.status, exc.message, exc.headers)
    status = getattr(exc, "http_status", None) if isinstance(exc, BroadcastError) else None
    if isinstance(status, int) and (400 <= status < 500 or status == 501):
        if isinstance(exc, (BadRequestError, ForbiddenError, UnauthorizedError)):
            logger.debug("%s: %d: %s", route, status, exc)
        else:
            logger.warning("%s: %d: %s", route, status, exc)
        if isinstance(exc, (BadRequestError, NotSupportedError)):
            return _answer(target, status, str(exc))
        return _answer(target, status, None)
    logger.error("%s: the request failed", route, exc_info=exc)
    return _answer(target, 500, None)


def endpoints_for(
    target: Broadcast | AuthEndpoints,
    *,
    user: UserFunction | None,
    user_data: UserDataFunction | None = None,
    driver: DriverRef = None,
) -> AuthEndpoints:
    """``target`` if it is already an :class:`AuthEndpoints`, else one built on it."""
    if isinstance(target, AuthEndpoints):
        if user is not None or user_data is not None or driver is not None:
            raise TypeError("pass user=, user_data= and driver= to AuthEndpoints, not here")
        return target
    if user is None:
        raise TypeError(
            "user= is required: a function user(request) returning the current user or None"
        )
    return AuthEndpoints(target, user=user, user_data=user_data, driver=driver)


def mounted(
    auth_path: str | None, user_auth_path: str | None, webhook_path: str | None
) -> list[tuple[Route, str]]:
    """The routes an adapter serves, each with its path (a path of ``None`` leaves it out)."""
    paths: list[tuple[Route, str | None]] = [
        ("auth", auth_path),
        ("user-auth", user_auth_path),
        ("webhook", webhook_path),
    ]
    return [(route, path) for route, path in paths if path is not None]
