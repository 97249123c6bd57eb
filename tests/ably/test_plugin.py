"""The `ably` driver as an installed plugin: found by name, cheap to list and import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from broadcasting.plugin import installed_drivers


def test_installed_through_the_entry_point() -> None:
    """The entry point names the Driver class; the core connects it with from_config."""
    info = {d.name: d for d in installed_drivers()}["ably"]
    assert info.distribution == "broadcasting-ably"
    assert info.module == "broadcasting_ably:BroadcastAblyDriver"
    import broadcasting_ably

    assert not hasattr(broadcasting_ably, "broadcasting_connect")


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_listing_importing_and_connecting_do_not_import_the_sdk() -> None:
    """`import ably` costs ~100 ms; it waits for the first publish."""
    out = _python(
        """
        import sys
        from broadcasting.cli import main
        main(["drivers"])
        assert "ably" not in sys.modules, "listed"
        import broadcasting_ably
        from broadcasting import Broadcast
        from broadcasting.drivers import BroadcastAblyDriver
        config = {"DRIVER": "ably", "DRIVERS": {"ably": {"secret": "app.key:s3cret"}}}
        with Broadcast(config) as broadcast:
            ably = broadcast.driver(BroadcastAblyDriver)
            assert "ably" not in sys.modules, "connected"
        assert "ably" not in sys.modules and "httpx" not in sys.modules, "closed"
        print("ok", ably.driver)
        """
    )
    assert "broadcasting-ably" in out
    assert out.strip().endswith("ok <BroadcastAblyDriver driver='ably' endpoint='main'>")
