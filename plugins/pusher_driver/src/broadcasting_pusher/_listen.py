"""Listening to channels over the Pusher WebSocket protocol (what ``broadcasting listen`` runs),
signing subscriptions with the app secret as an app's auth endpoint would.

With the ``hosts`` option the WebSocket goes to a node the driver's :class:`~_hosts.Hosts`
picks, as a request would: any node of the cluster hears every channel, so a node that cannot
be reached is marked down (for the driver's requests too) and the next one is tried. Once the
WebSocket is open, it stays on that node: a dropped connection ends the listening.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from broadcasting import BroadcastError, InputError, InvalidChannelError, NotSupportedError
from broadcasting.plugin import SUBSCRIBED, Heard
from broadcasting_pusher._auth import _signature, shared_secret
from broadcasting_pusher._hosts import Node
from broadcasting_pusher._rules import is_encrypted
from broadcasting_pusher._settings import NAME
from broadcasting_pusher._state import checked_channel
from broadcasting_pusher._transport import untrusted
from broadcasting_pusher._webhooks import optional_text

if TYPE_CHECKING:
    import aiohttp  # an optional dependency: imported when listening begins

    from broadcasting_pusher._driver import BroadcastPusherDriver
    from broadcasting_pusher._settings import PusherSettings

#: Pusher's own API hosts (``api-eu.pusher.com``...), whose WebSocket host is ``ws-...``.
_PUSHER_API_HOST = re.compile(r"api(-[a-z0-9-]+)?\.pusher\.com|api\.pusherapp\.com")
PROTOCOL = 7
CLIENT = "broadcasting-listen"
#: Seconds of silence before the listener pings: the server's ``activity_timeout`` (soketi
#: says 30, Pusher 120), at most this (pusher-js's own ``activityTimeout``).
ACTIVITY_TIMEOUT = 120.0


def _activity_timeout(value: object) -> float:
    """The server's ``activity_timeout``, if it is a number of seconds that makes sense."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1:
        return float(min(value, ACTIVITY_TIMEOUT))
    return ACTIVITY_TIMEOUT


def ws_url(settings: PusherSettings, node: Node | None = None) -> str:
    """The WebSocket URL of the one ``host`` (Pusher's own WebSocket host for its API host), or
    of ``node``, one of the ``hosts``."""
    host, port = settings.host, settings.port
    if node is not None:
        host, port = node.host, node.port
    elif _PUSHER_API_HOST.fullmatch(host):  # given as `host` too, with no `cluster`
        host = "ws" + host[3:]  # Pusher's WebSocket host for its API host
    scheme = "wss" if settings.ssl else "ws"
    query = f"protocol={PROTOCOL}&client={CLIENT}&version=1.0"
    return f"{scheme}://{host}:{port}/app/{settings.key}?{query}"


def _subscribe_frame(driver: BroadcastPusherDriver, socket_id: str, channel: str) -> str:
    data: dict[str, str] = {"channel": channel}
    if channel.startswith("presence-"):
        member = {"user_id": f"{CLIENT}-{os.urandom(4).hex()}", "user_info": {"listener": True}}
        data["channel_data"] = json.dumps(member, separators=(",", ":"))
        data["auth"] = _signature(driver, f"{socket_id}:{channel}:{data['channel_data']}")
    elif channel.startswith("private-"):  # private-encrypted- too
        data["auth"] = _signature(driver, f"{socket_id}:{channel}")
    return json.dumps({"event": "pusher:subscribe", "data": data})


def _open(driver: BroadcastPusherDriver, channel: str, data: str) -> bytes | None:
    """The plaintext of an encrypted event, or ``None`` when it does not decrypt."""
    import nacl.exceptions
    import nacl.secret

    try:
        envelope = json.loads(data)
        return nacl.secret.SecretBox(base64.b64decode(shared_secret(driver, channel))).decrypt(
            base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"])
        )
    except (ValueError, KeyError, TypeError, nacl.exceptions.CryptoError):
        return None


def _object(value: Any) -> dict[str, Any] | None:
    """``value`` as a JSON object: itself if it is one, else the object its text decodes to
    (``None`` if it is not the text of one)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python decodes
            return None
    return value if isinstance(value, dict) else None


def _text(data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


async def listen_channels(
    driver: BroadcastPusherDriver, channels: Sequence[str]
) -> AsyncIterator[Heard]:
    if isinstance(channels, str) or not channels:
        raise InvalidChannelError(f"{NAME}: listen to a list of one or more channel names")
    names = list(dict.fromkeys(channels))
    for name in names:
        checked_channel(name)
        if is_encrypted(name) and driver.settings.encryption_master_key is None:
            raise InputError(
                f"{NAME}: listening to {name!r} needs encryption_master_key_base64 "
                "in the driver's options, to decrypt its events"
            )
    try:
        import aiohttp
    except ImportError:
        why = "it needs aiohttp: pip install 'broadcasting-pusher[aiohttp]'"
        raise NotSupportedError(NAME, "listening to channels", why) from None
    wait = driver.settings.timeout
    client_timeout = aiohttp.ClientTimeout(total=None, connect=wait, sock_connect=wait)
    # the CAs trusted now, as the driver's requests do (aiohttp's own default context is made
    # when it is imported: an SSL_CERT_FILE set since would be ignored)
    tls = ssl.create_default_context() if driver.settings.ssl else False
    connector = aiohttp.TCPConnector(ssl=tls)
    async with aiohttp.ClientSession(timeout=client_timeout, connector=connector) as session:
        ws, where = await _connect(driver, session)
        async with ws, contextlib.aclosing(_frames(driver, ws, names, where, wait)) as frames:
            try:
                async for heard in frames:
                    yield heard
            except (aiohttp.ClientError, OSError) as exc:
                raise BroadcastError(
                    f"{NAME}: the WebSocket {where} failed: {type(exc).__name__}"
                ) from None


async def _connect(
    driver: BroadcastPusherDriver, session: aiohttp.ClientSession
) -> tuple[aiohttp.ClientWebSocketResponse[bool], str]:
    """An open WebSocket and where it goes (its URL without the query), from the first node
    that upgraded the connection, in the order the driver's requests would try them.

    A node whose WebSocket could not be opened within ``timeout`` (refused, DNS, connect
    timeout, no answer to the upgrade, anything before it) is marked down in the chooser the
    driver's requests share, as a request's failed connection would be (a TLS handshake that
    failed too). A certificate this process does not trust raises at once without marking
    it: as for requests, it is a configuration problem that trying the other nodes would
    hide.
    """
    import aiohttp

    settings, hosts = driver.settings, driver._hosts
    missed: list[str] = []
    for node in hosts.order(time.monotonic()):
        url = ws_url(settings, node if settings.hosts else None)
        where = url.split("?")[0]
        try:
            # the whole handshake in `timeout`: a node that takes the connection and never
            # answers the upgrade would otherwise hold the listening forever (no sock_read)
            ws = await asyncio.wait_for(session.ws_connect(url, heartbeat=None), settings.timeout)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            said = f"{where}: {type(exc).__name__}: {exc}"
            if _configuration(exc):
                raise BroadcastError(f"{NAME}: could not open the WebSocket {said}") from None
            hosts.failed(node, time.monotonic())
            missed.append(said)
            continue
        hosts.answered(node)
        return ws, where
    if len(missed) == 1:  # one node: its own error, as before there were several
        raise BroadcastError(f"{NAME}: could not open the WebSocket {missed[0]}")
    raise BroadcastError(
        f"{NAME}: could not open the WebSocket on any of the {len(missed)} nodes: "
        + "; ".join(missed)
    )


def _configuration(exc: BaseException) -> bool:
    """A certificate this process does not trust, not a node that could not be reached: the
    same on every node, as the requests' transports judge it (:func:`_transport.untrusted`)."""
    return untrusted(getattr(exc, "os_error", exc))


async def _frames(
    driver: BroadcastPusherDriver, ws: Any, names: list[str], where: str, wait: float
) -> AsyncGenerator[Heard, None]:
    import aiohttp

    pending = set(names)
    idle = ACTIVITY_TIMEOUT  # until the server says how long it may stay silent
    pinged = False
    while True:
        try:
            message = await ws.receive(timeout=wait * 4 if pending else wait if pinged else idle)
        except asyncio.TimeoutError:
            if pending:
                raise BroadcastError(
                    f"{NAME}: {where} did not confirm the subscriptions to "
                    f"{sorted(pending)} within {wait * 4:g} s"
                ) from None
            if pinged:  # a dead network path closes nothing: only silence tells
                raise BroadcastError(
                    f"{NAME}: the connection to {where} was lost (no answer to a "
                    f"pusher:ping within {wait:g} s)"
                ) from None
            # the protocol's keep-alive: silent for activity_timeout, the client pings
            # (soketi ends a connection it has sent nothing on for 120 s)
            await ws.send_str(json.dumps({"event": "pusher:ping", "data": {}}))
            pinged = True
            continue
        pinged = False
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            raise BroadcastError(
                f"{NAME}: the server closed the WebSocket {where} (code {ws.close_code})"
            )
        if message.type == aiohttp.WSMsgType.ERROR:
            raise BroadcastError(f"{NAME}: the WebSocket {where} failed")
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        frame = _object(message.data)
        if frame is None:
            raise BroadcastError(
                f"{NAME}: {where} sent a frame that is not a Pusher protocol message: "
                f"{message.data[:100]!r}"
            )
        event = str(frame.get("event", ""))
        channel = str(frame.get("channel", ""))
        data = frame.get("data", "")
        if event == "pusher:connection_established":
            established = _object(data) or {}
            socket_id = established.get("socket_id")
            if not isinstance(socket_id, str) or not socket_id:
                raise BroadcastError(
                    f"{NAME}: {where} opened the connection without a socket id "
                    f"(pusher:connection_established said {_text(data)[:100]!r})"
                )
            idle = _activity_timeout(established.get("activity_timeout"))
            for name in names:
                await ws.send_str(_subscribe_frame(driver, socket_id, name))
        elif event == "pusher:ping":
            await ws.send_str(json.dumps({"event": "pusher:pong", "data": {}}))
        elif event == "pusher_internal:subscription_succeeded":
            if channel in pending:
                pending.discard(channel)
                yield Heard(channel, SUBSCRIBED, "", time.time())
        elif event in ("pusher:error", "pusher:subscription_error"):
            said = _text(data)[:300]
            raise BroadcastError(
                f"{NAME}: {where} refused: {said}" + (f" (channel {channel!r})" if channel else "")
            )
        elif event in ("pusher_internal:member_added", "pusher_internal:member_removed"):
            info = _object(data)
            user = info.get("user_id") if info is not None else None
            name = event.replace("pusher_internal:", "pusher:")
            yield Heard(channel, name, _text(data), time.time(), optional_text(user))
        elif not event.startswith(("pusher:", "pusher_internal:")):  # else the protocol's
            text = _text(data)
            if is_encrypted(channel):
                # the key is derived and used inside _open, whose frame is gone before this raises
                plain = _open(driver, channel, text)
                if plain is None:
                    raise BroadcastError(
                        f"{NAME}: an event on {channel!r} could not be decrypted "
                        "(is encryption_master_key_base64 the one the publisher uses?)"
                    )
                text = plain.decode("utf-8", "replace")
            yield Heard(channel, event, text, time.time(), optional_text(frame.get("user_id")))
