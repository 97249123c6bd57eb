"""The ``ably`` driver: one request to Ably's REST API through the official ``ably`` SDK."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

from broadcasting import Answer, Batch, Capabilities, Driver, Limits, Message, Part, PublishError
from broadcasting_ably._errors import (
    Scrubber,
    ably_error,
    channels_text,
    int_or_none,
    not_mentioned,
    transport_error,
    unreadable_answer,
)
from broadcasting_ably._settings import AblySettings, parse_settings
from broadcasting_ably._transport import Clients, counting
from broadcasting_ably._wire import (
    API_VERSION,
    MAX_BATCH_BODY_BYTES,
    MAX_CHANNELS_PER_REQUEST,
    Fault,
    Reading,
    payload_size,
    read_answer,
    request_for,
    spec_size,
    wire_message,
)

if TYPE_CHECKING:
    from typing_extensions import Self

#: Ably's channel naming rule, checked by the core before any request.
CHANNEL_PATTERN = re.compile(r"(?![\[:])[^\r\n]+")
CHANNEL_RULE = (
    "Ably channel names are non-empty, do not start with '[' or ':' and have no line breaks"
)

_Outcome = Union[Answer, PublishError]


class BroadcastAblyDriver(Driver):
    """Publishes to Ably channels over Ably's REST API, using the ``ably`` SDK (3.x).

    Configure it with the seed's ``secret`` (or ``key``): an Ably API key of the
    form ``appId.keyId:keySecret``. The driver sends one request and reads
    Ably's answer (:meth:`send`, :meth:`asend`); the core splits channel lists
    (100 per request), retries, micro-batches async publishes and reports every
    channel's outcome. One channel is ``POST /channels/{name}/messages``,
    several are one spec of Ably's batch endpoint ``POST /messages``, and a
    micro-batch is a list of specs in one ``POST /messages``.

    Every message has the fixed id ``<Message.id>:0``; Ably drops a re-sent
    id, so the core may retry even when an answer was lost
    (``capabilities.deduplicates``). See the package README.
    """

    name = "ably"
    supports_socket_id = False
    capabilities = Capabilities(
        channels_per_request=MAX_CHANNELS_PER_REQUEST,
        batch_channels=MAX_CHANNELS_PER_REQUEST,
        batch_bytes=MAX_BATCH_BODY_BYTES,
        deduplicates=True,
    )

    def __init__(self, settings: AblySettings) -> None:
        self.settings = settings
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            channel_pattern=CHANNEL_PATTERN,
            channel_rule=CHANNEL_RULE,
        )
        self._scrub = Scrubber(settings.key)
        self._clients = Clients(settings, lambda: self.delivery.retry.retries)

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Self:
        """Build the driver from its ``DRIVERS['ably']`` options (see the package README)."""
        return cls(parse_settings(options))

    def ssl(self, enabled: bool) -> Self:
        """The seed's TLS toggle. Ably requires TLS with an API key: ``ssl(False)`` raises."""
        return self.with_options(tls=enabled)

    def payload_size(self, message: Message) -> int:
        """Bytes Ably counts for the message: data as sent, event name and client id."""
        return payload_size(message, self.settings.client_id)

    def part_size(self, part: Part) -> int:
        """Bytes ``part``'s spec takes in a shared ``POST /messages`` body."""
        wire = wire_message(part.message)
        return spec_size(part.channels, wire, binary=self.settings.use_binary_protocol)

    # -- one request ------------------------------------------------------------------

    def send(self, batch: Batch) -> list[_Outcome]:
        """Send ``batch`` as one request with the sync SDK client; one outcome per part.

        Raises :class:`PublishError` when the request failed as a whole. The
        hosts the SDK tried (fallback hosts) are counted in ``batch.requests``.
        """
        client = self._clients.sync_client()
        path, body = request_for(batch.parts)
        with counting() as sent:
            try:
                response = client.request("POST", path, API_VERSION, body=body)
            except Exception as exc:
                error = self._failure(batch, sent[0], exc)
            else:
                return self._answered(batch, sent[0], response)
        raise error

    async def asend(self, batch: Batch) -> list[_Outcome]:
        """Async twin of :meth:`send`, with this event loop's SDK client."""
        client = self._clients.async_client()
        path, body = request_for(batch.parts)
        with counting() as sent:
            try:
                response = await client.request("POST", path, API_VERSION, body=body)
            except Exception as exc:
                error = self._failure(batch, sent[0], exc)
            else:
                return self._answered(batch, sent[0], response)
        raise error

    def _answered(self, batch: Batch, sent: int, response: Any) -> list[_Outcome]:
        batch.requests = max(1, sent)
        try:
            status = int(response.status_code)
            items = list(response.items)
        except Exception as exc:
            raise unreadable_answer(self._scrub, _what(batch.parts), exc) from None
        result = read_answer([part.channels for part in batch.parts], status, items)
        if isinstance(result, tuple):
            raise self._refused(_what(batch.parts), result, failed_over=sent > 1)
        parts = zip(batch.parts, result, strict=True)
        return [self._outcome(part, reading, failed_over=sent > 1) for part, reading in parts]

    def _outcome(self, part: Part, reading: Reading | None, *, failed_over: bool) -> _Outcome:
        """One part's answer (``failed_over``: an earlier host may have stored it all)."""
        if reading is None:
            return not_mentioned(channels_text(part.channels))
        refused: dict[str, PublishError] = {}
        by_fault: dict[Fault, list[str]] = {}
        for channel, fault in reading.failures.items():
            by_fault.setdefault(fault, []).append(channel)
        for fault, channels in by_fault.items():
            error = self._refused(channels_text(channels), fault, failed_over=failed_over)
            refused.update(dict.fromkeys(channels, error))
        if reading.missing:
            unknown = not_mentioned(channels_text(reading.missing))
            refused.update(dict.fromkeys(reading.missing, unknown))
        return Answer(ids=tuple(reading.ids), refused=refused)

    def _refused(self, what: str, fault: Fault, *, failed_over: bool = False) -> PublishError:
        status, code, text = fault
        return ably_error(self._scrub, what, status, code, text, failed_over=failed_over)

    def _failure(self, batch: Batch, sent: int, exc: Exception) -> PublishError:
        """The SDK call raised: the error for the whole request (other exceptions propagate)."""
        import httpx
        from ably.util.exceptions import AblyException

        batch.requests = max(1, sent)
        what = _what(batch.parts)
        if isinstance(exc, httpx.TransportError):
            return transport_error(self._scrub, what, exc, sent)
        if isinstance(exc, AblyException):
            status = int_or_none(getattr(exc, "status_code", None))
            code = int_or_none(getattr(exc, "code", None))
            fault = (status, code, str(getattr(exc, "message", "") or ""))
            return self._refused(what, fault, failed_over=sent > 1)
        if isinstance(exc, (ValueError, KeyError)):  # an answer the SDK could not decode
            return unreadable_answer(self._scrub, what, exc)
        raise exc

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Close the SDK clients (idempotent); the next publish opens new ones."""
        self._clients.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await self._clients.aclose()

    def __repr__(self) -> str:
        endpoint = self.settings.endpoint or "main"
        return f"<{type(self).__name__} driver={self.name!r} endpoint={endpoint!r}>"


def _what(parts: Sequence[Part]) -> str:
    """The request's channels for an error message (a shared one names no channel)."""
    if len(parts) == 1:
        return channels_text(parts[0].channels)
    count = sum(len(part.channels) for part in parts)
    return f"{count} channels of {len(parts)} publishes sharing one request"
