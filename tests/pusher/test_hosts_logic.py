"""The ``hosts`` option without a server: its configuration errors, and the sans-I/O choice of
a node (``broadcasting_pusher._hosts``) that the sync pool and the async sessions share.

``Hosts`` takes the time as an argument, so cool-downs are checked at chosen instants
instead of by sleeping. What the transports do with it, against a real soketi cluster,
is in test_hosts.py.
"""

from __future__ import annotations

import os
import select
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from broadcasting import Broadcast, ConfigurationError, PublishError, QueryError
from broadcasting.web import client_config
from broadcasting_pusher import parse_settings
from broadcasting_pusher._hosts import COOLDOWN, MAX_COOLDOWN, Hosts, Node, NotSent
from broadcasting_pusher._settings import KNOWN_OPTIONS

SECRET = "hosts-secret-never-shown-7d1c"
BASE = {"app_id": "1234567", "key": "app-key", "secret": SECRET, "ssl": False}
A, B, C = Node("a", 1), Node("b", 2), Node("c", 3)


def settings(**options: Any) -> Any:
    return parse_settings({**BASE, **options})


def not_sent(node: Node, *, retryable: bool = True, query: bool = False) -> NotSent:
    kind = QueryError if query else PublishError
    text = f"pusher: could not reach http://{node} (not sent)"
    return NotSent(kind(text, driver="pusher", retryable=retryable))


# -- configuration ---------------------------------------------------------------------------


def test_hosts_are_parsed_into_nodes_with_the_default_port() -> None:
    s = settings(hosts=["soketi-1", "soketi-2:6002", "10.0.0.3", "[fd00::4]:6004", "[::1]"])
    assert s.hosts == (
        Node("soketi-1", 80),
        Node("soketi-2", 6002),
        Node("10.0.0.3", 80),
        Node("[fd00::4]", 6004),
        Node("[::1]", 80),
    )
    assert s.nodes == s.hosts
    assert (s.host, s.port, s.base_url) == ("soketi-1", 80, "http://soketi-1:80"), "the first"
    assert settings(hosts=["a"], port=6001).hosts == (Node("a", 6001),), "the port option"
    assert settings(hosts=("a",), ssl=True).hosts == (Node("a", 443),), "a tuple; TLS: 443"
    assert settings(host="one", port=7).nodes == (Node("one", 7),), "without hosts: one node"


@pytest.mark.parametrize(
    ("hosts", "words"),
    [
        ([], "is empty"),
        ("a:1,b:2", "must be a list of nodes"),
        ({"a:1"}, "must be a list of nodes"),
        ({"a": 1}, "must be a list of nodes"),
        (["a:1", "http://b:2"], "entry 1 is not a node"),
        (["a:1", "b:2/path"], "entry 1 is not a node"),
        (["a:0"], "entry 0 ('a:0') is not a node"),
        (["a:65536"], "entry 0 ('a:65536') is not a node"),
        (["a:port"], "entry 0 ('a:port') is not a node"),
        (["::1"], "entry 0 ('::1') is not a node"),
        (["[::1]:6001", "[1:2:3]:6001"], "entry 1 ('[1:2:3]:6001') is not an IPv6 address"),
        (["[zz::1]:6001"], "entry 0 ('[zz::1]:6001') is not a node"),
        (["a:1", " b:2"], "entry 1 is not a node"),
        (["a:1", 6001], "entry 1 is not a node"),
        (["a:1", None], "entry 1 is not a node"),
        (["a:1", "b:2", "A:1"], "entry 2 ('A:1') names the same node as entry 0"),
        (["b", "b:80"], "entry 1 ('b:80') names the same node as entry 0"),
        (["[::1]:5", "[0:0::1]:5"], "entry 1 ('[0:0::1]:5') names the same node as entry 0"),
    ],
)
def test_a_bad_hosts_option_names_the_entry(hosts: Any, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings(hosts=hosts)
    assert info.value.key == "hosts"
    assert words in str(info.value)
    assert SECRET not in str(info.value) + repr(info.value)


@pytest.mark.parametrize("other", [{"host": "soketi"}, {"cluster": "eu"}])
def test_hosts_with_host_or_cluster_is_a_conflict(other: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        settings(hosts=["a:1"], **other)
    (name,) = other
    assert info.value.key == "hosts"
    assert f"conflicts with {name!r}" in str(info.value)


def test_an_entry_holding_the_secret_is_never_shown() -> None:
    for entry in [SECRET, f"{SECRET}:99999", f"https://user:{SECRET}@host"]:
        with pytest.raises(ConfigurationError) as info:
            settings(hosts=["a:1", entry, entry])
        assert SECRET not in str(info.value) + repr(info.value)
        assert "entry 1" in str(info.value)


def shows_the_secret(error: BaseException) -> list[str]:
    """Where ``error`` shows SECRET: its text, its traceback, a local of a frame outside
    this file (an error tracker records every local)."""
    found = [what for what in (str(error), repr(error)) if SECRET in what]
    found += ["traceback"] if SECRET in "".join(traceback.format_exception(error)) else []
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_filename != __file__:
            found += [
                f"{frame.f_code.co_name}:{name}"
                for name, value in frame.f_locals.items()
                if SECRET in repr(value)
            ]
        tb = tb.tb_next
    return found


def test_bad_hosts_fail_before_any_request() -> None:
    # the Broadcast reads its drivers' options when asked for the driver: no socket is opened
    config = {"DRIVER": "pusher", "DRIVERS": {"pusher": {**BASE, "hosts": ["a:1", "a:1"]}}}
    with pytest.raises(ConfigurationError, match="'hosts'") as info, Broadcast(config) as b:
        b.channel("a", "x")
    assert shows_the_secret(info.value) == []


def test_the_readme_lists_every_option() -> None:
    readme = Path(__file__).resolve().parents[2] / "plugins" / "pusher_driver" / "README.md"
    table = readme.read_text(encoding="utf-8").split("## Options", 1)[1].split("\n\n", 2)[1]
    listed = {
        name.strip().strip("`")
        for row in table.splitlines()[2:]
        for name in row.split("|")[1].replace(",", "/").split("/")
    }
    assert listed == KNOWN_OPTIONS


def test_repr_and_client_config_with_hosts() -> None:
    options = {**BASE, "hosts": ["soketi-1:6001", "soketi-2:6001"]}
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": options}}) as broadcast:
        driver = broadcast.driver().driver
        text = repr(driver) + str(driver) + repr(driver.settings)  # type: ignore[attr-defined]
        assert "urls=['http://soketi-1:6001', 'http://soketi-2:6001']" in repr(driver)
        assert SECRET not in text
        config = client_config(broadcast)
        assert (config["options"]["wsHost"], config["options"]["wsPort"]) == ("soketi-1", 6001)
        assert config["echo"]["wsHost"] == "soketi-1", "a browser gets the first node"
        mine = client_config(broadcast, overrides={"wsHost": "ws.example.com", "wsPort": 443})
        assert (mine["options"]["wsHost"], mine["echo"]["wsPort"]) == ("ws.example.com", 443)
        assert SECRET not in str(config) + str(mine)


# -- choosing a node -----------------------------------------------------------------------


def test_requests_take_turns_over_the_nodes() -> None:
    hosts = Hosts([A, B, C], turn=1)
    assert [hosts.order(0.0) for _ in range(3)] == [[B, C, A], [C, A, B], [A, B, C]]
    firsts = Counter(Hosts([A, B, C]).order(0.0)[0] for _ in range(300))
    assert set(firsts) == {A, B, C}, "each process starts at a random node"


def test_a_failed_node_is_skipped_for_a_cool_down_that_doubles() -> None:
    hosts = Hosts([A, B, C], turn=0)
    now = 100.0
    cooldowns = []
    for _ in range(6):
        hosts.failed(B, now)
        assert B not in hosts.order(now)[:2] and hosts.order(now)[-1] == B, "tried last"
        assert hosts.down(now) == [B]
        # still down just before its cool-down ends
        end = now
        while hosts.down(end + 0.25):
            end += 0.25
        cooldowns.append(end + 0.25 - now)
        now = end + 0.25
        assert hosts.order(now)[0] == B, "once it is over, the next request tries it first"
    assert cooldowns == [COOLDOWN, 2 * COOLDOWN, 4 * COOLDOWN, 8 * COOLDOWN, MAX_COOLDOWN, 60.0]
    hosts.answered(B)
    assert hosts.down(now) == [] and B in hosts.order(now)
    hosts.failed(B, now)
    assert not hosts.down(now + COOLDOWN), "an answer reset the cool-down to the first one"


def test_turns_are_shared_by_the_nodes_that_are_up() -> None:
    hosts = Hosts([A, B, C], turn=0)
    hosts.failed(B, 0.0)
    firsts = Counter(hosts.order(1.0)[0] for _ in range(100))
    assert firsts == {A: 50, C: 50}, "not two turns for the node after the one that is down"


def test_one_request_finds_out_whether_a_node_is_back() -> None:
    hosts = Hosts([A, B, C], turn=0)
    hosts.failed(A, 0.0)
    later = COOLDOWN + 1
    assert hosts.order(later)[0] == A, "the first request after the cool-down tries it"
    for _ in range(5):  # the requests under way meanwhile keep to the others
        assert hosts.order(later)[-1] == A
    hosts.failed(A, later)  # it was not back: a longer cool-down
    assert hosts.down(later + 2 * COOLDOWN - 0.1) == [A]
    assert hosts.down(later + 2 * COOLDOWN) == []
    assert hosts.order(later + 2 * COOLDOWN)[0] == A
    hosts.answered(A)  # back: takes turns again
    assert Counter(hosts.order(30.0)[0] for _ in range(30)) == {A: 10, B: 10, C: 10}


def test_a_node_that_failed_for_many_requests_at_once_is_marked_down_once() -> None:
    hosts = Hosts([A, B], turn=0)
    for _ in range(10):  # requests that were all on their way to A when it failed
        hosts.failed(A, 1.0)
    assert hosts.down(1.0 + COOLDOWN) == [], "not a cool-down doubled ten times"


def test_when_every_node_is_down_all_are_tried_the_least_recently_failed_first() -> None:
    hosts = Hosts([A, B, C], turn=0)
    hosts.failed(B, 1.0)
    hosts.failed(C, 2.0)
    hosts.failed(A, 3.0)
    assert hosts.order(3.5) == [B, C, A]
    hosts.failed(B, 3.6)  # tried again while down: to the back of the line, same cool-down
    assert hosts.order(3.7) == [C, A, B]
    assert hosts.down(1.0 + COOLDOWN) == [A, C], "B's cool-down was not extended"


def test_a_route_moves_on_and_gives_up_with_every_nodes_words() -> None:
    hosts = Hosts([A, B, C], turn=0)
    route = hosts.route(0.0)
    assert list(route) == [A, B, C]
    for node in route:
        route.failed(node, not_sent(node), 0.0)
    error = route.gave_up()
    assert isinstance(error, PublishError) and not error.maybe_delivered
    assert (error.retryable, error.kind, error.status) == (True, "unavailable", None)
    text = str(error)
    assert text.startswith("pusher: could not send the request to any of the 3 nodes (not sent)")
    assert all(f"http://{node}" in text for node in (A, B, C))
    assert error.__cause__ is route.missed[-1][1]
    assert hosts.down(1.0) == [A, B, C]


def test_a_route_of_one_node_gives_its_own_error() -> None:
    hosts = Hosts([A, B])
    route = hosts.route(0.0, only=B)
    assert list(route) == [B]
    missed = not_sent(B, query=True)
    route.failed(B, missed, 0.0)
    assert route.gave_up() is missed.error
    assert hosts.down(0.0) == [B]


def test_an_error_no_node_would_avoid_is_raised_at_once() -> None:
    # a certificate this process does not trust: trying the next node would hide it
    hosts = Hosts([A, B], turn=0)
    route = hosts.route(0.0)
    missed = not_sent(A, retryable=False)
    with pytest.raises(PublishError) as info:
        route.failed(A, missed, 0.0)
    assert info.value is missed.error
    assert hosts.down(0.0) == [], "the node answered the handshake: it is not down"


def test_a_request_that_was_not_written_moves_on_without_marking_the_node_down() -> None:
    hosts = Hosts([A, B], turn=0)
    route = hosts.route(0.0)
    error = PublishError("pusher: connection reset (not sent)", driver="pusher", retryable=True)
    route.failed(A, NotSent(error, down=False), 0.0)
    assert hosts.down(0.0) == []


def test_hosts_are_thread_safe() -> None:
    hosts = Hosts([A, B, C])
    problems: list[str] = []

    def work(seed: int) -> None:
        for n in range(3000):
            now = n * 0.01
            order = hosts.order(now)
            if sorted(order, key=str) != [A, B, C]:
                problems.append(f"not every node once: {order}")
            if (n + seed) % 7 == 0:
                hosts.failed(order[0], now)
            elif (n + seed) % 5 == 0:
                hosts.answered(order[0])

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not problems, problems[:3]


def test_a_forked_child_keeps_what_is_known_with_a_lock_of_its_own() -> None:
    hosts = Hosts([A, B, C], turn=0)
    hosts.failed(B, time.monotonic())
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:  # another thread holds the lock while the process forks
        with hosts._lock:
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once
        code = 1
        try:
            order = hosts.order(time.monotonic())  # would hang on the parent's held lock
            os.write(write_fd, ",".join(str(node) for node in order).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    release.set()
    holder.join(10)
    try:
        ready, _, _ = select.select([read_fd], [], [], 30)
        said = os.read(read_fd, 1000).decode() if ready else "(no answer: the child hung)"
    finally:
        os.close(read_fd)
        if not ready:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
    order = said.split(",")
    assert sorted(order) == ["a:1", "b:2", "c:3"], said
    assert order[-1] == "b:2", "the child knows B is down"
