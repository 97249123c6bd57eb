"""Authorizing subscriptions: channel rules by pattern, and what the core asks a driver to sign."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from broadcasting._errors import BadRequestError, ForbiddenError, InputError, RuleError
from broadcasting._flow import Call, Flow
from broadcasting._types import Secret

if TYPE_CHECKING:
    from broadcasting._driver import Driver

#: What is being authorized: a subscription to a private, presence or encrypted
#: channel, a user's sign-in, or a connection before any channel (Ably's token).
AuthKind = Literal["private", "presence", "encrypted", "user", "connection"]

#: A channel rule, ``rule(user, **params)``, sync or async (docs/authorization.md#rules).
Rule = Callable[..., Any]
#: A rule's own type, which the decorators hand back unchanged (callable in its tests).
R = TypeVar("R", bound=Rule)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: What UTF-8 cannot encode: a lone surrogate (from a JSON escape, say).
SURROGATE = re.compile(r"[\ud800-\udfff]")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}")


#: The largest ``{name:int}``: a signed 64-bit database key (SQLite's driver raises
#: OverflowError on a larger int, a 500 in the rule).
MAX_INT_PARAM = 2**63 - 1


def _to_int(value: str) -> int | None:
    """``{name:int}``: a whole number in ASCII digits, written as ``str(int)`` writes it (no
    sign, no leading zero), so one channel name stands for each number, at most
    :data:`MAX_INT_PARAM`; else ``None``."""
    if (
        value.isascii()
        and value.isdecimal()
        and (value == "0" or value[0] != "0")
        and len(value) <= 19
        and (number := int(value)) <= MAX_INT_PARAM
    ):
        return number
    return None


#: A parameter's type after its colon: what turns its text into the value the rule gets
#: (returning ``None`` for text not of that type); ``None`` for ``str``, the text as it is.
CONVERTERS: dict[str, Callable[[str], Any] | None] = {"str": None, "int": _to_int}
#: What a rule gets: each parameter's text, or its value as its type says.
Params = Mapping[str, str | int]
#: The longest channel name the core accepts when the driver declares no limit.
MAX_CHANNEL_NAME_LENGTH = 1024
#: The longest socket id the core accepts (Pusher's are two ~10-digit numbers).
MAX_SOCKET_ID_LENGTH = 64
#: How many channels of a held credential one authorization re-checks and keeps.
MAX_CARRIED = 100


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One authorization, as the ``broadcasting_authorize`` hook and a driver's signer get it.

    ``channel`` is the full name, ``name`` the name without the driver's prefix
    (both ``None`` for ``user`` and ``connection``); ``user`` is ``None`` when
    nobody is signed in; ``params`` is what the rule's pattern captured. ``member``
    is a presence rule's member info or, for ``user``, the user data (each a dict
    with ``id``). ``extra`` is what else the client sent (Ably's token), each value
    a :class:`~broadcasting.plugin.Secret`; ``carried`` holds the channels of a
    credential the client holds that the rules just allowed again (``Driver.held_channels``).
    """

    kind: AuthKind
    socket_id: str
    channel: str | None = None
    name: str | None = None
    user: Any = field(default=None, repr=False)
    params: Params = field(default_factory=dict)
    member: Mapping[str, Any] | None = None
    extra: Mapping[str, Secret] = field(default_factory=dict, repr=False)
    carried: tuple[AuthRequest, ...] = ()

    @property
    def member_id(self) -> str | None:
        """The member's (or signed-in user's) id as text, or ``None``."""
        return None if self.member is None else str(self.member["id"])


class Pattern:
    """A channel rule's pattern: literal text around ``{name}`` (or ``{name:int}``) parameters,
    matched in time linear in the name (no regex to backtrack). In one segment the earlier
    parameters take as much as they can, as a greedy regex's would: ``{org}-{team}`` on
    ``a-b-c`` is ``a-b``, ``c``. A typed parameter whose text is not of its type does not
    match (the next rule is tried).
    """

    __slots__ = ("converters", "names", "pieces", "text")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise TypeError("a channel rule's pattern must be a non-empty str")
        names: list[str] = []
        converters: list[Callable[[str], Any] | None] = []  # None: the text as it is
        pieces: list[str] = []  # the literal text before, between and after the parameters
        end = 0
        for found in _PARAM.finditer(text):
            name, kind = found.group(1), found.group(2)
            if kind is not None and kind not in CONVERTERS:
                raise ValueError(
                    f"channel rule {text!r}: {{{name}:{kind}}} has no type {kind!r} "
                    f"(types: {', '.join(sorted(CONVERTERS))})"
                )
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
            converters.append(None if kind is None else CONVERTERS[kind])
            end = found.end()
        pieces.append(text[end:])
        if any("{" in piece or "}" in piece for piece in pieces):
            raise ValueError(
                f"channel rule {text!r}: a parameter is written {{name}} or {{name:int}}"
            )
        self.text = text
        self.names = tuple(names)
        self.pieces = tuple(pieces)
        self.converters = tuple(converters) if any(converters) else ()

    def match(self, name: str, special: str = "") -> dict[str, str | int] | None:
        """The parameters if ``name`` matches the whole pattern, else ``None``; no parameter holds
        a ``.`` or one of ``special`` (the driver's wildcards, which must not reach a signed grant).
        """
        names, pieces = self.names, self.pieces
        if not names:
            return {} if name == pieces[0] else None
        head, tail = pieces[0], pieces[-1]
        if not name.startswith(head) or not name.endswith(tail):
            return None
        low = len(head)
        stop = len(name) - len(tail)
        params: dict[str, str | int] = {}
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
        if self.converters:  # () when no parameter is typed
            for param, convert in zip(names, self.converters, strict=True):
                if convert is not None:
                    converted = convert(params[param])  # type: ignore[arg-type]  # the text
                    if converted is None:
                        return None
                    params[param] = converted
        return params


def _allowed(value: str, special: str) -> bool:
    return "." not in value and not (special and any(char in value for char in special))


class ChannelRules:
    """The channel rules of one :class:`~broadcasting.Broadcast`, tried in the order added."""

    def __init__(self) -> None:
        self._rules: list[tuple[Pattern, Rule]] = []

    def add(self, pattern: str, rule: Rule) -> None:
        """Add ``rule`` for channels matching ``pattern``."""
        self.adding(pattern)(rule)

    def adding(self, pattern: str) -> Callable[[R], R]:
        """A decorator adding its rule for ``pattern``, which is checked now: a bad pattern
        raises where it is written, before any function is decorated."""
        parsed = Pattern(pattern)

        def add(rule: R) -> R:
            if not callable(rule):
                raise TypeError(f"the rule for {pattern!r} must be callable")
            self._rules.append((parsed, rule))
            return rule

        return add

    def match(self, name: str, special: str = "") -> tuple[str, Rule, dict[str, str | int]] | None:
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


def check_socket_id(driver: Driver, socket_id: object) -> str:
    """``socket_id`` if shaped like the driver's connection ids, ``""`` if none was sent to a
    driver that needs none (``requires_socket_id``); else BadRequestError."""
    if (socket_id is None or socket_id == "") and not driver.requires_socket_id:
        return ""
    if not isinstance(socket_id, str) or not socket_id:
        raise BadRequestError(_missing("socket_id", socket_id))
    pattern = driver.socket_id_pattern
    if len(socket_id) > MAX_SOCKET_ID_LENGTH or pattern.fullmatch(socket_id) is None:
        raise BadRequestError(
            f"socket_id does not match the {driver.name} driver's connection ids "
            f"({pattern.pattern})"
        )
    return socket_id


def _missing(name: str, value: object) -> str:
    """Why ``value`` is no ``name``: missing, or of another type (a ``PrivateChannel``, an int)."""
    if value is None or isinstance(value, str):
        return f"{name} is missing"
    return f"{name} must be a str, not {type(value).__name__}"


def channel_request(driver: Driver, user: Any, socket_id: object, channel: object) -> AuthRequest:
    """Validate a subscription request and say which kind of channel it is for."""
    socket = check_socket_id(driver, socket_id)
    if not isinstance(channel, str) or not channel:
        raise BadRequestError(_missing("channel_name", channel))
    limits = driver.limits
    longest = limits.max_channel_name_length or MAX_CHANNEL_NAME_LENGTH
    if len(channel) > longest:
        raise BadRequestError(f"channel_name is {len(channel)} characters; the limit is {longest}")
    if _CONTROL.search(channel):
        raise BadRequestError("channel_name must not contain control characters")
    if not channel.isascii() and SURROGATE.search(channel):
        raise BadRequestError("channel_name is not valid UTF-8 text")
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
    _check_json(user_data, "user_data")
    return AuthRequest("user", socket, member=dict(user_data))


def _check_id(info: Mapping[str, Any], what: str) -> None:
    ident = info.get("id")
    if ident is None or ident == "" or not isinstance(ident, (str, int)) or isinstance(ident, bool):
        raise RuleError(f"{what} must have an 'id' (a non-empty str or an int)")


def _check_json(info: Mapping[str, Any], what: str) -> None:
    """InputError (a 400, as the Pusher driver refuses it) unless JSON can hold ``info``:
    a driver that signs it as it is would answer a body (NaN) no client parses, or one no
    UTF-8 can carry (a lone surrogate, which Pusher would escape and Ably cannot encode)."""
    try:
        text = json.dumps(info, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        # the message names a type or says "out of range": never a value of the info
        raise InputError(f"{what} must be JSON-serializable ({exc})") from None
    if not text.isascii() and SURROGATE.search(text):  # ensure_ascii=False leaves it as it is
        raise InputError(f"{what} must be valid Unicode text (it holds a lone surrogate)")


def with_extra(request: AuthRequest, extra: Mapping[str, str | Secret]) -> AuthRequest:
    """``request`` with what else the client sent, each value wrapped in a :class:`Secret`."""
    for key, value in extra.items():
        if not isinstance(value, (str, Secret)):
            raise TypeError(f"extra[{key!r}] must be a str or a Secret, not {type(value).__name__}")
    wrapped = {k: Secret(v) if isinstance(v, str) else v for k, v in extra.items()}
    return replace(request, extra=wrapped)


def _decide(rules: ChannelRules, request: AuthRequest, special: str) -> Flow[AuthRequest]:
    """The first matching rule's verdict on ``request``: the request to sign, or ForbiddenError."""
    assert request.name is not None
    found = rules.match(request.name, special)
    if found is None:
        raise ForbiddenError(
            f"channel {request.channel!r}: no channel rule matches {request.name!r}"
        )
    if request.user is None:
        raise ForbiddenError(f"channel {request.channel!r}: nobody is signed in")
    pattern, rule, params = found
    value = yield Call(rule, request.user, kwargs=params)
    # an empty dict is a falsy answer (``roles and {...}``): a refusal, as Laravel reads one
    if value is None or value is False or (isinstance(value, Mapping) and not value):
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
        _check_json(member, f"channel {request.channel!r} (rule {pattern!r}): the member info")
    elif value is not True and not isinstance(value, Mapping):
        raise RuleError(
            f"channel {request.channel!r} (rule {pattern!r}): a rule must return "
            f"True, False or None, not {type(value).__name__}"
        )
    r = request  # built directly: dataclasses.replace() costs more than the rest of this
    return AuthRequest(
        r.kind, r.socket_id, r.channel, r.name, r.user, params, member, r.extra, r.carried
    )


def _held(driver: Driver, request: AuthRequest) -> list[AuthRequest]:
    """The held credential's channels, as requests for the rules to decide again; a name a client
    could not ask for (malformed, public, this request's own) is dropped, never re-signed."""
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
    """The core's authorize hook: the rules decide (sign-ins pass; a connection has no channel)
    and decide each held channel again (a refusal drops it), then the driver signs."""
    special = driver.special_characters
    if request.kind != "user" and request.kind != "connection":
        request = yield from _decide(rules, request, special)
    if request.kind != "user":
        carried = []
        for held in _held(driver, request):
            try:
                carried.append((yield from _decide(rules, held, special)))
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
