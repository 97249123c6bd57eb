"""The ``hosts`` option against a real soketi cluster: three nodes joined by the Redis adapter
(tests/servers/soketi_cluster.py), real WebSocket subscribers, sync and async.

Dead nodes are real too: a loopback port nothing listens on refuses connections, and
``http_proxy.ConnectAttempts`` counts this process's connects to it; a node is stopped and
started again on its port. The counting proxy in front of each node
(``http_proxy.CountingProxy``, which here also records each request's ``Host`` header)
counts what each node was sent, and plays what a node cannot be made to do on demand: take
a request and never answer.

A subscriber is on node 0 and hears what is published through any node (the adapter);
"everything it heard" is read up to a marker published straight to each node, since one
node's events reach the others in order over its Redis connection.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from http_proxy import ConnectAttempts, CountingProxy, containing
from pusher_ws import Event, PusherSubscriber
from soketi_cluster import RedisUnavailable, SoketiCluster
from soketi_pytest import start_soketi, unavailable
from soketi_server import HOST, SoketiServer, SoketiUnavailable, refused_port

from broadcasting import Broadcast, Health, PublishError, QueryError, Receipt
from broadcasting_pusher._hosts import COOLDOWN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fork"))
from forking import fork, result

pytestmark = pytest.mark.soketi

WRONG = "wrong-secret-never-shown-4b2e"


class HostsSeen(CountingProxy):
    """The counting proxy, also recording the ``Host`` header of every request."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.host_headers: list[str] = []

    async def _read_message(
        self, reader: asyncio.StreamReader, *, response: bool
    ) -> tuple[str, dict[str, str], bytes] | None:
        message = await super()._read_message(reader, response=response)
        if message is not None and not response:
            with self._lock:
                self.host_headers.append(message[1].get("host", ""))
        return message

    def clear(self) -> None:
        super().clear()
        with self._lock:
            self.host_headers.clear()

    def published(self) -> list[str]:
        """The data of every event this node was sent (``/events`` and ``/batch_events``)."""
        found = []
        for seen in self.posts():
            body = seen.json()
            found += [event["data"] for event in body["batch"]] if "batch" in body else []
            found += [body["data"]] if "data" in body else []
        return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[SoketiCluster]:
    """Three soketi nodes joined by Redis (this module's own: one test stops a node)."""
    nodes = SoketiCluster(3)
    try:
        nodes.start()
    except SoketiUnavailable as exc:
        unavailable("soketi", str(exc))
    except RedisUnavailable as exc:
        unavailable("Redis", str(exc))
    try:
        yield nodes
    finally:
        nodes.close()


@pytest.fixture(scope="module")
def _proxies(cluster: SoketiCluster) -> Iterator[list[HostsSeen]]:
    proxies = [HostsSeen(port).start() for port in cluster.ports]
    try:
        yield proxies
    finally:
        for proxy in proxies:
            proxy.stop()


@pytest.fixture
def proxies(_proxies: list[HostsSeen]) -> list[HostsSeen]:
    """A counting proxy in front of each node (cleared for each test)."""
    for proxy in _proxies:
        proxy.clear()
    return _proxies


@pytest.fixture
async def subscriber(cluster: SoketiCluster) -> AsyncIterator[PusherSubscriber]:
    """A WebSocket connection to node 0."""
    async with PusherSubscriber(cluster.nodes[0].ws_url()) as sub:
        yield sub


def config(options: dict[str, Any]) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


def hosts_of(*ports: int) -> list[str]:
    return [f"{HOST}:{port}" for port in ports]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def publish(broadcast: Broadcast, mode: str, channel: str, data: str) -> Receipt:
    """``channel()`` (in a thread: the loop keeps reading the subscriber) or ``achannel()``."""
    if mode == "sync":
        return await asyncio.to_thread(broadcast.channel, channel, data)
    return await broadcast.achannel(channel, data)


async def heard(sub: PusherSubscriber, channel: str, cluster: SoketiCluster) -> list[Event]:
    """Every event ``sub`` got on ``channel`` so far: read up to a marker sent to each node."""
    markers = set()
    for node in cluster.nodes:
        if not node.running:
            continue
        marker = unique("marker")
        markers.add(marker)
        async with Broadcast(config(node.driver_options())) as direct:
            await direct.achannel(channel, marker, "marker")
    events = []
    while markers:
        event = await sub.next_event(15)
        if event.data in markers:
            markers.discard(event.data)
        else:
            events.append(event)
    return events


def tried_at_most_once_per_cool_down(attempts: int, seconds: float) -> bool:
    """At least once, and once per cool-down begun (one, unless the machine crawled)."""
    return 1 <= attempts <= 1 + int(seconds // COOLDOWN)


# -- spreading -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_requests_take_turns_and_each_event_arrives_once(
    cluster: SoketiCluster, proxies: list[HostsSeen], subscriber: PusherSubscriber, mode: str
) -> None:
    channel = unique("spread")
    await subscriber.subscribe(channel)
    options = cluster.driver_options(hosts=hosts_of(*(p.port for p in proxies)), retries=0)
    async with Broadcast(config(options)) as broadcast:
        receipts = [await publish(broadcast, mode, channel, str(n)) for n in range(30)]
    assert [r.requests for r in receipts] == [1] * 30
    events = await heard(subscriber, channel, cluster)
    assert sorted(int(e.data) for e in events) == list(range(30)), "each exactly once"
    assert [len(p.posts()) for p in proxies] == [10, 10, 10], "one turn each, in turn"
    for proxy in proxies:  # the Host header names the node the request went to
        assert set(proxy.host_headers) == {f"{HOST}:{proxy.port}"}


def test_one_signed_request_is_accepted_by_every_node(
    cluster: SoketiCluster, proxies: list[HostsSeen]
) -> None:
    # Pusher signs the method, the path and the query, not the host: the request a node did
    # not get can go to another one as it is
    options = cluster.driver_options(hosts=hosts_of(*(p.port for p in proxies)))
    with Broadcast(config(options)) as broadcast:
        driver: Any = broadcast.driver().driver
        request = driver._client.channels_info.make_request()
        replies = [driver._client.http.exchange(request, node) for node in driver.settings.hosts]
    assert [(r.status, "channels" in json.loads(r.body)) for r in replies] == [(200, True)] * 3
    assert [r.url for r in replies] == [f"http://{HOST}:{p.port}" for p in proxies]
    (path,) = {seen.path for proxy in proxies for seen in proxy.requests}
    assert "auth_signature=" in path, "the very same signed request, once to each node"
    assert [proxy.host_headers for proxy in proxies] == [[f"{HOST}:{p.port}"] for p in proxies]


# -- a node that refuses connections -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_dead_node_costs_no_retry_and_is_tried_once_per_cool_down(
    cluster: SoketiCluster,
    proxies: list[HostsSeen],
    refusing: ConnectAttempts,
    subscriber: PusherSubscriber,
    mode: str,
) -> None:
    channel = unique("dead")
    await subscriber.subscribe(channel)
    hosts = hosts_of(refusing.port, *(p.port for p in proxies))
    async with Broadcast(config(cluster.driver_options(hosts=hosts, retries=0))) as broadcast:
        started = time.monotonic()
        receipts = [await publish(broadcast, mode, channel, str(n)) for n in range(20)]
        # then 20 at once (async: some share a /batch_events request)
        receipts += await asyncio.gather(
            *(publish(broadcast, mode, channel, str(n)) for n in range(20, 40))
        )
        seconds = time.monotonic() - started
    assert all(r.requests == 1 for r in receipts), "a refused connection is no request"
    assert tried_at_most_once_per_cool_down(refusing.count, seconds), (refusing.count, seconds)
    events = await heard(subscriber, channel, cluster)
    assert sorted(int(e.data) for e in events) == list(range(40)), "each exactly once"
    sent = [data for proxy in proxies for data in proxy.published()]
    assert sorted(int(data) for data in sent) == list(range(40)), "each sent once"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_every_node_down_fails_and_names_the_nodes(cluster: SoketiCluster, mode: str) -> None:
    dead = [ConnectAttempts(refused_port()) for _ in range(3)]
    options = cluster.driver_options(
        hosts=hosts_of(*(d.port for d in dead)), retries=2, retry_backoff=0.01
    )
    try:
        async with Broadcast(config(options)) as broadcast:
            with pytest.raises(PublishError) as info:
                await publish(broadcast, mode, "nowhere", "x")
    finally:
        for attempts in dead:
            attempts.stop()
    error = info.value
    assert (error.failed, error.unknown, error.delivered) == (("nowhere",), (), ())
    assert (error.retryable, error.kind, error.status) == (True, "unavailable", None)
    assert not error.maybe_delivered
    text = str(error)
    assert "could not send the request to any of the 3 nodes (not sent)" in text
    assert all(f"http://{HOST}:{d.port}" in text for d in dead), text
    assert cluster.secret not in text + repr(error) + repr(error.causes)
    assert cluster.secret not in "".join(traceback.format_exception(error))
    chained: BaseException | None = error
    while chained is not None:  # no frame of the library holds it in plain text
        tb = chained.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename != __file__:
                for name, value in tb.tb_frame.f_locals.items():
                    assert cluster.secret not in repr(value), (tb.tb_frame.f_code.co_name, name)
            tb = tb.tb_next
        chained = chained.__cause__ or chained.__context__
    # the first attempt and 2 retries, each trying every node though all were down
    assert [d.count for d in dead] == [3, 3, 3]
    assert error.requests == 3


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_node_back_after_its_cool_down_is_used_again(
    cluster: SoketiCluster, subscriber: PusherSubscriber, mode: str
) -> None:
    channel = unique("back")
    await subscriber.subscribe(channel)
    node = cluster.nodes[2]
    attempts = ConnectAttempts(node.port)
    try:
        async with Broadcast(config(cluster.driver_options(retries=0))) as broadcast:
            await asyncio.to_thread(node.stop)
            before, started = attempts.count, time.monotonic()
            down = [await publish(broadcast, mode, channel, f"down-{n}") for n in range(6)]
            seconds = time.monotonic() - started
            tried_while_down = attempts.count - before
            await asyncio.to_thread(node.start)
            await asyncio.sleep(max(0.0, started + seconds + COOLDOWN + 0.2 - time.monotonic()))
            before = attempts.count  # after start(), whose own readiness checks connect too
            back = [await publish(broadcast, mode, channel, f"back-{n}") for n in range(6)]
            tried_when_back = attempts.count - before
    finally:
        attempts.stop()
        if not node.running:
            node.start()
    assert [r.requests for r in down + back] == [1] * 12
    assert tried_at_most_once_per_cool_down(tried_while_down, seconds)
    # the first request after the cool-down finds it back, then it takes its turns
    assert tried_when_back >= 2
    events = await heard(subscriber, channel, cluster)
    expected = [f"down-{n}" for n in range(6)] + [f"back-{n}" for n in range(6)]
    assert sorted(e.data for e in events) == sorted(expected), "each exactly once"


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SoketiServer, Path]]:
    """A soketi serving HTTPS with a certificate from a test CA, and that CA's file."""
    ca, folder = trustme.CA(), tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert(HOST)
    paths = [folder / name for name in ("cert.pem", "key.pem", "ca.pem")]
    cert.cert_chain_pems[0].write_to_path(str(paths[0]))
    cert.private_key_pem.write_to_path(str(paths[1]))
    ca.cert_pem.write_to_path(str(paths[2]))
    server = start_soketi(**{"ssl.certPath": str(paths[0]), "ssl.keyPath": str(paths[1])})
    try:
        yield server, paths[2]
    finally:
        server.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_untrusted_certificate_is_not_hidden_by_another_node(
    tls_node: tuple[SoketiServer, Path],
    refusing: ConnectAttempts,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    server, ca_file = tls_node
    options = server.driver_options(hosts=hosts_of(server.port, refusing.port), retries=2)
    del options["host"], options["port"]
    async with Broadcast(config(options)) as broadcast:
        driver: Any = broadcast.driver().driver
        driver._hosts.turn = 0  # the TLS node first
        with pytest.raises(PublishError) as info:
            await publish(broadcast, mode, "secure", "x")
        assert driver._hosts.down(time.monotonic()) == [], "it answered the handshake"
    error = info.value
    assert (error.failed, error.retryable, error.requests) == (("secure",), False, 1)
    assert "certificate" in str(error) and f"https://{HOST}:{server.port}" in str(error)
    assert refusing.count == 0, "the other node was not tried: that would hide the problem"
    # trusted, the same nodes work: the name checked in the handshake is the node's
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # read when the context is made
    async with Broadcast(config(options)) as broadcast:
        receipts = [await publish(broadcast, mode, "secure", str(n)) for n in range(4)]
    assert [r.requests for r in receipts] == [1] * 4
    assert refusing.count == 1


# -- a node that may have the request ------------------------------------------------------


@pytest.mark.parametrize("fault", ["never answers", "closes after forwarding"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_what_a_node_may_have_is_never_sent_to_another(
    cluster: SoketiCluster,
    proxies: list[HostsSeen],
    subscriber: PusherSubscriber,
    mode: str,
    fault: str,
) -> None:
    channel = unique("maybe")
    await subscriber.subscribe(channel)
    lost = unique("lost")
    for proxy in proxies:  # whichever node gets it takes it and gives no answer
        if fault == "never answers":
            proxy.delay(30, when=containing(lost))
        else:
            proxy.drop(when=containing(lost), forward=True)
    hosts = hosts_of(*(p.port for p in proxies))
    options = cluster.driver_options(hosts=hosts, timeout=1, retries=3, retry_backoff=0.01)
    async with Broadcast(config(options)) as broadcast:
        with pytest.raises(PublishError) as info:
            await publish(broadcast, mode, channel, lost)
        after = await publish(broadcast, mode, channel, "after")
    error = info.value
    assert (error.unknown, error.failed, error.maybe_delivered) == ((channel,), (), True)
    assert error.requests == 1, "not retried by the core"
    got = [proxy.published().count(lost) for proxy in proxies]
    assert sorted(got) == [0, 0, 1], "one node got it; no other node was sent it"
    assert after.requests == 1
    events = [e.data for e in await heard(subscriber, channel, cluster)]
    # at most once; here exactly once, since the node forwarded it before going silent
    assert (events.count(lost), events.count("after")) == (1, 1)


async def test_a_query_a_node_may_have_is_not_asked_of_another(
    cluster: SoketiCluster, proxies: list[HostsSeen]
) -> None:
    for proxy in proxies:
        proxy.delay(30, when=lambda seen: seen.method == "GET")
    hosts = hosts_of(*(p.port for p in proxies))
    async with Broadcast(config(cluster.driver_options(hosts=hosts, timeout=1))) as broadcast:
        with pytest.raises(QueryError, match="no answer from"):
            await broadcast.achannel_info("anything")
        with pytest.raises(QueryError, match="no answer from"):
            await asyncio.to_thread(broadcast.occupied_channels)
    assert sum(len(proxy.requests) for proxy in proxies) == 2, "each asked of one node only"


# -- queries ----------------------------------------------------------------------------------


def presence_auth(socket_id: str, channel: str, data: str, secret: str) -> str:
    text = f"{socket_id}:{channel}:{data}"
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_queries_move_on_from_nodes_that_refuse(
    cluster: SoketiCluster, refusing: ConnectAttempts, subscriber: PusherSubscriber, mode: str
) -> None:
    second = ConnectAttempts(refused_port())
    room = unique("presence-room")
    data = json.dumps({"user_id": "7", "user_info": {}})
    auth = f"{cluster.key}:" + presence_auth(subscriber.socket_id, room, data, cluster.secret)
    future = subscriber._subscribed[room] = asyncio.get_running_loop().create_future()
    frame = {"channel": room, "auth": auth, "channel_data": data}
    await subscriber._ws.send(json.dumps({"event": "pusher:subscribe", "data": frame}))
    await asyncio.wait_for(future, 10)
    # the two dead nodes first, then node 1: every query must move on twice
    options = cluster.driver_options(hosts=hosts_of(refusing.port, second.port, cluster.ports[1]))
    queries = {
        "occupied_channels": ("presence-",),
        "channel_info": (room,),
        "members": (room,),
        "terminate_user": ("nobody-signed-in",),
    }
    answers = {}
    try:
        for name, args in queries.items():
            async with Broadcast(config(options)) as broadcast:  # what is known starts afresh
                broadcast.driver().driver._hosts.turn = 0  # type: ignore[attr-defined]
                if mode == "sync":
                    answers[name] = await asyncio.to_thread(getattr(broadcast, name), *args)
                else:
                    answers[name] = await getattr(broadcast, f"a{name}")(*args)
    finally:
        second.stop()
    assert room in [info.name for info in answers["occupied_channels"]]
    assert answers["channel_info"].occupied and answers["channel_info"].user_count == 1
    assert [member.id for member in answers["members"]] == ["7"]
    assert answers["terminate_user"] is None
    assert (refusing.count, second.count) == (4, 4), "each query tried each dead node once"


# -- check() and `broadcasting check` -------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_check_reports_every_node(
    cluster: SoketiCluster, refusing: ConnectAttempts, mode: str
) -> None:
    async def check(options: dict[str, Any]) -> Health:
        async with Broadcast(config(options)) as broadcast:
            if mode == "sync":
                return await asyncio.to_thread(broadcast.driver().check)
            return await broadcast.driver().acheck()

    live = hosts_of(*cluster.ports)
    health = await check(cluster.driver_options(hosts=[*live, *hosts_of(refusing.port)]))
    assert health.status == "ok" and not health.failed, health.detail
    assert health.detail.startswith(
        f"3 of 4 nodes accepted the app key and secret (GET /apps/{cluster.app_id}/channels); "
    )
    for url in live:
        assert f"http://{url}: ok in " in health.detail
    assert f"http://{HOST}:{refusing.port}: unreachable in " in health.detail
    assert "could not reach" in health.detail and "(not sent)" in health.detail

    second = ConnectAttempts(refused_port())
    try:
        dead = await check(cluster.driver_options(hosts=hosts_of(refusing.port, second.port)))
    finally:
        second.stop()
    assert dead.status == "unreachable" and dead.failed
    assert dead.detail.startswith("pusher: 0 of 2 nodes accepted")

    wrong = await check(cluster.driver_options(hosts=live, secret=WRONG))
    assert wrong.status == "auth_failed"
    assert wrong.detail.count(": auth_failed in ") == 3 and "HTTP 401" in wrong.detail
    for one in (health, dead, wrong):
        assert cluster.secret not in one.detail and WRONG not in one.detail


async def test_check_says_error_when_a_node_answers_wrongly(
    cluster: SoketiCluster, proxies: list[HostsSeen]
) -> None:
    proxies[1].fail(404, "Unknown app", times=None)  # a node serving another configuration
    options = cluster.driver_options(hosts=hosts_of(*(p.port for p in proxies)))
    async with Broadcast(config(options)) as broadcast:
        health = await broadcast.driver().acheck()
    assert health.status == "error", health.detail
    assert f"http://{HOST}:{proxies[1].port}: error in " in health.detail
    assert "HTTP 404" in health.detail and health.detail.count(": ok in ") == 2


def test_the_check_command_reports_every_node(
    cluster: SoketiCluster, refusing: ConnectAttempts, tmp_path: Path
) -> None:
    def run(options: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        path = tmp_path / "broadcast.py"
        path.write_text(f"DRIVER = 'pusher'\nDRIVERS = {{'pusher': {options!r}}}\n")
        done = subprocess.run(
            [sys.executable, "-m", "broadcasting", "check", "--config", str(path), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cluster.secret not in done.stdout + done.stderr
        (row,) = json.loads(done.stdout)
        return done.returncode, row

    hosts = hosts_of(*cluster.ports, refusing.port)
    code, row = run(cluster.driver_options(hosts=hosts))
    assert (code, row["status"]) == (0, "ok"), row
    assert row["detail"].startswith("3 of 4 nodes accepted")
    assert f"http://{HOST}:{refusing.port}: unreachable" in row["detail"]
    code, row = run(cluster.driver_options(hosts=hosts_of(refusing.port)))
    assert (code, row["status"]) == (1, "unreachable")


# -- fork --------------------------------------------------------------------------------------


def test_a_forked_child_keeps_what_its_parent_knew_of_the_nodes(
    cluster: SoketiCluster, proxies: list[HostsSeen], refusing: ConnectAttempts
) -> None:
    # gunicorn --preload: a Broadcast used before the fork. The child knows the dead node is
    # down (it is as true there), has a lock of its own and a turn of its own
    hosts = hosts_of(refusing.port, *(p.port for p in proxies))
    with Broadcast(config(cluster.driver_options(hosts=hosts, retries=0))) as broadcast:
        driver: Any = broadcast.driver().driver
        driver._hosts.turn = 0  # the dead node first
        assert broadcast.channel("forked", "parent").requests == 1
        assert refusing.count == 1
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:  # a parent thread holds the lock as the process forks
            with driver._hosts._lock:
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(10)

        def child() -> dict[str, Any]:
            before = refusing.count
            receipts = [broadcast.channel("forked", f"child-{n}") for n in range(6)]
            return {"requests": [r.requests for r in receipts], "dead": refusing.count - before}

        try:
            forked = fork(child)
        finally:
            release.set()
            holder.join(10)
        done = result(forked)
    assert done == {"requests": [1] * 6, "dead": 0}
    sent = sorted(data for proxy in proxies for data in proxy.published())
    assert sent == ["child-0", "child-1", "child-2", "child-3", "child-4", "child-5", "parent"]
