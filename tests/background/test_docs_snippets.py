"""The python blocks of the background docs' "Sending after commit" and "Testing" text run
and their claims hold (tests/test_docs.py runs them as written too; the Django block runs
against a real model in test_django.py, the testing example as a pytest file here)."""

from __future__ import annotations

import ast
import asyncio
import inspect
from typing import Any

import pytest
from bg_support import doc_block

from broadcasting import Broadcast

pytest_plugins = ["pytester"]


def run_block(name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "docs_block"}
    # as a user's module: without this file's __future__ imports (a dataclass needs that)
    code = compile(
        doc_block(name),
        f"<docs: {name}>",
        "exec",
        flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
        dont_inherit=True,
    )
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)
    return namespace


@pytest.mark.parametrize(
    "name", ["after-commit-sqlalchemy", "after-commit-choosing", "after-commit-async"]
)
def test_a_block_runs_and_its_assertions_hold(name: str) -> None:
    namespace = run_block(name)
    broadcast = namespace["broadcast"]
    assert isinstance(broadcast, Broadcast)
    broadcast.close()


def test_the_django_block_only_defines_the_view_here() -> None:
    """Run as written it imports Django and defines ``ship``; test_django.py calls it."""
    namespace = run_block("after-commit-django")
    assert callable(namespace["ship"])
    namespace["broadcast"].close()


CONFTEST = """
import pytest

from broadcasting._plugins import register_everywhere, unregister_everywhere
import broadcasting.contrib.sqlalchemy as plugin  # its entry point, once installed


@pytest.fixture(autouse=True)
def _plugin():
    try:
        register_everywhere(plugin)
    except ValueError:  # registered already
        yield
        return
    yield
    unregister_everywhere(plugin)
"""


def test_the_testing_example_passes_under_pytest(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_example=doc_block("testing-background"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=2)


def test_the_testing_example_fails_when_the_order_is_not_announced(
    pytester: pytest.Pytester,
) -> None:
    """Its assertions can fail: a view that publishes nothing fails the first test."""
    broken = doc_block("testing-background").replace(
        'broadcast.channel("orders"', 'broadcast.channel("elsewhere"'
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_example=broken)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*no publish matched event='created', channel='orders'*"])
