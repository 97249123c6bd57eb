"""What goes over the wire to Ably and what comes back: outcomes, and errors scrubbed of the key."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import ssl
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union
from urllib.parse import quote

from broadcasting import PublishError, QueryError
from broadcasting.plugin import ErrorKind, Message, Part, Secret
from broadcasting_ably._settings import DRIVER

API_VERSION = "3"  #: of Ably's REST API, sent with every request (``X-Ably-Version``)
MAX_CHANNELS_PER_REQUEST = 100  #: Ably's limit: one spec, or all the specs of a list
BATCH_PATH = "/messages"
BATCH_ERROR = 40020  #: Ably's "a batch request had failures" (the details are per channel)
#: A token error no new token mends: its signature does not verify (the key's secret is wrong).
BAD_SIGNATURE = 40144
#: Ably takes bodies up to 2 MiB; :func:`spec_size` is exact (JSON) or an upper bound: a margin.
MAX_BATCH_BODY_BYTES = 2 * 1024 * 1024 - 64 * 1024

E = TypeVar("E", PublishError, QueryError)
Fault = tuple[Union[int, None], Union[int, None], str]  #: status, code, message Ably answered

_URL_PROBLEM = "the request's URL is invalid (a channel name this long cannot be in one)"
_KEY_HINT = "check the API key in the 'secret' (or 'key') option"
_HINTS = {
    40101: _KEY_HINT,
    40144: _KEY_HINT,  # the driver's tokens are signed with the key: a wrong secret breaks them
    40160: "check the key's capabilities in your Ably dashboard",
    40009: "lower max_payload_bytes to your Ably plan's message size limit",
}


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


def batch_spec(channels: Sequence[str], wire: dict[str, Any]) -> dict[str, Any]:
    return {"channels": list(channels), "messages": [wire]}


def request_for(parts: Sequence[Part]) -> tuple[str, Any]:
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
    failures: dict[str, Fault] = field(default_factory=dict)  # an error, with why
    missing: list[str] = field(default_factory=list)  # neither acknowledged nor refused


def _entries(obj: Any) -> Iterator[dict[str, Any]]:
    """Per-channel results in any of Ably's answer shapes (or a list of them, per spec)."""
    # legacy: a list of {channel, messageId} / {channel, error} (in batchResponse when
    # some failed); newer API versions: BatchResult {successCount, failureCount, results}
    if (results := _results(obj)) is not None:
        for item in results:
            yield from _entries(item)
    elif isinstance(obj, dict) and obj.keys() & {"channel", "error", "messageId", "serials"}:
        yield obj


def _results(obj: Any) -> list[Any] | None:
    """A list of entries, or a BatchResult's (``None``: neither)."""
    found = obj.get("results") if isinstance(obj, dict) else obj
    return found if isinstance(found, list) else None


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
        if entry.get("error") is not None:
            reading.failures[channel] = fault(entry["error"])
        elif (ids := _acknowledged(entry)) is not None:
            reading.ids.extend(ids)
        else:  # `{"channel": ...}` alone says nothing about the message
            continue
        seen.add(channel)
    reading.missing = [channel for channel in channels if channel not in seen]
    return reading


def _acknowledged(entry: Mapping[str, Any]) -> list[str] | None:
    """The ids an acknowledgement gives (its serials, else its message id), ``None`` if the
    entry is none: Ably acknowledges a channel with ``messageId`` (API versions up to 3, and
    batch results) or ``serials`` (newer versions; a serial is null for a conflated message)."""
    serials = entry.get("serials")
    message_id = entry.get("messageId")
    if (
        isinstance(serials, list)
        and serials
        and all(s is None or isinstance(s, str) for s in serials)
    ):
        strings = [s for s in serials if isinstance(s, str)]
        return strings or ([message_id] if isinstance(message_id, str) and message_id else [])
    if isinstance(message_id, str) and message_id:
        return [message_id]
    return None


def _per_spec(specs: Sequence[Sequence[str]], obj: Any) -> list[list[dict[str, Any]]] | None:
    """The entries of each spec in the answer to a list of specs; None if it does not say."""
    if isinstance(obj, list) and len(obj) == len(specs) and None not in map(_results, obj):
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


def is_token_error(code: object) -> bool:
    """Ably refused the request's token (expired, revoked, invalid): 40140-40149, as the
    ``ably`` SDK reads it (it re-authorizes and re-sends the request once)."""
    return isinstance(code, int) and 40140 <= code < 40150


def answer_items(response: Any) -> list[Any]:
    """The items of the SDK's ``Response`` to a publish, as :func:`read_answer` takes them:
    none for no content (with or without a ``Content-Type``), else a list's elements or the
    one value. ``{}`` is one item, one channel's empty acknowledgement; ``[]``, ``[{}]``,
    ``null``, ``0``, ``false`` and ``""`` are one item too, which acknowledges nothing."""
    if not response.content:
        return []
    body = response.to_native()
    return body if isinstance(body, list) and any(item != {} for item in body) else [body]


def read_answer(
    parts: Sequence[Sequence[str]], status: int, items: list[Any]
) -> Fault | list[Reading | None]:
    """Ably's answer to one request carrying ``parts`` (their channels): the request-wide
    fault, or a :class:`Reading` per part (``None``: the answer cannot be matched to it).
    A 2xx acknowledges only the channels it gives a message id or serials (an unrecognised
    body acknowledges none: they are missing, so *unknown*); but a 2xx with no content
    (an empty body, ``{}``) to one channel's publish is Ably's own acknowledgement (the SDK
    reads it so: not every API version puts the message id in it)."""
    if 200 <= status < 300:
        if len(parts) == 1 and len(parts[0]) == 1 and all(item == {} for item in items):
            return [Reading()]
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


# -- errors: Ably's answers and the SDK's exceptions, every text scrubbed of the key
def is_server_error(status: int | None, code: int | None) -> bool:
    """Ably failed, and may have processed the request."""
    return (status or 0) >= 500 or 50000 <= (code or 0) < 60000


def is_refusal(status: int | None, code: int | None) -> bool:
    """Ably refused, certainly without processing: a 4xx status or a 4xxxx code (and no
    sign of its own failure). An error without either proves nothing."""
    if is_server_error(status, code):
        return False
    return 400 <= (status or 0) < 500 or 40000 <= (code or 0) < 50000


def _judged(status: int | None, code: int | None) -> tuple[ErrorKind | None, bool]:
    """The kind Ably's code means (``None``: the status says), and whether a retry may succeed."""
    limit = status == 429 or 42910 <= (code or 0) <= 42929
    retry = limit or is_server_error(status, code) or status in (408, 425)
    # Ably answers a capability refusal (4016x) with HTTP 401, which alone reads as bad credentials
    if 40160 <= (code or 0) < 40170 or 40300 <= (code or 0) < 40400:
        return "permission", retry
    if limit:
        return "limit", retry
    if is_server_error(status, code):
        return "unavailable", retry
    return ("auth" if 40100 <= (code or 0) < 40200 else None), retry


class Scrubber:
    """Removes every form of the key from a text (key, secret, Basic credentials)."""

    def __init__(self, key: Secret) -> None:
        raw = key.reveal()
        basic = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        # Secrets too: not even vars() of the driver's attributes shows them
        forms = {raw, raw.split(":", 1)[1], basic}
        self._needles = [Secret(n) for n in sorted(forms, key=len, reverse=True)]

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            text = text.replace(needle.reveal(), "********")
        return text


def int_or_none(value: Any) -> int | None:
    """Ably codes and statuses as ints (they may come as strings or be missing)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def fault(error: Any) -> Fault:
    if not isinstance(error, Mapping):
        return None, None, error if isinstance(error, str) else ""
    message = error.get("message")
    status, code = int_or_none(error.get("statusCode")), int_or_none(error.get("code"))
    return status, code, message if isinstance(message, str) else ""


def sdk_fault(exc: Any) -> Fault:
    status, code = getattr(exc, "status_code", None), getattr(exc, "code", None)
    return int_or_none(status), int_or_none(code), str(getattr(exc, "message", "") or "")


def refusal(error: type[E], scrub: Scrubber, what: str, fault: Fault, **more: Any) -> E:
    """An error Ably answered: ``what`` (a sentence's start), Ably's message and a hint."""
    status, code, message = fault
    text = message.strip() or "no message"
    if hint := _HINTS.get(code or 0):
        text += f"; {hint}"
    said = ([str(code)] if code else []) + ([f"HTTP {status}"] if status else [])
    text = scrub(f"{what}: {text} ({', '.join(said)})" if said else f"{what}: {text}")
    kind, retry = _judged(status, code)
    return error(text, driver=DRIVER, kind=kind, status=status, code=code, retryable=retry, **more)


def ably_error(scrub: Scrubber, what: str, fault: Fault, *, failed_over: bool) -> PublishError:
    """An error Ably answered for a publish; ``failed_over``: an earlier host may have
    processed it. Only a 4xx status or code is a certain refusal: a 5xx may have been
    processed, and an error with neither (a 2xx's, say) proves nothing either way."""
    status, code, message = fault
    if is_refusal(status, code) or is_server_error(status, code):
        maybe = failed_over or is_server_error(status, code)
        start = f"Ably did not accept the publish to {what}"
        return refusal(PublishError, scrub, start, fault, maybe_delivered=maybe)
    said = [message.strip() or "no message"] + ([str(code)] if code else [])
    said += [f"HTTP {status}"] if status else []
    text = (
        f"Publishing to {what}: Ably's answer holds an error without a 4xx or 5xx status "
        f"or code ({', '.join(said)}); it may have been delivered"
    )
    # kind "other", as for an unreadable answer: re-sending is safe, Ably drops a re-sent id
    return PublishError(
        scrub(text),
        driver=DRIVER,
        kind="other",
        status=status,
        code=code,
        retryable=True,
        maybe_delivered=True,
    )


def _maybe_delivered(text: str) -> PublishError:
    # kind "other": no status says whose fault it is; safe to re-send, Ably drops a re-sent id
    return PublishError(text, driver=DRIVER, kind="other", retryable=True, maybe_delivered=True)


def closed_under(what: str, *, maybe: bool) -> PublishError:
    """A publish whose client the driver's ``close()`` closed under it (from another thread,
    or ``aclose()``): httpx refused to send on it. ``maybe``: a request to an earlier host went
    out, and may have delivered it. Retryable: the driver makes a new client."""
    text = f"Publishing to {what}: the driver was closed before the request went out"
    text += "; one to an earlier host may have delivered it" if maybe else " (not sent)"
    return PublishError(text, driver=DRIVER, retryable=True, maybe_delivered=maybe)


def unreadable_answer(scrub: Scrubber, what: str, exc: BaseException) -> PublishError:
    """An answer the SDK could not decode (a proxy's HTML page, say)."""
    text = f"Publishing to {what}: the answer could not be read ({type(exc).__name__}: {exc})"
    return _maybe_delivered(scrub(f"{text}; it may or may not have been delivered"))


def not_mentioned(channels: Sequence[str], status: int) -> PublishError:
    """Channels a 2xx (or 40020) answer neither acknowledges nor refuses."""
    said = f"Ably's answer (HTTP {status}) holds no message id, serial or error for it"
    return _maybe_delivered(
        f"Publishing to {channels_text(channels)}: {said}; it may have been delivered"
    )


def _unreadable(exc: Exception) -> bool:
    """Whether ``exc`` is an answer that came but could not be read: a body the SDK could not
    decode (a proxy's HTML page), one that is not what its Content-Encoding says (httpx's
    DecodingError), or JSON nested deeper than Python parses."""
    import httpx

    return isinstance(exc, (ValueError, KeyError, RecursionError, httpx.DecodingError))


def publish_failure(scrub: Scrubber, what: str, exc: Exception, tried: int) -> PublishError:
    """The error of a publish the SDK raised for (other exceptions propagate)."""
    import httpx
    from ably.util.exceptions import AblyException

    if isinstance(exc, AblyException):
        return ably_error(scrub, what, sdk_fault(exc), failed_over=tried > 1)
    if isinstance(exc, httpx.InvalidURL):  # refused by httpx before anything went out
        text = scrub(f"Publishing to {what} failed: not sent, {_URL_PROBLEM} ({exc})")
        return PublishError(text, driver=DRIVER, kind="invalid", maybe_delivered=False)
    if _unreadable(exc):
        return unreadable_answer(scrub, what, exc)
    if not isinstance(exc, httpx.TransportError):
        raise exc
    detail = f"{type(exc).__name__}: {scrub(str(exc)) or 'no detail'}"
    # only a connection never made, on the only host tried, certainly did not deliver
    unconnected = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
    never_sent = tried <= 1 and isinstance(exc, unconnected)
    if never_sent:
        text = f"Publishing to {what} failed: could not connect to Ably ({detail})"
    elif isinstance(exc, httpx.TimeoutException):
        text = f"Publishing to {what} timed out ({detail}); Ably may have received it"
    else:
        text = f"Publishing to {what} failed before Ably answered ({detail}); it may have arrived"
    return PublishError(text, driver=DRIVER, retryable=True, maybe_delivered=not never_sent)


def query_failure(scrub: Scrubber, what: str, endpoint: str, exc: Exception) -> QueryError:
    """The error of a query the SDK raised for (other exceptions propagate)."""
    import httpx
    from ably.util.exceptions import AblyException

    detail = f"{type(exc).__name__}: {scrub(str(exc)) or 'no detail'}"
    if isinstance(exc, AblyException):
        return refusal(QueryError, scrub, f"Ably refused {what}", sdk_fault(exc))
    if isinstance(exc, httpx.InvalidURL):  # refused by httpx before anything went out
        return QueryError(
            f"{what} was not asked: {_URL_PROBLEM} ({detail})", driver=DRIVER, kind="invalid"
        )
    if isinstance(exc, httpx.TransportError) and _caused_by(exc, ssl.SSLCertVerificationError):
        text = f"the TLS certificate of Ably ({endpoint}) could not be verified ({detail})"
        return QueryError(text, driver=DRIVER)
    if isinstance(exc, httpx.TimeoutException):
        text = f"no answer from Ably ({endpoint}) in time for {what} ({detail})"
        return QueryError(text, driver=DRIVER, retryable=True)
    if isinstance(exc, httpx.TransportError):
        text = f"could not reach Ably ({endpoint}) for {what}: {detail}"
        return QueryError(text, driver=DRIVER, retryable=True)
    if _unreadable(exc):
        text = f"Ably's answer to {what} could not be read ({type(exc).__name__})"
        return QueryError(text, driver=DRIVER, kind="other", retryable=True)
    raise exc


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def channels_text(channels: Sequence[str]) -> str:
    """``channel 'a'`` or ``3 channels ('a', 'b', 'c')`` for an error message."""
    if len(channels) == 1:
        return f"channel {channels[0]!r}"
    shown = ", ".join(repr(c) for c in channels[:5])
    more = f" and {len(channels) - 5} more" if len(channels) > 5 else ""
    return f"{len(channels)} channels ({shown}{more})"
