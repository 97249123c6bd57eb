"""Several real soketi nodes on loopback joined by soketi's Redis adapter: one cluster.

Reusable outside pytest (benchmarks)::

    from soketi_cluster import SoketiCluster
    with SoketiCluster(nodes=3) as cluster:
        cluster.nodes[0].driver_options()      # one node, as a load balancer would pick
        cluster.driver_options()               # every node, for the driver's host list

Each node is a :class:`~soketi_server.SoketiServer` with ``adapter.driver = redis``. The
nodes share state through Redis on 127.0.0.1:6379 (started before every session and
before CI on this project's machines). Redis pub/sub ignores database numbers, so what
keeps two clusters (two test workers, a benchmark beside a test run) apart is the
adapter's channel prefix: every cluster gets one of its own. Node ``i`` can be stopped
and started again on the same port (:meth:`SoketiServer.stop` / ``start``) to kill a
node under load.
"""

from __future__ import annotations

import os
import socket
import uuid
from types import TracebackType
from typing import Any

from soketi_server import HOST, SoketiServer

REDIS_HOST = os.environ.get("BROADCASTING_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BROADCASTING_TEST_REDIS_PORT", "6379"))
REDIS_DB = 11  #: soketi's own keys (rate limits, when used) stay out of db 0


class RedisUnavailable(RuntimeError):
    """Nothing answers on the Redis port the cluster needs."""


def redis_reachable(timeout: float = 1.0) -> bool:
    """Whether a Redis server answers PING on the configured host and port."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class SoketiCluster:
    """``nodes`` soketi processes on free loopback ports, joined through Redis.

    ``config`` entries override every node's soketi configuration (dotted keys, as
    :class:`~soketi_server.SoketiServer` takes them), e.g. the apps with their webhooks.
    """

    def __init__(self, nodes: int = 3, **config: Any) -> None:
        self.prefix = f"broadcasting-test-{uuid.uuid4().hex[:12]}"
        shared = {
            "adapter.driver": "redis",
            "adapter.redis.prefix": self.prefix,
            "database.redis.host": REDIS_HOST,
            "database.redis.port": REDIS_PORT,
            "database.redis.db": REDIS_DB,
            # how long a node waits for the others' answers (who is in this presence channel?)
            # before it answers from its own sockets alone: soketi's 5 s default ran out once
            # on CI's loaded machine, and a member still on another node was posted as removed
            "adapter.redis.requestsTimeout": 30_000,
        }
        self.nodes = [SoketiServer(**{**shared, **config}) for _ in range(nodes)]

    app_id = SoketiServer.app_id
    key = SoketiServer.key
    secret = SoketiServer.secret
    host = HOST

    def start(self, timeout: float = 30) -> SoketiCluster:
        """Start every node; each waits until its HTTP API answers."""
        if not redis_reachable():
            raise RedisUnavailable(
                f"no Redis answers on {REDIS_HOST}:{REDIS_PORT}: the soketi cluster needs it"
            )
        try:
            for node in self.nodes:
                node.start(timeout)
        except BaseException:
            self.close()
            raise
        return self

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def driver_options(self, **overrides: Any) -> dict[str, Any]:
        """``DRIVERS['pusher']`` naming every node in the driver's ``hosts`` list."""
        options = self.nodes[0].driver_options(**overrides)
        options.pop("host", None)
        options.pop("port", None)
        options.setdefault("hosts", [f"{HOST}:{port}" for port in self.ports])
        return options

    def close(self) -> None:
        """Stop every node and remove its files."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> SoketiCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
