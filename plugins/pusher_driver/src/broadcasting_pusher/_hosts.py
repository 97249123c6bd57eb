"""Several nodes of one self-hosted cluster: which node a request goes to (README, "Several
nodes"). Written once, without I/O: the sync pool and the async sessions both ask a
:class:`Hosts` for a :class:`Route` and tell it what happened on each node.

- Requests take turns over the nodes that are up, from a random start in each process (so
  that a hundred workers started at once do not all begin with the first node).
- A node whose connection failed before anything was sent is down for a cool-down (5 s,
  doubled on each failure in a row, at most 60 s) and the same request goes on to the next
  node. When the cool-down is over, the next request tries that node first (one request, not
  every request under way at that moment); an answer of any kind makes it up again.
- A request that may have reached a node is never sent to another one: the transports let
  such an error propagate instead of telling the route.
- When every node is down, a request still tries them all, the least recently failed first.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from broadcasting.plugin import ServiceError, call_after_fork

COOLDOWN = 5.0  #: seconds a node is skipped after its first connection failure
MAX_COOLDOWN = 60.0  #: the cool-down doubles on each failure in a row, up to this


@dataclass(frozen=True)
class Node:
    """One server: ``host`` as written in a URL (a name, an IPv4 address or ``[v6]``)."""

    host: str
    port: int

    def url(self, ssl: bool) -> str:
        """``http(s)://host:port``: where its requests go."""
        return f"{'https' if ssl else 'http'}://{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class NotSent(Exception):
    """A node certainly did not get the request: ``error`` is what the request's caller gets if
    no other node takes it; ``down``: the connection itself failed (the node is marked down)."""

    def __init__(self, error: ServiceError, *, down: bool = True) -> None:
        super().__init__(str(error))
        self.error = error
        self.down = down


@dataclass
class _Health:
    failures: int = 0  #: connection failures since the node last answered
    down_until: float = -math.inf
    failed_at: float = -math.inf
    probing: bool = False  #: a request was given the node to find out whether it is back


class Hosts:
    """The nodes and what is known of each; thread-safe, shared by a driver's transports."""

    def __init__(
        self,
        nodes: Sequence[Node],
        *,
        cooldown: float = COOLDOWN,
        max_cooldown: float = MAX_COOLDOWN,
        turn: int | None = None,
    ) -> None:
        if not nodes:
            raise ValueError("Hosts needs at least one node")
        self.nodes = tuple(nodes)
        self.cooldown, self.max_cooldown = cooldown, max_cooldown
        self._health = {node: _Health() for node in self.nodes}
        #: The nodes that failed since they last answered: the others' health is as new.
        self._failing: set[Node] = set()
        #: The next request's turn (a random start per process; tests set it).
        self.turn = random.randrange(len(self.nodes)) if turn is None else turn
        self._lock = threading.Lock()
        call_after_fork(self)

    def order(self, now: float) -> list[Node]:
        """The nodes in the order one request tries them: a node whose cool-down just ended
        (this request finds out whether it is back), the nodes that are up, taking turns, then
        the nodes that are down, the least recently failed first."""
        with self._lock:
            if not self._failing:  # every node up: they only take turns
                nodes, start = self.nodes, self.turn % len(self.nodes)
                self.turn += 1
                return [*nodes[start:], *nodes[:start]]
            due: Node | None = None
            up: list[Node] = []
            down: list[Node] = []
            for node in self.nodes:
                health = self._health[node]
                if health.down_until <= now and health.failures and due is None:
                    due = node
                    health.probing = True  # the others skip it until this request is done
                    health.down_until = now + self._cooldown(health.failures)
                elif health.down_until <= now and not health.failures:
                    up.append(node)
                else:
                    down.append(node)
            if up:
                start = self.turn % len(up)
                up = up[start:] + up[:start]
            self.turn += 1
            down.sort(key=lambda node: self._health[node].failed_at)
            return [due, *up, *down] if due is not None else [*up, *down]

    def failed(self, node: Node, now: float) -> None:
        """A connection to ``node`` failed: it is down for a cool-down, or a longer one if it
        failed last time too. A node already down (another request found out first) keeps its
        cool-down."""
        with self._lock:
            health = self._health[node]
            health.failed_at = now
            if health.down_until > now and not health.probing:
                return
            health.failures += 1
            self._failing.add(node)
            health.probing = False
            health.down_until = now + self._cooldown(health.failures)

    def answered(self, node: Node) -> None:
        """``node`` answered (whatever it said): it is up."""
        with self._lock:
            if node in self._failing:  # else its health is as new already
                self._failing.discard(node)
                self._health[node] = _Health()

    def down(self, now: float) -> list[Node]:
        """The nodes skipped at ``now`` (down, or being tried by one request)."""
        with self._lock:
            return [n for n in self.nodes if self._health[n].down_until > now]

    def route(self, now: float, only: Node | None = None) -> Route:
        """One request's way through the nodes (``only``: that node and no other)."""
        return Route(self, [only] if only is not None else self.order(now))

    def _cooldown(self, failures: int) -> float:
        return float(min(self.cooldown * 2 ** min(failures - 1, 32), self.max_cooldown))

    def _after_fork(self) -> None:
        """In a forked child: a lock of its own (a parent thread may have held this one) and a
        turn of its own; what is known of the nodes is as true in the child."""
        self._lock = threading.Lock()
        self.turn = random.randrange(len(self.nodes))


class Route:
    """The nodes one request tries, in turn, until one takes it (see :class:`Hosts`)."""

    def __init__(self, hosts: Hosts, nodes: list[Node]) -> None:
        self.hosts = hosts
        self.nodes = nodes
        self.missed: list[tuple[Node, ServiceError]] = []

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def failed(self, node: Node, missed: NotSent, now: float) -> None:
        """``node`` did not get the request: mark it down (if its connection failed) and go on
        to the next node, or raise the error if it is not worth trying again (a certificate
        this process does not trust: a configuration problem that trying the other nodes would
        hide; any other failed TLS handshake is a node not reached, and goes on)."""
        if not missed.error.retryable:
            raise missed.error
        if missed.down:
            self.hosts.failed(node, now)
        self.missed.append((node, missed.error))

    def answered(self, node: Node) -> None:
        self.hosts.answered(node)

    def gave_up(self) -> ServiceError:
        """The error when no node took the request: with one node, its own; with several, a
        retryable error of the same class that names each node and what it did."""
        if not self.missed:  # pragma: no cover - a route always has a node
            raise RuntimeError("a route with no node")
        last = self.missed[-1][1]
        if len(self.missed) == 1:
            return last
        said = "; ".join(_said(error) for _, error in self.missed)
        count = len(self.missed)
        error = type(last)(
            f"{last.driver}: could not send the request to any of the {count} nodes "
            f"(not sent): {said}",
            driver=last.driver,
            retryable=True,  # only retryable errors move on to the next node
        )
        error.__cause__ = last
        return error


def _said(error: ServiceError) -> str:
    text = str(error.args[0]) if error.args else ""
    return text.removeprefix(f"{error.driver}: ")
