"""Prove driver discovery from the outside: wheels installed into fresh virtual environments.

Run by `nox -s isolated` (or directly: `python tests/isolated/run.py`). For each
scenario it creates a new venv, installs only the wheels named, and runs checks
in that venv's own interpreter, so nothing of this checkout's environment helps.
Exits non-zero if any check fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {
    "core": ROOT / "core",
    "pusher": ROOT / "plugins" / "pusher_driver",
    "ably": ROOT / "plugins" / "ably_driver",
    "semaphore": ROOT / "tests" / "isolated" / "semaphore_driver",
    "webhook": ROOT / "examples" / "webhook",
}

COMMON = """
import json, subprocess, sys, os
from pathlib import Path
import broadcasting
from broadcasting import Broadcast, DriverNotFoundError
bin_dir = Path(sys.executable).parent
def cli(*args):
    out = subprocess.run([str(bin_dir / "broadcasting"), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout
listed = {d["name"]: d for d in json.loads(cli("drivers", "--json"))}
def not_importable(module):
    try:
        __import__(module)
    except ModuleNotFoundError:
        return True
    return False
"""

SCENARIOS: dict[str, tuple[list[str], str]] = {
    "core alone": (
        ["core"],
        """
        assert sorted(listed) == ["log", "memory", "null"], sorted(listed)
        assert all(d["distribution"] == "broadcasting" for d in listed.values())
        try:
            Broadcast().driver("pusher")
        except DriverNotFoundError as exc:
            assert "pip install broadcasting-pusher" in str(exc), str(exc)
            assert "log, memory, null" in str(exc), str(exc)
        else:
            raise AssertionError("pusher was found with only the core installed")
        try:
            from broadcasting.drivers import BroadcastPusherDriver
        except ImportError as exc:
            assert "pip install broadcasting-pusher" in str(exc)
        else:
            raise AssertionError("BroadcastPusherDriver imported with only the core installed")
        out = subprocess.run([str(bin_dir / "broadcasting"), "send", '{"order": 42}',
                              "--channel", "orders", "--event", "shipped"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "broadcast 'shipped' on orders" in out.stderr, out.stderr
        assert not_importable("pusher") and not_importable("ably")
        # the fake needs no pytest; the conformance kit, which ships in the core
        # wheel too, needs it only when used, and says so
        from broadcasting.testing import fake
        with fake() as recorder:
            Broadcast({"DRIVER": "log"}).channel("orders", {"id": 42}, "shipped")
        recorder.assert_sent("shipped", channel="orders", times=1)
        try:
            from broadcasting.testing import DriverConformance
        except ImportError as exc:
            assert "pip install pytest" in str(exc), str(exc)
        else:
            raise AssertionError("the conformance kit imported without pytest installed")
        """,
    ),
    "core + pusher": (
        ["core", "pusher"],
        """
        assert sorted(listed) == ["log", "memory", "null", "pusher"], sorted(listed)
        assert listed["pusher"]["distribution"] == "broadcasting-pusher"
        config = {"DRIVER": "pusher", "DRIVERS": {"pusher": {
            "app_id": "12345", "client": "app-key", "secret": "app-secret",
            "host": "127.0.0.1", "port": 6001, "ssl": False}}}
        broadcaster = Broadcast(config).driver()
        from broadcasting.drivers import BroadcastPusherDriver
        assert isinstance(broadcaster.driver, BroadcastPusherDriver), broadcaster
        assert "app-secret" not in repr(broadcaster) + repr(broadcaster.driver)
        assert not [m for m in sys.modules if m.split(".")[0] in ("ably", "broadcasting_ably")]
        assert not_importable("broadcasting_ably") and not_importable("ably")
        try:
            Broadcast().driver("ably")
        except DriverNotFoundError as exc:
            assert "pip install broadcasting-ably" in str(exc)
        else:
            raise AssertionError("ably found without broadcasting-ably")
        """,
    ),
    "core + ably": (
        ["core", "ably"],
        """
        assert sorted(listed) == ["ably", "log", "memory", "null"], sorted(listed)
        assert listed["ably"]["distribution"] == "broadcasting-ably"
        from broadcasting.drivers import BroadcastAblyDriver
        broadcaster = Broadcast({"DRIVERS": {"ably": {"secret": "app.key:s3cr3t"}}}).driver("ably")
        assert isinstance(broadcaster.driver, BroadcastAblyDriver)
        assert "s3cr3t" not in repr(broadcaster) + repr(broadcaster.driver)
        assert not_importable("broadcasting_pusher") and not_importable("pusher")
        """,
    ),
    "core + a third-party test package": (
        ["core", "semaphore"],
        """
        assert listed["semaphore"]["distribution"] == "broadcasting-semaphore"
        assert listed["semaphore"]["version"] == "0.0.1"
        path = Path(os.environ["SCENARIO_TMP"]) / "out.jsonl"
        receipt = Broadcast({"DRIVER": "semaphore", "DRIVERS": {"semaphore": {"path": str(path)}}}
                            ).channel(["a", "b"], {"n": 1}, "ping")
        assert receipt.driver == "semaphore"
        line = json.loads(path.read_text())
        assert line == {"channels": ["a", "b"], "event": "ping", "data": '{"n":1}'}, line
        from broadcasting.drivers import BroadcastSemaphoreDriver
        assert BroadcastSemaphoreDriver.__module__ == "broadcasting_semaphore"
        """,
    ),
    "core + the webhook example": (
        ["core", "webhook"],
        """
        assert listed["webhook"]["distribution"] == "broadcasting-webhook", listed
        driver = Broadcast({"DRIVER": "webhook", "DRIVERS": {"webhook": {
            "url": "http://127.0.0.1:9/hook", "secret": "whsec-test-123456"}}}).driver().driver
        assert type(driver).__module__.startswith("broadcasting_webhook"), type(driver)
        assert "whsec-test-123456" not in repr(driver)
        # the third-party path: its own test suite (conformance kit included) against
        # the installed wheels, with its own config and no pytest-asyncio
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pytest", "trustme"],
                       check=True)
        example = Path(os.environ["REPO_ROOT"]) / "examples" / "webhook"
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                             cwd=example, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert " passed" in out.stdout and "skipped" not in out.stdout, out.stdout[-500:]
        # the core wheel registers the broadcast_fake fixture with pytest (entry
        # point pytest11): an app's test uses it with no conftest and no plugin flag
        app_tests = Path(os.environ["SCENARIO_TMP"]) / "app_tests"
        app_tests.mkdir()
        (app_tests / "test_app.py").write_text(
            "from broadcasting import Broadcast\\n"
            "def test_views_broadcast(broadcast_fake):\\n"
            "    Broadcast({'DRIVER': 'log'}).channel('orders', {'id': 42}, 'shipped')\\n"
            "    broadcast_fake.assert_sent('shipped', channel='orders', times=1)\\n"
            "def test_a_miss_is_reported(broadcast_fake):\\n"
            "    broadcast_fake.assert_sent('shipped')\\n"
        )
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                             cwd=app_tests, capture_output=True, text=True)
        assert "1 failed, 1 passed" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
        assert "test_a_miss_is_reported" in out.stdout, out.stdout[-3000:]
        """,
    ),
}


def build_wheels(dist: Path, names: set[str]) -> None:
    for name in sorted(names):
        subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(PACKAGES[name])],
            check=True,
            stdout=subprocess.DEVNULL,
        )


def wheel_for(dist: Path, name: str) -> Path:
    project = {
        "core": "broadcasting-",
        "pusher": "broadcasting_pusher-",
        "ably": "broadcasting_ably-",
        "semaphore": "broadcasting_semaphore-",
        "webhook": "broadcasting_webhook-",
    }[name]
    matches = sorted(dist.glob(f"{project}*.whl"))
    assert matches, f"no wheel for {name} in {dist}"
    return matches[-1]


def run_scenario(title: str, names: list[str], check: str, dist: Path, work: Path) -> bool:
    env_dir = work / title.replace(" ", "-").replace("+", "and")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    wheels = [str(wheel_for(dist, name)) for name in names]
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--find-links", str(dist), *wheels],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        print(f"FAILED {title}: pip install\n{install.stderr}")
        return False
    code = COMMON + textwrap.dedent(check)
    scenario_tmp = env_dir / "tmp"
    scenario_tmp.mkdir()
    result = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        cwd=scenario_tmp,  # not the checkout: nothing importable from here
        env={
            **os.environ,
            "SCENARIO_TMP": str(scenario_tmp),
            "REPO_ROOT": str(ROOT),
            "PYTHONPATH": "",
        },
    )
    if result.returncode != 0:
        print(f"FAILED {title}\n{result.stdout}{result.stderr}")
        return False
    print(f"ok     {title}")
    return True


def main(argv: list[str]) -> int:
    """Run every scenario, or those whose title contains one of ``argv``."""
    scenarios = {
        title: spec
        for title, spec in SCENARIOS.items()
        if all((PACKAGES[name] / "pyproject.toml").exists() for name in spec[0])
        and (not argv or any(word in title for word in argv))
    }
    skipped = sorted(set(SCENARIOS) - set(scenarios))
    if skipped and os.environ.get("CI") and not argv:
        print(f"FAILED: packages missing for {skipped}")
        return 1
    with tempfile.TemporaryDirectory(prefix="broadcasting-isolated-") as tmp:
        work = Path(tmp)
        dist = work / "dist"
        build_wheels(dist, {name for names, _ in scenarios.values() for name in names})
        results = [
            run_scenario(title, names, check, dist, work)
            for title, (names, check) in scenarios.items()
        ]
    passed, failed = results.count(True), results.count(False)
    print(f"isolated: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
