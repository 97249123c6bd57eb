"""What goes over the wire to Ably, and reading what comes back."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from broadcasting.plugin import Message, Part
from broadcasting_ably._errors import Fault, fault

#: The Ably REST API version sent with every request (``X-Ably-Version``).
API_VERSION = "3"
#: Ably's limit of channels per request (one spec, or all the specs of a list).
MAX_CHANNELS_PER_REQUEST = 100
BATCH_PATH = "/messages"
#: Ably's code for "a batch request had failures"; the details are per channel.
BATCH_ERROR = 40020
#: Ably takes bodies up to 2 MiB; :func:`spec_size` is exact (JSON) or an upper bound: a margin.
MAX_BATCH_BODY_BYTES = 2 * 1024 * 1024 - 64 * 1024


def wire_message(message: Message) -> dict[str, Any]:
    """The Ably message: a fixed id (Ably drops a re-sent one), event as name, text as data."""
    wire: dict[str, Any] = {"id": f"{message.id}:0", "name": message.event, "data": message.text}
    if not isinstance(message.data, str):
        # subscribers decode it (the SDK's publish would re-encode the text, larger)
        wire["encoding"] = "json"
    return wire


def decoded(entry: Mapping[str, Any]) -> Any:
    """A message's or presence message's data, with ``encoding: json`` undone."""
    value = entry.get("data")
    if entry.get("encoding") == "json" and isinstance(value, str):
        with contextlib.suppress(ValueError, RecursionError):
            return json.loads(value)
    return value


def payload_size(message: Message, client_id: str | None) -> int:
    size = len(message.text.encode("utf-8")) + len(message.event.encode("utf-8"))
    return size + len(client_id.encode("utf-8")) if client_id else size


def batch_spec(channels: Sequence[str], wire: dict[str, Any]) -> dict[str, Any]:
    return {"channels": list(channels), "messages": [wire]}


def request_for(parts: Sequence[Part]) -> tuple[str, Any]:
    """The path and body of one request carrying ``parts``."""
    if len(parts) > 1:
        return BATCH_PATH, [batch_spec(p.channels, wire_message(p.message)) for p in parts]
    (part,) = parts
    if len(part.channels) == 1:
        return f"/channels/{quote(part.channels[0], safe='')}/messages", wire_message(part.message)
    return BATCH_PATH, batch_spec(part.channels, wire_message(part.message))


def spec_size(channels: Sequence[str], wire: dict[str, Any], *, binary: bool) -> int:
    """Bytes :func:`batch_spec` takes in a request body (an upper bound for msgpack)."""
    if not binary:  # as the SDK writes it (json.dumps, ASCII escapes)
        return len(json.dumps(batch_spec(channels, wire), separators=(",", ":"))) + 1
    # msgpack adds at most 5 bytes of header to each string, plus the fixed keys
    strings = [*channels, *(v for v in wire.values() if isinstance(v, str))]
    return 64 + sum(len(s.encode("utf-8")) + 5 for s in strings)


@dataclass
class Reading:
    """What Ably's answer says about the channels of one part."""

    ids: list[str] = field(default_factory=list)
    failures: dict[str, Fault] = field(default_factory=dict)  # refused, with why
    missing: list[str] = field(default_factory=list)  # neither acknowledged nor refused


def _entries(obj: Any) -> Iterator[dict[str, Any]]:
    """Per-channel results in any of Ably's answer shapes (or a list of them, per spec)."""
    # legacy: a list of {channel, messageId} / {channel, error} (in batchResponse when
    # some failed); newer API versions: BatchResult {successCount, failureCount, results}
    if isinstance(obj, list):
        for item in obj:
            yield from _entries(item)
    elif isinstance(obj, dict):
        if isinstance(obj.get("results"), list):
            yield from _entries(obj["results"])
        elif any(key in obj for key in ("channel", "error", "messageId", "serials")):
            yield obj


def _read(channels: Sequence[str], entries: list[dict[str, Any]]) -> Reading:
    reading = Reading()
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
            reading.failures[channel] = fault(entry["error"])
            continue
        serials = entry.get("serials")
        if isinstance(serials, list) and any(isinstance(s, str) for s in serials):
            reading.ids.extend(s for s in serials if isinstance(s, str))
        elif isinstance(entry.get("messageId"), str):
            reading.ids.append(entry["messageId"])
    reading.missing = [channel for channel in channels if channel not in seen]
    return reading


def _per_spec(specs: Sequence[Sequence[str]], obj: Any) -> list[list[dict[str, Any]]] | None:
    """The entries of each spec in the answer to a list of specs; None if it does not say."""
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
    # a flat list of entries only when it names exactly the specs' channels, in order
    flat = list(_entries(obj))
    expected = [channel for spec in specs for channel in spec]
    if len(flat) != len(expected) or any(
        entry.get("channel") != channel for entry, channel in zip(flat, expected, strict=True)
    ):
        return None
    ends = itertools.accumulate(len(spec) for spec in specs)
    return [flat[end - len(spec) : end] for spec, end in zip(specs, ends, strict=True)]


def read_answer(
    parts: Sequence[Sequence[str]], status: int, items: list[Any]
) -> Fault | list[Reading | None]:
    """Ably's answer (as the SDK decoded it) to one request carrying ``parts`` (their channels).

    The request-wide fault, or one :class:`Reading` per part (``None``: the answer
    cannot be matched to the part).
    """
    if 200 <= status < 300:
        if not items or (len(parts) == 1 and next(_entries(items), None) is None):
            return [Reading() for _ in parts]  # acknowledged without per-channel detail
        found: Any = items
    else:
        body = items[0] if len(items) == 1 and isinstance(items[0], dict) else {}
        _, code, message = fault(body.get("error"))
        if code != BATCH_ERROR or "batchResponse" not in body:
            return status, code, message or f"HTTP {status}"
        found = body["batchResponse"]
    if len(parts) == 1:
        return [_read(parts[0], list(_entries(found)))]
    per_spec = _per_spec(parts, found)
    if per_spec is None:
        return [None for _ in parts]
    return [_read(part, entries) for part, entries in zip(parts, per_spec, strict=True)]
