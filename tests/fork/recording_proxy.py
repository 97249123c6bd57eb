"""The counting proxy, also telling which client connection carried each request.

After a fork, a process that wrote on a connection its parent opened would
show up here as two processes' requests on one client port. Every request is
recorded with the port its client connection came from.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from http_proxy import CountingProxy


@dataclass(frozen=True)
class Carried:
    """A request and the client port of the connection that carried it."""

    port: int
    request_line: str
    body: bytes

    def published(self) -> list[Any]:
        """The data of each event a Pusher publish request carried (JSON-decoded)."""
        target = self.request_line.split(" ")[1] if " " in self.request_line else ""
        if "/events?" in target:
            return [json.loads(json.loads(self.body)["data"])]
        if "/batch_events?" in target:
            return [json.loads(event["data"]) for event in json.loads(self.body)["batch"]]
        return []


class RecordingProxy(CountingProxy):
    """A :class:`CountingProxy` that records each request's client port in :attr:`carried`."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(upstream_port)
        self.carried: list[Carried] = []
        self._ports: dict[int, int] = {}  # id(reader) -> client port, while it is served

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._ports[id(reader)] = writer.get_extra_info("peername")[1]
        try:
            await super()._serve(reader, writer)
        finally:
            self._ports.pop(id(reader), None)

    async def _read_message(
        self, reader: asyncio.StreamReader, *, response: bool
    ) -> tuple[str, dict[str, str], bytes] | None:
        message = await super()._read_message(reader, response=response)
        port = self._ports.get(id(reader))
        if message is not None and not response and port is not None:
            with self._lock:
                self.carried.append(Carried(port, message[0], message[2]))
        return message

    def published(self) -> list[tuple[int, Any]]:
        """``(client port, data)`` of every event published through the proxy so far."""
        with self._lock:
            carried = list(self.carried)
        return [(c.port, data) for c in carried for data in c.published()]
