"""What goes over the wire to Ably, and reading what comes back.

One publish is one Ably message with a fixed id, ``<Message.id>:0``, sent
unchanged on every retry: Ably's idempotent publishing then delivers it once
per channel however often it is re-sent (within Ably's 2-minute window).

``data`` is :attr:`Message.text` exactly as the core measured it. A str is sent
as-is with no ``encoding``; a dict or list is sent as its compact JSON text with
``encoding: "json"``, which is how Ably marks JSON data, so subscribers' SDKs
hand it back as an object. (The SDK's own ``channel.publish`` would re-encode
a dict with ``json.dumps`` defaults: spaces and ``\\uXXXX`` escapes, bigger than
what was measured.)

One channel goes to ``POST /channels/{name}/messages``; two or more go to the
batch endpoint ``POST /messages`` in specs of at most 100 channels. The async
micro-batcher sends several publishes in one ``POST /messages`` as a list of
specs, one spec per publish, and reads the answer back per spec
(:func:`read_batch_answer`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from broadcasting import Message
from broadcasting_ably._errors import int_or_none

#: The Ably REST API version sent with every request (``X-Ably-Version``).
API_VERSION = "3"
#: Ably's limit of channels per batch spec.
MAX_CHANNELS_PER_REQUEST = 100
BATCH_PATH = "/messages"
#: Ably's code for "a batch request had failures"; the details are per channel.
BATCH_ERROR = 40020
#: What the micro-batcher puts in one request: Ably takes bodies up to 2 MiB; the
#: sizes it adds up are upper bounds (msgpack) or exact (JSON), this leaves a margin.
MAX_BATCH_BODY_BYTES = 2 * 1024 * 1024 - 64 * 1024


def wire_message(message: Message) -> dict[str, Any]:
    """The Ably message for ``message``: fixed id, event as name, text as data."""
    wire: dict[str, Any] = {"id": f"{message.id}:0", "name": message.event, "data": message.text}
    if not isinstance(message.data, str):
        wire["encoding"] = "json"
    return wire


def payload_size(message: Message, client_id: str | None) -> int:
    """Bytes Ably counts against its message size limit: data, name and clientId."""
    size = len(message.text.encode("utf-8")) + len(message.event.encode("utf-8"))
    if client_id:
        size += len(client_id.encode("utf-8"))
    return size


def chunks(channels: Sequence[str]) -> list[tuple[str, ...]]:
    """``channels`` in groups of at most :data:`MAX_CHANNELS_PER_REQUEST`."""
    step = MAX_CHANNELS_PER_REQUEST
    return [tuple(channels[i : i + step]) for i in range(0, len(channels), step)]


def channel_path(channel: str) -> str:
    """The REST path of one channel's messages (the name fully percent-encoded)."""
    return f"/channels/{quote(channel, safe='')}/messages"


def request_for(channels: Sequence[str], wire: dict[str, Any]) -> tuple[str, Any]:
    """The path and body that publish ``wire`` to ``channels``."""
    if len(channels) == 1:
        return channel_path(channels[0]), wire
    return BATCH_PATH, {"channels": list(channels), "messages": [wire]}


def batch_spec(channels: Sequence[str], wire: dict[str, Any]) -> dict[str, Any]:
    """One spec of a ``POST /messages`` body: ``wire`` to ``channels``."""
    return {"channels": list(channels), "messages": [wire]}


def spec_size(channels: Sequence[str], wire: dict[str, Any], *, binary: bool) -> int:
    """Bytes :func:`batch_spec` takes in a request body (an upper bound for msgpack).

    JSON is measured as the SDK writes it (``json.dumps``, ASCII escapes); msgpack
    adds at most 5 bytes of header to each string, plus the fixed keys.
    """
    if not binary:
        return len(json.dumps(batch_spec(channels, wire), separators=(",", ":"))) + 1
    strings = [*channels, *(v for v in wire.values() if isinstance(v, str))]
    return 64 + sum(len(s.encode("utf-8")) + 5 for s in strings)


@dataclass
class Answer:
    """What one request's answer says happened to each channel."""

    delivered: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    #: channel -> (status, code, message) for channels Ably refused
    failures: dict[str, tuple[int | None, int | None, str]] = field(default_factory=dict)
    #: (status, code, message) when the request failed as a whole
    error: tuple[int | None, int | None, str] | None = None


def _entries(obj: Any) -> Iterator[dict[str, Any]]:
    """Per-channel results in any of Ably's batch answer shapes.

    The legacy shape is a list of ``{channel, messageId}`` / ``{channel, error}``
    (inside ``batchResponse`` when some failed); newer API versions answer
    ``BatchResult`` objects ``{successCount, failureCount, results: [...]}``.
    A list of specs gives a list of either.
    """
    if isinstance(obj, list):
        for item in obj:
            yield from _entries(item)
    elif isinstance(obj, dict):
        if isinstance(obj.get("results"), list):
            yield from _entries(obj["results"])
        elif "channel" in obj or "error" in obj or "messageId" in obj:
            yield obj


def _error_fields(error: Any, status: int | None = None) -> tuple[int | None, int | None, str]:
    if not isinstance(error, dict):
        return status, None, ""
    code = int_or_none(error.get("code"))
    status = int_or_none(error.get("statusCode")) or status
    message = error.get("message")
    return status, code, message if isinstance(message, str) else ""


def _match(channels: Sequence[str], entries: list[dict[str, Any]]) -> tuple[Answer, list[str]]:
    """What ``entries`` say about ``channels``, and the channels they do not mention."""
    answer = Answer()
    seen: set[str] = set()
    wanted = set(channels)  # a tuple of 100 names would make this loop quadratic
    for entry in entries:
        channel = entry.get("channel")
        if not isinstance(channel, str) and len(channels) == 1:
            channel = channels[0]  # a single-channel answer may omit the name
        if not isinstance(channel, str) or channel not in wanted or channel in seen:
            continue
        seen.add(channel)
        if "error" in entry:
            answer.failures[channel] = _error_fields(entry["error"])
            continue
        answer.delivered.append(channel)
        serials = entry.get("serials")
        if isinstance(serials, list) and any(isinstance(s, str) for s in serials):
            answer.ids.extend(s for s in serials if isinstance(s, str))
        elif isinstance(entry.get("messageId"), str):
            answer.ids.append(entry["messageId"])
    return answer, [channel for channel in channels if channel not in seen]


def _per_channel(channels: Sequence[str], entries: list[dict[str, Any]]) -> Answer:
    answer, missing = _match(channels, entries)
    for channel in missing:  # nothing lost silently: unacknowledged means failed
        answer.failures[channel] = (None, None, "not acknowledged in Ably's answer")
    return answer


def read_answer(channels: Sequence[str], status: int, items: list[Any]) -> Answer:
    """Interpret a response to a publish of ``channels`` (``items`` as the SDK decoded it)."""
    answer = Answer()
    if 200 <= status < 300:
        entries = list(_entries(items))
        if not entries:  # acknowledged without per-channel detail
            answer.delivered.extend(channels)
            return answer
        return _per_channel(channels, entries)
    body = items[0] if len(items) == 1 and isinstance(items[0], dict) else {}
    _, code, message = _error_fields(body.get("error"), status)
    if code == BATCH_ERROR and "batchResponse" in body:
        return _per_channel(channels, list(_entries(body["batchResponse"])))
    answer.error = (status, code, message or f"HTTP {status}")
    return answer


def _per_spec(specs: Sequence[Sequence[str]], obj: Any) -> list[list[dict[str, Any]]] | None:
    """The entries of each spec in the answer to a list of specs; None if it does not say.

    Ably answers a list of specs with a list of per-spec results (a list of
    ``{channel, ...}`` entries or a ``BatchResult``); a flat list of entries is
    accepted only when it names exactly the specs' channels, in order.
    """
    if (
        isinstance(obj, list)
        and len(obj) == len(specs)
        and all(
            isinstance(item, list)
            or (isinstance(item, dict) and isinstance(item.get("results"), list))
            for item in obj
        )
    ):
        return [list(_entries(item)) for item in obj]
    flat = list(_entries(obj))
    expected = [channel for spec in specs for channel in spec]
    if len(flat) != len(expected) or any(
        entry.get("channel") != channel for entry, channel in zip(flat, expected, strict=True)
    ):
        return None
    out: list[list[dict[str, Any]]] = []
    start = 0
    for spec in specs:
        out.append(flat[start : start + len(spec)])
        start += len(spec)
    return out


def read_batch_answer(
    specs: Sequence[Sequence[str]], status: int, items: list[Any]
) -> list[Answer | None]:
    """Interpret the answer to one ``POST /messages`` of several specs, per spec.

    A request-wide error is every spec's answer. ``None`` stands for a spec the
    answer says nothing certain about (an unexpected shape, a channel it does
    not mention): its publish is then sent again on its own, with the same id.
    """
    if 200 <= status < 300:
        if not items:  # acknowledged without per-channel detail
            return [Answer(delivered=list(spec)) for spec in specs]
        found: Any = items
    else:
        body = items[0] if len(items) == 1 and isinstance(items[0], dict) else {}
        _, code, message = _error_fields(body.get("error"), status)
        if code != BATCH_ERROR or "batchResponse" not in body:
            error = (status, code, message or f"HTTP {status}")
            return [Answer(error=error) for _ in specs]
        found = body["batchResponse"]
    per_spec = _per_spec(specs, found)
    if per_spec is None:
        return [None for _ in specs]
    answers: list[Answer | None] = []
    for spec, entries in zip(specs, per_spec, strict=True):
        answer, missing = _match(spec, entries)
        answers.append(None if missing else answer)
    return answers
