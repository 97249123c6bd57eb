"""The benchmarks of issue 21 run against the current API: ``benchmarks/cluster_latency.py``
(a soketi cluster under a steady load), ``benchmarks/http_clients.py`` and
``benchmarks/paced_cost.py`` (where a publish's CPU goes), each at a tiny size.

A file of their own, apart from ``tests/test_benchmarks.py``: xdist gives each file to one
worker (``--dist loadfile``), and together the two were the longest file of the proof run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# -- benchmarks/cluster_latency.py (issue 21) ------------------------------------------------

BENCHMARKS = ROOT / "benchmarks"
SERVERS = ROOT / "tests" / "servers"
for _path in (BENCHMARKS, SERVERS):
    if str(_path) not in sys.path:
        sys.path.append(str(_path))


def _cluster_latency(*args: str, nginx: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the benchmark (soketi and Redis there, or skip; a failure under ``CI``).

    ``nginx=False``: nginx made to look missing (its balancer's ``start`` raises what it
    raises without nginx): a machine without nginx cannot be had here, and the benchmark's
    answer to one is what is tested."""
    from soketi_cluster import REDIS_HOST, REDIS_PORT, redis_reachable
    from soketi_pytest import unavailable
    from soketi_server import SoketiUnavailable, ensure_installed

    try:
        ensure_installed()
    except SoketiUnavailable as exc:
        unavailable("soketi", str(exc))
    if not redis_reachable():
        unavailable("Redis", f"no Redis on {REDIS_HOST}:{REDIS_PORT} for the soketi cluster")
    script = str(BENCHMARKS / "cluster_latency.py")
    lines = ["import runpy, sys", f"sys.path.insert(0, {str(SERVERS)!r})"]
    if not nginx:
        lines += [
            "import nginx_balancer",
            "def start(self, timeout=15.0):",
            "    raise nginx_balancer.NginxUnavailable('nginx is not installed (made so)')",
            "nginx_balancer.NginxBalancer.start = start",
        ]
    lines.append(f"sys.argv = [{script!r}, *{list(args)!r}]")
    lines.append(f"runpy.run_path({script!r}, run_name='__main__')")
    return subprocess.run(
        [sys.executable, "-c", "\n".join(lines)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


#: a tiny load: 60 publishes per run, 2 connections per channel; a slow answer on a loaded
#: machine must not end a publish unknown (--timeout)
TINY = (
    *("--nodes", "3", "--publishers", "2", "--rate", "60", "--seconds", "1"),
    *("--baseline", "0.5", "--subscribers", "12", "--channels", "6", "--clients", "2"),
    *("--timeout", "30", "--no-targets"),
)


@pytest.mark.server
def test_the_cluster_latency_benchmark_counts_every_delivery(tmp_path: Path) -> None:
    """The benchmark at a tiny size, through a real 3-node soketi cluster and a single node,
    sync and async: every publish delivered, every subscriber of its channel got it once (two
    connections per channel here), nothing lost, doubled or misrouted. Figures are printed,
    not asserted: timing is not a test's business. nginx made to look missing: the default
    run skips the balanced topology with a note and measures the other two."""
    out = tmp_path / "cluster.json"
    done = _cluster_latency(*TINY, "--json", str(out), nginx=False)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    assert "skipping the balanced topology: nginx is not installed (made so)" in done.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    runs = data["runs"]
    assert [(r["topology"], r["mode"]) for r in runs] == [
        ("cluster of 3 nodes", "sync"),
        ("cluster of 3 nodes", "async"),
        ("single node", "sync"),
        ("single node", "async"),
    ]
    assert "hosts list" in runs[0]["routing"]  # the driver's own spreading over the nodes
    assert {(r["balancer_cores"], r["balancer_request_us"]) for r in runs} == {(None, None)}
    for r in runs:
        counts = {k: r[k] for k in ("published", "delivered", "failed", "unknown", "broken")}
        assert counts == {"published": 60, "delivered": 60, "failed": 0, "unknown": 0, "broken": 0}
        assert (r["expected"], r["received"]) == (120, 120), r  # 2 subscribers per channel
        assert r["lost"] == r["doubled"] == r["failed_arrived"] == r["misrouted"] == 0, r
        assert (r["client_connections"], r["client_closed"], r["client_errors"]) == (12, 0, 0)
        assert r["late_from_earlier_run"] == 0
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["library_us"] > 0 and r["bare_request_us"] > 0
        assert len(r["client_cores"]) == 2
        assert len(r["load_before"]) == len(r["load_after"]) == 3
    assert data["settings"]["subscribers"] == 12 and data["machine"]["cores"]
    assert "p99" in done.stdout and "load average" in done.stdout
    assert "balancer:" not in done.stdout


def _nginx_installed() -> None:
    """Skip (a failure under ``CI``, which installs it) where nginx is not installed."""
    import shutil

    from soketi_pytest import unavailable

    found = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/local/sbin")
    if found is None:
        unavailable("nginx", "nginx is not installed (Debian: apt-get install nginx-light)")


@pytest.mark.server
def test_the_cluster_latency_benchmark_through_nginx(tmp_path: Path) -> None:
    """The balanced topology at a tiny size: the 3-node cluster behind a real nginx (the
    configuration docs/scaling.md gives), the publishers talking to nginx alone. Nothing
    lost or doubled, and nginx did work while they published (its worker's CPU, which is
    where the proxying happens: a publisher that went straight to a node would leave it at
    zero)."""
    _nginx_installed()
    out = tmp_path / "balanced.json"
    tiny = [*TINY]
    tiny[tiny.index("--rate") + 1] = "200"  # enough requests for nginx's CPU to show
    tiny[tiny.index("--seconds") + 1] = "2"
    done = _cluster_latency(*tiny, "--only", "balanced", "--json", str(out))
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    runs = json.loads(out.read_text(encoding="utf-8"))["runs"]
    name = "cluster of 3 nodes behind nginx"
    assert [(r["topology"], r["mode"]) for r in runs] == [(name, "sync"), (name, "async")]
    for r in runs:
        assert "to nginx on 127.0.0.1:" in r["routing"] and "hosts" not in r["routing"]
        counts = {k: r[k] for k in ("published", "delivered", "failed", "unknown", "broken")}
        assert counts == {
            "published": 400,
            "delivered": 400,
            "failed": 0,
            "unknown": 0,
            "broken": 0,
        }
        assert (r["expected"], r["received"]) == (800, 800), r
        assert r["lost"] == r["doubled"] == r["failed_arrived"] == r["misrouted"] == 0, r
        assert r["balancer_cores"] > 0, r
        assert r["balancer_request_us"] > 0 and r["bare_request_us"] > 0, r
    rows = [line for line in done.stdout.splitlines() if line.startswith(f"| {name} |")]
    assert len(rows) == 2 and all("| 800 / 800 | 0 / 0 |" in row for row in rows), rows
    assert done.stdout.count("; balancer: ") == 2
    assert done.stdout.count("through nginx on a kept-open connection: ") == 2


@pytest.mark.server
def test_the_cluster_latency_benchmark_named_balanced_needs_nginx() -> None:
    """``--only balanced`` where nginx is missing is an error that says so, not a skip."""
    done = _cluster_latency(*TINY, "--only", "balanced", nginx=False)
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-4000:]
    assert "cannot run the balanced topology (nginx): nginx is not installed" in done.stderr
    assert "skipping" not in done.stdout


@pytest.mark.server
def test_the_cluster_latency_benchmark_raises_every_nodes_batch_limit(tmp_path: Path) -> None:
    """``--max-batch 15``: every node of the cluster is started taking 15 events a request
    (the benchmark checks each with a request of 15 before publishing, and stops if one
    refuses), the driver is told the same, and the async publishes, lingering for company,
    are all delivered once. The control process ran beside the publishers in both phases."""
    out = tmp_path / "batch.json"
    tiny = [*TINY]
    tiny[tiny.index("--rate") + 1] = "200"
    args = ("--only", "cluster", "--modes", "async", "--max-batch", "15", "--linger", "0.05")
    done = _cluster_latency(*tiny, *args, "--json", str(out), nginx=False)
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    assert "Events per /batch_events request at most: 15" in done.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["settings"]["max_batch"] == 15
    [run] = data["runs"]
    assert (run["published"], run["delivered"], run["expected"], run["received"]) == (
        200,
        200,
        400,
        400,
    )
    assert run["lost"] == run["doubled"] == run["misrouted"] == 0, run
    assert run["control_quiet_us"] > 0 and run["control_busy_us"] > 0, run
    assert isinstance(run["library_system_us"], float), run


@pytest.mark.server
def test_the_cluster_latency_benchmark_runs_its_async_publishers_on_uvloop(tmp_path: Path) -> None:
    """``--loop uvloop``: the async publishers (and the control beside them) on uvloop, what
    ``uvicorn[standard]`` runs an app on; every publish delivered once, as on asyncio's."""
    out = tmp_path / "uvloop.json"
    args = ("--only", "single", "--modes", "async", "--loop", "uvloop", "--linger", "0.05")
    done = _cluster_latency(*TINY, *args, "--json", str(out), nginx=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    assert "on uvloop's event loop (--loop)" in done.stdout
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["settings"]["loop"] == "uvloop"
    [run] = data["runs"]
    assert run["published"] == run["delivered"] == 60 and run["received"] == run["expected"]
    assert run["lost"] == run["doubled"] == run["misrouted"] == 0, run


def test_the_cluster_latency_benchmark_says_when_uvloop_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    import cluster_latency

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    with pytest.raises(SystemExit) as info:
        cluster_latency._parse(["--loop", "uvloop"])
    assert info.value.code == 2
    assert "uvloop is not installed (pip install uvloop)" in capsys.readouterr().err


@pytest.mark.server
def test_the_cluster_latency_batch_check_refuses_a_node_left_at_ten() -> None:
    """The check that stops a ``--max-batch`` run can fail: a soketi left at its app's
    limit of 10 takes 10 events in one request and refuses 11, and the error says why."""
    import cluster_latency as bench
    from soketi_server import SoketiServer

    with SoketiServer() as node:
        bench.check_batch_limit([node], 10)
        with pytest.raises(RuntimeError, match="refused 11 events in one /batch_events") as info:
            bench.check_batch_limit([node], 11)
    assert "maxEventBatchSize is not --max-batch" in str(info.value)


def test_the_cluster_latency_tally_catches_a_broken_promise() -> None:
    """The tally counts what went wrong: a delivery lost, one doubled, a failed publish that
    arrived, an arrival on a connection that did not subscribe to that channel."""
    import cluster_latency as bench

    settings = bench.Settings(publishers=2, subscribers=4, channels=2, seconds=1, rate=4)
    # publisher p's seq s goes to channel (2 s + p) % 2 = p; connections c subscribe c % 2
    outcomes = [
        bytes([bench.DELIVERED, bench.DELIVERED]),
        bytes([bench.FAILED, bench.UNKNOWN]),
    ]
    records = [
        (0, 0, 0, 1.0),
        (0, 0, 2, 2.0),  # publisher 0's first: both subscribers of channel 0
        (0, 1, 0, 3.0),
        (0, 1, 0, 4.0),  # its second: twice on connection 0, never on connection 2
        (1, 0, 1, 5.0),  # publisher 1's first failed, yet arrived
        (1, 1, 0, 6.0),  # on connection 0, which is subscribed to channel 0, not 1
    ]
    report = {
        "records": records,
        "stray": {},
        "cpu": 0.1,
        "wall": 1.0,
        "lag_p99_ms": 1.0,
        "lag_max_ms": 2.0,
        "connections": 4,
        "closed": 0,
        "errors": 0,
    }
    result = bench.RunResult("t", "sync", "", 2, 4.0, 1.0, 4, 2)
    counts = bench.Counter(c % 2 for c in range(4))
    bench._tally(result, [report], outcomes, settings, counts)
    assert (result.lost, result.doubled, result.failed_arrived, result.misrouted) == (1, 1, 1, 1)
    assert (result.expected, result.received) == (6, 6)
    assert not result.promises_kept
    assert result.p50_ms == 2.0 and result.max_ms == 5.0  # first arrivals, not the doubled one


# -- benchmarks/http_clients.py (issue 21: the transport's CPU per request) ------------------


def _http_clients(*args: str, block: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the benchmark; ``block``: a package made to look not installed (``sys.modules``)."""
    from soketi_pytest import unavailable
    from soketi_server import SoketiUnavailable, ensure_installed

    try:
        ensure_installed()
    except SoketiUnavailable as exc:
        unavailable("soketi", str(exc))
    script = str(BENCHMARKS / "http_clients.py")
    lines = ["import runpy, sys"]
    if block is not None:  # an entry of None: ``import`` fails, ``find_spec`` finds nothing
        lines.append(f"sys.modules[{block!r}] = None")
    lines.append(f"sys.argv = [{script!r}, *{list(args)!r}]")
    lines.append(f"runpy.run_path({script!r}, run_name='__main__')")
    code = "\n".join(lines)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )


def _table(stdout: str) -> dict[str, list[float]]:
    """The printed table's rows: client -> its figures (min, median, ratio, per publish)."""
    rows = [line for line in stdout.splitlines() if line.startswith("| ")][1:]  # no header
    table: dict[str, list[float]] = {}
    for row in rows:
        label, *cells = (cell.strip() for cell in row.strip("|").split("|"))
        table[label] = [float(cell.replace(",", "")) for cell in cells]
    return table


@pytest.mark.server
def test_the_http_clients_benchmark_measures_every_installed_client() -> None:
    """A tiny run against a real soketi: a row per installed client, each with a positive CPU
    figure per request (every answer was checked, or the run would have exited 1), its ratio
    to aiohttp, its share per publish at 10 a request; then the budget line. Figures are not
    compared with each other: timing is not a test's business."""
    import http_clients as bench

    done = _http_clients("--count", "20", "--rate", "200", "--rounds", "2")
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    table = _table(done.stdout)
    expected = [c.label for c in bench.CLIENTS if c.installed]
    assert list(table) == expected, table
    always = ["aiohttp (the driver's session)", "driver asend (aiohttp + signing)"]
    always += ["asyncio streams, by hand", "http.client (the driver's sync pool)"]
    assert set(always) <= set(table), table  # they need nothing beyond the driver's own
    for label, (least, median, ratio, per_publish) in table.items():
        assert 0 < least <= median, label
        assert ratio > 0, label
        assert abs(per_publish - least / 10) <= 1, label
    assert table[expected[0]][2] == 1.0  # aiohttp is the reference
    assert "min of 2" in done.stdout and "20 requests at 200/s" in done.stdout
    assert "Budget (issue 21): 125 µs of CPU per publish in all" in done.stdout


@pytest.mark.server
def test_the_http_clients_benchmark_skips_a_client_that_is_not_installed() -> None:
    done = _http_clients(
        "--only", "aiohttp,httpcore", "--count", "5", "--rounds", "1", block="httpcore"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    assert "httpcore AsyncConnectionPool: skipped, httpcore is not installed" in done.stdout
    assert list(_table(done.stdout)) == ["aiohttp (the driver's session)"]


def test_the_http_clients_benchmark_takes_only_an_acknowledgement() -> None:
    """What counts as answered: a 200 with Pusher's or soketi's acknowledgement, nothing else
    (a run with any other answer exits 1)."""
    import http_clients as bench

    assert bench.acknowledged((200, b"{}")) and bench.acknowledged((200, b'{"ok":true}'))
    assert bench.acknowledged(None)  # the driver's asend checked the answer itself
    refused = (401, b'{"error":"Unauthorized","code":401}')
    for answer in [refused, (200, b""), (200, b"<html>"), (200, b'{"ok":false}'), (500, b"{}")]:
        assert not bench.acknowledged(answer), answer


# -- benchmarks/paced_cost.py (issue 21: a publish paced against back to back) ---------------


def _paced_cost(*args: str) -> subprocess.CompletedProcess[str]:
    from soketi_pytest import unavailable
    from soketi_server import SoketiUnavailable, ensure_installed

    try:
        ensure_installed()
    except SoketiUnavailable as exc:
        unavailable("soketi", str(exc))
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / "paced_cost.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.server
def test_the_paced_cost_benchmark_runs_each_workload_both_ways() -> None:
    """A tiny run against a real soketi: a row per workload with both figures and their
    ratio (figures are not compared: timing is not a test's business); the pusher rows'
    publishes shared requests ten at a time, or the run would have exited 1."""
    done = _paced_cost("--count", "40", "--rate", "400", "--rounds", "1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-4000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]  # no header
    cells = {row.strip("|").split("|")[0].strip(): row.strip("|").split("|")[1:] for row in rows}
    assert list(cells) == ["control", "core", "pusher"], done.stdout
    for name, (tight, spaced, ratio) in cells.items():
        float(tight), float(spaced)  # numbers, each way
        assert ratio.strip() == "n/a" or ratio.strip().endswith("x"), name
    assert "Budget (issue 21): 125 µs per publish" in done.stdout


@pytest.mark.server
def test_the_paced_cost_benchmark_refuses_publishes_that_did_not_share_requests() -> None:
    """Without a linger, paced publishes go one a request: the pusher figures would not be
    the ones issue 21's benchmark has, and the run says so instead of printing them."""
    done = _paced_cost("--only", "pusher", "--count", "20", "--rate", "100", "--linger", "0")
    assert done.returncode != 0
    assert re.search(r"pusher: \d+ requests for 40 publishes", done.stdout + done.stderr)
