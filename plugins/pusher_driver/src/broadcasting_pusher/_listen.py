"""Listening to channels over the Pusher WebSocket protocol (what ``broadcasting listen`` runs).

Subscriptions are signed here with the app secret, as an app's auth endpoint would sign them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from broadcasting import BroadcastError, InputError, InvalidChannelError, NotSupportedError
from broadcasting.plugin import SUBSCRIBED, Heard
from broadcasting_pusher._auth import _signature, shared_secret
from broadcasting_pusher._rules import is_encrypted
from broadcasting_pusher._state import checked_channel

if TYPE_CHECKING:
    from broadcasting_pusher._driver import BroadcastPusherDriver
    from broadcasting_pusher._settings import PusherSettings

PROTOCOL = 7
CLIENT = "broadcasting-listen"
_SIGNED_PREFIXES = ("private-", "presence-")


def ws_url(settings: PusherSettings) -> str:
    host, port = settings.host, settings.port
    if settings.cluster and host == f"api-{settings.cluster}.pusher.com":
        host = f"ws-{settings.cluster}.pusher.com"
    elif host == "api.pusherapp.com":
        host = "ws.pusherapp.com"
    scheme = "wss" if settings.ssl else "ws"
    query = f"protocol={PROTOCOL}&client={CLIENT}&version=1.0"
    return f"{scheme}://{host}:{port}/app/{settings.key}?{query}"


def _checked(driver: BroadcastPusherDriver, channels: Sequence[str]) -> list[str]:
    if isinstance(channels, str) or not channels:
        raise InvalidChannelError(f"{driver.name}: listen to a list of one or more channel names")
    names = list(dict.fromkeys(channels))
    for name in names:
        checked_channel(driver, name)
        if is_encrypted(name) and driver.settings.encryption_master_key is None:
            raise InputError(
                f"{driver.name}: listening to {name!r} needs encryption_master_key_base64 "
                "in the driver's options, to decrypt its events"
            )
    return names


def _subscribe_frame(driver: BroadcastPusherDriver, socket_id: str, channel: str) -> str:
    data: dict[str, str] = {"channel": channel}
    if channel.startswith("presence-"):
        member = {"user_id": f"{CLIENT}-{os.urandom(4).hex()}", "user_info": {"listener": True}}
        data["channel_data"] = json.dumps(member, separators=(",", ":"))
        data["auth"] = _signature(driver, f"{socket_id}:{channel}:{data['channel_data']}")
    elif channel.startswith(_SIGNED_PREFIXES):
        data["auth"] = _signature(driver, f"{socket_id}:{channel}")
    return json.dumps({"event": "pusher:subscribe", "data": data})


def _open(driver: BroadcastPusherDriver, channel: str, data: str) -> bytes | None:
    """The plaintext of an encrypted event, or ``None`` when it does not decrypt."""
    import nacl.exceptions
    import nacl.secret

    try:
        envelope = json.loads(data)
        plain: bytes = nacl.secret.SecretBox(
            base64.b64decode(shared_secret(driver, channel))
        ).decrypt(base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"]))
    except (ValueError, KeyError, TypeError, nacl.exceptions.CryptoError):
        return None
    return plain


def _decrypted(driver: BroadcastPusherDriver, channel: str, data: str) -> str:
    # the key is derived and used inside _open, whose frame is gone before this raises
    plain = _open(driver, channel, data)
    if plain is None:
        raise BroadcastError(
            f"{driver.name}: an event on {channel!r} could not be decrypted "
            "(is encryption_master_key_base64 the one the publisher uses?)"
        )
    return plain.decode("utf-8", "replace")


def _text(data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


async def listen_channels(
    driver: BroadcastPusherDriver, channels: Sequence[str]
) -> AsyncIterator[Heard]:
    names = _checked(driver, channels)
    try:
        import aiohttp
    except ImportError:
        raise NotSupportedError(
            driver.name,
            "listening to channels",
            "it needs aiohttp: pip install 'broadcasting-pusher[aiohttp]'",
        ) from None
    url, wait = ws_url(driver.settings), driver.settings.timeout
    where = url.split("?")[0]
    client_timeout = aiohttp.ClientTimeout(total=None, connect=wait, sock_connect=wait)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        try:
            ws = await session.ws_connect(url, heartbeat=None)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise BroadcastError(
                f"{driver.name}: could not open the WebSocket {where}: {type(exc).__name__}: {exc}"
            ) from None
        async with ws, contextlib.aclosing(_frames(driver, ws, names, where, wait)) as frames:
            try:
                async for heard in frames:
                    yield heard
            except (aiohttp.ClientError, OSError) as exc:
                raise BroadcastError(
                    f"{driver.name}: the WebSocket {where} failed: {type(exc).__name__}"
                ) from None


async def _frames(
    driver: BroadcastPusherDriver, ws: Any, names: list[str], where: str, wait: float
) -> AsyncGenerator[Heard, None]:
    import aiohttp

    pending = set(names)
    while True:
        try:
            message = await ws.receive(timeout=wait * 4 if pending else None)
        except asyncio.TimeoutError:
            raise BroadcastError(
                f"{driver.name}: {where} did not confirm the subscriptions to "
                f"{sorted(pending)} within {wait * 4:g} s"
            ) from None
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            raise BroadcastError(
                f"{driver.name}: the server closed the WebSocket {where} (code {ws.close_code})"
            )
        if message.type == aiohttp.WSMsgType.ERROR:
            raise BroadcastError(f"{driver.name}: the WebSocket {where} failed")
        if message.type != aiohttp.WSMsgType.TEXT:
            continue
        frame = json.loads(message.data)
        event = str(frame.get("event", ""))
        channel = str(frame.get("channel", ""))
        data = frame.get("data", "")
        if event == "pusher:connection_established":
            socket_id = json.loads(data)["socket_id"]
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
                f"{driver.name}: {where} refused: {said}"
                + (f" (channel {channel!r})" if channel else "")
            )
        elif event in ("pusher_internal:member_added", "pusher_internal:member_removed"):
            info = json.loads(data) if isinstance(data, str) else data
            user = info.get("user_id") if isinstance(info, dict) else None
            name = event.replace("pusher_internal:", "pusher:")
            yield Heard(channel, name, _text(data), time.time(), _opt(user))
        elif not event.startswith("pusher"):
            text = _text(data)
            if is_encrypted(channel):
                text = _decrypted(driver, channel, text)
            yield Heard(channel, event, text, time.time(), _opt(frame.get("user_id")))


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
