"""A user who may sign in may also be reached and disconnected: sign-in, ``user_channel``
(``send_to_user``) and ``terminate_user`` accept exactly the same ids, before any request.

A signed-in user's id names its ``#server-to-user-<id>`` channel and the
``/users/<id>/terminate_connections`` path, so it takes a channel name's characters; the
official SDK's ``authenticate_user`` refuses any other id as well. A presence member's id,
which names neither, may still be any text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pusher
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pusher.http import Request

from broadcasting import Broadcast, InputError
from broadcasting.drivers import BroadcastPusherDriver
from broadcasting_pusher import _state

SOCKET = "123456.7890123"
OPTIONS = {"app_id": "1", "key": "key", "secret": "secret", "host": "127.0.0.1", "port": 9}
OPTIONS |= {"ssl": False, "retries": 0}
#: ids a sign-in must refuse: each would make a channel or a path Pusher refuses
REFUSED = ["alice smith", "user/1", "a:b", "ü", "#1", "a?b", "tab\there", "u" * 129]
ACCEPTED = ["42", "alice", "alice@example.com", "a=b,c;d.e_f-g", "u" * 128]


@pytest.fixture(scope="module")
def broadcast() -> Iterator[Broadcast]:
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": OPTIONS}}) as broadcast:
        yield broadcast


@pytest.fixture(scope="module")
def driver(broadcast: Broadcast) -> BroadcastPusherDriver:
    return broadcast.driver(BroadcastPusherDriver).driver


def sign_in(broadcast: Broadcast, user_id: str) -> bool:
    try:
        broadcast.authenticate_user(SOCKET, {"id": user_id})
    except InputError:
        return False
    return True


def reach(driver: BroadcastPusherDriver, user_id: str) -> bool:
    try:
        driver.user_channel(user_id)
    except InputError:
        return False
    return True


def disconnect(driver: BroadcastPusherDriver, user_id: str) -> bool:
    """Whether terminate_user would send its request: its first step, which is checked and
    signed, but sent by nobody here."""
    try:
        request = next(_state.terminate_user(driver, user_id))
    except InputError:
        return False
    assert isinstance(request, Request)
    assert request.path == f"/apps/1/users/{user_id}/terminate_connections"
    return True


def sdk_accepts(user_id: str) -> bool:
    client = pusher.Pusher(app_id="1", key="key", secret="secret")
    try:
        client.authenticate_user(SOCKET, {"id": user_id})
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("user_id", REFUSED)
def test_a_sign_in_that_could_not_be_reached_or_disconnected_is_refused(
    broadcast: Broadcast, driver: BroadcastPusherDriver, user_id: str
) -> None:
    with pytest.raises(InputError, match="user_data's 'id'") as error:
        broadcast.authenticate_user(SOCKET, {"id": user_id})
    assert "at most 128" in str(error.value)
    assert not reach(driver, user_id)
    assert not disconnect(driver, user_id)


@pytest.mark.parametrize("user_id", ACCEPTED)
def test_a_user_who_signs_in_can_be_reached_and_disconnected(
    broadcast: Broadcast, driver: BroadcastPusherDriver, user_id: str
) -> None:
    body = broadcast.authenticate_user(SOCKET, {"id": user_id})
    assert json.loads(body["user_data"])["id"] == user_id
    assert driver.user_channel(user_id) == f"#server-to-user-{user_id}"
    assert disconnect(driver, user_id)


def test_send_to_user_refuses_an_id_no_sign_in_accepts_before_any_request(
    broadcast: Broadcast,
) -> None:
    # port 9 on 127.0.0.1 answers nothing: a request made would fail as a PublishError
    with pytest.raises(InputError, match="is not a Pusher user id"):
        broadcast.send_to_user("alice smith", {"text": "hi"}, "note")


def test_a_presence_member_id_may_still_be_any_text() -> None:
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": OPTIONS}}) as broadcast:

        @broadcast.rule("room")
        def member(user: Any) -> dict[str, Any]:
            return {"id": "alice smith", "name": "Alice"}

        body = broadcast.authorize(object(), socket_id=SOCKET, channel_name="presence-room")
    assert json.loads(body["channel_data"])["user_id"] == "alice smith"


@given(st.text(min_size=1, max_size=140))
def test_sign_in_reach_and_disconnect_accept_the_same_ids_as_the_sdk(user_id: str) -> None:
    with Broadcast({"DRIVER": "pusher", "DRIVERS": {"pusher": OPTIONS}}) as broadcast:
        driver = broadcast.driver(BroadcastPusherDriver).driver
        signed = sign_in(broadcast, user_id)
        assert reach(driver, user_id) is signed
        assert disconnect(driver, user_id) is signed
    # the SDK allows 200 characters; Pusher's presence ids, and so ours, at most 128
    assert signed is (sdk_accepts(user_id) and len(user_id) <= 128)
