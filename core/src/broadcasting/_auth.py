"""Authorizing subscriptions: channel rules by pattern, and what the core asks a driver to sign."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from broadcasting._errors import BadRequestError, ForbiddenError, RuleError
from broadcasting._flow import Call, Flow
from broadcasting._types import Secret

if TYPE_CHECKING:
    from broadcasting._driver import Driver

#: What is being authorized: a subscription to a private, presence or encrypted
#: channel, a user's sign-in, or a connection before any channel (Ably's token).
AuthKind = Literal["private", "presence", "encrypted", "user", "connection"]

#: A channel rule, ``rule(user, **params)``, sync or async (docs/authorization.md#rules).
Rule = Callable[..., Any]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: The longest channel name the core accepts when the driver declares no limit.
MAX_CHANNEL_NAME_LENGTH = 1024
#: The longest socket id the core accepts (Pusher's are two ~10-digit numbers).
MAX_SOCKET_ID_LENGTH = 64
#: How many channels of a held credential one authorization re-checks and keeps.
MAX_CARRIED = 100


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One authorization, as the ``broadcasting_authorize`` hook and a driver's signer get it.

    Attributes:
        kind: ``private``, ``presence``, ``encrypted``, ``user`` (sign-in) or
            ``connection`` (a token before any channel).
        socket_id: the client connection's id, as the client sent it.
        channel: the full channel name (``None`` for sign-in and connection).
        name: the channel name without the driver's prefix (``None`` likewise).
        user: the application's user object (``None`` when nobody is signed in).
        params: what the matching rule's pattern captured (``{"order_id": "42"}``).
        member: for ``presence``, the rule's member info (a dict with ``id``);
            for ``user``, the user data given to ``authenticate_user``.
        extra: anything else the client sent (Ably's current token), each value
            a :class:`~broadcasting.plugin.Secret`: it may be a credential.
        carried: the channels of a credential the client holds that the answer
            may keep (see ``Driver.held_channels``), each allowed again by the
            rules just now; empty otherwise.
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
    """A channel rule's pattern: literal text around ``{name}`` parameters.

    Matching is linear in the name's length (no regular expression to
    backtrack). With several parameters in one segment (``{org}-{team}``) the
    earlier ones take as much as they can, as a greedy regex would: ``a-b-c``
    gives ``org="a-b"``, ``team="c"``.
    """

    __slots__ = ("names", "pieces", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise TypeError("a channel rule's pattern must be a non-empty str")
        names: list[str] = []
        pieces: list[str] = []  # the literal text before, between and after the parameters
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
        self.pieces = tuple(pieces)

    def match(self, name: str, special: str = "") -> dict[str, str] | None:
        """The parameters if ``name`` matches the whole pattern, else ``None``.

        A parameter never matches a ``.`` nor one of ``special`` (the driver's
        special characters), so it cannot carry a wildcard into a signed grant.
        """
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
            if at < 0 or start >= stop or not _allowed(value := name[start:stop], special):
                return None
            params[names[index]] = value
            stop = at
        if stop <= low or not _allowed(value := name[low:stop], special):
            return None
        params[names[0]] = value
        return params

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


def _allowed(value: str, special: str) -> bool:
    return "." not in value and not (special and any(char in value for char in special))


compile_pattern = Pattern


class ChannelRules:
    """The channel rules of one :class:`~broadcasting.Broadcast`, tried in the order added."""

    def __init__(self) -> None:
        self._rules: list[tuple[Pattern, Rule]] = []

    def add(self, pattern: str, rule: Rule) -> None:
        """Add ``rule`` for channels matching ``pattern``."""
        if not callable(rule):
            raise TypeError(f"the rule for {pattern!r} must be callable")
        self._rules.append((Pattern(pattern), rule))

    def match(self, name: str, special: str = "") -> tuple[str, Rule, dict[str, str]] | None:
        """The first rule whose pattern matches ``name``: (pattern, rule, params)."""
        for pattern, rule in self._rules:
            params = pattern.match(name, special)
            if params is not None:
                return pattern.text, rule, params
        return None

    @property
    def patterns(self) -> list[str]:
        """The patterns, in the order they are tried."""
        return [pattern.text for pattern, _ in self._rules]

    def __len__(self) -> int:
        return len(self._rules)


def check_socket_id(driver: Driver, socket_id: object) -> str:
    """``socket_id`` if it has the shape of the driver's connection ids; else BadRequestError.

    ``""`` when none was sent to a driver whose clients send none (``requires_socket_id``).
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
    return AuthRequest("connection", check_socket_id(driver, socket_id), user=user)


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


def with_extra(request: AuthRequest, extra: Mapping[str, str | Secret]) -> AuthRequest:
    """``request`` with what else the client sent, each value wrapped in a :class:`Secret`."""
    wrapped: dict[str, Secret] = {}
    for key, value in extra.items():
        if isinstance(value, str):
            value = Secret(value)
        elif not isinstance(value, Secret):
            raise TypeError(f"extra[{key!r}] must be a str or a Secret, not {type(value).__name__}")
        wrapped[key] = value
    return replace(request, extra=wrapped)


def _verdict(
    request: AuthRequest, pattern: str, params: dict[str, str], value: object
) -> AuthRequest:
    """The rule's return value applied to ``request``: the request to sign, or ForbiddenError."""
    if value is None or value is False:
        raise ForbiddenError(f"channel {request.channel!r} (rule {pattern!r}): the rule refused")
    member: dict[str, Any] | None = None
    if request.kind == "presence":
        if value is True:  # a private channel's rule: the client asked for the wrong kind
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
    r = request  # built directly: dataclasses.replace() costs more than the rest of this
    return AuthRequest(
        r.kind, r.socket_id, r.channel, r.name, r.user, params, member, r.extra, r.carried
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
    request's own channel) is dropped: it is never re-signed.
    """
    if not request.extra or request.user is None:
        return []
    found: list[AuthRequest] = []
    seen = {request.channel}
    for channel in driver.held_channels(request) or ():
        if channel in seen or not isinstance(channel, str):
            continue
        seen.add(channel)
        try:
            found.append(channel_request(driver, request.user, request.socket_id, channel))
        except BadRequestError:
            continue
        if len(found) >= MAX_CARRIED:
            break
    return found


_SIGNERS = {"user": "sign_user", "connection": "sign_connection"}


def authorize(rules: ChannelRules, driver: Driver, request: AuthRequest) -> Flow[dict[str, Any]]:
    """The core's authorize hook: decide by the rules, then have the driver sign.

    Sign-ins pass through; a connection token has no channel of its own. Each
    channel of a credential the client holds is decided again (a refusal drops
    it) and kept in ``carried``.
    """
    special = driver.special_characters
    if request.kind != "user" and request.kind != "connection":
        pattern, rule, params = _match(rules, request, special)
        value = yield Call(rule, request.user, kwargs=params)
        request = _verdict(request, pattern, params, value)
    if request.kind != "user":
        carried = []
        for held in _held(driver, request):
            try:
                pattern, rule, params = _match(rules, held, special)
                value = yield Call(rule, held.user, kwargs=params)
                carried.append(_verdict(held, pattern, params, value))
            except ForbiddenError:
                continue
        if carried:
            request = replace(request, carried=tuple(carried))
    method = _SIGNERS.get(request.kind, "sign_channel")
    body = getattr(driver, method)(request)
    if not isinstance(body, dict):
        raise TypeError(
            f"{type(driver).__name__}.{method} returned {type(body).__name__}, not a dict"
        )
    return body
