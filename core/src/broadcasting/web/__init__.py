"""Web endpoints for channel authorization, user sign-in and webhooks, for any framework: the
adapters are ``.starlette``, ``.django`` and ``.flask``; this imports none (docs/web.md)."""

from __future__ import annotations

import binascii
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar
from urllib.parse import parse_qsl, urlencode

from broadcasting._auth import MAX_SOCKET_ID_LENGTH
from broadcasting._broadcaster import Broadcaster
from broadcasting._client import client_config, client_config_html
from broadcasting._driver import PUSHER_SOCKET_ID, ClientSocketId, Driver, Feature
from broadcasting._errors import (
    BadRequestError,
    BroadcastError,
    ForbiddenError,
    NotSupportedError,
    RuleError,
    UnauthorizedError,
)
from broadcasting._flow import OFFLOAD, Call, Flow, arun, run
from broadcasting._types import Secret
from broadcasting._validate import _not_utf8
from broadcasting._webhooks import Headers

if TYPE_CHECKING:
    from typing_extensions import Required, Unpack

    from broadcasting._broadcast import Broadcast, DriverRef

__all__ = [
    "AUTH_PATH",
    "MAX_AUTH_BODY",
    "MAX_WEBHOOK_BODY",
    "METHODS",
    "USER_AUTH_PATH",
    "WEBHOOK_PATH",
    "AuthEndpoints",
    "ClientSocketId",
    "Headers",
    "Offload",
    "Response",
    "Route",
    "Sent",
    "UserDataFunction",
    "UserFunction",
    "client_config",
    "client_config_html",
    "default_user_data",
    "socket_id_from",
]

logger = logging.getLogger("broadcasting.web")

#: ``user(request)``: the current user, or ``None``; given the framework's request; may be async.
UserFunction = Callable[[Any], Any]
#: ``user_data(request, user)``: the sign-in data, a dict with an ``id`` (Pusher shows the
#: rest, such as ``name``, only to the server's webhooks and ``members()``); may be async.
UserDataFunction = Callable[[Any, Any], Any]
#: ``offload(function, *args)``: the function run off the loop, awaitable (``asyncio.to_thread``).
Offload = Callable[..., Awaitable[Any]]

_View = TypeVar("_View")

#: Which endpoint a request is for.
Route = Literal["auth", "user-auth", "webhook"]


class Sent(TypedDict, total=False):
    """What :meth:`AuthEndpoints.handle` takes by keyword: ``method``, ``headers`` (a mapping
    or list of pairs), and the raw ``body`` and ``query`` string (default empty)."""

    method: Required[str]
    headers: Required[Mapping[str, str] | Any]
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

#: The largest bodies accepted (413 above); an Ably client's current token fits easily.
MAX_AUTH_BODY = 8 * 1024
MAX_WEBHOOK_BODY = 1024 * 1024


class RouteOptions(TypedDict, total=False):
    """:class:`MountOptions` but ``user``, which an adapter may take in more forms (FastAPI's
    ``Depends``): ``user_data`` and ``driver`` as for :class:`AuthEndpoints`, and the paths
    of the routes (a path of ``None`` leaves it out)."""

    user_data: UserDataFunction | None
    driver: DriverRef
    auth_path: str | None
    user_auth_path: str | None
    webhook_path: str | None


class MountOptions(RouteOptions, total=False):
    """The keywords every adapter takes: ``user``, ``user_data`` and ``driver`` as for
    :class:`AuthEndpoints`, and the paths of the routes (a path of ``None`` leaves it out)."""

    user: UserFunction | None


#: The fields the endpoints read; every other one goes to ``extra``, but CSRF tokens.
SOCKET_ID = "socket_id"
CHANNEL_NAME = "channel_name"
_CSRF_FIELDS = frozenset({"csrfmiddlewaretoken", "_token"})
_MAX_FIELDS = 64
#: The longest multipart Content-Type parsed: a browser's is ~70 characters (RFC 2046 caps a
#: boundary at 70), the email package's parameter parsing is super-linear in its length.
_MAX_CONTENT_TYPE = 1000

_JSON = (",", ":")  # compact JSON separators
_JSON_HEADERS = {"content-type": "application/json", "cache-control": "no-store"}
#: The message of an error answer without its own: the reason phrase ("error" if not here).
_FIXED = {status: HTTPStatus(status).phrase.lower() for status in (400, 401, 403, 404, 405, 500)}
_FIXED.update({413: "request body too large", 501: "not supported"})


@dataclass(frozen=True, slots=True)
class Response:
    """What an endpoint answers: a status, a JSON body, and headers (JSON, ``no-store``)."""

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=lambda: dict(_JSON_HEADERS))

    @property
    def content(self) -> bytes:
        """The body as compact UTF-8 JSON."""
        return json.dumps(self.body, separators=_JSON, ensure_ascii=False).encode("utf-8")

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def __repr__(self) -> str:
        # a 2xx body is what the driver signed: an Ably token, an encrypted channel's key
        body = f"<{len(self.body)} fields, not shown>" if self.ok else repr(self.body)
        return f"Response(status={self.status}, body={body})"


def socket_id_from(
    headers: Any, driver: Broadcaster[Any] | Driver | None = None
) -> ClientSocketId | None:
    """The ``X-Socket-ID`` header's socket id (Laravel Echo's ``toOthers``), or ``None``.

    ``headers``: any framework's, a dict, a list of pairs or Django's ``request.META``.
    A value not shaped like Pusher's socket ids (or ``driver``'s ``socket_id_pattern``)
    is ignored, and the id is a :class:`ClientSocketId`: a publish through a driver that
    cannot leave a connection out sends to everyone instead of refusing it. So a forged
    header cannot break the publish, whichever driver is configured.
    """
    if not hasattr(headers, "get"):  # a list of (name, value) pairs
        headers = Headers(headers)
    value = headers.get("X-Socket-ID")
    if value is None:  # Django's request.META, or a plain dict in another casing
        value = headers.get("HTTP_X_SOCKET_ID")
    if value is None:
        names = [k for k in headers if isinstance(k, str) and k.lower() == "x-socket-id"]
        value = headers[names[0]] if names else None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    value = value.strip()
    owner = driver.driver if isinstance(driver, Broadcaster) else driver
    pattern = PUSHER_SOCKET_ID if owner is None else owner.socket_id_pattern
    if len(value) <= MAX_SOCKET_ID_LENGTH and pattern.fullmatch(value):
        return ClientSocketId(value)
    return None


def default_user_data(user: Any) -> dict[str, Any]:
    """``{"id": <the user's id as text>}``, nothing more: the sign-in data goes to the browser.

    The id is ``user["id"]``, else ``user.id``, ``user.pk`` (Django) or ``user.get_id()``
    (Flask-Login). Raises :class:`RuleError` if there is none.
    """
    if isinstance(user, Mapping):
        ident = user.get("id")
    else:
        ident = getattr(user, "id", None)
        if ident is None or callable(ident):
            ident = getattr(user, "pk", None)
        if ident is None or callable(ident):
            get_id = getattr(user, "get_id", None)
            ident = get_id() if callable(get_id) else None
    if ident is None:
        raise RuleError(
            f"cannot derive sign-in data from a {type(user).__name__}: it has no 'id', 'pk' or "
            "get_id(); pass user_data=lambda request, user: {'id': ..., ...} to the endpoints"
        )
    return {"id": str(ident)}


class _Hidden:
    """What a client sent, with the framework's request, in a holder whose repr shows none: any
    of it may hold a credential, and error trackers record the repr of a traceback's locals."""

    __slots__ = ("body", "headers", "method", "query", "request", "size")

    def __init__(
        self,
        request: Any,
        method: str,
        headers: Any,
        body: bytes = b"",
        query: bytes | str = b"",
        size: int | None = None,
    ) -> None:
        self.request = request
        self.method = method.upper()
        self.headers = Headers(headers)
        self.body = body
        self.query = query
        # the size of the body the client sent, which the limit is on: ``body`` may be fields
        # the framework parsed, re-encoded by as_form (non-ASCII text then takes 3 times more)
        self.size = len(body) if size is None else size

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
    """A ``Content-Length`` as an int, or ``None`` if not ASCII digits; past 18 digits,
    over any limit (``int()`` refuses 4300), 2**63."""
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 18 else 2**63


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
        fields = (field.partition("=") for field in text.split("&") if field)
        return [(name, value) for name, _, value in fields]
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except ValueError:
        raise _BadRequest(400, f"{what} has too many fields") from None


#: ``; name=value`` or ``; name="quoted \" value"``, matched where the last one ended: a
#: header's parameters are read in one pass, in time linear in its length.
_PARAMETER = re.compile(
    r'[ \t]*;[ \t]*([^\x00-\x20\x7f()<>@,;:\\"/\[\]?={}]+)[ \t]*=[ \t]*'
    r'(?:"((?:[^"\\\r\n]|\\[^\r\n])*)"|([^\x00-\x20\x7f;"]+))'
)
_ESCAPED = re.compile(r"\\(.)")
_MULTIPART_FAILS = "the multipart body does not parse"
_FILE_NAMES = frozenset({"filename", "filename*"})


def _parameters(value: str) -> tuple[str, dict[str, str]]:
    """A header value's first word, lower case, and its parameters by lower-case name."""
    kind, _, _ = value.partition(";")
    at, end, found = len(kind), len(value.rstrip(" \t")), {}
    while at < end:
        match = _PARAMETER.match(value, at)
        if match is None:
            raise _BadRequest(400, _MULTIPART_FAILS)
        name, quoted, token = match.groups()
        name = name.lower()
        if name in found:
            raise _BadRequest(400, _MULTIPART_FAILS)
        found[name] = _ESCAPED.sub(r"\1", quoted) if token is None else token
        at = match.end()
    return kind.strip().lower(), found


def _part(part: bytes) -> tuple[str, str]:
    """One part's field name and text: its headers, a blank line, its content."""
    if part.startswith(b"\r\n"):
        raise _BadRequest(400, "the multipart body may hold only named text fields")
    head, blank, content = part.partition(b"\r\n\r\n")
    if not blank:
        raise _BadRequest(400, _MULTIPART_FAILS)
    headers: dict[str, str] = {}
    for line in _decode(head, "the body").split("\r\n"):
        name, colon, value = line.partition(":")
        name = name.lower()
        # a folded line (one starting with a blank) is obsolete HTTP; browsers never send one
        if not colon or not name or name != name.strip() or name in headers:
            raise _BadRequest(400, _MULTIPART_FAILS)
        headers[name] = value.strip(" \t")
    kind, parameters = _parameters(headers.get("content-disposition", ""))
    named = parameters.get("name")
    if kind != "form-data" or named is None or not parameters.keys().isdisjoint(_FILE_NAMES):
        raise _BadRequest(400, "the multipart body may hold only named text fields")
    media = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media.startswith(("multipart/", "message/")):
        raise _BadRequest(400, _MULTIPART_FAILS)
    encoding = headers.get("content-transfer-encoding", "").lower()
    try:
        # RFC 7578 deprecates both; the email package this replaced decoded them
        if encoding == "base64":
            content = binascii.a2b_base64(content)
        elif encoding == "quoted-printable":
            content = binascii.a2b_qp(content)
    except (binascii.Error, ValueError):
        raise _BadRequest(400, _MULTIPART_FAILS) from None
    return named, _decode(content, "the body")


def _multipart_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """The text fields of a ``multipart/form-data`` body (a browser's ``FormData``), read in
    one pass: the email package's header parser took seconds for 8 KB of parameters."""
    if len(content_type) > _MAX_CONTENT_TYPE:
        raise _BadRequest(400, "the content type is too long")
    # a parameter's name is case-insensitive (RFC 2045): "Boundary=" names it too
    boundary = _parameters(content_type)[1].get("boundary")
    if not boundary:
        raise _BadRequest(400, "the multipart body has no boundary")
    delimiter = b"\r\n--" + boundary.encode("latin-1", "replace")
    # the first delimiter opens the body or ends a preamble; each part ends at the next one
    at = 0 if body.startswith(delimiter[2:]) else body.find(delimiter) + 2
    if at == 1:
        raise _BadRequest(400, _MULTIPART_FAILS)
    at += len(delimiter) - 2
    pairs: list[tuple[str, str]] = []
    while not body.startswith(b"--", at):  # the close delimiter; an epilogue is ignored
        line_end = body.find(b"\r\n", at)
        if line_end < 0 or body[at:line_end].strip(b" \t"):  # only padding after a delimiter
            raise _BadRequest(400, _MULTIPART_FAILS)
        end = body.find(delimiter, line_end + 2)
        if end < 0:
            raise _BadRequest(400, _MULTIPART_FAILS)
        pairs.append(_part(body[line_end + 2 : end]))
        if len(pairs) > _MAX_FIELDS:
            raise _BadRequest(400, "the body has too many fields")
        at = end + len(delimiter)
    return pairs


def _json_fields(text: str) -> list[tuple[str, str]]:
    outermost: list[tuple[str, Any]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        outermost[:] = pairs  # each object closes before the one holding it
        return dict(pairs)  # a name given twice keeps its last value

    try:
        value = json.loads(text, object_pairs_hook=pairs_hook)
    except ValueError:
        raise _BadRequest(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _BadRequest(400, "the JSON body must be an object")
    names = [name for name, _ in outermost]
    for key in (SOCKET_ID, CHANNEL_NAME):
        if names.count(key) > 1:
            raise _BadRequest(400, f"{key} is given twice")
    if len(value) > _MAX_FIELDS:
        raise _BadRequest(400, "the JSON body has too many fields")
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        if _not_utf8(key) or (isinstance(item, str) and _not_utf8(item)):
            # a "\ud800" escape decodes to a lone surrogate, which no signature can encode
            raise _BadRequest(400, "the JSON body holds a lone surrogate")
        if item is None:
            continue
        if key in (SOCKET_ID, CHANNEL_NAME) and not isinstance(item, str):
            raise _BadRequest(400, f"{key} must be a string")
        pairs.append((key, item if isinstance(item, str) else json.dumps(item, separators=_JSON)))
    return pairs


def parse_fields(
    sent: _Hidden, *, channel: bool, socket_required: bool = True
) -> tuple[str | None, str | None, dict[str, Secret]]:
    """``(socket_id, channel_name, extra)`` from the query string and a POST's body; every
    ``extra`` value is a :class:`Secret` (it may be a credential)."""
    query, body, headers = sent.query, sent.body, sent.headers
    pairs = _form(_decode(query, "the query string"), "the query string") if query else []
    if sent.method == "POST" and body:
        # a browser joins a header set twice: ably-js 1 adds its own beside Echo's connector's
        kinds = {value.strip() for value in headers.get("content-type", "").split(",")}
        content_type = kinds.pop() if len(kinds) == 1 else headers["content-type"]
        media = content_type.split(";", 1)[0].strip().lower()
        try:
            if media == "application/x-www-form-urlencoded":
                body_pairs = _form(_decode(body, "the body"), "the body")
            elif media == "application/json" or media.endswith("+json"):
                body_pairs = _json_fields(_decode(body, "the body"))
            elif media == "multipart/form-data":
                body_pairs = _multipart_fields(content_type, body)
            else:
                raise _BadRequest(
                    400,
                    f"unsupported content type {media[:60] or 'none'!r}: send "
                    "application/x-www-form-urlencoded, application/json or multipart/form-data",
                )
        except RecursionError:
            # a few KB of "[" is deeper than the JSON parser recurses
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


@dataclass(eq=False)
class AuthEndpoints:
    """The authorization, sign-in and webhook endpoints of one :class:`~broadcasting.Broadcast`.

    Args:
        broadcast: whose channel rules authorize and whose driver signs.
        user: ``user(request)`` returns the current user or ``None`` (may be async).
        user_data: ``user_data(request, user)``: the sign-in data (else :func:`default_user_data`).
        driver: the driver that signs, a name or a Broadcaster (default: the ``DRIVER``).
        max_body, max_webhook_body: the largest bodies accepted (413 above).

    Statuses and logging: docs/web.md.
    """

    broadcast: Broadcast
    _: KW_ONLY
    user: UserFunction
    user_data: UserDataFunction | None = None
    driver: DriverRef = None
    max_body: int = MAX_AUTH_BODY
    max_webhook_body: int = MAX_WEBHOOK_BODY

    def __post_init__(self) -> None:
        if not callable(self.user):
            raise TypeError("user= must be a function: user(request) -> the user or None")
        if self.user_data is not None and not callable(self.user_data):
            raise TypeError("user_data= must be a function: user_data(request, user) -> dict")
        for name in ("max_body", "max_webhook_body"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int")

    def limit(self, route: Route) -> int:
        """The body size limit of ``route``: adapters read at most one byte more."""
        return self.max_webhook_body if route == "webhook" else self.max_body

    def __repr__(self) -> str:
        return f"<AuthEndpoints {self.broadcast!r} driver={self.driver!r}>"

    def handle(self, route: Route, request: Any, **sent: Unpack[Sent]) -> Response:
        """Answer a request for ``route``: ``request`` is the framework's (for ``user``), ``sent``
        what the client sent. Async user functions and rules run on broadcasting's own loop."""
        return run(self._respond(route, _Hidden(request, **sent), None))

    async def ahandle(
        self, route: Route, request: Any, *, offload: Offload | None = None, **sent: Unpack[Sent]
    ) -> Response:
        """:meth:`handle`, awaited; ``offload`` runs a sync ``user``/``user_data``, channel
        rule or webhook handler off the loop."""
        if offload is None:
            return await arun(self._respond(route, _Hidden(request, **sent), offload))
        token = OFFLOAD.set(offload)  # for the rules and handlers the hooks call
        try:
            return await arun(self._respond(route, _Hidden(request, **sent), offload))
        finally:
            OFFLOAD.reset(token)

    def error(self, status: int, message: str | None = None, **headers: str) -> Response:
        """An error answer in the signing driver's shape, for a request refused before handle()."""
        try:
            target: Broadcaster[Any] | None = self.broadcast._target(self.driver)
        except Exception:  # the driver cannot be connected: handle() logs why
            target = None
        return _answer(target, status, message, **headers)

    def _respond(self, route: Route, sent: _Hidden, offload: Offload | None) -> Flow[Response]:
        if route not in METHODS:
            raise ValueError(f"unknown route {route!r}")
        target: Broadcaster[Any] | None = None
        try:
            target = self.broadcast._target(self.driver)
            if sent.method not in METHODS[route]:
                raise _BadRequest(405, _FIXED[405], {"allow": ", ".join(METHODS[route])})
            length = _content_length(sent.headers.get("content-length"))
            if max(sent.size, length or 0) > self.limit(route):
                raise _BadRequest(413, _FIXED[413])
            if route == "auth":
                body = yield from self._authorize(target, sent, offload)
            elif route == "user-auth":
                body = yield from self._sign_in(target, sent, offload)
            else:
                events = yield from self.broadcast._webhook_flow(
                    sent.headers, sent.body, driver=target
                )
                body = {"ok": True, "events": len(events)}
        except Exception as exc:
            if isinstance(exc, _FRAMEWORK_ANSWERS) and _raised_by_application(exc):
                raise  # the application's own answer (HTTPException(401)): its framework's
            return _failure(route, target, exc)
        return Response(200, body)

    def _authorize(
        self, target: Broadcaster[Any], sent: _Hidden, offload: Offload | None
    ) -> Flow[dict[str, Any]]:
        """Authorize a subscription, or sign a connection token where the driver does."""
        driver = target.driver
        socket_id, channel, extra = parse_fields(
            sent,
            channel=Feature.CONNECTION_TOKENS not in driver.features,
            socket_required=driver.requires_socket_id,
        )
        user = yield Call(self.user, sent.request, offload=offload)
        return (
            yield from self.broadcast._authorize_flow(
                user, socket_id=socket_id, channel_name=channel, driver=target, extra=extra
            )
        )

    def _sign_in(
        self, target: Broadcaster[Any], sent: _Hidden, offload: Offload | None
    ) -> Flow[dict[str, Any]]:
        """Sign the current user in (POST); 403 if nobody is."""
        socket_id, _, _ = parse_fields(sent, channel=False)
        user = yield Call(self.user, sent.request, offload=offload)
        if user is None:
            raise ForbiddenError("user sign-in: nobody is signed in")
        if self.user_data is None:
            data = default_user_data(user)
        else:
            data = yield Call(self.user_data, sent.request, user, offload=offload)
        # parse_fields refused a missing socket id already
        return (
            yield from self.broadcast._authenticate_user_flow(socket_id or "", data, driver=target)
        )


def _answer(
    target: Broadcaster[Any] | None, status: int, message: str | None, **headers: str
) -> Response:
    """An error answer whose body is the driver's ``error_body`` (the default without one)."""
    text = message if message is not None else _FIXED.get(status, "error")
    body = target.driver.error_body(status, text) if target is not None else {"error": text}
    return Response(status, body, {**_JSON_HEADERS, **headers})


#: The HTTP exceptions of the frameworks whose adapters are imported (Starlette's, and so
#: FastAPI's, ``HTTPException``; werkzeug's; Django's ``PermissionDenied`` and ``Http404``):
#: one that a user function, rule or webhook handler raised is the application's own answer,
#: raised from :meth:`AuthEndpoints.handle` for its framework to give, not a 500.
_FRAMEWORK_ANSWERS: tuple[type[BaseException], ...] = ()


def _framework_answers(*kinds: type[BaseException]) -> None:
    """Add ``kinds`` to the exceptions left to the framework (each adapter, on import)."""
    global _FRAMEWORK_ANSWERS
    _FRAMEWORK_ANSWERS = tuple(dict.fromkeys((*_FRAMEWORK_ANSWERS, *kinds)))


#: The frames that call the application's code: its user functions, rules, webhook handlers.
_APPLICATION_CALLS = frozenset({Call.run.__code__, Call.arun.__code__})


def _raised_by_application(exc: BaseException) -> bool:
    """Whether ``exc`` came out of the application's own code (a frame of a :class:`Call` is in
    its traceback): a publish the code made that raised InputError is its bug, not a 400."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in _APPLICATION_CALLS:
            return True
        tb = tb.tb_next
    return False


def _failure(route: Route, target: Broadcaster[Any] | None, exc: BaseException) -> Response:
    """The answer to an exception: the client's mistakes are logged at DEBUG, 4xx the
    application caused and 501s at WARNING, anything else (500) at ERROR with its traceback.
    What a rule, user function or webhook handler raised is a 500, but a ForbiddenError
    (a refusal)."""
    if isinstance(exc, _BadRequest):
        logger.debug("%s: %s", route, exc.message)
        return _answer(target, exc.status, exc.message, **exc.headers)
    status = getattr(exc, "http_status", None) if isinstance(exc, BroadcastError) else None
    if status is not None and not isinstance(exc, ForbiddenError) and _raised_by_application(exc):
        status = None
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


def as_form(pairs: list[tuple[str, str]], headers: Any) -> tuple[bytes, dict[str, str]]:
    """Fields the framework parsed already (consuming the stream), handed on as a form body."""
    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    return urlencode(pairs).encode("utf-8"), headers


def mount(
    target: Broadcast | AuthEndpoints,
    options: MountOptions,
    view: Callable[[AuthEndpoints, Route], _View],
    default_user: UserFunction | None = None,
) -> list[tuple[Route, str, _View]]:
    """Each route an adapter serves, with its path and its ``view(endpoints, route)``; a
    TypeError for a keyword unknown or not fitting ``target``."""
    if unknown := options.keys() - MountOptions.__optional_keys__:
        raise TypeError(f"unexpected keyword argument {min(unknown)!r}")
    user, user_data, driver = options.get("user"), options.get("user_data"), options.get("driver")
    if isinstance(target, AuthEndpoints):
        if user is not None or user_data is not None or driver is not None:
            raise TypeError("pass user=, user_data= and driver= to AuthEndpoints, not here")
        endpoints = target
    else:
        user = default_user if user is None else user
        if user is None:
            raise TypeError("user= is required: user(request) -> the current user or None")
        endpoints = AuthEndpoints(target, user=user, user_data=user_data, driver=driver)
    paths = (
        options.get("auth_path", AUTH_PATH),
        options.get("user_auth_path", USER_AUTH_PATH),
        options.get("webhook_path", WEBHOOK_PATH),
    )
    routes = zip(METHODS, paths, strict=True)  # METHODS is in the paths' order
    return [(route, path, view(endpoints, route)) for route, path in routes if path is not None]
