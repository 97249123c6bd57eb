"""Hearing back from the service: channel state, terminating users, listening, webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from broadcasting import (
    BroadcastError,
    ChannelInfo,
    Member,
    PresenceChannel,
    QueryError,
    UnauthorizedError,
    WebhookEvent,
)
from broadcasting.plugin import ERROR_KINDS, SUBSCRIBED, Feature, Heard, hookimpl
from broadcasting.testing._suite.run import EVENT, MODES, Run, marker


def well_formed_tampering(body: bytes) -> bytes | None:
    """``body``, a JSON object, with one member more, still well-formed; else None.

    A body with one bit flipped no longer parses, so a driver that parses it before
    checking the signature refuses it with a 400 whether or not it ever checks one.
    """
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    parsed["conformance_kit_tampered"] = True
    return json.dumps(parsed).encode("utf-8")


class WebhookRecorder:
    """A plugin on the webhook hook: the events it was given."""

    def __init__(self) -> None:
        self.events: list[WebhookEvent] = []

    @hookimpl
    def broadcasting_webhook(self, event: WebhookEvent) -> None:
        self.events.append(event)


class HearingTests:
    """Feature.STATE, TERMINATE_USER, LISTEN and WEBHOOKS, each exercised or refused."""

    @pytest.mark.parametrize("mode", MODES)
    def test_channel_state_is_answered_or_not_supported(
        self, conformance: Run, failing_options: Sequence[Mapping[str, Any]], mode: str
    ) -> None:
        """With Feature.STATE a channel nobody subscribed to is unoccupied, listed nowhere,
        and has no members; a query that fails is a QueryError. Without it, each query is
        NotSupportedError."""
        run = conformance
        channel = run.channel("state")
        presence = None
        if "presence" in run.driver.channel_prefixes:
            presence = run.driver.channel_name(PresenceChannel(run.channel("state")))
        if Feature.STATE not in run.driver.features:
            for method, argument in [
                ("channel_info", channel),
                ("occupied_channels", channel),
                ("members", presence or channel),
            ]:
                run.expect_not_supported(f"{method}()", run.ask, mode, method, argument)
            return
        info = run.ask(mode, "channel_info", channel)
        assert isinstance(info, ChannelInfo), f"channel_info() returned {info!r}"
        assert info.name == channel and info.occupied is False, (
            f"a channel nobody subscribed to: {info!r}"
        )
        listed = run.ask(mode, "occupied_channels", channel)
        assert isinstance(listed, list) and all(isinstance(i, ChannelInfo) for i in listed)
        assert all(i.name.startswith(channel) for i in listed), (
            f"occupied_channels({channel!r}) listed channels without that prefix: {listed}"
        )
        assert channel not in [i.name for i in listed], listed
        if presence is not None:
            members = run.ask(mode, "members", presence)
            assert isinstance(members, list) and all(isinstance(m, Member) for m in members)
            assert members == [], f"an empty presence channel has members: {members}"
        for index, options in enumerate(failing_options):
            with run.other_broadcast(options) as other:
                broadcaster = other.driver(run.suite.driver_name)
                failed: Exception | None = None
                try:
                    run.ask(mode, "channel_info", channel, driver=broadcaster)
                except Exception as exc:
                    failed = exc
            if failed is None:
                continue
            assert isinstance(failed, QueryError), (
                f"with failing_options[{index}], channel_info() raised {failed!r}: a state "
                "query that fails raises QueryError(..., kind=...)"
            )
            assert failed.driver == run.suite.driver_name and failed.kind in ERROR_KINDS, failed
            where = f"a failed query (failing_options[{index}])"
            run.assert_error_clean(failed, where, run.secrets_of(options))

    @pytest.mark.parametrize("mode", MODES)
    def test_terminate_user_is_done_or_not_supported(self, conformance: Run, mode: str) -> None:
        """With Feature.TERMINATE_USER, terminating a user with no connection succeeds;
        without it, it is NotSupportedError."""
        run = conformance
        user = f"kit-user-{marker()}"
        if Feature.TERMINATE_USER not in run.driver.features:
            run.expect_not_supported("terminate_user()", run.ask, mode, "terminate_user", user)
            return
        assert run.ask(mode, "terminate_user", user) is None

    def test_listen_hears_a_publish_or_not_supported(self, conformance: Run) -> None:
        """With Feature.LISTEN, listen_channels() confirms the subscription, then hears a
        publish made after it, as sent; without it, it is NotSupportedError."""
        run = conformance
        channel = run.channel("listen")
        if Feature.LISTEN not in run.driver.features:
            run.expect_not_supported("listening", run.driver.listen_channels, [channel])
            return
        data = {"marker": marker()}

        heard: list[Heard] = []

        async def hear() -> None:
            events: AsyncIterator[Heard] = run.driver.listen_channels([channel])
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for item in events:
                    heard.append(item)
                    if item.event != SUBSCRIBED:
                        return
                    await run.broadcaster.achannel(channel, data, EVENT)

        with contextlib.suppress(asyncio.TimeoutError):  # TimeoutError from 3.11 on
            asyncio.run(asyncio.wait_for(hear(), run.timeout))
        assert heard and heard[0].event == SUBSCRIBED and heard[0].channel == channel, (
            f"listen_channels() first yields a Heard(event=SUBSCRIBED) for {channel!r}: {heard}"
        )
        assert len(heard) > 1, (
            f"listen_channels() confirmed the subscription, then heard nothing within "
            f"{run.timeout}s of a publish to {channel!r}"
        )
        last = heard[-1]
        assert isinstance(last, Heard) and last.channel == channel, heard
        assert last.event == EVENT, f"heard {last.event!r}, published {EVENT!r}"
        assert last.data == run.last_message().text or json.loads(last.data) == data, last

    @pytest.mark.parametrize("mode", MODES)
    def test_webhooks_are_verified_or_not_supported(
        self,
        conformance: Run,
        webhook_delivery: tuple[Mapping[str, str], bytes] | None,
        mode: str,
    ) -> None:
        """With Feature.WEBHOOKS a forged or tampered delivery is refused before any hook
        or handler, and a signed one (the ``webhook_delivery`` fixture) reaches both;
        without it, webhook() is NotSupportedError."""
        run = conformance
        forged = ({"Content-Type": "application/json"}, b'{"time_ms": 1, "events": []}')
        if Feature.WEBHOOKS not in run.driver.features:
            run.expect_not_supported("webhook()", run.ask, mode, "webhook", *forged)
            return
        recorder, handled = WebhookRecorder(), list[WebhookEvent]()
        run.broadcast.plugin_manager.register(recorder)
        run.broadcast.on_webhook("*")(handled.append)
        refused: list[tuple[Mapping[str, str], bytes]] = [forged]
        if webhook_delivery is not None:
            headers, body = webhook_delivery
            refused.append((headers, body[:-1] + bytes([body[-1] ^ 1])))  # one bit changed
            altered = well_formed_tampering(body)
            if altered is not None:  # a verifier that parses first must refuse it unparsed
                refused.append((headers, altered))
        for headers, body in refused:
            error: BroadcastError | None = None
            try:
                run.ask(mode, "webhook", headers, body)
            except BroadcastError as exc:
                error = exc
            assert error is not None and error.http_status in (400, 401), (
                "a forged or tampered delivery must be refused with UnauthorizedError (401) "
                f"or BadRequestError (400), not {error!r}: verify_webhook checks the signature"
            )
            run.assert_error_clean(error, "a refused webhook")
        assert not recorder.events and not handled, "a refused delivery reached a handler"
        if webhook_delivery is None:
            return
        events = run.ask(mode, "webhook", *webhook_delivery)
        assert isinstance(events, list) and events, f"webhook() returned {events!r}"
        assert all(isinstance(e, WebhookEvent) for e in events), events
        assert all(e.driver == run.driver.name for e in events), events
        assert recorder.events == events and handled == events
        with pytest.raises(UnauthorizedError):
            run.broadcast.webhook({}, webhook_delivery[1])
