"""The linear multipart reader of 28c2c7d, attacked on every framework (review h4).

A parameter's name is case-insensitive (RFC 2045, 5.1), and the reader lower-cases the
names it parses, but a substring check for ``boundary=`` ran first: a ``Boundary=`` a client
sent was answered "the multipart body has no boundary". What held is pinned beside it: a
field given twice, in the body or in the query and the body, never lets the rule judge one
channel and the driver sign another.
"""

from __future__ import annotations

import pytest
from web_support import WebClient

ADA = {"X-User": "ada"}  # owns orders 1 and 2
AUTH = "/broadcasting/auth"


def _multipart(*fields: tuple[str, str], boundary: str = "h4-B0undary") -> bytes:
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    )
    return f"{parts}--{boundary}--\r\n".encode()


@pytest.mark.parametrize("spelling", ["Boundary", "BOUNDARY", "boundary"])
def test_the_boundary_parameter_is_named_in_any_case(web: WebClient, spelling: str) -> None:
    body = _multipart(("socket_id", "1.2"), ("channel_name", "private-orders.1"))
    content_type = f"multipart/form-data; {spelling}=h4-B0undary"
    reply = web.post(AUTH, content=body, content_type=content_type, headers=ADA)
    assert reply.status == 200, reply.text  # before: 400, "the multipart body has no boundary"
    assert web.memory.verify(reply.json, socket_id="1.2", channel="private-orders.1")


def test_a_content_type_with_no_boundary_is_still_a_400(web: WebClient) -> None:
    body = _multipart(("socket_id", "1.2"), ("channel_name", "private-orders.1"))
    for content_type in ("multipart/form-data", "multipart/form-data; charset=utf-8"):
        reply = web.post(AUTH, content=body, content_type=content_type, headers=ADA)
        assert reply.status == 400, reply.text
        assert reply.message == "the multipart body has no boundary"


def test_a_channel_name_given_twice_in_the_body_is_refused(web: WebClient) -> None:
    fields = [("socket_id", "1.2"), ("channel_name", "private-orders.3")]
    body = _multipart(*fields, ("channel_name", "private-orders.1"))
    reply = web.post(
        AUTH, content=body, content_type="multipart/form-data; boundary=h4-B0undary", headers=ADA
    )
    assert reply.status == 400, reply.text
    assert reply.message == "channel_name is given twice"


@pytest.mark.parametrize(
    ("in_query", "in_body", "status"),
    [("private-orders.3", "private-orders.1", 200), ("private-orders.1", "private-orders.3", 403)],
)
def test_the_body_s_channel_is_the_one_judged_and_signed(
    web: WebClient, in_query: str, in_body: str, status: int
) -> None:
    body = _multipart(("socket_id", "1.2"), ("channel_name", in_body))
    reply = web.post(
        AUTH,
        content=body,
        content_type="multipart/form-data; boundary=h4-B0undary",
        headers=ADA,
        query={"channel_name": in_query},
    )
    assert reply.status == status, reply.text
    if status == 200:
        assert web.memory.verify(reply.json, socket_id="1.2", channel=in_body)
        assert not web.memory.verify(reply.json, socket_id="1.2", channel=in_query)
