"""Fault soak: many publishes through random network faults to a real soketi, every one checked.

Usage::

    python benchmarks/fault_soak.py                          # 20,000 publishes per mode
    python benchmarks/fault_soak.py --count 50000 --seed 7 --fault-rate 0.3
    python benchmarks/fault_soak.py --modes sync --ids sync-000123,sync-004567   # replay some

Between the driver and soketi sits the test suite's ``CountingProxy``; a fraction
(``--fault-rate``) of the publish requests meets one fault, drawn at random: the answer
lost after soketi got the request, a 500 after soketi got it, a 503, 429, 408 or 413
instead of forwarding, the connection closed before forwarding, a slow answer, an
answer later than the driver's timeout. A few publishes go to a closed port instead
(refused connections). A real WebSocket subscriber counts every event soketi
delivered; a marker published after the proxy went quiet makes sure nothing is still
on its way.

Each publish is classified by what the caller got (a Receipt: delivered; a
PublishError: its channel in ``failed`` or ``unknown``) and checked against what the
subscriber saw (docs/publishing.md):

- with the defaults: delivered exactly once; failed never; unknown at most once;
- with ``at_least_once``: delivered at least once; failed never; unknown any number
  of times up to the requests that reached soketi;
- always: every call returned a Receipt or raised a PublishError that puts its
  channel in exactly one outcome; no event reached the subscriber more often than
  requests carrying it reached soketi, and none that nobody published.

Modes: ``sync`` (``channel()`` from a pool of threads), ``async`` (``achannel()``,
many in flight, micro-batching on: the driver's default), and both again with
``at_least_once: True``. Every other delivery option is the default (2 retries).

Fault draws are seeded: a request's fault depends on ``--seed``, the publish ids it
carries and how many requests carried them before, so a publish sent alone meets the
same faults on every run with the same seed (``--ids`` replays just those publishes).

Prints Markdown tables on stdout; exits 1 if a promise broke, listing each offending
publish with the faults its requests met.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = ROOT / "tests" / "servers"  # the test suite's soketi, proxy and subscriber
if str(SERVERS) not in sys.path:
    sys.path.insert(0, str(SERVERS))

from http_proxy import ConnectAttempts, CountingProxy, Seen  # noqa: E402
from pusher_ws import Event, PusherSubscriber  # noqa: E402
from soketi_server import SoketiServer, free_port  # noqa: E402

from broadcasting import Broadcast, PublishError, Receipt  # noqa: E402

#: The runs: the path, and whether ``at_least_once`` is on.
MODES: dict[str, tuple[str, bool]] = {
    "sync": ("sync", False),
    "async": ("async", False),
    "sync-alo": ("sync", True),
    "async-alo": ("async", True),
}

#: Faults the proxy injects, with whether soketi gets the request first.
PROXY_FAULTS: dict[str, bool] = {
    "lost_answer": True,  # forwarded, then the connection is closed without the answer
    "500_after": True,  # forwarded, then a 500 instead of soketi's answer
    "503_before": False,
    "429_before": False,
    "408_before": False,
    "413_before": False,  # a proxy in front refusing the body (a shared request: sent alone)
    "dropped_before": False,  # the request is read, the connection closed, nothing forwarded
    "slow": True,  # forwarded, the answer comes late but within the driver's timeout
    "too_slow": True,  # forwarded, the answer comes after the driver's timeout
}
#: A publish sent to a port where nothing listens (connection refused: certainly not sent).
REFUSED = "refused"
#: The share of publishes sent to the closed port, as a fraction of ``fault_rate``.
REFUSED_SHARE = 0.1

OUTCOMES = ("delivered", "failed", "unknown")
T = TypeVar("T")
EVENT = "soak"


def seed_config(options: dict[str, Any]) -> dict[str, Any]:
    return {"DRIVER": "pusher", "DRIVERS": {"pusher": options}}


@dataclass(frozen=True)
class Settings:
    """One soak's parameters (the script's options)."""

    count: int = 20_000
    fault_rate: float = 0.2
    seed: int = 1
    threads: int = 16  # sync: publishing threads
    in_flight: int = 128  # async: achannel() calls under way at once
    timeout: float = 1.0  # the driver's timeout option (seconds)
    slow: float = 0.2  # a slow answer's delay (below the timeout)
    channels: int = 8
    ids: frozenset[str] | None = None  # publish only these payload ids
    stall: float = 120.0  # seconds without any call returning before giving up on the rest

    @property
    def too_slow(self) -> float:
        return self.timeout + 0.3


# -- faults -------------------------------------------------------------------------------


class Faults:
    """Decides each request's fault (seeded by what it carries) and records what happened."""

    def __init__(self, seed: int, rate: float, prefix: str) -> None:
        self.seed = seed
        self.rate = rate
        self.prefix = prefix
        self.kinds = tuple(PROXY_FAULTS)
        self.injected: Counter[str] = Counter()
        self.history: defaultdict[str, list[str]] = defaultdict(list)  # id -> per request
        self.forwarded: Counter[str] = Counter()  # id -> requests carrying it soketi got
        self._occurrences: Counter[str] = Counter()
        self._last: Seen | None = None
        self._last_kind: str | None = None

    def kind_for(self, seen: Seen) -> str | None:
        """The fault for ``seen`` (decided on the first call for it; the proxy asks per fault)."""
        if seen is not self._last:
            self._last, self._last_kind = seen, self._decide(seen)
        return self._last_kind

    def _decide(self, seen: Seen) -> str | None:
        ids = self.payload_ids(seen)
        if not ids:
            return None
        key = ",".join(ids)
        nth = self._occurrences[key]
        self._occurrences[key] += 1
        rng = random.Random(f"{self.seed}:{key}:{nth}")
        kind = rng.choice(self.kinds) if rng.random() < self.rate else None
        for pid in ids:
            self.history[pid].append(kind or "ok")
            if kind is None or PROXY_FAULTS[kind]:
                self.forwarded[pid] += 1
        if kind is not None:
            self.injected[kind] += 1
        return kind

    def payload_ids(self, seen: Seen) -> tuple[str, ...]:
        """The soak's payload ids a publish request carries (sorted, each once)."""
        if seen.method != "POST" or not seen.path.split("?")[0].endswith("events"):
            return ()
        try:
            body = seen.json()
        except ValueError:
            return ()
        events = body.get("batch", [body]) if isinstance(body, dict) else []
        ids = {e.get("data") for e in events if isinstance(e, dict)}
        return tuple(sorted(i for i in ids if isinstance(i, str) and i.startswith(self.prefix)))

    def install(self, proxy: CountingProxy, settings: Settings) -> None:
        """One standing fault per kind on ``proxy``, each matching the requests drawn for it."""

        def when(kind: str) -> Callable[[Seen], bool]:
            return lambda seen: self.kind_for(seen) == kind

        proxy.drop(times=None, when=when("lost_answer"), forward=True)
        proxy.fail(500, "Internal Server Error", times=None, when=when("500_after"), forward=True)
        for status in (503, 429, 408, 413):
            proxy.fail(
                status,
                f"refused by the proxy ({status})",
                times=None,
                when=when(f"{status}_before"),
            )
        proxy.drop(times=None, when=when("dropped_before"), forward=False)
        proxy.delay(settings.slow, times=None, when=when("slow"))
        proxy.delay(settings.too_slow, times=None, when=when("too_slow"))


class SoakProxy(CountingProxy):
    """The counting proxy, also counting the requests it is forwarding right now."""

    active = 0

    async def _forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> bytes:
        self.active += 1
        try:
            return await super()._forward(method, target, headers, body)
        finally:
            self.active -= 1

    async def quiet(self, settle: float = 0.5, limit: float = 30.0) -> None:
        """Return once nothing is being forwarded and no request came for ``settle`` seconds."""
        deadline = time.monotonic() + limit
        seen, since = len(self.requests), time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            now = len(self.requests)
            if now != seen or self.active:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= settle:
                return
        raise RuntimeError("the proxy did not go quiet")


# -- the subscriber -------------------------------------------------------------------------


class Counting:
    """A WebSocket subscriber on its own thread and loop, counting events per (channel, data)."""

    def __init__(self, server: SoketiServer, channels: Sequence[str]) -> None:
        self.server = server
        self.channels = tuple(channels)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.events = 0
        self._markers: dict[str, concurrent.futures.Future[None]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="soak-subscriber", daemon=True
        )
        self._sub: PusherSubscriber | None = None

    def _on_event(self, event: Event) -> None:
        marker = self._markers.get(event.data)
        if marker is not None:
            if not marker.done():
                marker.set_result(None)
            return
        self.events += 1
        self.counts[(event.channel, event.data)] += 1

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> Counting:
        self._thread.start()

        async def connect() -> PusherSubscriber:
            sub = await PusherSubscriber(self.server.ws_url(), on_event=self._on_event).connect()
            await sub.subscribe(*self.channels)
            return sub

        self._sub = self._call(connect())
        return self

    async def settle(
        self, publish: Callable[[str], Awaitable[object]], timeout: float = 60
    ) -> None:
        """Publish a marker (``publish(marker)``, to one of the channels) and wait for it:
        every event soketi sent before has then been counted."""
        marker = f"marker-{uuid.uuid4().hex}"
        arrived: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._markers[marker] = arrived
        await publish(marker)
        await asyncio.wait_for(asyncio.wrap_future(arrived), timeout)

    def stop(self) -> None:
        if self._sub is not None:
            self._call(self._sub.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


# -- one run -------------------------------------------------------------------------------


@dataclass
class Call:
    """One publish and what its caller got."""

    pid: str
    channel: str
    refused: bool  # sent to the closed port
    outcome: str = "never returned"  # delivered / failed / unknown, or what went wrong
    requests: int = 0
    said: str = ""


@dataclass
class RunResult:
    """What one mode's run saw."""

    mode: str
    settings: Settings
    publishes: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seen: Counter[tuple[str, int]] = field(default_factory=Counter)  # (outcome, times seen)
    proxy_requests: int = 0
    refused_connects: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    events: int = 0
    broken: list[str] = field(default_factory=list)

    def seen_total(self, times: int) -> int:
        """Publishes seen ``times`` times (``2``: twice or more)."""
        return sum(n for (_, k), n in self.seen.items() if (k >= 2 if times >= 2 else k == times))


def classify(call: Call, result: object) -> None:
    """Fill ``call`` from what the caller got: a Receipt, a PublishError, anything else."""
    if isinstance(result, Receipt):
        call.requests = result.requests
        call.outcome = "delivered" if result.channels == (call.channel,) else "misclassified"
        call.said = "" if call.outcome == "delivered" else f"receipt for {result.channels}"
        return
    if isinstance(result, PublishError):
        call.requests, call.said = result.requests, str(result)
        groups = {name: getattr(result, name) for name in OUTCOMES}
        found = [name for name, channels in groups.items() if call.channel in channels]
        every = sorted(c for channels in groups.values() for c in channels)
        call.outcome = found[0] if len(found) == 1 and every == [call.channel] else "misclassified"
        if call.outcome == "misclassified":
            call.said = f"{groups}: {result}"
        return
    if isinstance(result, BaseException):
        call.outcome = "raised"
        call.said = f"{type(result).__name__}: {result}"
        return
    call.outcome = "misclassified"
    call.said = f"returned {result!r}"


def check(call: Call, seen: int, forwarded: int, at_least_once: bool) -> str | None:
    """What promise ``call`` broke, given the times it was ``seen`` and the requests carrying it
    that reached soketi (``forwarded``); None if none."""
    if call.outcome not in OUTCOMES:
        return f"the call {call.outcome}"
    if seen > forwarded:
        return f"seen {seen} times, but only {forwarded} requests carrying it reached soketi"
    if call.outcome == "failed" and seen:
        return f"failed (certainly not delivered), yet seen {seen} times"
    if call.outcome == "delivered" and seen == 0:
        return "delivered, yet never seen"
    if not at_least_once and seen > 1:
        return f"{call.outcome}, seen {seen} times with the defaults (never twice)"
    return None


async def _run_sync(
    broadcasts: tuple[Broadcast, Broadcast], calls: Sequence[Call], settings: Settings
) -> None:
    loop = asyncio.get_running_loop()

    def publish(call: Call) -> None:
        target = broadcasts[1] if call.refused else broadcasts[0]
        try:
            result: object = target.channel(call.channel, call.pid, EVENT)
        except Exception as exc:  # classified: anything but a PublishError breaks a promise
            result = exc
        classify(call, result)

    pool = concurrent.futures.ThreadPoolExecutor(settings.threads, thread_name_prefix="soak")
    try:
        futures = [loop.run_in_executor(pool, publish, call) for call in calls]
        await _wait_all(futures, settings.stall)
    finally:  # a call that never returned is reported, not waited for
        pool.shutdown(wait=False, cancel_futures=True)


async def _run_async(
    broadcasts: tuple[Broadcast, Broadcast], calls: Sequence[Call], settings: Settings
) -> None:
    limit = asyncio.Semaphore(settings.in_flight)

    async def publish(call: Call) -> None:
        target = broadcasts[1] if call.refused else broadcasts[0]
        async with limit:
            try:
                result: object = await target.achannel(call.channel, call.pid, EVENT)
            except Exception as exc:  # classified: anything but a PublishError breaks a promise
                result = exc
        classify(call, result)

    tasks = [asyncio.ensure_future(publish(call)) for call in calls]
    pending = await _wait_all(tasks, settings.stall)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def _wait_all(
    futures: Iterable[asyncio.Future[None]], stall: float
) -> set[asyncio.Future[None]]:
    """Wait for every future, until none finished for ``stall`` seconds; return the rest."""
    pending = set(futures)
    while pending:
        done, pending = await asyncio.wait(pending, timeout=stall)
        if not done:
            break
    return pending


def plan(mode: str, settings: Settings, channels: Sequence[str]) -> list[Call]:
    """The publishes of one run: payload id, channel, and whether it goes to the closed port."""
    rng = random.Random(f"{settings.seed}:plan:{mode}")
    calls = []
    for index in range(settings.count):
        pid = f"{mode}-{index:06d}"
        channel = channels[rng.randrange(len(channels))]
        refused = rng.random() < settings.fault_rate * REFUSED_SHARE
        if settings.ids is None or pid in settings.ids:
            calls.append(Call(pid, channel, refused))
    return calls


async def soak(server: SoketiServer, mode: str, settings: Settings) -> RunResult:
    """One mode's run against ``server``: publish, wait until quiet, count, check."""
    path, at_least_once = MODES[mode]
    nonce = uuid.uuid4().hex[:8]
    channels = [f"soak-{mode}-{nonce}-{k}" for k in range(settings.channels)]
    calls = plan(mode, settings, channels)
    faults = Faults(settings.seed, settings.fault_rate, prefix=f"{mode}-")
    result = RunResult(mode, settings, publishes=len(calls))
    delivery: dict[str, Any] = {"timeout": settings.timeout}
    if at_least_once:
        delivery["at_least_once"] = True

    subscriber = Counting(server, channels).start()
    proxy = SoakProxy(server.port)
    proxy.start()
    refusing = ConnectAttempts(free_port())
    direct = Broadcast(seed_config(server.driver_options()))
    through = Broadcast(seed_config(server.driver_options(port=proxy.port, **delivery)))
    nowhere = Broadcast(seed_config(server.driver_options(port=refusing.port, **delivery)))
    try:
        faults.install(proxy, settings)
        started = time.perf_counter()
        if path == "sync":
            await _run_sync((through, nowhere), calls, settings)
        else:
            await _run_async((through, nowhere), calls, settings)
        result.elapsed = time.perf_counter() - started
        await proxy.quiet()
        await subscriber.settle(lambda marker: direct.achannel(channels[0], marker, "marker"))
        result.proxy_requests = len(proxy.posts())
        result.refused_connects = refusing.count
        result.injected = Counter(faults.injected)
        result.injected[REFUSED] = sum(call.refused for call in calls)
        result.events = subscriber.events
    finally:
        for broadcast in (through, nowhere, direct):
            await broadcast.aclose()
            await asyncio.to_thread(broadcast.close)
        refusing.stop()
        proxy.stop()
        subscriber.stop()

    counts = Counter(subscriber.counts)
    for call in calls:
        seen = counts.pop((call.channel, call.pid), 0)
        result.outcomes[call.outcome] += 1
        result.seen[(call.outcome, seen)] += 1
        broken = check(call, seen, faults.forwarded[call.pid], at_least_once)
        if broken:
            history = ", ".join(faults.history.get(call.pid, [])) or "no request reached the proxy"
            where = " (sent to the closed port)" if call.refused else ""
            result.broken.append(
                f"{call.pid} on {call.channel}{where}: {broken}; its requests met: {history}; "
                f"requests={call.requests}; said: {call.said[:300]}"
            )
    for (channel, data), times in sorted(counts.items()):
        result.broken.append(f"{data!r} on {channel}: seen {times} times, but nobody published it")
    return result


# -- output ---------------------------------------------------------------------------------


def _n(value: int) -> str:
    return f"{value:,}"


def tables(results: Sequence[RunResult]) -> str:
    """The results as three Markdown tables: outcomes, outcome by times seen, faults."""
    lines = [
        "| Mode | Publishes | Delivered | Failed | Unknown | Seen 0 | Seen 1 | Seen 2+ "
        "| Requests (proxy) | Refused connects | Elapsed | Promises |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        others = r.publishes - sum(r.outcomes[o] for o in OUTCOMES)
        lines.append(
            f"| {r.mode} | {_n(r.publishes)} | {_n(r.outcomes['delivered'])} "
            f"| {_n(r.outcomes['failed'])} | {_n(r.outcomes['unknown'])}"
            + (f" (+{others} other)" if others else "")
            + f" | {_n(r.seen_total(0))} | {_n(r.seen_total(1))} | {_n(r.seen_total(2))} "
            f"| {_n(r.proxy_requests)} | {_n(r.refused_connects)} | {r.elapsed:.1f} s "
            f"| {'kept' if not r.broken else f'**{len(r.broken)} broken**'} |"
        )
    most = max([2, *(k for r in results for (_, k) in r.seen)])
    lines += [
        "",
        "| Mode | Outcome | Publishes | " + " | ".join(f"Seen {k}" for k in range(most + 1)) + " |",
        "|---|---|---|" + "---|" * (most + 1),
    ]
    for r in results:
        names = [*OUTCOMES, *sorted(o for o in r.outcomes if o not in OUTCOMES)]
        for outcome in names:
            if not r.outcomes[outcome]:
                continue
            cells = " | ".join(_n(r.seen[(outcome, k)]) for k in range(most + 1))
            lines.append(f"| {r.mode} | {outcome} | {_n(r.outcomes[outcome])} | {cells} |")
    kinds = [*PROXY_FAULTS, REFUSED]
    lines += [
        "",
        "| Mode | Faults | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for r in results:
        cells = " | ".join(_n(r.injected[k]) for k in kinds)
        lines.append(f"| {r.mode} | {_n(sum(r.injected.values()))} | {cells} |")
    return "\n".join(lines) + "\n"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _main(args: argparse.Namespace, modes: Sequence[str]) -> list[RunResult]:
    settings = Settings(
        count=args.count,
        fault_rate=args.fault_rate,
        seed=args.seed,
        threads=args.threads,
        in_flight=args.in_flight,
        timeout=args.timeout,
        slow=args.slow,
        ids=frozenset(args.ids.split(",")) if args.ids else None,
    )
    results = []
    with SoketiServer() as server:
        for mode in modes:
            _log(
                f"[soak] {mode}: {settings.count:,} publishes, fault rate {settings.fault_rate} ..."
            )
            result = await soak(server, mode, settings)
            _log(f"[soak] {mode}: done in {result.elapsed:.1f} s, {len(result.broken)} broken")
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="publishes per mode")
    parser.add_argument("--fault-rate", type=float, default=0.2, help="share of requests faulted")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated of {list(MODES)}"
    )
    parser.add_argument("--threads", type=int, default=Settings.threads, help="sync publishers")
    parser.add_argument(
        "--in-flight", type=int, default=Settings.in_flight, help="async publishes at once"
    )
    parser.add_argument(
        "--timeout", type=float, default=Settings.timeout, help="the driver's timeout (s)"
    )
    parser.add_argument(
        "--slow", type=float, default=Settings.slow, help="a slow answer's delay (s)"
    )
    parser.add_argument(
        "--ids", default="", help="publish only these payload ids (comma-separated)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    if not 0 <= args.fault_rate <= 1:
        parser.error("--fault-rate must be between 0 and 1")

    if str(HERE) not in sys.path:  # `python benchmarks/fault_soak.py` puts HERE first already
        sys.path.append(str(HERE))
    from _harness import machine_info

    info = machine_info()
    started = time.monotonic()
    results = asyncio.run(_main(args, modes))
    command = " ".join(
        ["python benchmarks/fault_soak.py", *(argv if argv is not None else sys.argv[1:])]
    )
    print(
        f"Run {info['date']} on {info['cpu']}, {info['cores']} cores, {info['os']}, "
        f"{info['python_impl']} {info['python']}, Node {info['node']}: `{command}` "
        f"(seed {args.seed}, fault rate {args.fault_rate}, driver timeout {args.timeout} s, "
        f"{args.threads} threads, {args.in_flight} async in flight), "
        f"{time.monotonic() - started:.0f} s in all.\n"
    )
    print(tables(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "command": command,
                    "runs": [
                        {
                            "mode": r.mode,
                            "publishes": r.publishes,
                            "outcomes": dict(r.outcomes),
                            "seen": {f"{o}:{k}": n for (o, k), n in sorted(r.seen.items())},
                            "proxy_requests": r.proxy_requests,
                            "refused_connects": r.refused_connects,
                            "injected": dict(r.injected),
                            "elapsed": r.elapsed,
                            "broken": r.broken,
                        }
                        for r in results
                    ],
                },
                indent=2,
            )
            + "\n"
        )
    broken = [(r, line) for r in results for line in r.broken]
    if not broken:
        print("Every publish ended as promised.")
        return 0
    print(f"**{len(broken)} publishes broke a promise:**\n")
    for r in results:
        for line in r.broken[:100]:
            print(f"- [{r.mode}] {line}")
        if len(r.broken) > 100:
            print(f"- [{r.mode}] ... and {len(r.broken) - 100} more")
        if r.broken:
            ids = ",".join(line.split(" ", 1)[0] for line in r.broken[:20])
            print(
                f"\nReplay ({r.mode}): python benchmarks/fault_soak.py --modes {r.mode} "
                f"--count {args.count} --seed {args.seed} --fault-rate {args.fault_rate} "
                f"--timeout {args.timeout} --ids {ids}\n"
            )
    return 1


if __name__ == "__main__":
    sys.exit(main())
