"""The Ably driver's health check, and `broadcasting check`, against the Ably emulator.

Ably cannot run here; the emulator (tests/servers/ably_emulator.py) serves the
token endpoint the check calls, ``POST /keys/{keyName}/requestToken``, with the
same header, Basic-authorization and body checks as its publish endpoints.
The driver, the ``ably`` SDK, httpx and TLS are real; so are the refused port
and the untrusted certificate.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast, Health, PublishError
from servers.ably_emulator import LIMITED_KEY, TEST_KEY, WRONG_KEY, AblyEmulator
from servers.soketi_server import refused_port

UNKNOWN_KEY = "appid.unknown:SomeOtherS3cret_1111111"
SECRETS = [key.split(":", 1)[1] for key in (TEST_KEY, WRONG_KEY, LIMITED_KEY, UNKNOWN_KEY)]


def no_secret_in(text: str) -> bool:
    return not any(secret in text for secret in SECRETS)


async def check(broadcast: Broadcast, mode: str) -> Health:
    """``check()`` or ``await acheck()`` of the ably driver, as ``mode`` says."""
    ably = broadcast.driver("ably")
    return ably.check() if mode == "sync" else await ably.acheck()


def run_check(
    emulator: AblyEmulator, tmp_path: Path, options: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "broadcast.py"
    config.write_text(f"DRIVER = 'ably'\nDRIVERS = {{'ably': {options!r}}}\n")
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_DIR"}
    env["SSL_CERT_FILE"] = emulator.ca_path  # the emulator's CA, for the SDK's httpx
    return subprocess.run(
        [sys.executable, "-m", "broadcasting", "check", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


# -- the command, in a subprocess --------------------------------------------------------


def test_cli_right_key_is_ok(emulator: AblyEmulator, tmp_path: Path) -> None:
    result = run_check(emulator, tmp_path, emulator.options(), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(result.stdout)
    assert (row["driver"], row["default"], row["status"]) == ("ably", True, "ok")
    assert isinstance(row["latency_ms"], float)
    assert row["detail"] == (
        "Ably (127.0.0.1) accepted the key 'appid.keyid': it issued a token, which was discarded"
    )
    assert no_secret_in(result.stdout + result.stderr)
    assert len(emulator.token_requests) == 1 and emulator.violations == []


def test_cli_wrong_key_is_auth_failed(emulator: AblyEmulator, tmp_path: Path) -> None:
    result = run_check(emulator, tmp_path, emulator.options(key=WRONG_KEY))
    assert result.returncode == 1
    header, row = result.stdout.splitlines()
    assert header.split() == ["DRIVER", "STATUS", "LATENCY", "DETAIL"]
    assert row.split()[:3] == ["ably", "(default)", "auth_failed"]
    assert "Invalid credentials; check the API key" in row and "(40101, HTTP 401)" in row
    assert no_secret_in(result.stdout + result.stderr)


def test_cli_closed_port_is_unreachable(emulator: AblyEmulator, tmp_path: Path) -> None:
    port = refused_port()
    result = run_check(emulator, tmp_path, emulator.options(tls_port=port), "--json")
    assert result.returncode == 1
    (row,) = json.loads(result.stdout)
    assert row["status"] == "unreachable"
    assert row["detail"].startswith(
        "could not reach Ably (127.0.0.1) for the health check: ConnectError"
    )
    assert no_secret_in(result.stdout + result.stderr)


# -- check() and acheck() ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("binary", [True, False])
async def test_ok_is_one_token_request_with_the_key(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], mode: str, binary: bool
) -> None:
    health = await check(make_broadcast(use_binary_protocol=binary), mode)
    assert health.status == "ok", health.detail
    assert health.latency_ms is not None and health.latency_ms > 0
    (request,) = emulator.requests
    assert (request.method, request.path, request.status) == (
        "POST",
        "/keys/appid.keyid/requestToken",
        201,
    )
    basic = base64.b64encode(TEST_KEY.encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"  # as publishes are
    assert request.decoded == {}  # no params: a token with the key's own capability
    assert request.content_type == ("application/x-msgpack" if binary else "application/json")
    assert emulator.violations == [] and emulator.publish_requests == []
    assert no_secret_in(repr(health))


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_key_limited_to_some_channels_passes(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], mode: str
) -> None:
    broadcast = make_broadcast(key=LIMITED_KEY)
    health = await check(broadcast, mode)
    assert health.status == "ok"
    assert "'appid.limited'" in health.detail
    # while a publish outside its capability is refused: the check needs no capability
    with pytest.raises(PublishError) as caught:
        broadcast.channel("orders", "m")
    assert caught.value.code == 40160


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("key", [WRONG_KEY, UNKNOWN_KEY])
async def test_a_refused_key_is_auth_failed(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], mode: str, key: str
) -> None:
    health = await check(make_broadcast(key=key), mode)
    assert health.status == "auth_failed"
    assert health.detail == (
        "Ably refused the health check: Invalid credentials; check the API key in the "
        "'secret' (or 'key') option (40101, HTTP 401)"
    )
    assert health.latency_ms is not None
    assert len(emulator.token_requests) == 1
    assert no_secret_in(repr(health))


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_refused_port_is_unreachable(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], mode: str
) -> None:
    health = await check(make_broadcast(tls_port=refused_port()), mode)
    assert health.status == "unreachable"
    assert health.detail.startswith(
        "could not reach Ably (127.0.0.1) for the health check: ConnectError"
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_no_answer_in_time_is_unreachable(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], mode: str
) -> None:
    emulator.slow_next(2.0)
    health = await check(make_broadcast(http_request_timeout=0.3), mode)
    assert health.status == "unreachable"
    assert health.detail.startswith(
        "no answer from Ably (127.0.0.1) in time for the health check (ReadTimeout"
    )
    assert len(emulator.token_requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_server_error_is_an_error_and_never_sent_to_a_fallback_host(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], mode: str
) -> None:
    # "localhost" is the same emulator under another name: a fallback host the SDK
    # sends a request to after a 5xx, as a publish shows
    broadcast = make_broadcast(fallback_hosts=["localhost"], retries=3)
    emulator.fail_next(500, 50000, "Emulated: internal error")
    assert broadcast.channel("orders", "m").requests == 2
    assert len(emulator.publish_requests) == 2
    emulator.fail_next(500, 50000, "Emulated: internal error")
    health = await check(broadcast, mode)
    assert health.status == "error"
    assert health.detail == (
        "Ably refused the health check: Emulated: internal error (50000, HTTP 500)"
    )
    assert len(emulator.token_requests) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_answer_that_is_not_ablys_is_an_error(
    emulator: AblyEmulator, make_broadcast: Callable[..., Broadcast], mode: str
) -> None:
    emulator.html_next(502)
    health = await check(make_broadcast(), mode)
    assert health.status == "error"
    assert health.detail.startswith("Ably's answer to the health check could not be read")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_untrusted_certificate_is_an_error(
    emulator: AblyEmulator,
    make_broadcast: Callable[..., Broadcast],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")  # the system's CAs do not know the emulator's
    health = await check(make_broadcast(), mode)
    assert health.status == "error"
    assert health.detail.startswith("the TLS certificate of Ably (127.0.0.1) could not be verified")
    assert emulator.token_requests == []


# -- against the real Ably (only with ABLY_API_KEY) -------------------------------------

LIVE_KEY = os.environ.get("ABLY_API_KEY", "")


@pytest.mark.live
@pytest.mark.skipif(not LIVE_KEY, reason="set ABLY_API_KEY to check against the real Ably")
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_real_ably_issues_a_token_to_the_key_and_refuses_a_wrong_secret(
    mode: str,
) -> None:
    name = LIVE_KEY.split(":", 1)[0]
    wrong = f"{name}:{'x' * 20}WrongSecret"
    for key, expected in ((LIVE_KEY, "ok"), (wrong, "auth_failed")):
        with Broadcast({"DRIVER": "ably", "DRIVERS": {"ably": {"key": key}}}) as broadcast:
            health = await check(broadcast, mode)
        assert health.status == expected, health.detail
        assert LIVE_KEY.split(":", 1)[1] not in repr(health)
