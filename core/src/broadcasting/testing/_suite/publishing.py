"""Publishing: payloads, event names and channels arrive intact, from sync and async code."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from broadcasting import InputError, Receipt
from broadcasting.testing._suite.run import DEFAULT_EVENT, EVENT, MODES, Run, arrived_intact, marker


class PublishingTests:
    """What arrives, and how often, for every way of publishing."""

    @pytest.mark.parametrize("mode", MODES)
    def test_str_payload_arrives_intact(self, conformance: Run, mode: str) -> None:
        """A str message is delivered as the identical str."""
        data = f'plain text {marker()} with "quotes" and {{braces}}'
        conformance.delivered(mode, conformance.channel("str"), data)

    @pytest.mark.parametrize("mode", MODES)
    def test_json_looking_str_stays_a_str(self, conformance: Run, mode: str) -> None:
        """A str that happens to be JSON is sent as given, not re-encoded."""
        data = '{"marker": "' + marker() + '", "n": 1}'
        assert conformance.delivered(mode, conformance.channel("jsonstr"), data).text == data

    @pytest.mark.parametrize("mode", MODES)
    def test_dict_payload_arrives_intact(self, conformance: Run, mode: str) -> None:
        """A dict is delivered as its JSON, nested values and types unchanged."""
        data = {"marker": marker(), "n": 42, "pi": 3.5, "ok": True, "none": None}
        data["nested"] = {"list": [1, "two", {"three": 3}]}
        conformance.delivered(mode, conformance.channel("dict"), data)

    @pytest.mark.parametrize("mode", MODES)
    def test_list_payload_arrives_intact(self, conformance: Run, mode: str) -> None:
        """A list is delivered as its JSON."""
        data = [marker(), 1, {"a": [True, None]}]
        conformance.delivered(mode, conformance.channel("list"), data)

    @pytest.mark.parametrize("mode", MODES)
    def test_unicode_payload_arrives_intact(self, conformance: Run, mode: str) -> None:
        """Non-ASCII text (accents, CJK, emoji) survives in str and dict payloads."""
        run = conformance
        text = f"héllo wörld — 日本語 — \U0001f389 {marker()}"
        run.delivered(mode, run.channel("unicode"), text)
        run.delivered(mode, run.channel("unicode-dict"), {"text": text, "ключ": "значение"})

    @pytest.mark.parametrize("mode", MODES)
    def test_default_event_name_is_base_event(self, conformance: Run, mode: str) -> None:
        """Leaving out the event publishes as 'base-event', the seed's default."""
        message = conformance.delivered(mode, conformance.channel("default"), {"m": marker()}, None)
        assert message.event == DEFAULT_EVENT

    @pytest.mark.parametrize("mode", MODES)
    def test_custom_event_name(self, conformance: Run, mode: str) -> None:
        """A custom event name arrives unchanged (dots, colons and dashes included)."""
        data = {"marker": marker()}
        conformance.delivered(mode, conformance.channel("event"), data, "order.shipped:v2-final")

    @pytest.mark.parametrize("mode", MODES)
    def test_multiple_channels(self, conformance: Run, mode: str) -> None:
        """A list of channels delivers to each of them (or is refused, if unsupported)."""
        run = conformance
        channels = [run.channel("multi-a"), run.channel("multi-b"), run.channel("multi-c")]
        data = {"marker": marker()}
        if run.features.multiple_channels:
            run.delivered(mode, tuple(channels), data)
            return
        run.watch(*channels)
        run.refused(InputError, channels[0], mode, channels, data)

    @pytest.mark.parametrize("mode", MODES)
    def test_duplicate_channels_are_delivered_once(self, conformance: Run, mode: str) -> None:
        """A channel listed twice receives the message once; the receipt lists it once."""
        run = conformance
        channel = run.channel("dup")
        data = {"marker": marker()}
        run.watch(channel)
        receipt = run.publish(mode, [channel, channel], data, EVENT)
        assert run.last_message().channels == (channel,)
        run.check_receipt(receipt, EVENT, [channel])
        if run.observer is not None:
            assert run.copies_before_sentinel(channel, data) == 1, (
                f"{channel!r} did not receive the message exactly once"
            )

    # -- async and concurrency --------------------------------------------------------------

    def test_concurrent_async_publishes(self, conformance: Run) -> None:
        """Ten achannel() calls gathered on one loop all arrive, each once."""
        run = conformance
        channel = run.channel("gather")
        payloads = [{"marker": marker(), "n": n} for n in range(10)]
        run.watch(channel)

        async def main() -> list[Receipt]:
            publishes = (run.broadcaster.achannel(channel, p, EVENT) for p in payloads)
            return list(await asyncio.gather(*publishes))

        receipts = asyncio.run(main())
        ids = {m.id for m in run.probe.messages}
        for receipt in receipts:
            run.check_receipt(receipt, EVENT, [channel])
            assert receipt.message_id in ids
        assert len({r.message_id for r in receipts}) == len(payloads), "message ids must differ"
        if run.observer is not None:
            seen = run.seen(channel, len(payloads))
            for payload in payloads:
                copies = [d for d in seen if arrived_intact(d, payload)]
                assert len(copies) == 1, f"{payload} arrived {len(copies)} times"

    def test_concurrent_threaded_publishes(self, conformance: Run) -> None:
        """One driver shared by eight threads (as in a web server) delivers every publish."""
        run = conformance
        channels = [run.channel(f"thread{n}") for n in range(8)]
        run.watch(*channels)
        barrier = threading.Barrier(len(channels))

        def work(channel: str) -> list[tuple[Receipt, dict[str, str]]]:
            barrier.wait(timeout=10)
            out = []
            for _ in range(2):
                data = {"marker": marker()}
                out.append((run.broadcaster.channel(channel, data, EVENT), data))
            return out

        with ThreadPoolExecutor(len(channels)) as pool:
            results = list(pool.map(work, channels))
        for channel, sent in zip(channels, results, strict=True):
            for receipt, data in sent:
                run.check_receipt(receipt, EVENT, [channel])
                run.expect_delivered([channel], data, EVENT)

    def test_sync_publish_inside_a_running_event_loop(self, conformance: Run) -> None:
        """channel() works from sync code running in an event loop's thread."""
        run = conformance
        channel = run.channel("inloop")
        data = {"marker": marker()}
        run.watch(channel)

        async def main() -> Receipt:
            return run.broadcaster.channel(channel, data, EVENT)

        run.check_receipt(asyncio.run(main()), EVENT, [channel])
        run.expect_delivered([channel], data, EVENT)

    def test_async_publish_in_two_event_loops(self, conformance: Run) -> None:
        """Two asyncio.run() calls in a row both publish, then a sync close() works."""
        run = conformance
        channel = run.channel("twoloops")
        first, second = {"marker": marker()}, {"marker": marker()}
        run.watch(channel)
        for data in (first, second):
            receipt = asyncio.run(run.broadcaster.achannel(channel, data, EVENT))
            run.check_receipt(receipt, EVENT, [channel])
        run.expect_delivered([channel], first, EVENT)
        run.expect_delivered([channel], second, EVENT)
        run.broadcaster.close()

    def test_every_publish_goes_through_the_publish_hook(self, conformance: Run) -> None:
        """Sync and async publishes reach broadcasting_publish with this driver and message."""
        run = conformance
        channel = run.channel("hook")
        run.watch(channel)
        sync_receipt = run.publish("sync", channel, {"via": "sync"}, EVENT)
        assert len(run.probe.calls) == 1
        driver, message = run.probe.calls[0]
        assert driver is run.driver, "the hook must be given the connected Driver"
        assert message.channels == (channel,)
        assert message.event == EVENT
        assert message.data == {"via": "sync"}
        assert message.text == '{"via":"sync"}'
        run.check_receipt(sync_receipt, EVENT, [channel], message)
        async_receipt = run.publish("async", channel, {"via": "async"}, EVENT)
        assert len(run.probe.calls) == 2
        assert run.probe.calls[1][0] is run.driver
        run.check_receipt(async_receipt, EVENT, [channel], run.probe.calls[1][1])
        assert sync_receipt.message_id != async_receipt.message_id
