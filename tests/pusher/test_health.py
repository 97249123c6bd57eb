"""The pusher driver's health check, and `broadcasting check`, against a real soketi.

The right secret, a wrong one (soketi answers it with HTTP 200 and an error
body), an unknown app, a refused port and a port whose connects time out are
all real. Answers soketi cannot be made to give (a 429, a slow answer, a body
that is not Pusher's) come from the counting proxy in front of it
(``http_proxy.CountingProxy``), which also counts the requests: a check is one
request, never retried.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from http_proxy import ConnectAttempts, CountingProxy
from soketi_server import SoketiServer

from broadcasting import Broadcast, Health
from broadcasting.drivers import BroadcastPusherDriver

pytestmark = pytest.mark.soketi

WRONG = "wrong-secret-value-never-shown"


def seed_config(options: dict[str, Any]) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


async def check(broadcast: Broadcast, mode: str) -> Health:
    """``check()`` or ``await acheck()`` of the pusher driver, as ``mode`` says."""
    driver = broadcast.driver(BroadcastPusherDriver)
    if mode == "sync":
        return driver.check()
    try:
        return await driver.acheck()
    finally:
        await driver.aclose()


def run_check(
    tmp_path: Path, options: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "broadcast.py"
    config.write_text(f"DRIVER = 'pusher'\nDRIVERS = {{'pusher': {options!r}}}\n")
    return subprocess.run(
        [sys.executable, "-m", "broadcasting", "check", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- the command, in a subprocess --------------------------------------------------------


def test_cli_right_secret_is_ok(soketi: SoketiServer, tmp_path: Path) -> None:
    result = run_check(tmp_path, soketi.driver_options())
    assert result.returncode == 0, result.stdout + result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["DRIVER", "STATUS", "LATENCY", "DETAIL"]
    assert row.split()[:3] == ["pusher", "(default)", "ok"]
    assert row.split()[4] == "ms"
    assert f"http://127.0.0.1:{soketi.port} accepted the app key and secret" in row
    assert soketi.secret not in result.stdout + result.stderr


def test_cli_wrong_secret_is_auth_failed(soketi: SoketiServer, tmp_path: Path) -> None:
    result = run_check(tmp_path, soketi.driver_options(secret=WRONG), "--json")
    assert result.returncode == 1
    (row,) = json.loads(result.stdout)
    assert (row["driver"], row["default"], row["status"]) == ("pusher", True, "auth_failed")
    assert isinstance(row["latency_ms"], float)
    assert "HTTP 401" in row["detail"] and "The secret authentication failed" in row["detail"]
    assert WRONG not in result.stdout + result.stderr


def test_cli_closed_port_is_unreachable(
    soketi: SoketiServer, refusing: ConnectAttempts, tmp_path: Path
) -> None:
    result = run_check(tmp_path, soketi.driver_options(port=refusing.port), "--json")
    assert result.returncode == 1
    (row,) = json.loads(result.stdout)
    assert row["status"] == "unreachable"
    assert f"could not reach http://127.0.0.1:{refusing.port}" in row["detail"]
    assert soketi.secret not in result.stdout + result.stderr


# -- check() and acheck() ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_ok_is_one_signed_channels_query(
    soketi: SoketiServer, proxy: CountingProxy, mode: str
) -> None:
    with Broadcast(seed_config(soketi.driver_options(port=proxy.port))) as broadcast:
        health = await check(broadcast, mode)
    assert health.status == "ok", health.detail
    assert health.latency_ms is not None and health.latency_ms > 0
    assert health.detail == (
        f"http://127.0.0.1:{proxy.port} accepted the app key and secret "
        f"(GET /apps/{soketi.app_id}/channels: 0 occupied channels)"
    )
    (seen,) = proxy.requests
    assert seen.method == "GET"
    assert seen.path.startswith(f"/apps/{soketi.app_id}/channels?")
    assert "auth_signature=" in seen.path and "auth_key=" in seen.path


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_soketis_http_200_with_a_401_body_is_auth_failed(
    soketi: SoketiServer, mode: str
) -> None:
    with Broadcast(seed_config(soketi.driver_options(secret=WRONG))) as broadcast:
        driver = broadcast.driver(BroadcastPusherDriver).driver
        # what soketi 1.6 really answers a wrong signature: HTTP 200, the 401 in the body
        status, body = driver._client.http.send(driver._client.channels_info.make_request())
        assert (status, json.loads(body)["code"]) == (200, 401)
        health = await check(broadcast, mode)
    assert health.status == "auth_failed"
    assert health.detail == (
        f"pusher: http://127.0.0.1:{soketi.port} answered HTTP 401 (authentication failed: "
        "check the app key and secret): 'The secret authentication failed'"
    )
    assert WRONG not in repr(health)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_unknown_app_is_an_error_naming_app_id(soketi: SoketiServer, mode: str) -> None:
    with Broadcast(seed_config(soketi.driver_options(app_id="999"))) as broadcast:
        health = await check(broadcast, mode)
    assert health.status == "error"
    assert "HTTP 404 (not found: check app_id, host and cluster)" in health.detail


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_refused_port_is_unreachable_after_one_attempt(
    soketi: SoketiServer, refusing: ConnectAttempts, mode: str
) -> None:
    options = soketi.driver_options(port=refusing.port, retries=5)
    with Broadcast(seed_config(options)) as broadcast:
        health = await check(broadcast, mode)
    assert health.status == "unreachable"
    assert "(not sent)" in health.detail
    assert refusing.count == 1, "a check is never retried"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_connect_timeout_is_unreachable(
    soketi: SoketiServer, unanswered: ConnectAttempts, mode: str
) -> None:
    options = soketi.driver_options(port=unanswered.port, timeout=0.3)
    with Broadcast(seed_config(options)) as broadcast:
        health = await check(broadcast, mode)
    assert health.status == "unreachable"
    assert f"http://127.0.0.1:{unanswered.port}" in health.detail
    assert unanswered.count == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_no_answer_in_time_is_unreachable(
    soketi: SoketiServer, proxy: CountingProxy, mode: str
) -> None:
    proxy.delay(2.0)
    options = soketi.driver_options(port=proxy.port, timeout=0.3)
    with Broadcast(seed_config(options)) as broadcast:
        health = await check(broadcast, mode)
    assert health.status == "unreachable"
    assert len(proxy.requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_retryable_refusal_is_an_error_and_never_retried(
    soketi: SoketiServer, proxy: CountingProxy, mode: str
) -> None:
    options = soketi.driver_options(port=proxy.port, retries=3, retry_backoff=0.01)
    with Broadcast(seed_config(options)) as broadcast:
        # the setup can see a retry: a publish refused with a 429 is sent again
        proxy.fail(429, {"error": "slow down"})
        assert broadcast.channel("health", "x").requests == 2
        proxy.clear()
        proxy.fail(429, {"error": "slow down"})
        health = await check(broadcast, mode)
    assert health.status == "error"
    assert "HTTP 429 (rate limited by the server)" in health.detail
    assert len(proxy.requests) == 1


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ("<html>It works!</html>", "HTTP 200 but not JSON"),
        ({"ok": True}, "HTTP 200 but no channel list"),
    ],
)
async def test_a_server_that_does_not_speak_pusher_is_an_error(
    soketi: SoketiServer, proxy: CountingProxy, answer: Any, said: str
) -> None:
    proxy.fail(200, answer)
    with Broadcast(seed_config(soketi.driver_options(port=proxy.port))) as broadcast:
        health = broadcast.driver(BroadcastPusherDriver).check()
    assert health.status == "error"
    assert health.detail == (
        f"pusher: http://127.0.0.1:{proxy.port} answered GET /apps/{soketi.app_id}/channels "
        f"with {said} (is it a Pusher-protocol server?)"
    )
