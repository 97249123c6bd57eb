"""Channel and presence queries over Pusher's HTTP API, on the driver's own transports.

Each query is written once, as a generator that yields the SDK's signed
:class:`pusher.http.Request` and is sent back the answer's status and body;
:func:`run` sends its requests on the driver's keep-alive pool, :func:`arun` on
this loop's session. Nothing is retried. Bad input is an :class:`InputError`
before any request; any other answer than success (soketi's HTTP 200 with an
error body too) or none at all is a :class:`QueryError`.

Pusher refuses ``info=subscription_count`` (HTTP 400) unless the app enabled
subscription counting: :func:`channel_info` then asks once more without it and
remembers not to ask again. :func:`terminate_user` builds its own request: the
SDK's ``terminate_user_connections`` leaves out the ``/apps/{id}`` prefix, which
soketi and Reverb do not route.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, TypeVar

from pusher.http import GET, POST, Request

from broadcasting import ChannelInfo, InputError, InvalidChannelError, Member, QueryError
from broadcasting_pusher._api import check_answer
from broadcasting_pusher._rules import CHANNEL_PATTERN, MAX_CHANNEL_NAME_LENGTH

if TYPE_CHECKING:
    from broadcasting_pusher._driver import BroadcastPusherDriver

T = TypeVar("T")

PRESENCE_PREFIX = "presence-"
MAX_USER_ID_LENGTH = 200

#: Drivers whose app refused ``info=subscription_count`` (subscription counting is off).
_no_subscription_count: weakref.WeakSet[BroadcastPusherDriver] = weakref.WeakSet()


# -- checking input before any request -------------------------------------------------


def _channel(driver: BroadcastPusherDriver, channel: object) -> str:
    if not isinstance(channel, str):
        raise InvalidChannelError(
            f"{driver.name}: a channel name must be a str, not {type(channel)}"
        )
    if not channel:
        raise InvalidChannelError(f"{driver.name}: the channel name is empty")
    return _name(driver, channel, MAX_CHANNEL_NAME_LENGTH, "channel name", InvalidChannelError)


def _prefix(driver: BroadcastPusherDriver, prefix: object) -> str | None:
    if prefix is None or prefix == "":
        return None
    if not isinstance(prefix, str):
        raise InputError(f"{driver.name}: a channel prefix must be a str")
    if len(prefix) > MAX_CHANNEL_NAME_LENGTH or not CHANNEL_PATTERN.fullmatch(prefix):
        raise InputError(
            f"{driver.name}: {prefix[:200]!r} cannot start a Pusher channel name "
            "(A-Z a-z 0-9 _ - = @ , . ; only)"
        )
    return prefix


def _presence(driver: BroadcastPusherDriver, channel: object) -> str:
    name = _channel(driver, channel)
    if not name.startswith(PRESENCE_PREFIX):
        raise InvalidChannelError(
            f"{driver.name}: only presence channels have members; {name!r} does not start "
            f"with {PRESENCE_PREFIX!r} (use PresenceChannel({name!r}))"
        )
    return name


def _user_id(driver: BroadcastPusherDriver, user_id: object) -> str:
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)
    if not isinstance(user_id, str) or not user_id:
        raise InputError(f"{driver.name}: user_id must be a non-empty str")
    return _name(driver, user_id, MAX_USER_ID_LENGTH, "user id", InputError)


def _name(
    driver: BroadcastPusherDriver, name: str, limit: int, what: str, error: type[InputError]
) -> str:
    if len(name) > limit or not CHANNEL_PATTERN.fullmatch(name):
        raise error(
            f"{driver.name}: {name[:200]!r} is not a Pusher {what} "
            f"(at most {limit} of A-Z a-z 0-9 _ - = @ , . ;)"
        )
    return name


# -- the requests ------------------------------------------------------------------------


def _channels_request(client: Any, prefix: str | None) -> Request:
    params: dict[str, str] = {}
    if prefix is not None:
        params["filter_by_prefix"] = prefix
        if prefix.startswith(PRESENCE_PREFIX):
            params["info"] = "user_count"
    return Request(client, GET, f"/apps/{client.app_id}/channels", params)


def _info_attributes(driver: BroadcastPusherDriver, channel: str) -> list[str]:
    attributes = [] if driver in _no_subscription_count else ["subscription_count"]
    if channel.startswith(PRESENCE_PREFIX):
        attributes.append("user_count")
    return attributes


def _info_request(client: Any, channel: str, attributes: list[str]) -> Request:
    params = {"info": ",".join(attributes)} if attributes else {}
    return Request(client, GET, f"/apps/{client.app_id}/channels/{channel}", params)


def _users_request(client: Any, channel: str) -> Request:
    return Request(client, GET, f"/apps/{client.app_id}/channels/{channel}/users")


def _terminate_request(client: Any, user_id: str) -> Request:
    path = f"/apps/{client.app_id}/users/{user_id}/terminate_connections"
    return Request(client, POST, path, {})


# -- reading the answers -----------------------------------------------------------------


def _answer(driver: BroadcastPusherDriver, where: str, status: int, body: bytes) -> Any:
    """The decoded JSON of a successful answer; a QueryError for anything else."""
    check_answer(status, body, driver.settings, query=True)  # soketi's 200 with an error too
    try:
        return json.loads(body) if body.strip() else {}
    except ValueError:  # pragma: no cover - check_answer refuses a 2xx that is not JSON
        raise _unexpected(driver, where, status, "a body that is not JSON") from None


def _unexpected(driver: BroadcastPusherDriver, where: str, status: int, what: str) -> QueryError:
    return QueryError(
        f"{driver.name}: {driver.settings.base_url} answered {where} with HTTP {status} "
        f"but {what} (is it a Pusher-protocol server?)",
        driver=driver.name,
        status=status,
    )


def _field(
    driver: BroadcastPusherDriver,
    where: str,
    status: int,
    body: bytes,
    key: str,
    kind: type,
    what: str,
) -> Any:
    """The ``key`` field (a ``kind``) of a successful answer; a QueryError without it."""
    data = _answer(driver, where, status, body)
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise _unexpected(driver, where, status, what)
    return value


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _channel_list(
    driver: BroadcastPusherDriver, prefix: str | None, status: int, body: bytes
) -> list[ChannelInfo]:
    where = f"GET /apps/{driver.settings.app_id}/channels"
    listed = _field(driver, where, status, body, "channels", dict, "no channel list")
    found = []
    for name, info in sorted(listed.items()):
        if prefix is not None and not name.startswith(prefix):
            continue  # a server that ignored the filter
        info = info if isinstance(info, dict) else {}
        found.append(
            ChannelInfo(
                name=name,
                occupied=True,
                subscription_count=_count(info.get("subscription_count")),
                user_count=_count(info.get("user_count")),
            )
        )
    return found


def _channel_info(
    driver: BroadcastPusherDriver, channel: str, status: int, body: bytes
) -> ChannelInfo:
    where = f"GET /apps/{driver.settings.app_id}/channels/{channel}"
    data = _answer(driver, where, status, body)
    if not isinstance(data, dict) or not isinstance(data.get("occupied"), bool):
        raise _unexpected(driver, where, status, "no 'occupied' field")
    occupied: bool = data["occupied"]
    subscriptions = _count(data.get("subscription_count"))
    users = _count(data.get("user_count"))
    if not occupied:
        # an empty channel has no subscribers: say 0 where the count was asked for
        if subscriptions is None and driver not in _no_subscription_count:
            subscriptions = 0
        if users is None and channel.startswith(PRESENCE_PREFIX):
            users = 0
    return ChannelInfo(channel, occupied, subscriptions, users)


def _member_list(
    driver: BroadcastPusherDriver, channel: str, status: int, body: bytes
) -> list[Member]:
    where = f"GET /apps/{driver.settings.app_id}/channels/{channel}/users"
    users = _field(driver, where, status, body, "users", list, "no user list")
    members = []
    for user in users:
        user_id = user.get("id") if isinstance(user, dict) else None
        if isinstance(user_id, (str, int)) and not isinstance(user_id, bool):
            members.append(Member(str(user_id)))
    return members


def _terminated(driver: BroadcastPusherDriver, user_id: str, status: int, body: bytes) -> None:
    where = f"POST /apps/{driver.settings.app_id}/users/{user_id}/terminate_connections"
    _answer(driver, where, status, body)


def _counting_refused(error: QueryError) -> bool:
    """Whether a refused channel-info query may be Pusher refusing ``subscription_count``."""
    return error.status == 400


# -- the queries, written once --------------------------------------------------------------

#: A query: yields signed requests, is sent each one's ``(status, body)``, returns the result.
Query = Generator[Request, "tuple[int, bytes]", T]


def occupied_channels(
    driver: BroadcastPusherDriver, prefix: str | None
) -> Query[list[ChannelInfo]]:
    """The occupied channels whose name starts with ``prefix``, sorted by name."""
    prefix = _prefix(driver, prefix)
    status, body = yield _channels_request(driver._client, prefix)
    return _channel_list(driver, prefix, status, body)


def channel_info(driver: BroadcastPusherDriver, channel: str) -> Query[ChannelInfo]:
    """Whether ``channel`` is occupied, by how many connections and (presence) users."""
    channel = _channel(driver, channel)
    attributes = _info_attributes(driver, channel)
    status, body = yield _info_request(driver._client, channel, attributes)
    try:
        return _channel_info(driver, channel, status, body)
    except QueryError as error:
        if "subscription_count" not in attributes or not _counting_refused(error):
            raise
    attributes.remove("subscription_count")
    status, body = yield _info_request(driver._client, channel, attributes)
    info = _channel_info(driver, channel, status, body)
    _no_subscription_count.add(driver)  # it was the attribute: never ask for it again
    return info


def members(driver: BroadcastPusherDriver, channel: str) -> Query[list[Member]]:
    """The users in the presence channel ``channel`` (ids only: Pusher reports no info)."""
    channel = _presence(driver, channel)
    status, body = yield _users_request(driver._client, channel)
    return _member_list(driver, channel, status, body)


def terminate_user(driver: BroadcastPusherDriver, user_id: str) -> Query[None]:
    """Disconnect every connection of the signed-in user ``user_id``."""
    user_id = _user_id(driver, user_id)
    status, body = yield _terminate_request(driver._client, user_id)
    _terminated(driver, user_id, status, body)


# -- one sync and one async path over the transport ----------------------------------------


def _step(query: Query[T], answer: tuple[int, bytes] | None) -> tuple[Request | None, T | None]:
    """Send ``query`` the answer (None to start it): its next request, or None and its result."""
    try:
        return query.send(answer), None  # type: ignore[arg-type]  # None starts it
    except StopIteration as done:
        return None, done.value


def run(driver: BroadcastPusherDriver, query: Query[T]) -> T:
    """Run ``query`` on the driver's sync pool."""
    request, result = _step(query, None)
    while request is not None:
        request, result = _step(query, driver._client.http.send(request))
    return result  # type: ignore[return-value]  # None only for a query that returns None


async def arun(driver: BroadcastPusherDriver, query: Query[T]) -> T:
    """Run ``query`` on this event loop's session."""
    request, result = _step(query, None)
    while request is not None:
        request, result = _step(query, await driver._aclient.http.send(request))
    return result  # type: ignore[return-value]
