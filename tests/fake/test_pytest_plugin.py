"""The ``broadcast_fake`` plugin inside pytester: found by its entry point, exact failure texts,
removed after a failing test, cheap at start-up; and the same fake under plain unittest."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

EVENTS = """
from dataclasses import dataclass

from broadcasting import Broadcast, BroadcastEvent, PrivateChannel


@dataclass
class OrderShipped(BroadcastEvent):
    order_id: int

    def broadcast_on(self):
        return PrivateChannel(f"orders.{self.order_id}")


broadcast = Broadcast({"DRIVER": "memory"})  # made at import, before any fake
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with the events module and no conftest: the fixture comes from
    the installed core's ``pytest11`` entry point."""
    pytester.makeini(INI)
    pytester.makepyfile(shop_events=EVENTS)
    pytester.syspathinsert()
    return pytester


def test_a_failing_assert_sent_lists_what_was_sent_instead(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_orders="""
        from broadcasting import PrivateChannel
        from shop_events import OrderShipped, broadcast

        def test_wrong_order(broadcast_fake):
            broadcast.channel(OrderShipped(1))
            broadcast.channel("orders", {"id": 1}, "created", socket_id="1.2")
            broadcast_fake.assert_sent(OrderShipped, channel=PrivateChannel("orders.2"))
        """
    )
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            ">       broadcast_fake.assert_sent(OrderShipped, channel=PrivateChannel(*",
            "E       AssertionError: no publish matched event=OrderShipped, "
            "channel=PrivateChannel(name='orders.2')",
            "E       sent instead (2):",
            """E         memory: 'OrderShipped' on private-orders.1 {"order_id":1}""",
            """E         memory: 'created' on orders {"id":1} (socket_id 1.2)""",
            "",
            "test_orders.py:7: AssertionError",
        ],
        consecutive=True,
    )
    # the failure points at the test's own line, not inside the fake
    result.stdout.no_fnmatch_line("*_fake.py*")


def test_failure_texts_of_times_not_sent_and_nothing_sent(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_orders="""
        from shop_events import OrderShipped, broadcast

        def test_times(broadcast_fake):
            broadcast.channel(OrderShipped(1))
            broadcast.channel(OrderShipped(1))
            broadcast.channel("orders", "text", "created")
            broadcast_fake.assert_sent(OrderShipped, times=1)

        def test_not_sent(broadcast_fake):
            broadcast.channel(OrderShipped(3))
            broadcast_fake.assert_not_sent("OrderShipped", data={"order_id": 3})

        def test_nothing_sent(broadcast_fake):
            broadcast.send_to_user(42, "notice", ["a", "b"])
            broadcast_fake.assert_nothing_sent()

        def test_empty(broadcast_fake):
            broadcast_fake.assert_sent("created", user=42)
        """
    )
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: expected 1 publish matching event=OrderShipped, got 2:",
            """E         memory: 'OrderShipped' on private-orders.1 {"order_id":1}""",
            """E         memory: 'OrderShipped' on private-orders.1 {"order_id":1}""",
            "E       also sent (1):",
            "E         memory: 'created' on orders text",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: expected no publish matching event='OrderShipped', "
            "data={'order_id': 3}, got 1:",
            """E         memory: 'OrderShipped' on private-orders.3 {"order_id":3}""",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: expected nothing sent, got 1 publish:",
            """E         memory: 'notice' on #server-to-user-42 ["a","b"]""",
        ],
        consecutive=True,
    )
    result.stdout.fnmatch_lines(
        ["E       AssertionError: no publish matched event='created', user=42; nothing was sent"]
    )
    result.stdout.no_fnmatch_line("*_fake.py*")


def test_each_test_gets_a_fresh_fake_removed_even_after_a_failure(
    inner: pytest.Pytester,
) -> None:
    inner.makepyfile(
        test_orders="""
        import threading

        from broadcasting._plugins import _everywhere
        from broadcasting.drivers.memory import BroadcastMemoryDriver
        from shop_events import OrderShipped, broadcast

        def test_fails_with_the_fake(broadcast_fake):
            broadcast.channel(OrderShipped(1))
            raise RuntimeError("the view blew up")

        def test_then_publishes_reach_the_driver_again():
            assert _everywhere == []
            broadcast.channel(OrderShipped(2))
            memory = broadcast.driver(BroadcastMemoryDriver).driver
            assert [m.channels for m in memory.messages] == [("private-orders.2",)]

        def test_a_new_fake_starts_empty(broadcast_fake):
            assert broadcast_fake.sent == []
            t = threading.Thread(target=broadcast.channel, args=(OrderShipped(3),))
            t.start()
            t.join()
            broadcast_fake.assert_sent(OrderShipped, times=1)

        async def test_async(broadcast_fake):
            await broadcast.achannel(OrderShipped(4))
            broadcast_fake.assert_sent(OrderShipped, channel="private-orders.4", times=1)
        """
    )
    result = inner.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: the view blew up"])


def test_the_fixture_is_listed_with_its_doc(inner: pytest.Pytester) -> None:
    result = inner.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        ["broadcast_fake*", "    Record every publish of every Broadcast instead of sending it*"]
    )


def test_the_plugin_imports_nothing_of_its_own_at_start_up() -> None:
    """Every pytest run of every project with broadcasting installed loads the plugin."""
    code = textwrap.dedent(
        """
        import sys
        import pytest
        import broadcasting.testing.pytest_plugin
        print(sorted(m for m in sys.modules if m.startswith("broadcasting.testing")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "['broadcasting.testing', 'broadcasting.testing.pytest_plugin']"


def test_the_same_fake_under_unittest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(shop_events=EVENTS)
    pytester.makepyfile(
        test_unit="""
        import unittest

        from broadcasting import PrivateChannel
        from broadcasting.testing import fake
        from shop_events import OrderShipped, broadcast


        class ShipTest(unittest.TestCase):
            def setUp(self):
                self.broadcasts = fake().start()
                self.addCleanup(self.broadcasts.stop)

            def test_ship(self):
                broadcast.channel(OrderShipped(42))
                self.broadcasts.assert_sent(OrderShipped, channel=PrivateChannel("orders.42"))

            def test_wrong(self):
                broadcast.channel(OrderShipped(1))
                self.broadcasts.assert_sent(OrderShipped, channel=PrivateChannel("orders.2"))

            def test_with_block(self):
                with fake() as broadcasts:
                    broadcast.channel("orders", {"id": 1}, "created")
                broadcasts.assert_sent("created", data={"id": 1}, times=1)
        """
    )
    result = pytester.run(sys.executable, "-m", "unittest", "-v", "test_unit")
    assert result.ret == 1
    result.stderr.fnmatch_lines(
        [
            "test_ship (test_unit.ShipTest*) ... ok",
            "test_with_block (test_unit.ShipTest*) ... ok",
            "test_wrong (test_unit.ShipTest*) ... FAIL",
        ]
    )
    result.stderr.fnmatch_lines(
        [
            "AssertionError: no publish matched event=OrderShipped, "
            "channel=PrivateChannel(name='orders.2')",
            "sent instead (1):",
            """  memory: 'OrderShipped' on private-orders.1 {"order_id":1}""",
        ],
        consecutive=True,
    )
    result.stderr.fnmatch_lines(["FAILED (failures=1)"])


def test_with_autoloading_off_the_plugin_loads_by_name(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        test_one="""
        from broadcasting import Broadcast

        def test_one(broadcast_fake):
            Broadcast({"DRIVER": "null"}).channel("orders", {"id": 1}, "shipped")
            broadcast_fake.assert_sent("shipped", channel="orders", times=1)
        """
    )
    without = pytester.runpytest("-p", "no:cacheprovider")
    without.assert_outcomes(errors=1)
    without.stdout.fnmatch_lines(["*fixture 'broadcast_fake' not found*"])
    plugin = "broadcasting.testing.pytest_plugin"
    loaded = pytester.runpytest("-p", "no:cacheprovider", "-p", plugin)
    loaded.assert_outcomes(passed=1)
