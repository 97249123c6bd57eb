"""Channel and presence queries and the health check over Pusher's HTTP API, never retried:
each is a generator of signed requests, run by :func:`run` or :func:`arun`."""

from __future__ import annotations

import json
import weakref
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pusher.http import GET, POST, Request

from broadcasting import ChannelInfo, Health, InputError, InvalidChannelError, Member, QueryError
from broadcasting.plugin import ErrorKind, HealthStatus
from broadcasting_pusher._api import check_answer
from broadcasting_pusher._auth import signed_in_id
from broadcasting_pusher._hosts import Node
from broadcasting_pusher._rules import CHANNEL_PATTERN, MAX_CHANNEL_NAME_LENGTH
from broadcasting_pusher._settings import NAME, _is_int

if TYPE_CHECKING:
    from broadcasting_pusher._driver import BroadcastPusherDriver
    from broadcasting_pusher._transport import Reply

T = TypeVar("T")

#: A query: yields signed requests, is sent each one's :class:`Reply`, returns the result.
Query = Generator[Request, "Reply", T]

PRESENCE_PREFIX = "presence-"

_Need = tuple[str, type, str]  # a field the answer needs, its type, the error's words

#: Drivers whose app refused ``info=subscription_count`` (subscription counting is off).
_no_subscription_count: weakref.WeakSet[BroadcastPusherDriver] = weakref.WeakSet()


def checked_channel(channel: object) -> str:
    if not isinstance(channel, str):
        raise InvalidChannelError(f"{NAME}: a channel name must be a str, not {type(channel)}")
    if not channel:
        raise InvalidChannelError(f"{NAME}: the channel name is empty")
    return _name(channel, MAX_CHANNEL_NAME_LENGTH, "channel name", InvalidChannelError)


def _name(name: str, limit: int, what: str, error: type[InputError]) -> str:
    if len(name) > limit or not CHANNEL_PATTERN.fullmatch(name):
        raise error(
            f"{NAME}: {name[:200]!r} is not a Pusher {what} "
            f"(at most {limit} of A-Z a-z 0-9 _ - = @ , . ;)"
        )
    return name


def _ask(
    driver: BroadcastPusherDriver, method: str, path: str, need: _Need | None = None, **params: str
) -> Query[Any]:
    """One request (empty ``params`` left out): the decoded JSON of a successful answer, with
    a ``need[0]`` field of type ``need[1]``; a QueryError for anything else."""
    client = driver._client
    params = {key: value for key, value in params.items() if value}
    request = Request(client, method, f"/apps/{client.app_id}/{path}", params)
    status, body, where = yield request
    try:
        data = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deeply
        data = None
    problem = "not JSON" if data is None and 200 <= status < 300 else None
    if problem is None:
        # soketi's 200 with an error too
        check_answer(status, body, driver.settings, query=True, where=where)
        if need and not (isinstance(data, dict) and isinstance(data.get(need[0]), need[1])):
            problem = need[2]
    if problem is not None:
        raise QueryError(
            f"{NAME}: {where} answered {method} {request.path} "
            f"with HTTP {status} but {problem} (is it a Pusher-protocol server?)",
            driver=NAME,
            status=status,
        )
    return data


def _count(value: object) -> int | None:
    return value if _is_int(value) and value >= 0 else None


def occupied_channels(driver: BroadcastPusherDriver, prefix: object) -> Query[list[ChannelInfo]]:
    """The occupied channels whose name starts with ``prefix``, sorted by name."""
    prefix = None if prefix == "" else prefix
    if prefix is not None and not isinstance(prefix, str):
        raise InputError(f"{NAME}: a channel prefix must be a str")
    if prefix and (len(prefix) > MAX_CHANNEL_NAME_LENGTH or not CHANNEL_PATTERN.fullmatch(prefix)):
        raise InputError(
            f"{NAME}: {prefix[:200]!r} cannot start a Pusher channel name "
            "(A-Z a-z 0-9 _ - = @ , . ; only)"
        )
    users = "user_count" if prefix and prefix.startswith(PRESENCE_PREFIX) else ""
    need = ("channels", dict, "no channel list")
    data = yield from _ask(driver, GET, "channels", need, filter_by_prefix=prefix or "", info=users)
    found = []
    for name, info in sorted(data["channels"].items()):
        if prefix is None or name.startswith(prefix):  # else a server that ignored the filter
            info = info if isinstance(info, dict) else {}
            counts = _count(info.get("subscription_count")), _count(info.get("user_count"))
            found.append(ChannelInfo(name, True, *counts))
    return found


def channel_info(driver: BroadcastPusherDriver, channel: str) -> Query[ChannelInfo]:
    """Whether ``channel`` is occupied, by how many connections and (presence) users."""
    channel = checked_channel(channel)
    presence = channel.startswith(PRESENCE_PREFIX)
    counting = driver not in _no_subscription_count
    need = ("occupied", bool, "no 'occupied' field")

    def ask(counted: bool) -> Query[Any]:
        info = ["subscription_count"] if counted else []
        info += ["user_count"] if presence else []
        return _ask(driver, GET, f"channels/{channel}", need, info=",".join(info))

    try:
        data = yield from ask(counting)
    except QueryError as error:
        if not counting or error.status != 400:
            raise
        data = None  # Pusher refuses subscription_count unless the app counts them
    if data is None:  # outside the except: a second failure is not chained to the first
        data, counting = (yield from ask(False)), False
        _no_subscription_count.add(driver)  # it was the attribute: never ask for it again
    subscriptions, users = _count(data.get("subscription_count")), _count(data.get("user_count"))
    if not data["occupied"]:
        # an empty channel has no subscribers: say 0 where the count was asked for
        subscriptions = 0 if subscriptions is None and counting else subscriptions
        users = 0 if users is None and presence else users
    return ChannelInfo(channel, data["occupied"], subscriptions, users)


def members(driver: BroadcastPusherDriver, channel: str) -> Query[list[Member]]:
    """The users in the presence channel ``channel`` (ids only: Pusher reports no info)."""
    channel = checked_channel(channel)
    if not channel.startswith(PRESENCE_PREFIX):
        raise InvalidChannelError(
            f"{NAME}: only presence channels have members; {channel!r} does not start "
            f"with {PRESENCE_PREFIX!r} (use PresenceChannel({channel!r}))"
        )
    need = ("users", list, "no user list")
    data = yield from _ask(driver, GET, f"channels/{channel}/users", need)
    ids = [user.get("id") if isinstance(user, dict) else None for user in data["users"]]
    return [Member(str(i)) for i in ids if isinstance(i, str) or _is_int(i)]


def terminate_user(driver: BroadcastPusherDriver, user_id: object) -> Query[None]:
    """Disconnect every connection of the signed-in user ``user_id``."""
    # not the SDK's terminate_user_connections: without /apps/{id}, soketi and Reverb 404
    user_id = signed_in_id(str(user_id) if _is_int(user_id) else user_id, "user_id")
    yield from _ask(driver, POST, f"users/{user_id}/terminate_connections")


def health(driver: BroadcastPusherDriver, node: Node | None = None) -> Query[str]:
    """The detail of a successful health check: the server listed the app's channels (with
    ``node``, that node did, and the detail is only what it listed)."""
    count = len((yield from occupied_channels(driver, None)))
    listed = f"{count} occupied channel{'' if count == 1 else 's'}"
    if node is not None:
        return listed
    return (
        f"{driver.settings.base_url} accepted the app key and secret "
        f"(GET /apps/{driver.settings.app_id}/channels: {listed})"
    )


#: A node's health status, and the kind of the QueryError a check of several nodes raises
#: for it (Health.of_error maps each kind back to that status).
_WORST: dict[HealthStatus, ErrorKind] = {
    "auth_failed": "auth",
    "error": "other",
    "unreachable": "unavailable",
}


def summary(driver: BroadcastPusherDriver, checked: Sequence[tuple[Node, Health]]) -> str:
    """The detail of a check of several nodes, with each node's health, if the driver can
    publish: no node refused the credentials or answered wrongly, and at least one answered
    (one that cannot be reached is skipped for a while). Otherwise a QueryError whose kind
    makes the check ``auth_failed``, ``error`` or (no node answered) ``unreachable``."""
    s = driver.settings
    said = []
    for node, health in checked:
        latency = "" if health.latency_ms is None else f" in {health.latency_ms:.1f} ms"
        detail = health.detail.removeprefix(f"{NAME}: ")
        said.append(f"{node.url(s.ssl)}: {health.status}{latency}, {detail}")
    statuses = {health.status for _, health in checked}
    answered = sum(health.status == "ok" for _, health in checked)
    text = (
        f"{answered} of {len(checked)} nodes accepted the app key and secret "
        f"(GET /apps/{s.app_id}/channels); " + "; ".join(said)
    )
    for status, kind in _WORST.items():
        if status in statuses and (status != "unreachable" or not answered):
            raise QueryError(f"{NAME}: {text}", driver=NAME, kind=kind)
    return text


def run(driver: BroadcastPusherDriver, query: Query[T], node: Node | None = None) -> T:
    """Run ``query`` on the driver's sync pool (every request to ``node``, if given)."""
    try:
        request = next(query)
        while True:
            request = query.send(driver._client.http.exchange(request, node))
    except StopIteration as done:
        result: T = done.value
        return result


async def arun(driver: BroadcastPusherDriver, query: Query[T], node: Node | None = None) -> T:
    """Run ``query`` on this event loop's session (every request to ``node``, if given)."""
    try:
        request = next(query)
        while True:
            request = query.send(await driver._aclient.http.exchange(request, node))
    except StopIteration as done:
        result: T = done.value
        return result
