"""The ``ably`` driver: publishes through the official ``ably`` SDK's REST clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Union

from broadcasting import Driver, Limits, Message, PublishError, Receipt, hookimpl
from broadcasting_ably._batcher import Batcher
from broadcasting_ably._clients import Clients
from broadcasting_ably._errors import (
    PREFIX,
    Scrubber,
    int_or_none,
    is_auth_failure,
    request_error,
    retryable,
    transport_error,
    unreadable_answer,
)
from broadcasting_ably._settings import DRIVER, AblySettings, parse_settings
from broadcasting_ably._wire import (
    API_VERSION,
    BATCH_PATH,
    MAX_CHANNELS_PER_REQUEST,
    Answer,
    batch_spec,
    chunks,
    payload_size,
    read_answer,
    read_batch_answer,
    request_for,
    spec_size,
    wire_message,
)

if TYPE_CHECKING:
    from typing_extensions import Self

log = logging.getLogger("broadcasting.ably")

#: Ably's channel naming rule, checked by the core before any request.
CHANNEL_PATTERN = re.compile(r"(?![\[:])[^\r\n]+")
CHANNEL_RULE = (
    "Ably channel names are non-empty, do not start with '[' or ':' and have no line breaks"
)


@dataclass(frozen=True)
class _Send:
    channels: tuple[str, ...]
    path: str
    body: Any
    #: the Ably message in ``body`` (a micro-batch puts it in a spec of its own)
    wire: dict[str, Any]


@dataclass(frozen=True)
class _Sleep:
    seconds: float


@dataclass(frozen=True)
class _Reply:
    answer: Answer | None = None
    error: PublishError | None = None
    requests: int = 1
    #: the SDK already re-sent this request to its fallback hosts
    failed_over: bool = False


@dataclass(frozen=True)
class _Undecided:
    """A shared request's answer said nothing certain about this publish.

    Its first attempt is then made on its own, at once; ``requests`` (the
    shared request) is added to that attempt's count.
    """

    requests: int = 1


_Steps = Generator[Union[_Send, _Sleep], Union[_Reply, None], Receipt]
_Outcome = Union[_Reply, _Undecided]


class BroadcastAblyDriver(Driver):
    """Publishes to Ably channels over Ably's REST API, using the ``ably`` SDK (3.x).

    Configure it with the seed's ``secret`` (or ``key``): an Ably API key of the
    form ``appId.keyId:keySecret``. One channel is published with
    ``POST /channels/{name}/messages``; a list of channels with Ably's batch
    endpoint ``POST /messages``, 100 channels per request. Every message has a
    fixed id, so retries are never delivered twice. Failures raise
    :class:`~broadcasting.PublishError` with Ably's error code and HTTP status;
    a batch that fails for some channels lists ``delivered`` and ``failed``.

    Async publishes are micro-batched by default (``batch_publishes``,
    ``batch_in_flight``): publishes that wait while every request slot is busy
    share one ``POST /messages``, one spec each, and then carry on (retries,
    errors) on their own. See the package README.
    """

    name = "ably"
    supports_socket_id = False

    def __init__(self, settings: AblySettings) -> None:
        self.settings = settings
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_channels_per_request=MAX_CHANNELS_PER_REQUEST,
            channel_pattern=CHANNEL_PATTERN,
            channel_rule=CHANNEL_RULE,
        )
        self._clients = Clients(settings)
        self._scrub = Scrubber(settings.key)
        self._lock = threading.Lock()
        self._batchers: dict[asyncio.AbstractEventLoop, Batcher[_Send, _Outcome]] = {}

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

    # -- publishing -------------------------------------------------------------

    def publish(self, message: Message) -> Receipt:
        """Publish from sync code (any thread, even one whose event loop is running)."""
        steps = self._steps(message)
        reply: _Reply | None = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                receipt: Receipt = done.value
                return receipt
            if isinstance(step, _Sleep):
                time.sleep(step.seconds)
                reply = None
            else:
                reply = self._send_sync(step)

    async def apublish(self, message: Message) -> Receipt:
        """Publish from async code; never blocks the event loop.

        With ``batch_publishes`` (the default) a publish to at most 100 channels
        makes its first attempt through this loop's micro-batcher: at once when
        a request slot is free, else together with the other publishes waiting.
        Retries always go on their own, as they would without batching.

        A publish to more than 100 channels sends its groups of 100 concurrently
        (each with its own retries) and reports them as one publish.
        """
        groups = chunks(message.channels)
        if len(groups) > 1:
            return await self._apublish_groups(message, groups)
        return await self._apublish_one(message)

    async def _apublish_groups(
        self, message: Message, groups: Sequence[tuple[str, ...]]
    ) -> Receipt:
        parts = [
            Message(group, message.event, message.data, message.text, message.id)
            for group in groups
        ]
        results = await asyncio.gather(
            *(self._apublish_one(part) for part in parts), return_exceptions=True
        )
        delivered: set[str] = set()
        ids: list[str] = []
        failed: dict[str, PublishError] = {}
        requests = 0
        for part, result in zip(parts, results, strict=True):
            if isinstance(result, Receipt):
                delivered.update(part.channels)
                ids.extend(result.ids)
                requests += result.requests
            elif isinstance(result, PublishError):
                delivered.update(result.delivered)
                failed.update(dict.fromkeys(result.failed, result))
            else:
                raise result
        return self._finish(message, delivered, ids, failed, requests)

    async def _apublish_one(self, message: Message) -> Receipt:
        steps = self._steps(message)
        reply: _Reply | None = None
        batcher = None
        if self.settings.batch_publishes and len(message.channels) <= MAX_CHANNELS_PER_REQUEST:
            batcher = self._batcher()
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                receipt: Receipt = done.value
                return receipt
            if isinstance(step, _Sleep):
                await asyncio.sleep(step.seconds)
                reply = None
            elif batcher is not None:
                size = spec_size(step.channels, step.wire, binary=self._binary)
                outcome = await batcher.submit(step, len(step.channels), size)
                batcher = None
                if isinstance(outcome, _Undecided):
                    alone = await self._send_async(step)
                    reply = replace(alone, requests=alone.requests + outcome.requests)
                else:
                    reply = outcome
            else:
                reply = await self._send_async(step)

    def _steps(self, message: Message) -> _Steps:
        """The publish as a sequence of requests and pauses, shared by both paths.

        Each group of up to 100 channels gets its own retries. A retry re-sends
        the same message (same id) to the channels that failed with a retryable
        error; errors the SDK already re-sent to fallback hosts are not retried
        again. An auth failure stops the remaining groups.
        """
        wire = wire_message(message)
        delivered: set[str] = set()
        ids: list[str] = []
        failed: dict[str, PublishError] = {}
        requests = 0
        groups = chunks(message.channels)
        for number, group in enumerate(groups):
            pending: tuple[str, ...] = group
            delays = self.settings.retry.delays()
            while pending:
                path, body = request_for(pending, wire)
                reply = yield _Send(pending, path, body, wire)
                assert reply is not None
                requests += reply.requests
                ok, new_ids, errors = self._judge(pending, reply)
                delivered.update(ok)
                ids.extend(new_ids)
                auth = next((e for e in errors.values() if _is_auth(e)), None)
                if auth is not None and len(errors) == len(pending):
                    failed.update(errors)
                    for rest in groups[number + 1 :]:
                        failed.update(dict.fromkeys(rest, auth))
                    return self._finish(message, delivered, ids, failed, requests)
                again = tuple(c for c, e in errors.items() if e.retryable and not reply.failed_over)
                delay = next(delays, None) if again else None
                if delay is None:
                    failed.update(errors)
                    break
                failed.update({c: e for c, e in errors.items() if c not in again})
                first = errors[again[0]]
                log.debug(
                    "ably: retrying message %s to %d channel(s) in %.3f s after: %s",
                    message.id,
                    len(again),
                    delay,
                    first,
                )
                yield _Sleep(delay)
                pending = again
        return self._finish(message, delivered, ids, failed, requests)

    def _judge(
        self, channels: tuple[str, ...], reply: _Reply
    ) -> tuple[list[str], list[str], dict[str, PublishError]]:
        if reply.error is not None:
            return [], [], dict.fromkeys(channels, reply.error)
        answer = reply.answer
        assert answer is not None
        if answer.error is not None:
            status, code, text = answer.error
            error = request_error(self._scrub, channels, status, code, text)
            return [], [], dict.fromkeys(channels, error)
        errors: dict[str, PublishError] = {}
        by_cause: dict[tuple[int | None, int | None, str], list[str]] = {}
        for channel, cause in answer.failures.items():
            by_cause.setdefault(cause, []).append(channel)
        for (status, code, text), group in by_cause.items():
            error = request_error(self._scrub, group, status, code, text)
            errors.update(dict.fromkeys(group, error))
        return answer.delivered, answer.ids, errors

    def _finish(
        self,
        message: Message,
        delivered: set[str],
        ids: list[str],
        failed: dict[str, PublishError],
        requests: int,
    ) -> Receipt:
        if not failed:
            return Receipt(
                DRIVER, message.event, message.channels, message.id, tuple(ids), requests
            )
        ok = [c for c in message.channels if c in delivered and c not in failed]
        bad = [c for c in message.channels if c in failed]
        causes = list(dict.fromkeys(failed[c] for c in bad))
        first = causes[0]
        if len(causes) == 1 and not ok:
            text = str(first.args[0])
        else:
            head = f"{PREFIX}{len(bad)} of {len(message.channels)} channels"
            parts = [str(e.args[0]).removeprefix(PREFIX) for e in causes[:3]]
            if len(causes) > 3:
                parts.append(f"and {len(causes) - 3} more errors")
            text = f"{head}: " + " | ".join(parts)
        raise PublishError(
            text,
            driver=DRIVER,
            status=first.status,
            code=first.code,
            retryable=all(e.retryable for e in causes),
            delivered=ok,
            failed=bad,
        )

    # -- one request, sync and async ----------------------------------------------

    def _send_sync(self, step: _Send) -> _Reply:
        client = self._clients.sync_client()
        hosts = _hosts(client)
        try:
            response = client.request("POST", step.path, API_VERSION, body=step.body)
        except Exception as exc:
            return self._failed(step, exc, hosts)
        return self._answered(step, response, hosts)

    async def _send_async(self, step: _Send) -> _Reply:
        client = await self._clients.async_client()
        hosts = _hosts(client)
        try:
            response = await client.request("POST", step.path, API_VERSION, body=step.body)
        except Exception as exc:
            return self._failed(step, exc, hosts)
        return self._answered(step, response, hosts)

    def _answered(self, step: _Send, response: Any, hosts: Sequence[str]) -> _Reply:
        try:
            status = int(response.status_code)
            items = list(response.items)
        except Exception as exc:
            return _Reply(error=unreadable_answer(self._scrub, step.channels, exc))
        tried, failed_over = _tried(response, status, hosts)
        answer = read_answer(step.channels, status, items)
        return _Reply(answer=answer, requests=tried, failed_over=failed_over)

    def _failed(self, step: _Send, exc: Exception, hosts: Sequence[str]) -> _Reply:
        import httpx
        from ably.util.exceptions import AblyException

        tried = max(1, len(hosts))
        if isinstance(exc, httpx.TimeoutException):
            error = transport_error(self._scrub, step.channels, exc, timed_out=True)
        elif isinstance(exc, httpx.TransportError):
            error = transport_error(self._scrub, step.channels, exc, timed_out=False)
        elif isinstance(exc, AblyException):
            status = int_or_none(getattr(exc, "status_code", None))
            code = int_or_none(getattr(exc, "code", None))
            text = str(getattr(exc, "message", "") or "")
            error = request_error(self._scrub, step.channels, status, code, text)
            return _Reply(error=error, requests=1)
        elif isinstance(exc, (ValueError, KeyError)):
            error = unreadable_answer(self._scrub, step.channels, exc)
            return _Reply(error=error, requests=1)
        else:
            raise exc
        return _Reply(error=error, requests=tried, failed_over=len(hosts) > 1)

    # -- micro-batching -------------------------------------------------------------

    @property
    def _binary(self) -> bool:
        return self.settings.use_binary_protocol

    def _batcher(self) -> Batcher[_Send, _Outcome]:
        """This loop's batcher; those of closed loops are dropped."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            with self._lock:
                for dead in [other for other in self._batchers if other.is_closed()]:
                    del self._batchers[dead]
                batcher = self._batchers.setdefault(
                    loop, Batcher(self._send_batch, self.settings.batch_in_flight)
                )
        return batcher

    async def _send_batch(self, sends: list[_Send]) -> list[_Outcome]:
        """The first attempts of ``sends`` in one request, and what it says about each."""
        if len(sends) == 1:
            return [await self._send_async(sends[0])]  # alone: the usual request
        client = await self._clients.async_client()
        hosts = _hosts(client)
        body = [batch_spec(send.channels, send.wire) for send in sends]
        try:
            response = await client.request("POST", BATCH_PATH, API_VERSION, body=body)
        except Exception as exc:
            return [_shared(self._failed(send, exc, hosts)) for send in sends]
        try:
            status = int(response.status_code)
            items = list(response.items)
        except Exception:
            return [_Undecided() for _ in sends]
        tried, failed_over = _tried(response, status, hosts)
        answers = read_batch_answer([send.channels for send in sends], status, items)
        return [
            _Undecided(tried)
            if answer is None
            else _shared(_Reply(answer=answer, requests=tried, failed_over=failed_over))
            for answer in answers
        ]

    # -- lifecycle ----------------------------------------------------------------

    def _take_batchers(self) -> list[tuple[asyncio.AbstractEventLoop, Batcher[_Send, _Outcome]]]:
        with self._lock:
            batchers = list(self._batchers.items())
            self._batchers.clear()
        return batchers

    def close(self) -> None:
        """Close the SDK clients (idempotent); the next publish opens new ones.

        Publishes already queued in a micro-batcher are still sent (on a client
        opened again if need be): none is dropped or left waiting.
        """
        self._take_batchers()
        self._clients.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`; first waits for this loop's queued publishes."""
        running = asyncio.get_running_loop()
        for loop, batcher in self._take_batchers():
            if loop is running:
                await batcher.wait_idle()
        await self._clients.aclose()

    def __repr__(self) -> str:
        endpoint = self.settings.endpoint or "main"
        return f"<{type(self).__name__} driver={self.name!r} endpoint={endpoint!r}>"


def _is_auth(error: PublishError) -> bool:
    code = error.code if isinstance(error.code, int) else None
    return is_auth_failure(error.status, code)


def _shared(reply: _Reply) -> _Outcome:
    """A shared request's verdict on one publish, or undecided if it may be another's fault.

    Auth failures concern the key and retryable errors are retried anyway, so
    they count as the publish's first attempt; any other request-wide error
    (a 400, say) may come from another publish's spec.
    """
    if reply.error is not None:
        status, code, retry = reply.error.status, reply.error.code, reply.error.retryable
        code = code if isinstance(code, int) else None
    elif reply.answer is not None and reply.answer.error is not None:
        status, code, _ = reply.answer.error
        retry = retryable(status, code)
    else:
        return reply
    if retry or is_auth_failure(status, code):
        return reply
    return _Undecided(reply.requests)


def _tried(response: Any, status: int, hosts: Sequence[str]) -> tuple[int, bool]:
    """Requests one SDK call made (fallback hosts included) and whether it failed over."""
    tried = 1
    with contextlib.suppress(Exception):  # the host is only for counting requests
        host = response.response.url.host
        tried = list(hosts).index(host) + 1 if host in hosts else 1
    return tried, len(hosts) > 1 and 500 <= status <= 504


def _hosts(client: Any) -> list[str]:
    try:
        return [str(h) for h in client.http.get_hosts()]
    except Exception:  # only used to count requests
        return []


@hookimpl
def broadcasting_connect(name: str, options: Mapping[str, Any]) -> Driver | None:
    """Connect the ``ably`` driver (the ``broadcasting.drivers`` entry point)."""
    if name == BroadcastAblyDriver.name:
        return BroadcastAblyDriver.from_config(options)
    return None
