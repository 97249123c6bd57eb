"""Channel state, token revocation and the health check over Ably's REST API: each request
(a :class:`Query`), every page of its answer, and what the answer means."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from broadcasting import ChannelInfo, InputError, Member, QueryError
from broadcasting.plugin import ChannelKind
from broadcasting_ably._errors import DRIVER, Scrubber, fault, int_or_none, query_failure, refusal
from broadcasting_ably._transport import call, settled
from broadcasting_ably._wire import decoded

T = TypeVar("T")

#: Hosts a state query may try (the SDK's default): reading again is harmless.
QUERY_HOSTS = 3
#: The largest page Ably serves for enumeration and presence.
PAGE_LIMIT = 1000
#: A safety net against a server that never stops paginating.
MAX_PAGES = 1000


@dataclass(frozen=True)
class Query(Generic[T]):
    """One request that publishes nothing, and what its answer means (``parse``)."""

    what: str  # for error messages: "the presence set of channel 'x'"
    path: str
    parse: Callable[[list[Any]], T]
    params: dict[str, str] = field(default_factory=dict)
    body: Any = None  # a POST when set
    paginate: bool = False
    keyed: bool = False  # needs the key itself (Basic auth), not a token


async def read(client: Any, query: Query[Any], scrub: Scrubber, endpoint: str) -> list[Any]:
    """Every item of the answer to ``query`` (every page when it paginates)."""
    method = "GET" if query.body is None else "POST"
    collected: list[Any] = []
    try:
        response = await call(
            client, method, query.path, params=query.params or None, body=query.body
        )
        for _ in range(MAX_PAGES):
            items, more = _page(response, query.what, scrub)
            collected.extend(items)
            if not (query.paginate and more):
                break
            response = await settled(response.next())
    except QueryError:
        raise
    except Exception as exc:
        error = query_failure(scrub, query.what, endpoint, exc)
    else:
        return collected
    raise error  # not chained to the SDK's exception, whose text may echo the key


def _page(response: Any, what: str, scrub: Scrubber) -> tuple[list[Any], bool]:
    try:
        status = int(response.status_code)
        items = list(response.items)
        more = bool(response.has_next())
    except Exception as exc:
        text = f"Ably's answer to {what} could not be read ({type(exc).__name__})"
        raise QueryError(text, driver=DRIVER, kind="other", retryable=True) from None
    if 200 <= status < 300:
        return items, more
    first = items[0] if items else None
    error = first.get("error") if isinstance(first, Mapping) else None
    if isinstance(error, Mapping):
        _, code, said = fault(error)
    else:
        code, said = int_or_none(getattr(response, "error_code", None)), ""
    raise refusal(QueryError, scrub, f"Ably refused {what}", (status, code, said))


def occupied(prefix: str | None, kind: Callable[[str], ChannelKind]) -> Query[list[ChannelInfo]]:
    """``GET /channels?by=value``: the channels with a connection, by name."""
    params = {"by": "value", "limit": str(PAGE_LIMIT)}
    if prefix:
        params["prefix"] = prefix
    what = "the channel enumeration" + (f" (prefix {prefix!r})" if prefix else "")

    def parse(items: list[Any]) -> list[ChannelInfo]:
        found: dict[str, ChannelInfo] = {}
        details: Mapping[str, Any]
        for item in items:
            if isinstance(item, str):  # an answer by id: names only
                name, details = item, {}
            elif isinstance(item, Mapping) and isinstance(item.get("channelId"), str):
                name, details = item["channelId"], item
            else:
                continue
            if prefix and not name.startswith(prefix):
                continue
            info = channel_info_from(details, name, presence=kind(name) == "presence")
            if info.occupied or not details:
                found[name] = info
        return [found[name] for name in sorted(found)]

    return Query(what, "/channels", parse, params, paginate=True)


def info(channel: str, kind: ChannelKind) -> Query[ChannelInfo]:
    """``GET /channels/{name}`` (Ably's ``ChannelDetails``)."""
    what = f"the status of channel {channel!r}"

    def parse(items: list[Any]) -> ChannelInfo:
        first = items[0] if items else None
        if not isinstance(first, Mapping):
            raise QueryError(f"Ably's answer to {what} holds no channel details", driver=DRIVER)
        return channel_info_from(first, channel, presence=kind == "presence")

    return Query(what, f"/channels/{quote(channel, safe='')}", parse)


def members(channel: str) -> Query[list[Member]]:
    """``GET /channels/{name}/presence``: one :class:`Member` per client id, in Ably's order."""

    def parse(entries: list[Any]) -> list[Member]:
        seen: dict[str, Member] = {}
        for entry in entries:
            client_id = entry.get("clientId") if isinstance(entry, Mapping) else None
            if not isinstance(client_id, str) or not client_id or client_id in seen:
                continue
            data = decoded(entry)
            wrapped = {"data": data} if data is not None else None
            info = data if isinstance(data, Mapping) else wrapped
            seen[client_id] = Member(id=client_id, info=info)
        return list(seen.values())

    path = f"/channels/{quote(channel, safe='')}/presence"
    what = f"the presence set of channel {channel!r}"
    return Query(what, path, parse, {"limit": str(PAGE_LIMIT)}, paginate=True)


def revoke(key_name: str, user_id: str, scrub: Scrubber) -> Query[None]:
    """``POST /keys/{keyName}/revokeTokens`` for the client id ``user_id``."""
    if not isinstance(user_id, str) or not user_id or len(user_id) > 1024:
        raise InputError(f"{DRIVER}: terminate_user() needs a non-empty user id")
    what = f"to revoke the tokens of client id {user_id!r}"

    def parse(items: list[Any]) -> None:
        for item in items:  # a batch result may hold a target's failure
            results = item.get("results") if isinstance(item, Mapping) else None
            for result in results if isinstance(results, list) else [item]:
                error = result.get("error") if isinstance(result, Mapping) else None
                if isinstance(error, Mapping):
                    raise refusal(QueryError, scrub, f"Ably refused {what}", fault(error))

    path = f"/keys/{quote(key_name, safe='')}/revokeTokens"
    return Query(what, path, parse, body={"targets": [f"clientId:{user_id}"]}, keyed=True)


def token_check(key_name: str, endpoint: str) -> Query[str]:
    """``POST /keys/{keyName}/requestToken`` with the key: the health check."""
    # empty token params need no capability beyond the key's own: a publish-only key passes

    def parse(items: list[Any]) -> str:
        first = items[0] if items else None
        if not (isinstance(first, Mapping) and isinstance(first.get("token"), str)):
            text = "Ably answered the health check's token request without a token"
            raise QueryError(text, driver=DRIVER)
        said = f"Ably ({endpoint}) accepted the key {key_name!r}"
        return f"{said}: it issued a token, which was discarded"

    path = f"/keys/{quote(key_name, safe='')}/requestToken"
    return Query("the health check", path, parse, body={}, keyed=True)


def channel_info_from(details: Mapping[str, Any], name: str, *, presence: bool) -> ChannelInfo:
    """A :class:`ChannelInfo` from ``ChannelDetails``: occupied when it has connections."""
    status = details.get("status")
    status = status if isinstance(status, Mapping) else {}
    occupancy = status.get("occupancy")
    metrics = occupancy.get("metrics") if isinstance(occupancy, Mapping) else None
    metrics = metrics if isinstance(metrics, Mapping) else {}

    def count(metric: str) -> int | None:
        value = metrics.get(metric)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    connections = count("connections")
    return ChannelInfo(
        name=name,
        occupied=connections > 0 if connections is not None else bool(status.get("isActive")),
        subscription_count=count("subscribers"),
        user_count=count("presenceMembers") if presence else None,
    )
