"""Authorizing subscriptions: channel rules by pattern, and what the core asks a driver to sign."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from broadcasting._errors import BadRequestError, ForbiddenError, RuleError
from broadcasting._flow import Call, Flow
from broadcasting._types import Secret

if TYPE_CHECKING:
    from broadcasting._driver import Driver

#: What is being authorized: a subscription to a private, presence or
#: encrypted channel, a user's sign-in (``pusher:signin``), or a connection
#: before any channel is named (Ably's clients ask for a token first).
AuthKind = Literal["private", "presence", "encrypted", "user", "connection"]

#: A channel rule: ``rule(user, **params)`` returns ``True`` (or, for a
#: presence channel, the member's info with an ``id``) to authorize, ``False``
#: or ``None`` to refuse. It may be a coroutine function.
Rule = Callable[..., Any]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: The longest channel name the core accepts when the driver declares no limit.
MAX_CHANNEL_NAME_LENGTH = 1024
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: The longest socket id the core accepts (Pusher's are two ~10-digit numbers).
MAX_SOCKET_ID_LENGTH = 64
#: How many channels of a held credential one authorization re-checks and keeps.
MAX_CARRIED = 100


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One authorization: what the client asked for, for whom, and what the rule said.

    The core builds it from ``authorize()`` / ``authenticate_user()`` and
    hands it to the ``broadcasting_authorize`` hook; a driver's
    :meth:`~broadcasting.Driver.sign_channel` / :meth:`~broadcasting.Driver.sign_user`
    turn it into the body the client expects.

    Attributes:
        kind: ``private``, ``presence``, ``encrypted`` or ``user`` (sign-in).
        socket_id: the client connection's id, as the client sent it.
        channel: the full channel name as the client sent it (``None`` for sign-in).
        name: the channel name without the driver's prefix (``None`` for sign-in).
        user: the application's user object (``None`` when nobody is signed in).
        params: what the matching rule's pattern captured (``{"order_id": "42"}``).
        member: for ``presence``, the rule's member info (a dict with ``id``);
            for ``user``, the user data given to ``authenticate_user``.
        extra: anything else the client sent that a driver may need (Ably's
            current token, say), each value wrapped in a :class:`~broadcasting.Secret`:
            what a client sends may be a credential, and a wrapped value shows
            in no traceback, log line or repr.
        carried: the channels of a credential the client already holds that the
            answer may keep (see :meth:`~broadcasting.Driver.held_channels`), each
            authorized again by the channel rules just now; empty otherwise.
    """

    kind: AuthKind
    socket_id: str
    channel: str | None = None
    name: str | None = None
    user: Any = field(default=None, repr=False)
    params: Mapping[str, str] = field(default_factory=dict)
    member: Mapping[str, Any] | None = None
    extra: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    carried: tuple[AuthRequest, ...] = ()

    @property
    def member_id(self) -> str | None:
        """The member's (or signed-in user's) id as text, or ``None``."""
        if self.member is None:
            return None
        return str(self.member["id"])


class Pattern:
    """A channel rule's pattern, compiled: literal text around ``{name}`` parameters.

    Matching is linear in the channel name's length, whatever the pattern:
    no regular expression, so no backtracking a crafted name could exploit.
    A parameter matches one or more characters, never a ``.`` nor any of the
    driver's :attr:`~broadcasting.Driver.special_characters` (so a parameter
    can never carry a wildcard into a signed capability). With several
    parameters in one segment (``{org}-{team}``), the earlier ones take as
    much as they can, as a greedy regular expression would: ``a-b-c`` gives
    ``org="a-b"``, ``team="c"``.
    """

    __slots__ = ("names", "pieces", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise TypeError("a channel rule's pattern must be a non-empty str")
        names: list[str] = []
        pieces: list[str] = []
        end = 0
        for found in _PARAM.finditer(text):
            name = found.group(1)
            if name in names:
                raise ValueError(f"channel rule {text!r} names {{{name}}} twice")
            literal = text[end : found.start()]
            if names and not literal:
                raise ValueError(
                    f"channel rule {text!r}: {{{names[-1]}}}{{{name}}} has nothing between "
                    "the parameters to tell where one ends"
                )
            pieces.append(literal)
            names.append(name)
            end = found.end()
        pieces.append(text[end:])
        if any("{" in piece or "}" in piece for piece in pieces):
            raise ValueError(f"channel rule {text!r}: a parameter is written {{name}}")
        self.text = text
        self.names = tuple(names)
        #: The literal text before, between and after the parameters (one more than names).
        self.pieces = tuple(pieces)

    def match(self, name: str, special: str = "") -> dict[str, str] | None:
        """The parameters if ``name`` matches the whole pattern, else ``None``."""
        names, pieces = self.names, self.pieces
        if not names:
            return {} if name == pieces[0] else None
        head, tail = pieces[0], pieces[-1]
        if not name.startswith(head) or not name.endswith(tail):
            return None
        low = len(head)
        stop = len(name) - len(tail)
        params: dict[str, str] = {}
        # Right to left: each literal at its rightmost place leaves the parameters
        # to its left the most room (a greedy regex's answer), and each search
        # covers only the text it moves past, so the whole match is linear.
        for index in range(len(names) - 1, 0, -1):
            literal = pieces[index]
            at = name.rfind(literal, low, stop)
            start = at + len(literal)
            if at < 0 or start >= stop:
                return None
            value = name[start:stop]
            if "." in value or (special and _has_any(value, special)):
                return None
            params[names[index]] = value
            stop = at
        if stop <= low:
            return None
        value = name[low:stop]
        if "." in value or (special and _has_any(value, special)):
            return None
        params[names[0]] = value
        return params

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


def _has_any(text: str, characters: str) -> bool:
    return any(char in text for char in characters)


def compile_pattern(pattern: str) -> Pattern:
    """``orders.{order_id}`` as a :class:`Pattern` (raises ``TypeError``/``ValueError``)."""
    return Pattern(pattern)


@dataclass(frozen=True, slots=True)
class _Compiled:
    pattern: Pattern
    rule: Rule


class ChannelRules:
    """The channel rules of one :class:`~broadcasting.Broadcast`, tried in the order added."""

    def __init__(self) -> None:
        self._rules: list[_Compiled] = []

    def add(self, pattern: str, rule: Rule) -> None:
        """Add ``rule`` for channels matching ``pattern``."""
        if not callable(rule):
            raise TypeError(f"the rule for {pattern!r} must be callable")
        self._rules.append(_Compiled(compile_pattern(pattern), rule))

    def match(self, name: str, special: str = "") -> tuple[str, Rule, dict[str, str]] | None:
        """The first rule whose pattern matches ``name``: (pattern, rule, params).

        ``special`` holds the characters no parameter may match (the driver's
        :attr:`~broadcasting.Driver.special_characters`).
        """
        for compiled in self._rules:
            params = compiled.pattern.match(name, special)
            if params is not None:
                return compiled.pattern.text, compiled.rule, params
        return None

    @property
    def patterns(self) -> list[str]:
        """The patterns, in the order they are tried."""
        return [c.pattern.text for c in self._rules]

    def __len__(self) -> int:
        return len(self._rules)


def check_socket_id(driver: Driver, socket_id: object) -> str:
    """``socket_id`` if it has the shape of the driver's connection ids; else BadRequestError.

    A driver whose clients send none (``requires_socket_id`` off, Ably's) may
    get ``""``.
    """
    if socket_id is None or socket_id == "":
        if not driver.requires_socket_id:
            return ""
        raise BadRequestError("socket_id is missing")
    if not isinstance(socket_id, str):
        raise BadRequestError("socket_id is missing")
    pattern = driver.socket_id_pattern
    if len(socket_id) > MAX_SOCKET_ID_LENGTH or pattern.fullmatch(socket_id) is None:
        raise BadRequestError(
            f"socket_id does not match the {driver.name} driver's connection ids "
            f"({pattern.pattern})"
        )
    return socket_id


def channel_request(driver: Driver, user: Any, socket_id: object, channel: object) -> AuthRequest:
    """Validate a subscription request and say which kind of channel it is for."""
    socket = check_socket_id(driver, socket_id)
    if not isinstance(channel, str) or not channel:
        raise BadRequestError("channel_name is missing")
    limits = driver.limits
    longest = limits.max_channel_name_length or MAX_CHANNEL_NAME_LENGTH
    if len(channel) > longest:
        raise BadRequestError(f"channel_name is {len(channel)} characters; the limit is {longest}")
    if _CONTROL.search(channel):
        raise BadRequestError("channel_name must not contain control characters")
    if not channel.isascii():
        try:
            channel.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate, from a JSON escape
            raise BadRequestError("channel_name is not valid UTF-8 text") from None
    if limits.channel_pattern is not None and limits.channel_pattern.fullmatch(channel) is None:
        rule = f" ({limits.channel_rule})" if limits.channel_rule else ""
        raise BadRequestError(f"invalid channel_name {channel[:80]!r}{rule}")
    kind, name = driver.parse_channel(channel)
    if kind == "public":
        raise BadRequestError(f"{channel[:80]!r} is a public channel: it needs no authorization")
    return AuthRequest(kind, socket, channel, name, user)


def connection_request(driver: Driver, user: Any, socket_id: object) -> AuthRequest:
    """A request for a connection token, before any channel (for drivers that sign one)."""
    socket = check_socket_id(driver, socket_id)
    return AuthRequest("connection", socket, user=user)


def user_request(driver: Driver, socket_id: object, user_data: object) -> AuthRequest:
    """Validate a sign-in request: ``user_data`` must be a mapping with an ``id``."""
    socket = check_socket_id(driver, socket_id)
    if not isinstance(user_data, Mapping):
        raise RuleError(f"user_data must be a dict with an 'id', not {type(user_data).__name__}")
    _check_id(user_data, "user_data")
    return AuthRequest("user", socket, member=dict(user_data))


def _check_id(info: Mapping[str, Any], what: str) -> None:
    ident = info.get("id")
    if ident is None or ident == "" or not isinstance(ident, (str, int)) or isinstance(ident, bool):
        raise RuleError(f"{what} must have an 'id' (a non-empty str or an int)")


def wrap_extra(extra: Mapping[str, str | Secret] | None) -> dict[str, Secret]:
    """``extra`` with every value in a :class:`Secret` (what a client sends may be a credential)."""
    if not extra:
        return {}
    wrapped: dict[str, Secret] = {}
    for key, value in extra.items():
        if isinstance(value, Secret):
            wrapped[key] = value
        elif isinstance(value, str):
            wrapped[key] = Secret(value)
        else:
            raise TypeError(f"extra[{key!r}] must be a str or a Secret, not {type(value).__name__}")
    return wrapped


def _verdict(
    request: AuthRequest, pattern: str, params: dict[str, str], value: object
) -> AuthRequest:
    """The rule's return value applied to ``request``: the request to sign, or ForbiddenError."""
    if value is None or value is False:
        raise ForbiddenError(f"channel {request.channel!r} (rule {pattern!r}): the rule refused")
    member: dict[str, Any] | None = None
    if request.kind == "presence":
        if value is True:
            # a private channel's rule: the client asked for the wrong kind of channel
            raise ForbiddenError(
                f"channel {request.channel!r} (rule {pattern!r}): the rule returned True, "
                "which allows private channels only; a presence rule returns the member's info"
            )
        if not isinstance(value, Mapping):
            raise RuleError(
                f"channel {request.channel!r} (rule {pattern!r}): a presence rule must return "
                f"the member's info (a dict with an 'id'), not {type(value).__name__}"
            )
        member = dict(value)
        _check_id(member, "a presence rule's member info")
    elif value is not True and not isinstance(value, Mapping):
        raise RuleError(
            f"channel {request.channel!r} (rule {pattern!r}): a rule must return "
            f"True, False or None, not {type(value).__name__}"
        )
    # built directly: dataclasses.replace() costs more than the rest of this function
    return AuthRequest(
        request.kind,
        request.socket_id,
        request.channel,
        request.name,
        request.user,
        params,
        member,
        request.extra,
        request.carried,
    )


def _match(
    rules: ChannelRules, request: AuthRequest, special: str
) -> tuple[str, Rule, dict[str, str]]:
    assert request.name is not None
    found = rules.match(request.name, special)
    if found is None:
        raise ForbiddenError(
            f"channel {request.channel!r}: no channel rule matches {request.name!r}"
        )
    if request.user is None:
        raise ForbiddenError(f"channel {request.channel!r}: nobody is signed in")
    return found


def _held(driver: Driver, request: AuthRequest) -> list[AuthRequest]:
    """The channels of the client's held credential, as requests for the rules to decide again.

    A name the core would refuse from a client (malformed, public, this
    request's own channel) is dropped here: it is never re-signed.
    """
    if not request.extra or request.user is None:
        return []
    names = driver.held_channels(request)
    if not names:
        return []
    found: list[AuthRequest] = []
    seen = {request.channel}
    for channel in names:
        if channel in seen or not isinstance(channel, str):
            continue
        seen.add(channel)
        try:
            held = channel_request(driver, request.user, request.socket_id, channel)
        except BadRequestError:
            continue
        found.append(held)
        if len(found) >= MAX_CARRIED:
            break
    return found


def with_extra(request: AuthRequest, extra: Mapping[str, str | Secret]) -> AuthRequest:
    """``request`` with what else the client sent, each value wrapped in a :class:`Secret`."""
    from dataclasses import replace

    return replace(request, extra=wrap_extra(extra))


def _with_carried(request: AuthRequest, carried: list[AuthRequest]) -> AuthRequest:
    if not carried:
        return request
    from dataclasses import replace

    return replace(request, carried=tuple(carried))


def decide(rules: ChannelRules, request: AuthRequest, driver: Driver) -> Flow[AuthRequest]:
    """Run the matching rule for a channel request: the request to sign, or Forbidden.

    Sign-ins pass through; a connection token has no channel of its own. The
    channels of a credential the client holds are each decided again (a
    refusal drops that channel) and kept in ``carried``.
    """
    special = driver.special_characters
    if request.kind != "user" and request.kind != "connection":
        pattern, rule, params = _match(rules, request, special)
        value = yield Call(rule, request.user, kwargs=params)
        request = _verdict(request, pattern, params, value)
    if request.kind == "user":
        return request
    carried = []
    for held in _held(driver, request):
        try:
            pattern, rule, params = _match(rules, held, special)
            value = yield Call(rule, held.user, kwargs=params)
            carried.append(_verdict(held, pattern, params, value))
        except ForbiddenError:
            continue
    return _with_carried(request, carried)


def authorize(rules: ChannelRules, driver: Driver, request: AuthRequest) -> Flow[dict[str, Any]]:
    """What the core's authorize hook does: decide by the rules, then have the driver sign."""
    decided = yield from decide(rules, request, driver)
    return sign(driver, decided)


def sign(driver: Driver, request: AuthRequest) -> dict[str, Any]:
    """The driver's signed answer for an authorized request."""
    if request.kind == "user":
        method = "sign_user"
        body = driver.sign_user(request)
    elif request.kind == "connection":
        method = "sign_connection"
        body = driver.sign_connection(request)
    else:
        method = "sign_channel"
        body = driver.sign_channel(request)
    if not isinstance(body, dict):
        raise TypeError(
            f"{type(driver).__name__}.{method} returned {type(body).__name__}, not a dict"
        )
    return body
