"""The fault soak, short: publishes through random network faults end as promised.

It runs the code of ``benchmarks/fault_soak.py`` (the long run: ``python
benchmarks/fault_soak.py``), against the session's soketi, with fewer publishes:
a counting proxy between the driver and soketi injects a fault into a share of the
requests (an answer lost after soketi got the request, a 500 after it, a 503, 429,
408 or 413 before it, the connection closed before it, slow and too-slow answers),
a few publishes go to a closed port, and a real WebSocket subscriber counts every
event soketi delivered. Each publish's outcome (Receipt; PublishError with its
channel in ``failed`` or ``unknown``) is checked against those counts
(docs/publishing.md): with the defaults, delivered exactly once, failed never,
unknown at most once; with ``at_least_once``, delivered at least once, failed never.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from soketi_server import SoketiServer

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))

import fault_soak  # noqa: E402

pytestmark = pytest.mark.soketi

COUNT = 1_500
SETTINGS = fault_soak.Settings(count=COUNT, fault_rate=0.3, seed=20)


@pytest.mark.parametrize("mode", list(fault_soak.MODES))
async def test_every_publish_ends_as_promised(soketi: SoketiServer, mode: str) -> None:
    result = await fault_soak.soak(soketi, mode, SETTINGS)
    print(fault_soak.tables([result]))  # shown with -s, or when the test fails
    assert result.broken == [], "\n".join(result.broken[:20])
    assert result.publishes == COUNT == sum(result.outcomes[o] for o in fault_soak.OUTCOMES)
    path, at_least_once = fault_soak.MODES[mode]
    # the faults were injected on about the share of requests asked for
    faulted = sum(result.injected[k] for k in fault_soak.PROXY_FAULTS)
    assert 0.2 * result.proxy_requests < faulted < 0.4 * result.proxy_requests, result.injected
    assert result.injected[fault_soak.REFUSED] and result.refused_connects
    if path == "sync":  # one publish per request: the draws depend on the seed alone
        assert all(result.injected[k] for k in fault_soak.PROXY_FAULTS), result.injected
    assert result.seen[("failed", 0)] == result.outcomes["failed"] > 0
    if at_least_once:  # the subscriber counts duplicates: at_least_once makes some
        assert result.seen_total(2) > 0, result.seen
    else:  # both kinds of unknown happened, told apart by the subscriber's counts
        assert result.seen[("unknown", 0)] and result.seen[("unknown", 1)], result.seen
        assert result.seen_total(2) == 0


def test_the_checks_catch_what_would_break_a_promise() -> None:
    def call(outcome: str) -> fault_soak.Call:
        return fault_soak.Call("sync-000001", "c", refused=False, outcome=outcome)

    check = fault_soak.check
    assert check(call("delivered"), seen=1, forwarded=1, at_least_once=False) is None
    assert check(call("unknown"), seen=0, forwarded=1, at_least_once=False) is None
    assert check(call("unknown"), seen=2, forwarded=2, at_least_once=True) is None
    assert check(call("delivered"), seen=2, forwarded=2, at_least_once=False)  # twice
    assert check(call("unknown"), seen=2, forwarded=2, at_least_once=False)  # twice
    assert check(call("delivered"), seen=0, forwarded=1, at_least_once=True)  # lost
    assert check(call("failed"), seen=1, forwarded=1, at_least_once=True)  # not failed
    assert check(call("delivered"), seen=2, forwarded=1, at_least_once=True)  # from nowhere
    assert check(call("never returned"), seen=1, forwarded=1, at_least_once=False)
    raised = call("delivered")
    fault_soak.classify(raised, RuntimeError("a driver bug"))
    assert raised.outcome == "raised"
