"""Channel and presence queries and the health check over Pusher's HTTP API, never retried.

Each is written once and run by :func:`run` on the sync pool or :func:`arun` on this loop's session.
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

#: A query: yields signed requests, is sent each one's ``(status, body)``, returns the result.
Query = Generator[Request, "tuple[int, bytes]", T]

PRESENCE_PREFIX = "presence-"
MAX_USER_ID_LENGTH = 200

#: Drivers whose app refused ``info=subscription_count`` (subscription counting is off).
_no_subscription_count: weakref.WeakSet[BroadcastPusherDriver] = weakref.WeakSet()


# -- checking input before any request -------------------------------------------------


def checked_channel(driver: BroadcastPusherDriver, channel: object) -> str:
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


# -- reading the answers -----------------------------------------------------------------


def _unexpected(
    driver: BroadcastPusherDriver, request: Request, status: int, what: str
) -> QueryError:
    return QueryError(
        f"{driver.name}: {driver.settings.base_url} answered {request.method} {request.path} "
        f"with HTTP {status} but {what} (is it a Pusher-protocol server?)",
        driver=driver.name,
        status=status,
    )


def _answer(driver: BroadcastPusherDriver, request: Request, status: int, body: bytes) -> Any:
    """The decoded JSON of a successful answer; a QueryError for anything else."""
    check_answer(status, body, driver.settings, query=True)  # soketi's 200 with an error too
    try:
        return json.loads(body) if body.strip() else {}
    except ValueError:  # not UTF-8 (check_answer reads it with replacements)
        raise _unexpected(driver, request, status, "a body that is not JSON") from None


def _field(
    driver: BroadcastPusherDriver,
    request: Request,
    answer: tuple[int, bytes],
    key: str,
    kind: type,
    what: str,
) -> Any:
    """The ``key`` field (a ``kind``) of a successful answer; a QueryError without it."""
    data = _answer(driver, request, *answer)
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise _unexpected(driver, request, answer[0], what)
    return value


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _request(driver: BroadcastPusherDriver, method: str, path: str, **params: str) -> Request:
    client = driver._client
    return Request(client, method, f"/apps/{client.app_id}/{path}", params)


# -- the queries ---------------------------------------------------------------------------


def occupied_channels(
    driver: BroadcastPusherDriver, prefix: str | None
) -> Query[list[ChannelInfo]]:
    """The occupied channels whose name starts with ``prefix``, sorted by name."""
    prefix = _prefix(driver, prefix)
    params = {}
    if prefix is not None:
        params["filter_by_prefix"] = prefix
        if prefix.startswith(PRESENCE_PREFIX):
            params["info"] = "user_count"
    request = _request(driver, GET, "channels", **params)
    listed = _field(driver, request, (yield request), "channels", dict, "no channel list")
    found = []
    for name, info in sorted(listed.items()):
        if prefix is None or name.startswith(prefix):  # else a server that ignored the filter
            info = info if isinstance(info, dict) else {}
            counts = _count(info.get("subscription_count")), _count(info.get("user_count"))
            found.append(ChannelInfo(name, True, *counts))
    return found


def _info_request(driver: BroadcastPusherDriver, channel: str, counting: bool) -> Request:
    attributes = ["subscription_count"] if counting else []
    if channel.startswith(PRESENCE_PREFIX):
        attributes.append("user_count")
    params = {"info": ",".join(attributes)} if attributes else {}
    return _request(driver, GET, f"channels/{channel}", **params)


def _channel_info(
    driver: BroadcastPusherDriver, channel: str, request: Request, answer: tuple[int, bytes]
) -> ChannelInfo:
    data = _answer(driver, request, *answer)
    if not isinstance(data, dict) or not isinstance(data.get("occupied"), bool):
        raise _unexpected(driver, request, answer[0], "no 'occupied' field")
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


def channel_info(driver: BroadcastPusherDriver, channel: str) -> Query[ChannelInfo]:
    """Whether ``channel`` is occupied, by how many connections and (presence) users."""
    channel = checked_channel(driver, channel)
    counting = driver not in _no_subscription_count
    request = _info_request(driver, channel, counting)
    answer = yield request
    try:
        return _channel_info(driver, channel, request, answer)
    except QueryError as error:
        if not counting or error.status != 400:
            raise
    # Pusher refuses subscription_count unless the app counts them: ask once more without
    request = _info_request(driver, channel, counting=False)
    info = _channel_info(driver, channel, request, (yield request))
    _no_subscription_count.add(driver)  # it was the attribute: never ask for it again
    return info


def members(driver: BroadcastPusherDriver, channel: str) -> Query[list[Member]]:
    """The users in the presence channel ``channel`` (ids only: Pusher reports no info)."""
    channel = checked_channel(driver, channel)
    if not channel.startswith(PRESENCE_PREFIX):
        raise InvalidChannelError(
            f"{driver.name}: only presence channels have members; {channel!r} does not start "
            f"with {PRESENCE_PREFIX!r} (use PresenceChannel({channel!r}))"
        )
    request = _request(driver, GET, f"channels/{channel}/users")
    users = _field(driver, request, (yield request), "users", list, "no user list")
    ids = [user.get("id") if isinstance(user, dict) else None for user in users]
    return [Member(str(i)) for i in ids if isinstance(i, (str, int)) and not isinstance(i, bool)]


def terminate_user(driver: BroadcastPusherDriver, user_id: str) -> Query[None]:
    """Disconnect every connection of the signed-in user ``user_id``."""
    # not the SDK's terminate_user_connections: without /apps/{id}, soketi and Reverb 404
    user_id = _user_id(driver, user_id)
    request = _request(driver, POST, f"users/{user_id}/terminate_connections")
    _answer(driver, request, *(yield request))


def health(driver: BroadcastPusherDriver) -> Query[str]:
    """The detail of a successful health check: the server listed the app's channels."""
    request = _request(driver, GET, "channels")
    status, body = yield request
    if 200 <= status < 300:
        try:
            json.loads(body)
        except ValueError:
            raise _unexpected(driver, request, status, "not JSON") from None
    count = len(_field(driver, request, (status, body), "channels", dict, "no channel list"))
    return (
        f"{driver.settings.base_url} accepted the app key and secret ({request.method} "
        f"{request.path}: {count} occupied channel{'' if count == 1 else 's'})"
    )


# -- one sync and one async path over the transport ----------------------------------------


def run(driver: BroadcastPusherDriver, query: Query[T]) -> T:
    """Run ``query`` on the driver's sync pool."""
    request = next(query)
    while True:
        try:
            request = query.send(driver._client.http.send(request))
        except StopIteration as done:
            result: T = done.value
            return result


async def arun(driver: BroadcastPusherDriver, query: Query[T]) -> T:
    """Run ``query`` on this event loop's session."""
    request = next(query)
    while True:
        try:
            request = query.send(await driver._aclient.http.send(request))
        except StopIteration as done:
            result: T = done.value
            return result
