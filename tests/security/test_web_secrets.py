"""Issue 17, item 11 (the handler's side): a client's credentials stay hidden in tracebacks.

An Ably client sends its current ``token`` to the auth endpoint (in a JSON
body, a form or the query string). When a rule raises, the endpoint logs the
traceback at ERROR, and error trackers record the ``repr`` of every local of
every frame in it. The handler's frames held the token as text: the raw
``body`` and ``query``, the parsed ``extra`` dict, and (Django, Flask) the
framework's request, whose ``repr`` shows the query string; and the headers
(an ``Authorization`` the client's ``authHeaders`` set). Now none does, while
the logged traceback still ends at the rule's raising line.

The check runs at the moment the record is emitted, as an error tracker's
logging handler would, walking ``exc.__traceback__`` frame by frame.
"""

from __future__ import annotations

import dataclasses
import linecache
import logging
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import pytest
from web_support import (
    SECRET_DETAIL,
    WebClient,
    make_broadcast,
    open_client,
)

AUTH = "/broadcasting/auth"
ADA = {"X-User": "ada"}
TOKEN = "tok-5Yx.ably-current-token-never-in-a-traceback-Qe81"


def _reprs(value: Any, seen: set[int], depth: int = 0) -> Iterator[str]:
    """``repr(value)``, then those of what it holds (mappings, sequences, dataclasses).

    Roughly what an error tracker records of a local variable.
    """
    if id(value) in seen or depth > 8:
        return
    seen.add(id(value))
    try:
        yield repr(value)
    except Exception as exc:  # a repr that fails shows nothing
        yield f"<repr failed: {type(exc).__name__}>"
    inner: list[Any] = []
    if isinstance(value, Mapping):
        try:
            inner = [part for pair in value.items() for part in pair]
        except Exception:
            inner = []
    elif isinstance(value, (list, tuple, set, frozenset)):
        inner = list(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        # the fields its repr shows (a Secret's value is a field with repr=False)
        inner = [getattr(value, f.name, None) for f in dataclasses.fields(value) if f.repr]
    for item in inner:
        yield from _reprs(item, seen, depth + 1)


@dataclasses.dataclass
class Seen:
    """What an error tracker would have recorded from each ERROR record's traceback."""

    texts: list[str] = dataclasses.field(default_factory=list)
    last_frames: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    errors: list[BaseException] = dataclasses.field(default_factory=list)


class Tracker(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen = Seen()

    def emit(self, record: logging.LogRecord) -> None:
        if not record.exc_info or record.exc_info[1] is None:
            return
        self.seen.errors.append(record.exc_info[1])
        tb: TracebackType | None = record.exc_info[1].__traceback__
        seen: set[int] = set()
        last = None
        while tb is not None:
            for name, value in tb.tb_frame.f_locals.items():
                self.seen.texts.extend(f"{name}={text}" for text in _reprs(value, seen))
            last = tb
            tb = tb.tb_next
        assert last is not None
        code = last.tb_frame.f_code
        line = linecache.getline(code.co_filename, last.tb_lineno).strip()
        self.seen.last_frames.append((code.co_name, line))


@pytest.fixture
def tracker() -> Iterator[Seen]:
    handler = Tracker()
    logger = logging.getLogger("broadcasting")
    logger.addHandler(handler)
    try:
        yield handler.seen
    finally:
        logger.removeHandler(handler)


FIELDS = {"socket_id": "1.2", "channel_name": "private-boom.1", "token": TOKEN}


def _send(web: WebClient, how: str) -> Any:
    if how == "json":
        return web.post(AUTH, json_body=FIELDS, headers=ADA)
    if how == "form":
        return web.post(AUTH, form=FIELDS, headers=ADA)
    if how == "query":
        return web.request("GET", AUTH, query=FIELDS, headers=ADA)
    if how == "query-with-a-form":  # the token in the query string, the rest in the body
        form = {"socket_id": "1.2", "channel_name": "private-boom.1"}
        return web.post(AUTH, form=form, query={"token": TOKEN}, headers=ADA)
    if how == "header":  # an Ably client's authHeaders, say
        form = {"socket_id": "1.2", "channel_name": "private-boom.1"}
        return web.post(AUTH, form=form, headers={**ADA, "Authorization": f"Bearer {TOKEN}"})
    raise AssertionError(how)


def _check(reply: Any, seen: Seen) -> None:
    assert reply.status == 500, reply.text
    [error] = seen.errors
    assert isinstance(error, RuntimeError) and str(error) == SECRET_DETAIL
    # the traceback is whole: it ends at the rule's raising line
    assert seen.last_frames == [("boom", "raise RuntimeError(SECRET_DETAIL)")]
    leaked = [text[:200] for text in seen.texts if TOKEN in text]
    assert leaked == []
    assert seen.texts  # the walk did see the frames' locals


@pytest.mark.parametrize("how", ["json", "form", "query", "query-with-a-form", "header"])
def test_no_frame_of_a_raising_rules_traceback_holds_the_clients_token(
    web: WebClient, how: str, tracker: Seen
) -> None:
    _check(_send(web, how), tracker)


@pytest.fixture(params=["handler", "starlette", "django", "flask"])
def ably_web(request: pytest.FixtureRequest) -> Iterator[WebClient]:
    broadcast = make_broadcast(driver="ably")
    try:
        with open_client(request.param, broadcast) as client:
            yield client
    finally:
        broadcast.close()


@pytest.mark.parametrize("how", ["json", "form", "query"])
def test_an_ably_token_the_driver_signed_is_in_no_frame_either(
    ably_web: WebClient, how: str, tracker: Seen
) -> None:
    """A real connection token of the Ably driver, as its clients send it back."""
    first = ably_web.post(AUTH, json_body={}, headers=ADA)
    assert first.status == 200, first.text
    token = first.json["token"]
    fields = {"channel_name": "private:boom.1", "token": token}
    if how == "json":
        reply = ably_web.post(AUTH, json_body=fields, headers=ADA)
    elif how == "form":
        reply = ably_web.post(AUTH, form=fields, headers=ADA)
    else:
        reply = ably_web.request("GET", AUTH, query=fields, headers=ADA)
    assert reply.status == 500, reply.text
    assert tracker.last_frames == [("boom", "raise RuntimeError(SECRET_DETAIL)")]
    # the JWT's signature part is what makes it a credential; none of it shows
    assert [t[:200] for t in tracker.texts if token.rsplit(".", 1)[1] in t] == []
