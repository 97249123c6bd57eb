"""The driver's SDK clients and one SDK call counting its HTTP requests. An operation is one
coroutine: awaited with ``AblyRest``, or run by :func:`finish` with ``AblyRestSync``."""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
import weakref
from collections.abc import Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from broadcasting.plugin import PerLoop, Secret, call_after_fork, in_forked_child
from broadcasting_ably._auth import token_details
from broadcasting_ably._settings import AblySettings
from broadcasting_ably._wire import API_VERSION

T = TypeVar("T")

#: The HTTP requests made so far by the SDK call under way in this thread or task.
_SENT: ContextVar[list[int] | None] = ContextVar("broadcasting_ably_sent", default=None)


def finish(coro: Coroutine[Any, Any, T]) -> T:
    """Run an operation on the sync path: with sync clients it never suspends."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("an ably driver operation suspended on the sync path")


async def settled(value: Any) -> Any:
    """What an SDK call gave: awaited from an async client, as it is from a sync one."""
    return await value if inspect.isawaitable(value) else value


async def call(
    client: Any, method: str, path: str, sent: list[int] | None = None, **kwargs: Any
) -> Any:
    """``client.request()``; ``sent[0]`` counts its HTTP requests (the SDK's fallback hosts)."""
    token = _SENT.set(sent)
    try:
        return await settled(client.request(method, path, API_VERSION, **kwargs))
    finally:
        _SENT.reset(token)


async def post(client: Any, path: str, sent: list[int], body: Any) -> Any:
    """One ``POST`` (a publish) with ``client``, as ``request()`` sends it, but answered
    with the SDK's ``Response`` itself: the driver reads the body (``_wire.answer_items``), as
    ``request()`` would not (it fails on a 2xx with no ``Content-Type`` and reads ``[]``,
    ``0``, ``false`` and ``""`` as no items, like no content). ``sent[0]`` counts its HTTP
    requests."""
    token = _SENT.set(sent)
    try:
        pending = client.http.make_request(
            "POST", path, version=API_VERSION, body=body, raise_on_error=False
        )
        return await settled(pending)
    finally:
        _SENT.reset(token)


def _count(request: Any) -> None:
    if (box := _SENT.get()) is not None:
        box[0] += 1


async def _acount(request: Any) -> None:
    _count(request)


class _DropEncodedHeaderBlocks(logging.Filter):
    """Drops hpack's DEBUG record of an encoded HTTP/2 header block: its Authorization
    header is Huffman-coded, trivially decoded (hpack's other records redact it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Encoded header block")


_DROP_ENCODED = _DropEncodedHeaderBlocks()
_filter_lock = threading.Lock()


def _new_client(settings: AblySettings, hosts: int, aio: bool, **auth: Any) -> Any:
    with _filter_lock:  # addFilter skips a filter the logger has: atomic under the lock
        logging.getLogger("hpack.hpack").addFilter(_DROP_ENCODED)
    if aio:
        from ably import AblyRest as client_class
    else:
        from ably.sync import AblyRestSync as client_class
    from broadcasting_ably._deadline import bound

    client = client_class(**settings.sdk_options(hosts), **auth)
    # each request's answer whole within http_request_timeout (httpx's bounds each read alone)
    if (http := _httpx_client(client)) is not None:
        bound(http, client.http.http_request_timeout)
    return client


def _token_of(client: Any) -> str | None:
    """The token an SDK client holds (``None`` before its first request)."""
    return getattr(client.auth.token_details, "token", None)


def _httpx_client(client: Any) -> Any:
    """The SDK client's private httpx client (``None`` were it renamed)."""
    http = client.http
    return getattr(http, f"_{type(http).__name__}__client", None)


def closed(client: Any) -> bool:
    """Whether the SDK client's httpx client is closed: by the driver's ``close()`` or
    ``aclose()``, maybe from another thread while this one used it."""
    return bool(getattr(_httpx_client(client), "is_closed", False))


#: idle sync clients kept in all, whatever their host count; one given back beyond them is
#: closed (more threads than this publishing at once each open a connection of their own
#: anyway)
IDLE_CLIENTS = 64


class Clients:
    """Sync SDK clients, each used by one thread at a time; async ones per event loop; by
    host count. A forked child drops the sync ones unclosed (as ``PerLoop`` does), sparing the
    parent's.

    A sync client is never in two threads at once, nor closed under the one using it:

    * httpcore's connection pool is not safe for threads. A thread entering it asks each idle
      connection whether the server closed it (its state IDLE, then a ``poll()`` of its
      socket) while another thread, handed that connection a moment before, sets it ACTIVE,
      sends and gets its answer: the state read before, the poll after the answer came, the
      first thread closed the connection under the second (``[Errno 9] Bad file descriptor``,
      or SSL "bad record mac" on the connection that got the fd number since). So a thread
      takes a client of its own for a call (:meth:`fresh`) and gives it back (:meth:`release`);
      no other thread is in that client's pool meanwhile.
    * :meth:`close` closes the clients no thread holds, at once; one a thread holds is closed
      by that thread as it gives it back (closed under it, the same fd mix-up)."""

    def __init__(self, settings: AblySettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        #: idle sync clients by host count, the last given back last
        self._sync: dict[int, list[Any]] = {}
        #: sync clients threads hold (by id): the client (weakly, see :meth:`_hold`), its host
        #: count, the closes before it
        self._out: dict[int, tuple[weakref.ref[Any], int, int]] = {}
        self._closes = 0  #: :meth:`close` calls so far: a client taken before one is closed
        self.loops: dict[int, PerLoop[Any]] = {}
        self.inherited = 0  #: sync clients of a parent process let go of after ``os.fork()``
        #: the current token (see :meth:`token`), its expiry (ms) and its other details
        self._held: tuple[Secret, float, dict[str, Any]] | None = None
        call_after_fork(self)

    def get(self, budget: int, aio: bool) -> Any:
        """The client that tries at most ``budget`` hosts (created on first use): this event
        loop's; sync, the idle one the next call will take (for a look at it: a call holds one
        through :meth:`fresh`)."""
        hosts = self._settings.hosts(budget)
        if not aio:
            with self._lock:
                idle = self._sync.setdefault(hosts, [])
                if not idle:
                    idle.append(self._new(hosts, aio=False))
                return idle[-1]
        if (found := self.loops.get(hosts)) is None:
            with self._lock:
                if (found := self.loops.get(hosts)) is None:
                    new = functools.partial(self._new, hosts, aio)
                    found = self.loops[hosts] = PerLoop(new, lambda c: c.close())
        return found.get()

    async def fresh(self, budget: int, aio: bool) -> Any:
        """A client that tries at most ``budget`` hosts, holding the driver's current token
        (:meth:`token`): this event loop's; sync, one this thread holds alone until it hands it
        to :meth:`release`, once done with it and its responses' ``next()``. The SDK
        never renews a token itself: it judges expiry only with ``query_time``, and
        ``request()`` answers Ably's 40142 instead of re-authorizing, so an expired token would
        fail every call."""
        client = self.get(budget, aio) if aio else self._take_one(budget)
        try:
            # compared as temporaries: no frame that may raise holds a token
            if _token_of(client) != self.token()["token"]:
                await settled(client.auth.authorize())  # its callback hands it the current one
        except BaseException:
            self.release(client)
            raise
        return client

    def _take_one(self, budget: int) -> Any:
        """An idle sync client (the last given back: its connection is the likeliest open),
        or a new one, held by this thread alone until :meth:`release`."""
        hosts = self._settings.hosts(budget)
        with self._lock:
            idle = self._sync.get(hosts)
            client = idle.pop() if idle else None
            closes = self._closes
            if client is not None:
                self._hold(client, hosts, closes)
                return client
        client = self._new(hosts, aio=False)  # outside the lock: it builds an httpx client
        with self._lock:
            # a close() since the count was read: closed as it is given back
            self._hold(client, hosts, closes)
        return client

    def _hold(self, client: Any, hosts: int, closes: int) -> None:
        """Under the lock: ``client`` is held by this thread until :meth:`release`. Kept
        weakly: a signal's exception (Ctrl-C) raised as :meth:`_take_one` returns, before the
        caller's ``try``, leaves a client nothing gives back; it is collected (its sockets
        closed as it goes) and its entry with it, not kept, unclosed, for good."""
        key, out = id(client), self._out
        # no lock in the callback: the collector may run it in a thread holding it
        out[key] = (weakref.ref(client, lambda _: out.pop(key, None)), hosts, closes)

    def release(self, client: Any) -> None:
        """This thread is done with ``client`` (:meth:`fresh`'s): idle again for the next
        call, or closed here if :meth:`close` came since it was taken. Nothing for an async
        client, nor for one a forked child inherited (dropped unclosed)."""
        with self._lock:
            held = self._out.pop(id(client), None)
            if held is None:
                return
            _, hosts, closes = held
            idle = sum(map(len, self._sync.values()))  # in all: a few host counts
            if closes == self._closes and not closed(client) and idle < IDLE_CLIENTS:
                self._sync.setdefault(hosts, []).append(client)
                return
        client.close()  # by the thread that used it, once done: nothing else is in it

    def token(self) -> dict[str, Any]:
        """The driver's publishing token, one for all its clients: signed here, locally, when
        there is none, once half its lifetime has passed, or once Ably refused it (:meth:`drop`).
        A dict: each SDK has its own ``TokenDetails``."""
        s = self._settings
        with self._lock:
            if (held := self._held) is None or held[1] - time.time() * 1000 < s.token_ttl * 500:
                # Ably reads {"*": ["*"]} as what the key allows
                details = token_details(s.key, {"*": ["*"]}, s.client_id, s.token_ttl)
                held = self._held = Secret(details.pop("token")), details["expires"], details
            secret, _, details = held
        return {**details, "token": secret.reveal()}

    def drop(self, client: Any) -> None:
        """Ably refused the token ``client`` holds (40140-40149: expired, revoked, invalid):
        the next request of every client of the driver gets a new one."""
        with self._lock:
            if self._held is not None and self._held[0].reveal() == _token_of(client):
                self._held = None

    def _new(self, hosts: int, aio: bool) -> Any:
        # the SDK keeps what it is given where debuggers see it: a token signed here, never the key
        callback = self._atoken if aio else self._token
        client = _new_client(self._settings, hosts, aio, auth_callback=callback)
        # count requests on the SDK's private httpx client; were it renamed, a call would count
        # as one request (test_config checks the hook is there)
        inner = _httpx_client(client)
        hooks = getattr(inner, "event_hooks", None)
        if isinstance(hooks, dict):
            counter = _acount if aio else _count
            inner.event_hooks = {**hooks, "request": [*hooks.get("request", []), counter]}
        return client

    def keyed(self, aio: bool) -> Any:
        """A client holding the key (Basic auth), for one call; the caller closes it."""
        return _new_client(self._settings, 1, aio, key=self._settings.key.reveal())

    def _token(self, token_params: Any = None) -> dict[str, Any]:
        return self.token()

    async def _atoken(self, token_params: Any = None) -> dict[str, Any]:
        return self.token()

    def _take(self) -> list[PerLoop[Any]]:
        """Lets go of every client: an idle sync one is closed now, one a thread holds by that
        thread as it gives it back (:meth:`release`)."""
        with self._lock:
            self._closes += 1
            idle = [client for clients in self._sync.values() for client in clients]
            self._sync = {}
        for client in idle:
            client.close()
        return list(self.loops.values())

    def close(self) -> None:
        """Close every client, the async ones on their own loops (idempotent)."""
        for loops in self._take():
            loops.close()

    async def aclose(self) -> None:
        for loops in self._take():
            await loops.aclose()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it at the fork
        self.inherited += sum(map(len, self._sync.values())) + len(self._out)
        self._sync, self._out = {}, {}


@in_forked_child
def _forget_in_child() -> None:
    global _filter_lock
    _filter_lock = threading.Lock()
