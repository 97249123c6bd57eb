"""Channel and presence queries over Ably's REST API, through the SDK's ``request()``.

* ``channels(prefix)``: ``GET /channels?by=value&prefix=...`` (channel
  enumeration, every page), keeping the channels with at least one connection;
* ``channel_info(name)``: ``GET /channels/{name}`` (``ChannelDetails``: whether
  it is active and its occupancy metrics). Ably activates a channel it is
  asked about, so an idle channel answers "not occupied" rather than 404;
* ``members(name)``: ``GET /channels/{name}/presence`` (the presence set,
  every page), one :class:`Member` per client id, ``info`` = its presence data.

A :class:`ChannelInfo`'s ``occupied`` is ``connections > 0``,
``subscription_count`` is the ``subscribers`` metric and ``user_count`` (for
``presence:`` channels only) the ``presenceMembers`` metric. Ably's refusals
become :class:`PublishError` with Ably's status and code (40160 when the key
lacks the ``channel-metadata`` or ``subscribe`` capability); no answer at all
is a retryable :class:`PublishError`. The key never appears in them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from broadcasting import ChannelInfo, Member, PublishError
from broadcasting_ably._auth import REVOKED
from broadcasting_ably._errors import describe, int_or_none
from broadcasting_ably._wire import API_VERSION

if TYPE_CHECKING:
    from broadcasting_ably._driver import BroadcastAblyDriver

DRIVER = "ably"
#: The largest page Ably serves for enumeration and presence.
PAGE_LIMIT = 1000
#: A safety net against a server that never stops paginating.
MAX_PAGES = 1000

Query = tuple[str, dict[str, str]]


def channels_query(prefix: str | None) -> Query:
    params = {"by": "value", "limit": str(PAGE_LIMIT)}
    if prefix:
        params["prefix"] = prefix
    return "/channels", params


def info_query(channel: str) -> Query:
    return f"/channels/{quote(channel, safe='')}", {}


def members_query(channel: str) -> Query:
    return f"/channels/{quote(channel, safe='')}/presence", {"limit": str(PAGE_LIMIT)}


def _metrics(details: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    status = details.get("status")
    status = status if isinstance(status, Mapping) else {}
    occupancy = status.get("occupancy")
    occupancy = occupancy if isinstance(occupancy, Mapping) else {}
    metrics = occupancy.get("metrics")
    return bool(status.get("isActive")), dict(metrics) if isinstance(metrics, Mapping) else {}


def _count(metrics: Mapping[str, Any], name: str) -> int | None:
    value = metrics.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def channel_info_from(details: Mapping[str, Any], name: str, *, presence: bool) -> ChannelInfo:
    """A :class:`ChannelInfo` from Ably's ``ChannelDetails``."""
    active, metrics = _metrics(details)
    connections = _count(metrics, "connections")
    occupied = connections > 0 if connections is not None else active
    return ChannelInfo(
        name=name,
        occupied=occupied,
        subscription_count=_count(metrics, "subscribers"),
        user_count=_count(metrics, "presenceMembers") if presence else None,
    )


def members_from(entries: list[Any]) -> list[Member]:
    """One :class:`Member` per client id of a presence set, in the order Ably listed them."""
    seen: dict[str, Member] = {}
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        client_id = entry.get("clientId")
        if not isinstance(client_id, str) or not client_id or client_id in seen:
            continue
        data = entry.get("data")
        if entry.get("encoding") == "json" and isinstance(data, str):
            with contextlib.suppress(ValueError):
                data = json.loads(data)
        info = data if isinstance(data, Mapping) else ({"data": data} if data is not None else None)
        seen[client_id] = Member(id=client_id, info=info)
    return list(seen.values())


class Reader:
    """Sends one query (every page) with a driver's SDK client and checks the answers."""

    def __init__(self, driver: BroadcastAblyDriver, what: str) -> None:
        self._driver = driver
        self._what = what

    def _page(self, response: Any) -> tuple[list[Any], bool]:
        try:
            status = int(response.status_code)
            items = list(response.items)
            more = bool(response.has_next())
        except Exception as exc:
            raise self._error(
                f"Ably's answer to {self._what} could not be read ({type(exc).__name__})",
                retryable=True,
            ) from None
        if 200 <= status < 300:
            return items, more
        first = items[0] if items else None
        error = first.get("error") if isinstance(first, Mapping) else None
        if isinstance(error, Mapping):
            code = int_or_none(error.get("code"))
            said = str(error.get("message") or "")
        else:
            code, said = int_or_none(getattr(response, "error_code", None)), ""
        raise self._error(
            f"Ably refused {self._what}: {describe(status, code, said)}",
            status=status,
            code=code,
            retryable=status >= 500 or status == 429,
        )

    def _failure(self, exc: Exception) -> PublishError:
        import httpx
        from ably.util.exceptions import AblyException

        if isinstance(exc, httpx.TransportError):
            detail = f"{type(exc).__name__}: {self._driver._scrub(str(exc)) or 'no detail'}"
            return self._error(f"{self._what} got no answer from Ably ({detail})", retryable=True)
        if isinstance(exc, AblyException):
            status = int_or_none(getattr(exc, "status_code", None))
            code = int_or_none(getattr(exc, "code", None))
            said = str(getattr(exc, "message", "") or "")
            return self._error(
                f"Ably refused {self._what}: {describe(status, code, said)}",
                status=status,
                code=code,
            )
        if isinstance(exc, (ValueError, KeyError)):
            return self._error(
                f"Ably's answer to {self._what} could not be read ({type(exc).__name__})",
                retryable=True,
            )
        raise exc

    def _error(
        self,
        text: str,
        *,
        status: int | None = None,
        code: int | None = None,
        retryable: bool = False,
    ) -> PublishError:
        return PublishError(
            self._driver._scrub(text), driver=DRIVER, status=status, code=code, retryable=retryable
        )

    def read(
        self, query: Query, *, paginate: bool, body: Any = None, client: Any = None
    ) -> list[Any]:
        """Every item of the answer (all pages when ``paginate``), with the sync client
        (or ``client``). A ``body`` makes it a POST.
        """
        path, params = query
        client = client or self._driver._clients.sync_client()
        collected: list[Any] = []
        method = "GET" if body is None else "POST"
        try:
            response = client.request(method, path, API_VERSION, params=params or None, body=body)
            for _ in range(MAX_PAGES):
                items, more = self._page(response)
                collected.extend(items)
                if not (paginate and more):
                    break
                response = response.next()
        except PublishError:
            raise
        except Exception as exc:
            error = self._failure(exc)
        else:
            return collected
        raise error

    async def aread(
        self, query: Query, *, paginate: bool, body: Any = None, client: Any = None
    ) -> list[Any]:
        """Async twin of :meth:`read`, with this event loop's client (or ``client``)."""
        path, params = query
        client = client or self._driver._clients.async_client()
        collected: list[Any] = []
        method = "GET" if body is None else "POST"
        try:
            response = await client.request(
                method, path, API_VERSION, params=params or None, body=body
            )
            for _ in range(MAX_PAGES):
                items, more = self._page(response)
                collected.extend(items)
                if not (paginate and more):
                    break
                response = await response.next()
        except PublishError:
            raise
        except Exception as exc:
            error = self._failure(exc)
        else:
            return collected
        raise error


def _details(items: list[Any], what: str, scrub: Callable[[str], str]) -> Mapping[str, Any]:
    first = items[0] if items else None
    if not isinstance(first, Mapping):
        text = f"Ably's answer to {what} holds no channel details"
        raise PublishError(scrub(text), driver=DRIVER)
    return first


def occupied_from(
    driver: BroadcastAblyDriver, items: list[Any], prefix: str | None
) -> list[ChannelInfo]:
    """The occupied channels of an enumeration answer, by name."""
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
        presence = driver.parse_channel(name)[0] == "presence"
        info = channel_info_from(details, name, presence=presence)
        if info.occupied or not details:
            found[name] = info
    return [found[name] for name in sorted(found)]


def occupied_channels(driver: BroadcastAblyDriver, prefix: str | None) -> list[ChannelInfo]:
    what = "the channel enumeration" + (f" (prefix {prefix!r})" if prefix else "")
    items = Reader(driver, what).read(channels_query(prefix), paginate=True)
    return occupied_from(driver, items, prefix)


async def aoccupied_channels(driver: BroadcastAblyDriver, prefix: str | None) -> list[ChannelInfo]:
    what = "the channel enumeration" + (f" (prefix {prefix!r})" if prefix else "")
    items = await Reader(driver, what).aread(channels_query(prefix), paginate=True)
    return occupied_from(driver, items, prefix)


def channel_info(driver: BroadcastAblyDriver, channel: str) -> ChannelInfo:
    what = f"the status of channel {channel!r}"
    items = Reader(driver, what).read(info_query(channel), paginate=False)
    presence = driver.parse_channel(channel)[0] == "presence"
    return channel_info_from(_details(items, what, driver._scrub), channel, presence=presence)


async def achannel_info(driver: BroadcastAblyDriver, channel: str) -> ChannelInfo:
    what = f"the status of channel {channel!r}"
    items = await Reader(driver, what).aread(info_query(channel), paginate=False)
    presence = driver.parse_channel(channel)[0] == "presence"
    return channel_info_from(_details(items, what, driver._scrub), channel, presence=presence)


def members(driver: BroadcastAblyDriver, channel: str) -> list[Member]:
    what = f"the presence set of channel {channel!r}"
    return members_from(Reader(driver, what).read(members_query(channel), paginate=True))


async def amembers(driver: BroadcastAblyDriver, channel: str) -> list[Member]:
    what = f"the presence set of channel {channel!r}"
    return members_from(await Reader(driver, what).aread(members_query(channel), paginate=True))


def revoke_query(key_name: str) -> Query:
    return f"/keys/{quote(key_name, safe='')}/revokeTokens", {}


def _revoke_body(user_id: str) -> dict[str, Any]:
    if not isinstance(user_id, str) or not user_id or len(user_id) > 1024:
        from broadcasting import InputError

        raise InputError(f"{DRIVER}: terminate_user() needs a non-empty user id")
    return {"targets": [f"clientId:{user_id}"]}


def _revoked(driver: BroadcastAblyDriver, items: list[Any], what: str) -> None:
    """Raise the error of a target Ably could not revoke (a batch result's failure)."""
    for item in items:
        results = item.get("results") if isinstance(item, Mapping) else None
        for result in results if isinstance(results, list) else [item]:
            error = result.get("error") if isinstance(result, Mapping) else None
            if isinstance(error, Mapping):
                status = int_or_none(error.get("statusCode"))
                code = int_or_none(error.get("code"))
                said = describe(status, code, str(error.get("message") or ""))
                raise PublishError(
                    driver._scrub(f"Ably refused {what}: {said}"),
                    driver=DRIVER,
                    status=status,
                    code=code,
                )


@contextlib.contextmanager
def _noting(driver: BroadcastAblyDriver, user_id: str) -> Iterator[None]:
    """Note the revocation in this process before and after it is sent.

    Before: a renewal racing the request cannot carry a token over; after:
    nor can one signed while it was under way (Ably revokes those too).
    """
    REVOKED.note(driver._key_name(), user_id)
    try:
        yield
    finally:
        REVOKED.note(driver._key_name(), user_id)


def terminate_user(driver: BroadcastAblyDriver, user_id: str) -> None:
    body = _revoke_body(user_id)
    what = f"to revoke the tokens of client id {user_id!r}"
    # revoking needs the key itself (Basic auth), which the driver's clients do not
    # hold: a client made for this one call, closed after it
    with _noting(driver, user_id), driver._clients.keyed_sync() as client:
        items = Reader(driver, what).read(
            revoke_query(driver._key_name()), paginate=False, body=body, client=client
        )
    _revoked(driver, items, what)


async def aterminate_user(driver: BroadcastAblyDriver, user_id: str) -> None:
    body = _revoke_body(user_id)
    what = f"to revoke the tokens of client id {user_id!r}"
    reader = Reader(driver, what)
    with _noting(driver, user_id):
        async with driver._clients.keyed_async() as client:
            items = await reader.aread(
                revoke_query(driver._key_name()), paginate=False, body=body, client=client
            )
    _revoked(driver, items, what)
