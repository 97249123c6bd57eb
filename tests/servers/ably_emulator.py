"""A local HTTPS emulator of the part of Ably's REST API that publishing uses.

No Ably server can run here, so the Ably driver's tests talk to this instead. It
serves ``POST /channels/{name}/messages`` and ``POST /messages`` (batch publish)
over TLS on 127.0.0.1 with a certificate from a ``trustme`` CA, and it is strict:
every request is recorded and checked the way Ably would read it (Basic
authorization against known keys, the ``X-Ably-Version`` header, JSON or msgpack
bodies as the ``Content-Type`` says, the message fields and their encodings, the
batch spec shape and its 100-channel limit). A request that breaks a rule is
answered with an Ably-shaped 400 and the problem is added to :attr:`violations`.

Delivery is idempotent like Ably's: a message id already stored on a channel is
acknowledged again but not stored twice, so a test can tell whether a retry was
delivered twice. Faults can be queued for the next requests: Ably-shaped errors
(401/40101, 429/42911, 500/50000, ...), an error answered after the messages
were stored, a slow answer that first stores the message and then waits past
the client's timeout, a connection dropped after storing without any answer
(an answer lost on the way back), per-channel failures in a batch, a batch
answer that leaves some channels out (delivered, but not mentioned), and an
answer a test gives after storing (``reply_next``: a body Ably would not send). A
"poison" marker makes every request holding a message whose data contains it
fail with a 400, as a request with one bad message would. Keys may carry a
capability (channel patterns) so a batch can fail for some channels the way
Ably's 40160 does.

A batch body may be one spec or a list of specs (the driver's micro-batching
sends one spec per publish); a list is answered per spec, in order, and the
whole request may hold at most 100 channels and 2 MiB of body, like Ably's.

The driver's health check asks for a token: ``POST /keys/{keyName}/requestToken``
with the key as Basic authorization and token params as the body. It gets the
same header, authorization and body checks as a publish; the key must be the
one the path names, and the params may only hold Ably's token-param fields.
An issued token is answered with HTTP 201 and token details; the queued
``error``, ``stored_error``, ``html``, ``slow`` and ``drop`` faults apply to it.

Token authentication, as Ably does it: a request may carry ``Authorization:
Bearer <base64 token>`` instead of the key. A token is a JWT signed with one
of the keys (header ``kid`` = the key name, ``alg`` HS256, claims ``exp``,
``x-ably-capability`` as a JSON string, ``x-ably-clientId``), or a token this
emulator issued at ``requestToken``. The emulator verifies the signature with
the named key's secret (401/40144 when it does not verify, 401/40142 once
``exp`` has passed, 401/40140 for anything unreadable) and then enforces the
capability, intersected with the key's own, on every channel a request
touches: ``publish`` to publish, ``history`` for
``GET /channels/{name}/messages``, ``subscribe`` (or ``presence``) for
``GET /channels/{name}/presence``, ``channel-metadata`` for
``GET /channels/{name}`` and for the channels ``GET /channels`` lists. A
refused channel is Ably's 401/40160. A message whose ``clientId`` is not the
token's is refused with 400/40012.

Channel state the tests set: :meth:`AblyEmulator.enter_presence` /
:meth:`AblyEmulator.leave_presence` (the presence set, which Ably's REST API
only reads) and :meth:`AblyEmulator.set_occupancy` (connections, subscribers,
publishers). ``GET /channels/{name}/presence`` answers the presence set and
``GET /channels`` (``by=value`` or ``by=id``, ``prefix``) the active channels,
both ``limit`` items a page with a ``Link: <...>; rel="next"`` header for the
rest, as Ably paginates; ``GET /channels/{name}`` answers ``ChannelDetails``
with the occupancy metrics. The queued ``error`` and ``html`` faults apply to
these reads too.

``POST /keys/{keyName}/revokeTokens`` (Basic authorization with that key;
targets ``clientId:<id>``, at most 100) revokes the tokens of those client
ids issued before ``issuedBefore`` (default now): using one afterwards is
Ably's 401/40141. Other target kinds fail per target.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import hashlib
import hmac
import json
import ssl
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

import msgpack
import trustme
from aiohttp import web
from stream_server import abort_connections

#: Keys for tests: one with every capability, one limited to `allowed:*`, one wrong,
#: and one whose every publish is stored and then answered by a dropped connection.
TEST_KEY = "appid.keyid:Sup3rS3cretValue_0123456789"
LIMITED_KEY = "appid.limited:An0therS3cretValue_98765"
WRONG_KEY = "appid.keyid:NotTheRightSecret_000000"
DROPPING_KEY = "appid.dropping:L0stAnswersS3cret_424242"

MESSAGE_FIELDS = {"id", "name", "data", "encoding", "clientId", "extras", "connectionKey"}
TOKEN_PARAM_FIELDS = {"ttl", "capability", "clientId", "timestamp", "nonce"}
#: Ably's default token lifetime (60 minutes), in milliseconds.
DEFAULT_TOKEN_TTL = 60 * 60 * 1000
MAX_BATCH_CHANNELS = 100
MAX_BODY_BYTES = 2 * 1024 * 1024
JSON = "application/json"
MSGPACK = "application/x-msgpack"


@dataclass
class Fault:
    """What to do instead of (or besides) answering the next request normally."""

    kind: str  # error | stored_error | slow | drop | channel_error | forget | html | reply
    status: int = 500
    code: int = 50000
    message: str = "Internal error"
    delay: float = 0.0
    channels: tuple[str, ...] = ()
    #: for ``slow``: answer once this is set (at most ``delay`` seconds), not after a time
    gate: threading.Event | None = None
    #: for ``reply``: the raw body answered (``None``: ``payload``, encoded as Accept says)
    body: bytes | None = None
    payload: Any = None
    #: for ``reply`` with ``body``: its Content-Type (``None``: none, for an empty body)
    content_type: str | None = JSON


@dataclass
class RecordedRequest:
    """One request as the emulator received it."""

    method: str
    path: str
    headers: dict[str, str]
    content_type: str
    body: bytes
    decoded: Any = None
    key_name: str | None = None
    channels: tuple[str, ...] = ()
    messages: list[dict[str, Any]] = field(default_factory=list)
    status: int = 0
    answer: Any = None


@dataclass
class StoredMessage:
    """A message the emulator delivered to a channel (after idempotency)."""

    channel: str
    id: str | None
    name: str | None
    data: Any  # decoded as a subscriber would get it
    wire_data: Any  # as it came over the wire
    encoding: str | None
    client_id: str | None
    serial: str


@dataclass(frozen=True)
class Identity:
    """Who a request is from: the key (Basic) or a token signed with one."""

    key: str
    capability: Mapping[str, tuple[str, ...]]
    client_id: str | None = None
    token: bool = False
    #: when the token was issued, milliseconds since the epoch (0 for a key)
    issued_ms: int = 0


@dataclass
class PresenceMember:
    """One member of a channel's presence set (one client id on one connection)."""

    client_id: str
    connection_id: str
    data: Any
    timestamp: int


@dataclass
class Occupancy:
    """What a test set of a channel's occupancy (the presence metrics are derived)."""

    connections: int = 0
    subscribers: int = 0
    publishers: int = 0
    presence_subscribers: int = 0


class Refused(Exception):
    """An Ably error to answer with (status, code, message)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def _wait(fault: Fault) -> None:
    """A slow fault's wait: until its gate opens, or ``delay`` seconds."""
    if fault.gate is None:
        await asyncio.sleep(fault.delay)
    else:
        await asyncio.to_thread(fault.gate.wait, fault.delay)


class AblyEmulator:
    """The emulator; use :meth:`start` / :meth:`stop` or ``with AblyEmulator(...)``."""

    def __init__(
        self,
        keys: Mapping[str, Iterable[str]] | None = None,
        *,
        batch_format: str = "legacy",
    ) -> None:
        # key "appId.keyId:secret" -> channel patterns it may publish to
        self.keys = {
            k: tuple(v)
            for k, v in (
                keys or {TEST_KEY: ["*"], LIMITED_KEY: ["allowed:*"], DROPPING_KEY: ["*"]}
            ).items()
        }
        # "legacy" (400/40020), "result" (BatchResult) or "flat" (a list of specs answered
        # with one flat list of per-channel results, in the specs' order)
        self.batch_format = batch_format
        self.host = "127.0.0.1"
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self.faults: deque[Fault] = deque()
        #: a request holding a message whose data contains this text gets a 400
        self.poison: str | None = None
        self._stored: dict[str, list[StoredMessage]] = {}
        self._serials: dict[tuple[str, str], str] = {}  # (channel, message id) -> serial
        self._serial = 0
        self._presence: dict[str, dict[tuple[str, str], PresenceMember]] = {}
        self._occupancy: dict[str, Occupancy] = {}
        self._issued: dict[str, Identity] = {}  # tokens issued at requestToken
        #: (key, client id) -> tokens issued before this time (ms) are revoked
        self._revoked: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._ca = trustme.CA()
        self._tmp = tempfile.TemporaryDirectory(prefix="ably-emulator-")
        self.ca_path = str(Path(self._tmp.name) / "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_path)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> AblyEmulator:
        """Start serving on 127.0.0.1 (a free port) in a background thread."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="ably-emulator", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _serve(self) -> None:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/messages", self._batch)
        app.router.add_post(r"/channels/{channel:[^/]+}/messages", self._single)
        app.router.add_get(r"/channels/{channel:[^/]+}/messages", self._history)
        app.router.add_get(r"/channels/{channel:[^/]+}/presence", self._presence_get)
        app.router.add_get(r"/channels/{channel:[^/]+}", self._channel_details)
        app.router.add_get("/channels", self._enumerate)
        app.router.add_get("/time", self._time)
        app.router.add_post(r"/keys/{key_name:[^/]+}/requestToken", self._request_token)
        app.router.add_post(r"/keys/{key_name:[^/]+}/revokeTokens", self._revoke_tokens)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.server_context())
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        """Stop serving and close every connection on this loop, before it is closed.

        The runner's cleanup only starts the TLS shutdown of a connection still open (a
        client's kept-alive one): it sends close_notify and waits for the client's, up to 30
        s. With the loop closed right after, each such socket was left to the garbage
        collector, which on Python 3.13.0 raised in the transport's ``__del__`` (CPython
        gh-109564, ``Server._wakeup`` run twice) in whatever later test ran then. So what is
        still open after the cleanup is aborted, and the loop runs until each transport has
        closed its socket."""
        runner, server = self._runner, self._server
        if runner is None or server is None:
            return
        server.close()  # no new connection from here on
        handlers = runner.server.connections if runner.server is not None else []
        transports = [h.transport for h in handlers if h.transport is not None]
        await runner.cleanup()
        for _ in range(3):  # the TLS shutdowns a client answers at once
            await asyncio.sleep(0)
        await abort_connections(server, transports)

    def stop(self) -> None:
        """Stop serving and remove the certificate files."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        self._tmp.cleanup()

    def __enter__(self) -> AblyEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use -------------------------------------------------------

    def server_context(self) -> ssl.SSLContext:
        """A server TLS context with a certificate for 127.0.0.1 from the emulator's CA."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        return ctx

    def options(self, key: str = TEST_KEY, **extra: Any) -> dict[str, Any]:
        """Driver options that point the `ably` driver at this emulator."""
        return {"key": key, "endpoint": self.host, "tls_port": self.port, **extra}

    def reset(self) -> None:
        """Forget recorded requests, stored messages, faults and violations."""
        with self._lock:
            self.requests.clear()
            self.violations.clear()
            self.faults.clear()
            self.poison = None
            self._stored.clear()
            self._serials.clear()
            self._presence.clear()
            self._occupancy.clear()
            self._issued.clear()
            self._revoked.clear()

    def fail_next(
        self,
        status: int,
        code: int,
        message: str = "Emulated failure",
        times: int = 1,
        *,
        after_store: bool = False,
    ) -> None:
        """Answer the next ``times`` requests with an Ably error (status, code).

        With ``after_store`` the messages are delivered first (an answer lost on
        the way back): a retry must then not deliver them twice.
        """
        kind = "stored_error" if after_store else "error"
        with self._lock:
            self.faults.extend(Fault(kind, status, code, message) for _ in range(times))

    def slow_next(self, delay: float, times: int = 1) -> None:
        """Store the next request's messages, then wait ``delay`` s before answering."""
        with self._lock:
            self.faults.extend(Fault("slow", delay=delay) for _ in range(times))

    def hold_next(self, times: int = 1, limit: float = 30.0) -> threading.Event:
        """Store the next requests' messages, then answer only once the returned event is set.

        A test that must know a request is still under way waits on this,
        not on a time (``limit`` seconds is only a safety net).
        """
        gate = threading.Event()
        with self._lock:
            self.faults.extend(Fault("slow", delay=limit, gate=gate) for _ in range(times))
        return gate

    def drop_next(self, times: int = 1) -> None:
        """Store the next requests' messages, then drop the connection without answering."""
        with self._lock:
            self.faults.extend(Fault("drop") for _ in range(times))

    def fail_channels_next(
        self, channels: Iterable[str], status: int, code: int, message: str = "Emulated failure"
    ) -> None:
        """In the next batch request, fail these channels (the others are delivered)."""
        with self._lock:
            self.faults.append(
                Fault("channel_error", status, code, message, channels=tuple(channels))
            )

    def forget_channels_next(self, channels: Iterable[str]) -> None:
        """In the next batch request, deliver these channels but leave them out of the answer."""
        with self._lock:
            self.faults.append(Fault("forget", channels=tuple(channels)))

    def reply_next(
        self,
        status: int,
        payload: Any = None,
        *,
        body: bytes | None = None,
        content_type: str | None = JSON,
    ) -> None:
        """Answer the next publish (after storing its messages) or token revocation (before
        revoking) with ``status`` and ``payload`` (encoded as the request's Accept says) or,
        when given, the raw ``body`` as ``content_type`` (``None``: no Content-Type header, as
        a 204 with no content may come): an answer Ably would not give, to see what the
        driver makes of it."""
        fault = Fault("reply", status, body=body, payload=payload, content_type=content_type)
        with self._lock:
            self.faults.append(fault)

    def html_next(self, status: int = 502, times: int = 1) -> None:
        """Answer the next requests with an HTML error page, as a proxy in front of Ably might."""
        with self._lock:
            self.faults.extend(Fault("html", status) for _ in range(times))

    def messages(self, channel: str) -> list[StoredMessage]:
        """Messages delivered to ``channel``, in order."""
        with self._lock:
            return list(self._stored.get(channel, []))

    def enter_presence(
        self, channel: str, client_id: str, data: Any = None, *, connection_id: str | None = None
    ) -> None:
        """Put ``client_id`` (on ``connection_id``) in ``channel``'s presence set with ``data``."""
        connection = connection_id or f"conn-{client_id}"
        member = PresenceMember(client_id, connection, data, int(time.time() * 1000))
        with self._lock:
            self._presence.setdefault(channel, {})[(client_id, connection)] = member

    def leave_presence(
        self, channel: str, client_id: str, *, connection_id: str | None = None
    ) -> None:
        """Take ``client_id`` (on ``connection_id``, or on every connection) out of the set."""
        with self._lock:
            members = self._presence.get(channel, {})
            for found in list(members):
                if found[0] == client_id and connection_id in (None, found[1]):
                    del members[found]

    def set_occupancy(
        self,
        channel: str,
        *,
        connections: int = 0,
        subscribers: int = 0,
        publishers: int = 0,
        presence_subscribers: int = 0,
    ) -> None:
        """Set the occupancy ``GET /channels/{name}`` reports (the presence counts are derived)."""
        with self._lock:
            self._occupancy[channel] = Occupancy(
                connections, subscribers, publishers, presence_subscribers
            )

    @property
    def state_requests(self) -> list[RecordedRequest]:
        """Recorded GET requests (history, presence, channel status and enumeration)."""
        with self._lock:
            return [r for r in self.requests if r.method == "GET" and r.path != "/time"]

    @property
    def publish_requests(self) -> list[RecordedRequest]:
        """Recorded publish requests (single and batch)."""
        with self._lock:
            return [
                r for r in self.requests if r.method == "POST" and not r.path.startswith("/keys/")
            ]

    @property
    def token_requests(self) -> list[RecordedRequest]:
        """Recorded token requests (``POST /keys/{keyName}/requestToken``)."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/keys/")]

    # -- request handling -----------------------------------------------------

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def _violation(self, text: str) -> None:
        with self._lock:
            self.violations.append(text)

    async def _time(self, request: web.Request) -> web.Response:
        return self._answer(request, 200, [int(time.time() * 1000)])

    async def _single(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        encoded = raw_path[len("/channels/") : -len("/messages")]
        channel = unquote(encoded)
        return await self._publish(request, [channel], batch=False)

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        return await self._publish(request, None, batch=True)

    async def _record(self, request: web.Request) -> RecordedRequest:
        record = RecordedRequest(
            method=request.method,
            path=request.raw_path,
            headers={k.lower(): v for k, v in request.headers.items()},
            content_type=request.headers.get("Content-Type", ""),
            body=await request.read(),
        )
        with self._lock:
            self.requests.append(record)
        return record

    def _header_problem(self, request: web.Request, record: RecordedRequest) -> str | None:
        """What is wrong with the headers every Ably REST request with a body carries."""
        if not request.headers.get("X-Ably-Version"):
            return "no X-Ably-Version header"
        accept = request.headers.get("Accept", "")
        if accept not in (JSON, MSGPACK):
            return f"unexpected Accept {accept!r}"
        if record.content_type != accept:
            return "Content-Type and Accept disagree"
        return None

    @staticmethod
    def _decode(record: RecordedRequest) -> Any:
        """The body, decoded as its Content-Type says (raises if it cannot be)."""
        if record.content_type == MSGPACK:
            return msgpack.unpackb(record.body, raw=False)
        return json.loads(record.body)

    async def _publish(
        self, request: web.Request, channels: list[str] | None, *, batch: bool
    ) -> web.StreamResponse:
        record = await self._record(request)
        body = record.body

        # 1. headers every Ably REST request carries
        problem = self._header_problem(request, record)
        if problem:
            return self._reject(request, record, problem)

        # 2. Basic authorization with a known key, or a token signed with one
        try:
            identity = self._identify(request, record)
        except Refused as refused:
            return self._error(request, record, refused.status, refused.code, refused.message)
        key = identity.key

        # 3. the body, decoded as its Content-Type says
        try:
            decoded = self._decode(record)
        except Exception as exc:
            return self._reject(request, record, f"undecodable {record.content_type} body: {exc}")
        record.decoded = decoded

        if len(body) > MAX_BODY_BYTES:
            return self._reject(request, record, f"a body of {len(body)} bytes is over 2 MiB")

        # 4. the publish itself
        if batch:
            specs = decoded if isinstance(decoded, list) else [decoded]
            if not specs:
                return self._reject(request, record, "an empty list of batch specs")
            parsed: list[tuple[list[str], list[dict[str, Any]]]] = []
            for spec in specs:
                problem = self._check_spec(spec)
                if problem:
                    return self._reject(request, record, problem)
                spec_channels = spec["channels"]
                spec_channels = [spec_channels] if isinstance(spec_channels, str) else spec_channels
                spec_messages = spec["messages"]
                spec_messages = (
                    [spec_messages] if isinstance(spec_messages, dict) else spec_messages
                )
                parsed.append((list(spec_channels), list(spec_messages)))
            total = sum(len(chans) for chans, _ in parsed)
            if total > MAX_BATCH_CHANNELS:
                return self._reject(
                    request,
                    record,
                    f"the batch specs hold {total} channels; the limit is {MAX_BATCH_CHANNELS}",
                )
        else:
            assert channels is not None
            messages = decoded if isinstance(decoded, list) else [decoded]
            parsed = [(channels, messages)]
        for _, messages in parsed:
            for message in messages:
                problem = self._check_message(message, request)
                if problem:
                    return self._reject(request, record, problem)
                wrong = self._client_id_problem(message, identity)
                if wrong:
                    return self._error(request, record, 400, 40012, wrong)
        record.channels = tuple(c for chans, _ in parsed for c in chans)
        record.messages = [m for _, msgs in parsed for m in msgs]

        poison = self.poison
        if poison is not None and any(poison in str(m.get("data")) for m in record.messages):
            return self._error(request, record, 400, 40000, "Emulated: a poisoned message")

        fault = self._next_fault()
        if fault is not None and fault.kind == "html":
            record.status = fault.status
            html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
            return web.Response(status=fault.status, text=html, content_type="text/html")
        if fault is not None and fault.kind == "error":
            return self._error(request, record, fault.status, fault.code, fault.message)

        results: list[list[dict[str, Any]]] = []
        for spec_channels, messages in parsed:
            spec_results = []
            for channel in spec_channels:
                error = self._channel_error(channel, identity, fault)
                if error is not None:
                    spec_results.append({"channel": channel, "error": error})
                    continue
                serials = [
                    self._store(channel, self._attributed(m, identity), request) for m in messages
                ]
                if fault is not None and fault.kind == "forget" and channel in fault.channels:
                    continue
                first_id = messages[0].get("id") if messages else None
                message_id = first_id.rsplit(":", 1)[0] if isinstance(first_id, str) else "srv"
                spec_results.append(
                    {"channel": channel, "messageId": message_id, "serials": serials}
                )
            results.append(spec_results)

        if fault is not None and fault.kind == "slow":
            await _wait(fault)

        if fault is not None and fault.kind == "stored_error":
            return self._error(request, record, fault.status, fault.code, fault.message)

        if fault is not None and fault.kind == "reply":
            return self._reply(request, record, fault)

        if (fault is not None and fault.kind == "drop") or key == DROPPING_KEY:
            record.status = -1  # stored, then the connection dropped: no answer at all
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError  # aiohttp's way to end a handler without answering

        if not batch:
            only = results[0][0]
            if "error" in only:
                err = only["error"]
                return self._error(request, record, err["statusCode"], err["code"], err["message"])
            return self._answer(request, 201, only, record)
        return self._batch_answer(request, record, results, many=isinstance(decoded, list))

    async def _request_token(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        problem = self._header_problem(request, record)
        if problem:
            return self._reject(request, record, problem)
        key = self._authenticate(request, record)
        if key is None:
            return self._error(request, record, 401, 40101, "Invalid credentials")
        if key == "":  # a token cannot ask for another one here
            return self._error(request, record, 401, 40101, "Invalid credentials: a key is needed")
        raw_name = request.raw_path.split("?", 1)[0][len("/keys/") : -len("/requestToken")]
        key_name = unquote(raw_name)
        if key.split(":", 1)[0] != key_name:
            self._violation(f"{record.path}: authorized with another key than the path names")
            return self._error(request, record, 401, 40101, "Invalid credentials")
        try:
            params = self._decode(record)
        except Exception as exc:
            return self._reject(request, record, f"undecodable {record.content_type} body: {exc}")
        record.decoded = params
        if not isinstance(params, dict):
            return self._reject(request, record, "token params must be an object")
        unknown = set(params) - TOKEN_PARAM_FIELDS
        if unknown:
            return self._reject(request, record, f"unknown token param fields {sorted(unknown)}")
        ttl = params.get("ttl", DEFAULT_TOKEN_TTL)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
            return self._reject(request, record, "token ttl must be a positive int (ms)")

        fault = self._next_fault()
        if fault is not None and fault.kind == "html":
            record.status = fault.status
            html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
            return web.Response(status=fault.status, text=html, content_type="text/html")
        if fault is not None and fault.kind in ("error", "stored_error"):
            return self._error(request, record, fault.status, fault.code, fault.message)
        if fault is not None and fault.kind == "slow":
            await _wait(fault)
        if fault is not None and fault.kind == "drop":
            record.status = -1
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        issued = int(time.time() * 1000)
        capability = json.dumps({pattern: ["*"] for pattern in self.keys[key]})
        details: dict[str, Any] = {
            "token": f"{key_name}.emulated-{issued}",
            "keyName": key_name,
            "issued": issued,
            "expires": issued + ttl,
            "capability": capability,
        }
        client_id = params.get("clientId")
        if client_id is not None:
            details["clientId"] = client_id
        with self._lock:
            self._issued[details["token"]] = Identity(
                key,
                {pattern: ("*",) for pattern in self.keys[key]},
                client_id if isinstance(client_id, str) else None,
                token=True,
                issued_ms=issued,
            )
        return self._answer(request, 201, details, record)

    async def _revoke_tokens(self, request: web.Request) -> web.StreamResponse:
        """``POST /keys/{keyName}/revokeTokens``: the targets' earlier tokens stop working."""
        record = await self._record(request)
        problem = self._header_problem(request, record)
        if problem:
            return self._reject(request, record, problem)
        key = self._authenticate(request, record)
        if key is None:
            return self._error(request, record, 401, 40101, "Invalid credentials")
        if key == "":
            return self._error(request, record, 401, 40162, "Revoking tokens needs the key")
        raw_name = request.raw_path.split("?", 1)[0][len("/keys/") : -len("/revokeTokens")]
        if key.split(":", 1)[0] != unquote(raw_name):
            self._violation(f"{record.path}: authorized with another key than the path names")
            return self._error(request, record, 401, 40101, "Invalid credentials")
        try:
            body = self._decode(record)
        except Exception as exc:
            return self._reject(request, record, f"undecodable {record.content_type} body: {exc}")
        record.decoded = body
        if not isinstance(body, dict) or set(body) - {
            "targets",
            "issuedBefore",
            "allowReauthMargin",
        }:
            return self._reject(request, record, "a revocation body holds targets (and options)")
        targets = body.get("targets")
        if (
            not isinstance(targets, list)
            or not 0 < len(targets) <= 100
            or not all(isinstance(t, str) and ":" in t for t in targets)
        ):
            return self._reject(request, record, "targets must be 1 to 100 'type:value' strings")
        fault = self._next_fault()
        if fault is not None and fault.kind in ("error", "stored_error"):
            return self._error(request, record, fault.status, fault.code, fault.message)
        if fault is not None and fault.kind == "reply":
            return self._reply(request, record, fault)
        now = int(time.time() * 1000)
        before = body.get("issuedBefore", now)
        results: list[dict[str, Any]] = []
        for target in targets:
            kind, _, value = target.partition(":")
            if kind != "clientId":
                error = {
                    "message": f"unsupported target {kind!r}",
                    "statusCode": 400,
                    "code": 40000,
                }
                results.append({"target": target, "error": error})
                continue
            with self._lock:
                self._revoked[(key, value)] = before
            results.append({"target": target, "issuedBefore": before, "appliesAt": now})
        answer = {
            "successCount": sum("error" not in r for r in results),
            "failureCount": sum("error" in r for r in results),
            "results": results,
        }
        return self._answer(request, 201, answer, record)

    def _batch_answer(
        self,
        request: web.Request,
        record: RecordedRequest,
        results: list[list[dict[str, Any]]],
        *,
        many: bool,
    ) -> web.Response:
        failed = any("error" in r for spec in results for r in spec)
        if self.batch_format == "result":
            out = [
                {
                    "successCount": sum("error" not in r for r in spec),
                    "failureCount": sum("error" in r for r in spec),
                    "results": spec,
                }
                for spec in results
            ]
            return self._answer(request, 201, out if many else out[0], record)
        if many and self.batch_format == "flat":
            flat: Any = [r for spec in results for r in spec]
        else:
            flat = results if many else results[0]
        if not failed:
            return self._answer(request, 201, flat, record)
        payload = {
            "error": {
                "message": "Batched response includes errors",
                "statusCode": 400,
                "code": 40020,
            },
            "batchResponse": flat,
        }
        return self._answer(request, 400, payload, record, error_code=40020)

    def _channel_error(
        self, channel: str, identity: Identity, fault: Fault | None
    ) -> dict[str, Any] | None:
        if fault is not None and fault.kind == "channel_error" and channel in fault.channels:
            return {"message": fault.message, "statusCode": fault.status, "code": fault.code}
        if not self._allows(identity, channel, "publish"):
            return {
                "message": "Channel denied access based on given capability",
                "statusCode": 401,
                "code": 40160,
            }
        return None

    @staticmethod
    def _attributed(message: dict[str, Any], identity: Identity) -> dict[str, Any]:
        """The message with the token's client id, as Ably attributes a token's publishes."""
        client_id = identity.client_id
        if message.get("clientId") or client_id is None or client_id == "*":
            return message
        return {**message, "clientId": client_id}

    def _store(self, channel: str, message: dict[str, Any], request: web.Request) -> str:
        data = message.get("data")
        wire = data
        encoding = message.get("encoding")
        if encoding == "json" and isinstance(data, str):
            data = json.loads(data)
        header_client = request.headers.get("X-Ably-ClientId")
        client_id = message.get("clientId") or (
            base64.b64decode(header_client).decode() if header_client else None
        )
        msg_id = message.get("id")
        with self._lock:
            if isinstance(msg_id, str) and (channel, msg_id) in self._serials:
                # idempotent publishing: acknowledged again, not delivered twice
                return self._serials[(channel, msg_id)]
            stored = self._stored.setdefault(channel, [])
            self._serial += 1
            serial = f"serial-{self._serial:06d}"
            if isinstance(msg_id, str):
                self._serials[(channel, msg_id)] = serial
            stored.append(
                StoredMessage(
                    channel, msg_id, message.get("name"), data, wire, encoding, client_id, serial
                )
            )
            return serial

    def _authenticate(self, request: web.Request, record: RecordedRequest) -> str | None:
        """The key of a Basic authorization; ``""`` for a Bearer token; ``None`` if unknown."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return ""
        if not header.startswith("Basic "):
            self._violation(f"{record.path}: no Basic authorization")
            return None
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            self._violation(f"{record.path}: malformed Basic authorization")
            return None
        record.key_name = decoded.split(":", 1)[0]
        return decoded if decoded in self.keys else None

    def _identify(self, request: web.Request, record: RecordedRequest) -> Identity:
        """Who sent the request (Basic key or token); raises :class:`Refused`."""
        key = self._authenticate(request, record)
        if key is None:
            raise Refused(401, 40101, "Invalid credentials")
        if key:
            return Identity(key, {pattern: ("*",) for pattern in self.keys[key]})
        header = request.headers.get("Authorization", "")
        try:
            token = base64.b64decode(header[len("Bearer ") :], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            self._violation(f"{record.path}: a Bearer token that is not base64")
            raise Refused(401, 40140, "Token error: not base64") from None
        with self._lock:
            issued = self._issued.get(token)
        if issued is None:
            if token.count(".") != 2:
                raise Refused(401, 40140, "Token error: unrecognised token")
            issued = self._verify_jwt(token)
        if issued.client_id is not None:
            with self._lock:
                before = self._revoked.get((issued.key, issued.client_id))
            if before is not None and issued.issued_ms <= before:
                raise Refused(401, 40141, "Token revoked")
        return issued

    def _verify_jwt(self, token: str) -> Identity:
        head, body, signature = token.split(".")
        try:
            header = json.loads(_unb64url(head))
            claims = json.loads(_unb64url(body))
            given = _unb64url(signature)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise Refused(401, 40140, "Token error: malformed JWT") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise Refused(401, 40140, "Token error: malformed JWT")
        if header.get("typ") != "JWT" or header.get("alg") != "HS256":
            raise Refused(401, 40140, "Token error: only HS256 JWTs are accepted")
        key = next((k for k in self.keys if k.split(":", 1)[0] == header.get("kid")), None)
        if key is None:
            raise Refused(401, 40101, "Invalid credentials: no such key (kid)")
        secret = key.split(":", 1)[1].encode()
        expected = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, given):
            raise Refused(401, 40144, "Token error: the JWT signature does not verify")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise Refused(401, 40140, "Token error: exp is missing")
        if exp <= time.time():
            raise Refused(401, 40142, "Token expired")
        raw = claims.get("x-ably-capability")
        try:
            capability = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            capability = None
        if not isinstance(capability, dict) or not all(
            isinstance(ops, list) and all(isinstance(op, str) for op in ops)
            for ops in capability.values()
        ):
            raise Refused(401, 40140, "Token error: x-ably-capability is not a capability")
        client_id = claims.get("x-ably-clientId")
        iat = claims.get("iat")
        return Identity(
            key,
            {str(name): tuple(ops) for name, ops in capability.items()},
            client_id if isinstance(client_id, str) and client_id else None,
            token=True,
            issued_ms=int(iat * 1000) if isinstance(iat, (int, float)) else 0,
        )

    def _allows(self, identity: Identity, channel: str, operation: str) -> bool:
        """Whether ``identity`` may do ``operation`` on ``channel`` (token and key capability)."""
        if not any(fnmatch.fnmatchcase(channel, pattern) for pattern in self.keys[identity.key]):
            return False
        return any(
            fnmatch.fnmatchcase(channel, resource) and ("*" in ops or operation in ops)
            for resource, ops in identity.capability.items()
        )

    @staticmethod
    def _client_id_problem(message: dict[str, Any], identity: Identity) -> str | None:
        wanted = message.get("clientId")
        if not identity.token or wanted is None or identity.client_id == "*":
            return None
        if wanted != identity.client_id:
            return f"message clientId {wanted!r} is not the token's ({identity.client_id!r})"
        return None

    async def _read_request(
        self, request: web.Request
    ) -> tuple[RecordedRequest, Identity | web.Response]:
        """Record a GET, check its headers and say who sent it (or the error answer)."""
        record = await self._record(request)
        if not request.headers.get("X-Ably-Version"):
            return record, self._reject(request, record, "no X-Ably-Version header")
        accept = request.headers.get("Accept", "")
        if accept not in (JSON, MSGPACK):
            return record, self._reject(request, record, f"unexpected Accept {accept!r}")
        try:
            identity = self._identify(request, record)
        except Refused as refused:
            return record, self._error(
                request, record, refused.status, refused.code, refused.message
            )
        fault = self._next_fault()  # the queued error and html faults apply to reads too
        if fault is not None and fault.kind == "html":
            record.status = fault.status
            html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
            return record, web.Response(status=fault.status, text=html, content_type="text/html")
        if fault is not None and fault.kind in ("error", "stored_error"):
            return record, self._error(request, record, fault.status, fault.code, fault.message)
        return record, identity

    def _channel_of(self, request: web.Request, suffix: str) -> str:
        raw_path = request.raw_path.split("?", 1)[0]
        end = len(raw_path) - len(suffix) if suffix else len(raw_path)
        return unquote(raw_path[len("/channels/") : end])

    def _denied(self, request: web.Request, record: RecordedRequest) -> web.Response:
        return self._error(
            request, record, 401, 40160, "Channel denied access based on given capability"
        )

    @staticmethod
    def _limit(request: web.Request) -> int:
        raw = request.query.get("limit", "100")
        return max(1, min(1000, int(raw))) if raw.isdigit() else 100

    def _page(
        self,
        request: web.Request,
        record: RecordedRequest,
        items: list[Any],
        link_base: str,
    ) -> web.Response:
        """One page of ``items`` (``limit`` of them from ``start``) with a next link if more."""
        limit = self._limit(request)
        raw_start = request.query.get("start", "0")
        start = int(raw_start) if raw_start.isdigit() else 0
        page = items[start : start + limit]
        response = self._answer(request, 200, page, record)
        if start + limit < len(items):
            params = {k: v for k, v in request.query.items() if k != "start"}
            params["start"] = str(start + limit)
            response.headers["Link"] = f'<./{link_base}?{urlencode(params)}>; rel="next"'
        return response

    async def _history(self, request: web.Request) -> web.StreamResponse:
        record, who = await self._read_request(request)
        if isinstance(who, web.Response):
            return who
        channel = self._channel_of(request, "/messages")
        record.channels = (channel,)
        if not self._allows(who, channel, "history"):
            return self._denied(request, record)
        items = [
            {
                k: v
                for k, v in {
                    "id": m.id,
                    "name": m.name,
                    "data": m.wire_data,
                    "encoding": m.encoding,
                    "clientId": m.client_id,
                    "serial": m.serial,
                }.items()
                if v is not None
            }
            for m in reversed(self.messages(channel))
        ]
        return self._page(request, record, items, "messages")

    def _members(self, channel: str) -> list[PresenceMember]:
        with self._lock:
            return list(self._presence.get(channel, {}).values())

    async def _presence_get(self, request: web.Request) -> web.StreamResponse:
        record, who = await self._read_request(request)
        if isinstance(who, web.Response):
            return who
        channel = self._channel_of(request, "/presence")
        record.channels = (channel,)
        if not (self._allows(who, channel, "subscribe") or self._allows(who, channel, "presence")):
            return self._denied(request, record)
        items = []
        for index, member in enumerate(self._members(channel)):
            item: dict[str, Any] = {
                "id": f"{member.connection_id}:0:{index}",
                "clientId": member.client_id,
                "connectionId": member.connection_id,
                "timestamp": member.timestamp,
                "action": 1,  # present
            }
            if isinstance(member.data, (dict, list)):
                item["data"] = json.dumps(member.data, separators=(",", ":"))
                item["encoding"] = "json"
            elif member.data is not None:
                item["data"] = member.data
            items.append(item)
        return self._page(request, record, items, "presence")

    def _details(self, channel: str) -> dict[str, Any]:
        members = self._members(channel)
        with self._lock:
            occupancy = self._occupancy.get(channel, Occupancy())
            stored = bool(self._stored.get(channel))
        presence_connections = len({m.connection_id for m in members})
        connections = max(occupancy.connections, presence_connections)
        metrics = {
            "connections": connections,
            "publishers": occupancy.publishers,
            "subscribers": occupancy.subscribers,
            "presenceConnections": presence_connections,
            "presenceMembers": len(members),
            "presenceSubscribers": occupancy.presence_subscribers,
        }
        return {
            "channelId": channel,
            "name": channel,
            "status": {
                "isActive": connections > 0 or stored,
                "occupancy": {"metrics": metrics},
            },
        }

    async def _channel_details(self, request: web.Request) -> web.StreamResponse:
        record, who = await self._read_request(request)
        if isinstance(who, web.Response):
            return who
        channel = self._channel_of(request, "")
        record.channels = (channel,)
        if not self._allows(who, channel, "channel-metadata"):
            return self._denied(request, record)
        return self._answer(request, 200, self._details(channel), record)

    async def _enumerate(self, request: web.Request) -> web.StreamResponse:
        record, who = await self._read_request(request)
        if isinstance(who, web.Response):
            return who
        by = request.query.get("by", "value")
        if by not in ("value", "id"):
            return self._reject(request, record, f"unexpected by={by!r}")
        prefix = request.query.get("prefix", "")
        with self._lock:
            names = set(self._stored) | set(self._occupancy) | set(self._presence)
        details = [self._details(name) for name in sorted(names) if name.startswith(prefix)]
        active = [
            d
            for d in details
            if d["status"]["isActive"] and self._allows(who, d["channelId"], "channel-metadata")
        ]
        record.channels = tuple(d["channelId"] for d in active)
        items: list[Any] = [d["channelId"] for d in active] if by == "id" else active
        return self._page(request, record, items, "channels")

    def _check_spec(self, spec: object) -> str | None:
        if not isinstance(spec, dict) or set(spec) != {"channels", "messages"}:
            return f"a batch spec must be an object with channels and messages, got {spec!r:.200}"
        channels = spec["channels"]
        if isinstance(channels, str):
            channels = [channels]
        if not isinstance(channels, list) or not channels:
            return "batch spec channels must be a non-empty list"
        if len(channels) > MAX_BATCH_CHANNELS:
            return f"batch spec has {len(channels)} channels; the limit is {MAX_BATCH_CHANNELS}"
        if not all(isinstance(c, str) and c for c in channels):
            return "batch spec channels must be non-empty strings"
        messages = spec["messages"]
        if isinstance(messages, dict):
            messages = [messages]
        if not isinstance(messages, list) or not messages:
            return "batch spec messages must be a message or a non-empty list of messages"
        return None

    def _check_message(self, message: object, request: web.Request) -> str | None:
        if not isinstance(message, dict):
            return f"a message must be an object, got {type(message).__name__}"
        unknown = set(message) - MESSAGE_FIELDS
        if unknown:
            return f"unknown message fields {sorted(unknown)}"
        if "name" in message and not isinstance(message["name"], str):
            return "message name must be a string"
        if "id" in message and (not isinstance(message["id"], str) or not message["id"]):
            return "message id must be a non-empty string"
        data = message.get("data")
        encoding = message.get("encoding")
        if encoding not in (None, "json"):
            return f"unexpected encoding {encoding!r}"
        if encoding == "json":
            if not isinstance(data, str):
                return "json-encoded data must be a string"
            try:
                json.loads(data)
            except ValueError:
                return "data with encoding json is not JSON"
        elif not isinstance(data, str):
            return f"data without encoding must be a string, got {type(data).__name__}"
        client_id = message.get("clientId")
        header = request.headers.get("X-Ably-ClientId")
        if (
            client_id is not None
            and header is not None
            and base64.b64decode(header).decode() != client_id
        ):
            return "message clientId differs from X-Ably-ClientId"
        return None

    # -- answers --------------------------------------------------------------

    def _reject(self, request: web.Request, record: RecordedRequest, problem: str) -> web.Response:
        self._violation(f"{record.method} {record.path}: {problem}")
        return self._error(request, record, 400, 40001, f"Invalid request: {problem}")

    def _error(
        self, request: web.Request, record: RecordedRequest, status: int, code: int, message: str
    ) -> web.Response:
        payload = {"error": {"message": message, "statusCode": status, "code": code}}
        return self._answer(request, status, payload, record, error_code=code)

    def _reply(self, request: web.Request, record: RecordedRequest, fault: Fault) -> web.Response:
        """A ``reply`` fault's answer: its payload, or its raw body (as its content type)."""
        if fault.body is None:
            return self._answer(request, fault.status, fault.payload, record)
        record.status = fault.status
        if fault.content_type is None:  # aiohttp sends none for no body (octet-stream for one)
            return web.Response(status=fault.status, body=fault.body or None)
        return web.Response(status=fault.status, body=fault.body, content_type=fault.content_type)

    def _answer(
        self,
        request: web.Request,
        status: int,
        payload: Any,
        record: RecordedRequest | None = None,
        *,
        error_code: int | None = None,
    ) -> web.Response:
        if record is not None:
            record.status = status
            record.answer = payload
        headers = {}
        if error_code is not None:
            headers["X-Ably-Errorcode"] = str(error_code)
        if request.headers.get("Accept") == MSGPACK:
            body = msgpack.packb(payload, use_bin_type=True)
            return web.Response(status=status, body=body, content_type=MSGPACK, headers=headers)
        return web.Response(
            status=status, text=json.dumps(payload), content_type=JSON, headers=headers
        )
