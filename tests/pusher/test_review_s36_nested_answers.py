"""An answer whose JSON is nested deeper than Python decodes is read like any other odd answer.

``json.loads`` raises RecursionError, not ValueError, for such a body. The driver read only
ValueError as "not JSON", so a 400 (certainly not delivered) or a 503 (maybe, retryable)
with such a body became "send() raised RecursionError": every channel unknown and never
retried; a query raised RecursionError instead of a QueryError, and ``check()`` raised it
instead of returning a Health. The answers come from the counting proxy
(tests/servers/http_proxy.py), a real HTTP server on loopback, in place of soketi's.
"""

from __future__ import annotations

import asyncio

import pytest
from http_proxy import CountingProxy

from broadcasting import Broadcast, PublishError, QueryError

NESTED = "[" * 100_000  #: far deeper than the interpreter's recursion limit


async def publish(broadcast: Broadcast, mode: str) -> None:
    if mode == "sync":
        await asyncio.to_thread(broadcast.channel, "nested", "data", "e")
    else:
        await broadcast.achannel("nested", "data", "e")


async def answered_nested(
    broadcast: Broadcast, proxy: CountingProxy, mode: str, status: int
) -> PublishError:
    """The PublishError of a publish answered ``status`` with :data:`NESTED` as its body."""
    proxy.fail(status, NESTED)
    with pytest.raises(PublishError) as info:
        await publish(broadcast, mode)
    return info.value


@pytest.mark.soketi
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_refusal_with_a_nested_body_failed(
    proxied: Broadcast, proxy: CountingProxy, mode: str
) -> None:
    error = await answered_nested(proxied, proxy, mode, 400)
    assert (error.failed, error.unknown, error.status) == (("nested",), (), 400)
    assert len(proxy.posts()) == 1


@pytest.mark.soketi
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_server_error_with_a_nested_body_is_unknown_and_retryable(
    proxied: Broadcast, proxy: CountingProxy, mode: str
) -> None:
    error = await answered_nested(proxied, proxy, mode, 503)
    assert (error.failed, error.unknown, error.status) == ((), ("nested",), 503)
    assert error.retryable
    assert len(proxy.posts()) == 1, "maybe delivered: never sent again by default"


@pytest.mark.soketi
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_nested_2xx_is_no_acknowledgement(
    proxied: Broadcast, proxy: CountingProxy, mode: str
) -> None:
    error = await answered_nested(proxied, proxy, mode, 200)
    assert (error.unknown, error.status) == (("nested",), 200)
    assert "not JSON" in str(error)


@pytest.mark.soketi
@pytest.mark.parametrize("status", [200, 404])
async def test_queries_and_checks_with_a_nested_answer(
    proxied: Broadcast, proxy: CountingProxy, status: int
) -> None:
    driver = proxied.driver("pusher").driver
    calls = [
        lambda: driver.channel_info("nested"),
        lambda: driver.occupied_channels(),
        lambda: driver.members("presence-nested"),
        lambda: driver.terminate_user("ann"),
    ]
    for call in calls:
        proxy.fail(status, NESTED)
        with pytest.raises(QueryError) as info:
            await asyncio.to_thread(call)
        assert info.value.status == status
    proxy.fail(status, NESTED)
    with pytest.raises(QueryError):
        await driver.achannel_info("nested")
    proxy.fail(status, NESTED)
    health = await asyncio.to_thread(proxied.driver("pusher").check)
    assert health.status == "error"
    proxy.fail(status, NESTED)
    assert (await proxied.driver("pusher").acheck()).status == "error"
