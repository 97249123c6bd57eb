"""Keep-alive HTTP connections to one host, shared by every thread.

A kept-alive connection the server has since closed (an idle timeout) must
not be handed out: a POST written to it fails *after* sending, and then
nobody can say whether the server processed it. So an idle connection is
checked before reuse: if its socket is readable while no request is under
way, the server has closed it (or sent something unasked) and it is thrown
away, before any byte of the request is written.
"""

from __future__ import annotations

import http.client
import select
import threading
from collections.abc import Callable

Connection = http.client.HTTPConnection


def dropped(conn: Connection) -> bool:
    """Whether an idle connection was closed by the server (its socket reads EOF or junk)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed or unusable descriptor
        return True
    return bool(readable)


class Pool:
    """Idle keep-alive connections to one host.

    :meth:`get` returns an idle connection that is still open, or a new one
    that is not connected yet (so the caller can tell a failure to connect,
    which certainly sent nothing, from a failure after sending). A
    connection serves one request at a time; :meth:`close` closes the idle
    ones and makes those in use be closed when they come back.
    """

    def __init__(self, connect: Callable[[], Connection], size: int = 8) -> None:
        self._connect = connect
        self._size = size
        self._lock = threading.Lock()
        self._idle: list[Connection] = []
        self._generation = 0

    def get(self) -> tuple[Connection, int]:
        """A connection and the pool generation to give back with it."""
        stale: list[Connection] = []
        conn: Connection | None = None
        with self._lock:
            generation = self._generation
            while self._idle:
                candidate = self._idle.pop()
                if dropped(candidate):
                    stale.append(candidate)
                else:
                    conn = candidate
                    break
        for old in stale:
            old.close()
        return (conn if conn is not None else self._connect()), generation

    def put(self, conn: Connection, generation: int) -> None:
        """Give a connection back after a complete answer (closed if the pool moved on)."""
        with self._lock:
            if generation == self._generation and len(self._idle) < self._size:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; those in use are closed when they come back."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for conn in idle:
            conn.close()

    def __repr__(self) -> str:
        return f"<Pool idle={len(self._idle)}>"
