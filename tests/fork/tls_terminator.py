"""A TLS terminator on loopback: what an nginx or a load balancer does in front of soketi.

It accepts TLS connections (a certificate from a ``trustme`` CA) and pipes
each one, byte for byte, to a plain upstream port over a connection of its
own, so an upstream :class:`~recording_proxy.RecordingProxy` sees one
connection per TLS connection. It keeps connections alive as long as both
sides do: a client whose TLS session breaks (a corrupted record, a
close_notify) loses its connection, and shows up as a new one.
"""

from __future__ import annotations

import asyncio
import ssl
from types import TracebackType

import trustme
from stream_server import StreamServer

HOST = "127.0.0.1"


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


class TlsTerminator:
    """Serves TLS on a free loopback port (``.port``), forwarding to ``upstream_port``."""

    def __init__(self, upstream_port: int, ca: trustme.CA) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST).configure_cert(self.context)
        self.port = 0
        #: TLS connections accepted so far.
        self.accepted = 0
        self._server: StreamServer | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))

    def start(self) -> TlsTerminator:
        """Serve in a background thread."""
        self._server = StreamServer(self._serve, ssl=self.context, name="tls-terminator").start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> TlsTerminator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
