"""docs/testing.md's pytest example, run by pytest as a test file: its tests pass.

(tests/test_docs.py runs every block as written, which for this one only
defines the tests; here pytest collects and runs them with the real fixture.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def named_block(name: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)^```", text, re.S | re.M)
    assert found, f"docs/testing.md has no block named {name}"
    return found.group(1)


def test_the_pytest_example_passes_under_pytest(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_example=named_block("pytest-example"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_shipping_tells_the_customer PASSED*",
            "*test_a_note_too_large_for_pusher_fails_here_too PASSED*",
        ]
    )


def test_the_pytest_example_fails_when_the_view_is_wrong(pytester: pytest.Pytester) -> None:
    """The example's assertions can fail: publish to the wrong order and they do."""
    wrong = named_block("pytest-example").replace(
        'PrivateChannel(f"orders.{self.order_id}")', 'PrivateChannel(f"orders.{self.order_id + 1}")'
    )
    pytester.makeini(INI)
    pytester.makepyfile(test_example=wrong)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E       AssertionError: no publish matched event=OrderShipped, "
            "channel=PrivateChannel(name='orders.42'), data={'order_id': 42, 'note': ''}",
            "E       sent instead (1):",
            "E         pusher: 'OrderShipped' on private-orders.43 {*} (socket_id 123.456)",
        ]
    )
