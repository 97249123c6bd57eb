"""A small webhook receiver for tests and local development (not for production).

It listens on 127.0.0.1, verifies every request with :func:`verify_signature`
and keeps what it received. It can also misbehave on purpose (answer 503s,
answer slowly, process a request and hang up without answering, drop
kept-alive connections) so you can watch what the driver and the core make
of each, and it can drop repeated ``X-Broadcasting-Id`` s as a de-duplicating
receiver would.

From a shell, it prints every verified event as one JSON line::

    WEBHOOK_SECRET=... python -m broadcasting_webhook.receiver --port 8080

and your app publishes with ``url="http://127.0.0.1:8080/"``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from broadcasting.plugin import Secret

from broadcasting_webhook._signing import DEFAULT_TOLERANCE, InvalidSignature, verify_signature

#: The largest body the receiver reads (413 above): the driver sends at most its
#: ``max_payload_bytes`` (256 KiB by default).
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver saw it, and how it answered."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    #: the verified, decoded body; ``None`` if the request was refused
    event: dict[str, Any] | None
    #: why it was refused, if it was
    error: str | None
    #: the client's (host, port): one per TCP connection
    client: tuple[str, int]
    #: processed, then the connection was dropped without an answer (``lose_answers``)
    lost: bool = False
    #: a verified repeat of an id already accepted, acknowledged but not delivered again
    duplicate: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default of 5 drops bursts of new connections
    receiver: WebhookReceiver

    def shutdown_request(self, request: Any) -> None:
        """Close a client connection, and count it (see ``WebhookReceiver.wait_closed``)."""
        super().shutdown_request(request)
        self.receiver._connection_closed()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timed out) is normal; report anything else."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    timeout = 30
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        headers = {key: value for key, value in self.headers.items()}
        refused = _unreadable(self.headers.get_all("Content-Length") or [], self.headers)
        if refused is not None:  # answered before reading a byte of the body, then hung up
            status, reason = refused
            receiver._refused(self.path, headers, status, reason, self.client_address[:2])
            self.close_connection = True
            lost = False
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status, reason, lost = receiver._answer(
                self.path, headers, body, self.client_address[:2]
            )
        if lost:
            self.close_connection = True  # hang up without a word, as a crash would
            return
        if receiver.delay:
            time.sleep(receiver.delay)
        payload = reason.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if not receiver.keep_alive:
            self.close_connection = True  # drop it silently, as idle-timeouts do

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request log line."""


def _unreadable(lengths: list[str], headers: Any) -> tuple[int, str] | None:
    """Why a body cannot be read as the client framed it (status, reason), or ``None``.

    The client's Content-Length is read only as plain ASCII digits (``int()`` takes ``abc``
    nowhere, ``-1`` as read-to-the-end, ``+5`` and ``5_0`` too) and at most
    :data:`MAX_BODY_BYTES` (``rfile.read(n)`` allocates ``n`` bytes at once); a chunked body
    is refused, not left on the connection to be read as the next request.
    """
    if headers.get("Transfer-Encoding") is not None:
        return 411, "send the body with a Content-Length, not chunked"
    if len(lengths) > 1:
        return 400, "more than one Content-Length"
    text = lengths[0].strip() if lengths else "0"
    if not (text.isascii() and text.isdigit()):
        return 400, "Content-Length is not a number of bytes"
    if len(text) > 10 or int(text) > MAX_BODY_BYTES:
        return 413, f"the body is over {MAX_BODY_BYTES} bytes"
    return None


class WebhookReceiver:
    """An HTTP server in a background thread that verifies and records webhooks.

    ``path`` (if given) is the only path accepted (others get 404). Use it as
    a context manager, or call :meth:`start` and :meth:`stop`. ``on_event`` is
    called (in the server's thread) with each verified, decoded body.

    Simulation knobs: :meth:`fail_next` answers the next requests with the
    given statuses (without processing them); :meth:`lose_answers` processes
    the next requests and hangs up without answering; :attr:`delay` waits
    before every answer; setting :attr:`keep_alive` to False closes each
    connection after one answer without announcing it. Setting
    :attr:`deduplicate` makes it acknowledge a verified request whose
    ``X-Broadcasting-Id`` it already accepted without delivering it again.
    """

    def __init__(
        self,
        secret: str | Secret,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        on_event: Callable[[dict[str, Any]], object] | None = None,
    ) -> None:
        self._secret = secret if isinstance(secret, Secret) else Secret(secret)
        self.path = path
        self.tolerance = tolerance
        self.on_event = on_event
        self.delay = 0.0
        self.keep_alive = True
        self.deduplicate = False
        self._lock = threading.Condition()
        self._scripted: deque[int] = deque()
        self._lose = 0
        self._accepted: set[str] = set()
        self._closed = 0
        self._requests: list[ReceivedRequest] = []
        self._server = _Server((host, port), _Handler)
        self._server.receiver = self
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if ssl_context is not None else "http"
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        """Start serving in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},  # how quickly stop() takes effect
                name="webhook-receiver",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where it listens, what it got ------------------------------------------------

    @property
    def base_url(self) -> str:
        """``scheme://host:port`` of the server."""
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    @property
    def url(self) -> str:
        """The URL to configure the driver with."""
        return self.base_url + (self.path or "/")

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The verified bodies, oldest first."""
        return [r.event for r in self.requests if r.event is not None]

    @property
    def closed_connections(self) -> int:
        """How many client connections the receiver has closed so far."""
        with self._lock:
            return self._closed

    def fail_next(self, *statuses: int) -> None:
        """Answer the next ``len(statuses)`` requests with these statuses, unverified."""
        with self._lock:
            self._scripted.extend(statuses)

    def lose_answers(self, count: int = 1) -> None:
        """Process the next ``count`` verified requests, then hang up on each without answering."""
        with self._lock:
            self._lose += count

    def wait_closed(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until the receiver has closed ``count`` client connections in all."""
        with self._lock:
            return self._lock.wait_for(lambda: self._closed >= count, timeout)

    def _connection_closed(self) -> None:
        with self._lock:
            self._closed += 1
            self._lock.notify_all()

    # -- answering ----------------------------------------------------------------------

    def _refused(
        self, path: str, headers: dict[str, str], status: int, reason: str, client: tuple[str, int]
    ) -> None:
        """Record a request refused before its body was read (its framing)."""
        with self._lock:
            self._requests.append(ReceivedRequest(path, headers, b"", status, None, reason, client))

    def _answer(
        self, path: str, headers: dict[str, str], body: bytes, client: tuple[str, int]
    ) -> tuple[int, str, bool]:
        """Check and record one request: its status, the reason, and whether to hang up."""
        event: dict[str, Any] | None = None
        error: str | None = None
        lost = duplicate = False
        with self._lock:
            scripted = self._scripted.popleft() if self._scripted else None
        if scripted is not None:
            status, error = scripted, "scripted failure"
        elif self.path is not None and path != self.path:
            status, error = 404, "unknown path"
        else:
            try:
                event = verify_signature(self._secret, body, headers, tolerance=self.tolerance)
            except InvalidSignature as exc:
                status, error = 401, str(exc)
            except ValueError as exc:  # signed, but not JSON
                status, error = 400, f"the body is not JSON: {exc}"
            else:
                if headers.get("X-Broadcasting-Id") != event.get("id"):
                    status, error, event = 400, "X-Broadcasting-Id differs from the body's id", None
                else:
                    status = 204
        with self._lock:
            if event is not None:
                if self.deduplicate and event["id"] in self._accepted:
                    status, event, duplicate = 200, None, True
                self._accepted.add(str(headers.get("X-Broadcasting-Id")))
                if self._lose:
                    self._lose -= 1
                    lost = True
            self._requests.append(
                ReceivedRequest(path, headers, body, status, event, error, client, lost, duplicate)
            )
        if event is not None and self.on_event is not None:
            self.on_event(event)
        return status, error or ("duplicate" if duplicate else ""), lost


def main(argv: Sequence[str] | None = None) -> int:
    """Run a receiver that prints each verified event; the secret comes from the environment."""
    parser = argparse.ArgumentParser(
        prog="python -m broadcasting_webhook.receiver",
        description="Print every verified webhook as a JSON line.",
    )
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--path", default=None, help="accept only this path")
    parser.add_argument("--secret-env", default="WEBHOOK_SECRET", metavar="NAME")
    args = parser.parse_args(argv)
    secret = os.environ.get(args.secret_env)
    if not secret:
        parser.error(f"set the shared secret in ${args.secret_env}")

    def show(event: dict[str, Any]) -> None:
        print(json.dumps(event, ensure_ascii=False), flush=True)

    receiver = WebhookReceiver(secret, port=args.port, path=args.path, on_event=show)
    print(f"listening on {receiver.url}", file=sys.stderr, flush=True)
    with receiver, contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
