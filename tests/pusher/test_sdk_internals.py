"""The parts of the official ``pusher`` SDK the driver relies on, pinned.

The driver builds, signs and sends requests with SDK pieces that are not its
documented surface (``PusherClient``, ``pusher.http.Request``,
``process_response``, ``pusher.crypto.encrypt``, the ``backend=`` hook), so
``broadcasting-pusher`` allows only the tested minor series of the SDK. When
that bound is raised, these tests say what changed shape, and where the
driver uses it, before any publish can go wrong. They run without a server:
a recording backend stands in for the network, which is the hook under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.metadata
import inspect
import json
from typing import Any

import nacl.secret
import pytest
from pusher import Pusher
from pusher.crypto import encrypt
from pusher.errors import PusherBadAuth, PusherBadRequest, PusherBadStatus, PusherForbidden
from pusher.http import POST, Request, process_response
from pusher.pusher_client import PusherClient

from broadcasting.plugin import Batch, Message, Part
from broadcasting_pusher import BroadcastPusherDriver
from broadcasting_pusher._api import query_path, request_for

APP = {"app_id": "4242", "key": "the-key", "secret": "the-secret", "host": "127.0.0.1"}
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


class Recording:
    """A backend (the SDK's ``backend=`` hook): records requests, answers ``answer``."""

    def __init__(self, client: Any, answer: Any = None, **options: Any) -> None:
        self.client = client
        self.answer = answer
        self.options = options
        self.sent: list[Any] = []

    def send_request(self, request: Any) -> Any:
        self.sent.append(request)
        return self.answer


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_installed_sdk_is_the_tested_series() -> None:
    installed = importlib.metadata.version("pusher")
    requires = importlib.metadata.requires("broadcasting-pusher") or []
    (pin,) = [r for r in requires if r.startswith("pusher")]
    assert "<" in pin, f"broadcasting-pusher must bound the pusher SDK above: {pin!r}"
    assert installed.startswith("3.3."), (
        f"pusher {installed} is installed; these tests pin the 3.3 series ({pin!r}): read "
        "what failed below, adapt the driver, then raise the bound in "
        "plugins/pusher_driver/pyproject.toml"
    )


@pytest.mark.parametrize("kind", [PusherClient, Pusher])
def test_clients_take_the_drivers_keyword_arguments(kind: type) -> None:
    # _driver.py builds both with these names (BroadcastPusherDriver._sdk)
    names = parameters(kind.__init__)
    wanted = ["app_id", "key", "secret", "ssl", "host", "port", "timeout", "backend"]
    missing = [name for name in wanted if name not in names]
    assert not missing, f"{kind.__name__}() no longer takes {missing}: see _driver.py _sdk()"
    assert inspect.signature(kind.__init__).parameters[names[-1]].kind is (
        inspect.Parameter.VAR_KEYWORD
    ), f"{kind.__name__}() no longer passes **backend_options on to the backend"
    if kind is Pusher:
        assert "encryption_master_key_base64" in names, "Pusher() lost encryption_master_key_base64"


def test_backend_hook_builds_the_backend_and_routes_calls_through_it() -> None:
    # the driver's transports are SDK backends: PooledBackend(client, pool=...),
    # SessionBackend(client, sessions=..., settings=...); the driver calls client.http
    client = PusherClient(**APP, ssl=False, backend=Recording, answer={"channels": {}})
    backend = client.http
    assert isinstance(backend, Recording), "PusherClient no longer keeps its backend as .http"
    assert backend.client is client, "the backend is no longer built as backend(client, ...)"
    assert backend.answer == {"channels": {}}, "backend options no longer reach the backend"
    assert client.channels_info() == {"channels": {}}, "SDK calls no longer return send_request's"
    (request,) = backend.sent
    assert (request.method, request.path) == ("GET", "/apps/4242/channels")

    full = Pusher(**APP, ssl=False, backend=Recording, answer={"ok": True})
    assert full.channels_info() == {"ok": True}, "Pusher no longer routes through the backend"


def test_request_methods_can_build_without_sending() -> None:
    # the health check takes the SDK's signed request: client.channels_info.make_request()
    client = PusherClient(**APP, ssl=False, backend=Recording)
    method = client.channels_info
    assert hasattr(method, "make_request"), "SDK request methods lost make_request()"
    request = method.make_request()
    assert isinstance(request, Request) and client.http.sent == []


def test_request_is_signed_as_the_http_api_says() -> None:
    # _api.py: Request(client, POST, path, params); query_path() reads path and query_params;
    # the transports send method, body and headers as they are
    assert (POST, parameters(Request.__init__)) == (
        "POST",
        ["self", "client", "method", "path", "params"],
    ), "pusher.http.Request(client, method, path, params) changed"
    client = PusherClient(**APP, ssl=False, backend=Recording)
    params = {"name": "e", "channels": ["a"], "data": "x"}
    request = Request(client, POST, "/apps/4242/events", params)
    assert isinstance(request.body, bytes) and json.loads(request.body) == params
    assert request.headers.get("Content-Type") == "application/json"
    query = request.query_params
    signed = {"auth_key", "auth_timestamp", "auth_version", "body_md5", "auth_signature"}
    assert set(query) == signed, f"Request.query_params changed: {sorted(query)}"
    assert query["body_md5"] == hashlib.md5(request.body).hexdigest()
    unsigned = "&".join(f"{k}={v}" for k, v in sorted(query.items()) if k != "auth_signature")
    expected = hmac.new(
        b"the-secret", f"POST\n/apps/4242/events\n{unsigned}".encode(), hashlib.sha256
    ).hexdigest()
    assert query["auth_signature"] == expected, "the SDK signs requests differently now"


def test_process_response_decodes_or_raises_the_sdks_errors() -> None:
    # the backends' send_request() (SDK calls such as channels_info) end in it
    assert process_response(200, '{"channels": {}}') == {"channels": {}}
    for status, error in [
        (400, PusherBadRequest),
        (401, PusherBadAuth),
        (403, PusherForbidden),
        (500, PusherBadStatus),
    ]:
        with pytest.raises(error):
            process_response(status, "refused")


def test_encrypt_gives_what_subscribers_decrypt() -> None:
    # _api.py encrypts private-encrypted- channels itself: encrypt(channel, text, master_key)
    master = base64.b64decode(MASTER_KEY)
    envelope = encrypt("private-encrypted-a", "héllo", master)
    assert set(envelope) == {"nonce", "ciphertext"}, f"encrypt() returns {sorted(envelope)}"
    shared = hashlib.sha256(b"private-encrypted-a" + master).digest()
    plain = nacl.secret.SecretBox(shared).decrypt(
        base64.b64decode(envelope["ciphertext"]), base64.b64decode(envelope["nonce"])
    )
    assert plain.decode() == "héllo"


def test_the_driver_still_builds_its_requests_on_this_sdk() -> None:
    # all of the above, through the driver's own code path (no network: nothing is sent)
    driver = BroadcastPusherDriver.from_config(
        {**APP, "ssl": False, "encryption_master_key_base64": MASTER_KEY}
    )
    message = Message(("private-encrypted-a",), "e", "secret text", "secret text", "id-1")
    batch = Batch((Part(message, message.channels),))
    request = request_for(driver._client, batch, driver._master_key)
    assert query_path(request).startswith("/apps/4242/events?auth_key=the-key&")
    envelope = json.loads(json.loads(request.body)["data"])
    assert set(envelope) == {"nonce", "ciphertext"}, "sent encrypted"
    driver.close()


def test_the_sdk_reads_its_secret_only_through_the_secret_property() -> None:
    # _api.py: GuardedPusherClient keeps _secret as a broadcasting.Secret and reveals it in
    # the `secret` property alone; an SDK that read _secret directly would sign with the
    # wrapper (or fail) and leave the plain text where the driver no longer expects it
    from broadcasting.plugin import Secret
    from broadcasting_pusher._api import GuardedPusherClient

    plain = PusherClient(**APP, ssl=False, backend=Recording)
    guarded = GuardedPusherClient(**APP, ssl=False, backend=Recording)
    assert isinstance(guarded._secret, Secret), "PusherClient no longer stores _secret"
    assert isinstance(plain._secret, str), "PusherClient stores its secret differently now"
    params = {"name": "e", "channels": ["a"], "data": "x"}
    signed = [
        Request(client, POST, "/apps/4242/events", params).query_params
        for client in (plain, guarded)
    ]
    for query in signed:
        query.pop("auth_timestamp")
    assert signed[0] == signed[1], "the guarded client signs differently from the SDK's own"
