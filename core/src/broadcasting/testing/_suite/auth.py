"""Authorizing subscriptions and sign-ins, as the driver declares it can (or refusing it)."""

from __future__ import annotations

import asyncio
import json
import string
from typing import Any

import pytest

from broadcasting import (
    BadRequestError,
    ConfigurationError,
    EncryptedPrivateChannel,
    ForbiddenError,
    NotSupportedError,
    PresenceChannel,
    PrivateChannel,
)
from broadcasting.plugin import Feature
from broadcasting.testing._suite.run import EVENT, MODES, Run, marker


def socket_ids(run: Run) -> tuple[str, str]:
    """Two well-formed connection ids for the driver's service (``socket_id_sample`` and a twin)."""
    sample = run.suite.socket_id_sample
    last = sample[-1:]
    for alphabet in (string.digits, string.ascii_lowercase, string.ascii_uppercase):
        if last in alphabet:
            other = sample[:-1] + alphabet[(alphabet.index(last) + 1) % len(alphabet)]
            break
    else:
        other = sample[:-1] + ("1" if last != "1" else "2")
    pattern = run.driver.socket_id_pattern
    for socket_id in (sample, other):
        assert pattern.fullmatch(socket_id), (
            f"socket_id_sample {sample!r} (or {socket_id!r}, the kit's twin of it) is not a "
            f"connection id by the driver's socket_id_pattern {pattern.pattern!r}: set "
            "socket_id_sample to one of your service's ids"
        )
    return sample, other


def authorize(run: Run, mode: str, user: Any, socket_id: str | None, channel: str) -> Any:
    return run.ask(mode, "authorize", user, socket_id=socket_id, channel_name=channel)


class AuthTests:
    """Feature.AUTHORIZE, CONNECTION_TOKENS and USER_SIGN_IN, each exercised or refused."""

    @pytest.mark.parametrize("mode", MODES)
    def test_subscriptions_are_signed_or_not_supported(self, conformance: Run, mode: str) -> None:
        """With Feature.AUTHORIZE, each kind of channel the driver names is signed into a
        JSON-ready dict bound to the channel, and to the socket_id unless the driver says
        its clients send none (``requires_socket_id = False``: Ably's tokens are bound to
        a client id instead); without it, authorize() is NotSupportedError before any
        rule runs. (Prove that the answer is valid with the service's own client.)"""
        run = conformance
        driver = run.driver
        sample, elsewhere = socket_ids(run)
        ran: list[str] = []

        def rule(user: object, name: str) -> Any:
            ran.append(name)
            return {"id": "kit-user", "name": "Kit"} if user == "kit" else False

        run.broadcast.rule("{name}")(rule)
        declared = Feature.AUTHORIZE in driver.features
        kinds = {"private": PrivateChannel, "presence": PresenceChannel}
        kinds["encrypted"] = EncryptedPrivateChannel
        signed = 0
        for kind, helper in kinds.items():
            if kind not in driver.channel_prefixes:
                continue
            channel = driver.channel_name(helper(run.channel(f"auth-{kind}")))
            assert driver.parse_channel(channel)[0] == kind, (
                f"{channel!r} does not parse back as a {kind} channel"
            )
            if not declared:
                what = f"authorizing a {kind} channel"
                run.expect_not_supported(what, authorize, run, mode, "kit", sample, channel)
                assert not ran, "a channel rule ran for a driver that cannot sign"
                continue
            with pytest.raises(ForbiddenError):
                authorize(run, mode, "not-kit", sample, channel)
            unconfigured: ConfigurationError | None = None
            try:
                body = authorize(run, mode, "kit", sample, channel)
            except ConfigurationError as exc:
                unconfigured = exc
            if unconfigured is not None:
                # encrypted channels need an encryption key the configuration may not hold
                assert kind == "encrypted", f"signing a {kind} channel failed: {unconfigured!r}"
                run.assert_error_clean(unconfigured, f"the error signing a {kind} channel")
                continue
            signed += 1
            assert isinstance(body, dict), f"sign_channel returned {type(body).__name__}"
            text = json.dumps(body)  # JSON-ready: what the endpoint sends as it is
            run.assert_no_secrets([text, repr(body)], f"the signed answer for a {kind} channel")
            twin = driver.channel_name(helper(run.channel(f"auth-{kind}-2")))
            other = authorize(run, mode, "kit", sample, twin)
            assert json.dumps(other) != text, "the answer does not depend on the channel"
            if driver.requires_socket_id:  # its clients send one: the answer is bound to it
                moved = authorize(run, mode, "kit", elsewhere, channel)
                assert json.dumps(moved) != text, (
                    f"the signed answer for a {kind} channel is the same for socket_id "
                    f"{sample!r} and {elsewhere!r}: any connection could replay it. Bind it "
                    "to the socket_id, or declare requires_socket_id = False if your "
                    "service's clients send none"
                )
            else:  # its clients send no socket_id
                assert isinstance(authorize(run, mode, "kit", None, channel), dict)
        if declared:
            assert signed, "the driver declares Feature.AUTHORIZE but signed no kind of channel"

    def test_connection_tokens_are_signed_or_refused(self, conformance: Run) -> None:
        """With Feature.CONNECTION_TOKENS an authorization that names no channel is signed
        for the user; without it, it is a BadRequestError (400)."""
        run = conformance
        sample, _ = socket_ids(run)
        socket_id = None if not run.driver.requires_socket_id else sample
        if Feature.CONNECTION_TOKENS not in run.driver.features:
            with pytest.raises(BadRequestError):
                run.broadcast.authorize("kit", socket_id=socket_id)
            return
        body = run.broadcast.authorize("kit", socket_id=socket_id)
        assert isinstance(body, dict), f"sign_connection returned {type(body).__name__}"
        run.assert_no_secrets([json.dumps(body), repr(body)], "a signed connection")
        anonymous = asyncio.run(run.broadcast.aauthorize(None, socket_id=socket_id))
        assert isinstance(anonymous, dict), f"sign_connection returned {type(anonymous).__name__}"

    def test_user_sign_in_is_signed_or_not_supported(self, conformance: Run) -> None:
        """With Feature.USER_SIGN_IN a sign-in gives a JSON-ready dict bound to the socket,
        and send_to_user() publishes on the user's channel; without it, both are
        NotSupportedError naming the driver."""
        run = conformance
        sample, other = socket_ids(run)
        user = f"kit-user-{marker()}"
        data = {"marker": marker()}
        if Feature.USER_SIGN_IN not in run.driver.features:
            run.expect_not_supported(
                "a sign-in", run.broadcast.authenticate_user, sample, {"id": user}
            )
            send = run.broadcast.send_to_user
            run.expect_not_supported(
                "send_to_user()", send, user, EVENT, data, driver=run.broadcaster
            )
            return
        body = run.broadcast.authenticate_user(sample, {"id": user})
        assert isinstance(body, dict), f"sign_user returned {type(body).__name__}"
        text = json.dumps(body)
        run.assert_no_secrets([text, repr(body)], "a signed sign-in")
        again = run.broadcast.authenticate_user(other, {"id": user})
        assert json.dumps(again) != text, "the sign-in answer does not depend on socket_id"
        channel = run.driver.user_channel(user)
        assert isinstance(channel, str) and channel, f"user_channel() returned {channel!r}"
        for mode in MODES:
            receipt = run.ask(mode, "send_to_user", user, EVENT, data, driver=run.broadcaster)
            run.check_receipt(receipt, EVENT, [channel], run.last_message())

    def test_malformed_authorization_requests_are_refused_first(self, conformance: Run) -> None:
        """A bad socket_id, a public channel or a channel name the driver would refuse is
        a BadRequestError (400) before any rule runs; its text holds no secret."""
        run = conformance
        ran: list[str] = []

        def rule(user: object, name: str) -> bool:
            ran.append(name)
            return True

        run.broadcast.rule("{name}")(rule)
        sample, _ = socket_ids(run)
        good = run.driver.channel_name(PrivateChannel(run.channel("auth-bad")))
        cases = [("not a socket id", good), (sample, good + "\n")]
        if Feature.AUTHORIZE in run.driver.features:
            cases.append((sample, run.channel("public")))
        for socket_id, channel in cases:
            with pytest.raises((BadRequestError, NotSupportedError)) as info:
                run.broadcast.authorize("kit", socket_id=socket_id, channel_name=channel)
            if Feature.AUTHORIZE in run.driver.features:
                assert isinstance(info.value, BadRequestError), info.value
                assert info.value.http_status == 400
            run.assert_error_clean(info.value, "a refused authorization")
        assert ran == [], f"a rule ran for a malformed request: {ran}"
