"""Listening to channels over the Pusher WebSocket protocol (what ``broadcasting listen`` runs),
signing subscriptions with the app secret as an app's auth endpoint would."""

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
from broadcasting_pusher._settings import NAME
from broadcasting_pusher._state import checked_channel
from broadcasting_pusher._webhooks import optional_text

if TYPE_CHECKING:
    from broadcasting_pusher._driver import BroadcastPusherDriver
    from broadcasting_pusher._settings import PusherSettings

PROTOCOL = 7
CLIENT = "broadcasting-listen"


def ws_url(settings: PusherSettings) -> str:
    host, cluster = settings.host, settings.cluster
    if host in ("api.pusherapp.com", f"api-{cluster}.pusher.com" if cluster else None):
        host = "ws" + host[3:]  # Pusher's WebSocket host for its API host
    scheme = "wss" if settings.ssl else "ws"
    query = f"protocol={PROTOCOL}&client={CLIENT}&version=1.0"
    return f"{scheme}://{host}:{settings.port}/app/{settings.key}?{query}"


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
    url, wait = ws_url(driver.settings), driver.settings.timeout
    where = url.split("?")[0]
    client_timeout = aiohttp.ClientTimeout(total=None, connect=wait, sock_connect=wait)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        try:
            ws = await session.ws_connect(url, heartbeat=None)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise BroadcastError(
                f"{NAME}: could not open the WebSocket {where}: {type(exc).__name__}: {exc}"
            ) from None
        async with ws, contextlib.aclosing(_frames(driver, ws, names, where, wait)) as frames:
            try:
                async for heard in frames:
                    yield heard
            except (aiohttp.ClientError, OSError) as exc:
                raise BroadcastError(
                    f"{NAME}: the WebSocket {where} failed: {type(exc).__name__}"
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
                f"{NAME}: {where} did not confirm the subscriptions to "
                f"{sorted(pending)} within {wait * 4:g} s"
            ) from None
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            raise BroadcastError(
                f"{NAME}: the server closed the WebSocket {where} (code {ws.close_code})"
            )
        if message.type == aiohttp.WSMsgType.ERROR:
            raise BroadcastError(f"{NAME}: the WebSocket {where} failed")
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
                f"{NAME}: {where} refused: {said}" + (f" (channel {channel!r})" if channel else "")
            )
        elif event in ("pusher_internal:member_added", "pusher_internal:member_removed"):
            info = json.loads(data) if isinstance(data, str) else data
            user = info.get("user_id") if isinstance(info, dict) else None
            name = event.replace("pusher_internal:", "pusher:")
            yield Heard(channel, name, _text(data), time.time(), optional_text(user))
        elif not event.startswith("pusher"):
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
