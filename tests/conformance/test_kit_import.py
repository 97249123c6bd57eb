"""The kit ships inside the core wheel but never burdens ``import broadcasting``."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import broadcasting
import broadcasting.testing as kit


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_broadcasting_imports_and_publishes_without_pytest() -> None:
    """With pytest unimportable, the library and the fake work and the kit says what it needs."""
    result = _run(
        """
        import sys
        sys.modules["pytest"] = None  # make `import pytest` fail
        import broadcasting
        from broadcasting import Broadcast
        receipt = Broadcast({"DRIVER": "memory"}).channel("orders", {"id": 1}, "shipped")
        assert receipt.driver == "memory", receipt
        assert "broadcasting.testing" not in sys.modules
        # the fake is for unittest users too: it needs no pytest
        from broadcasting.testing import fake
        with fake() as recorder:
            Broadcast({"DRIVER": "memory"}).channel("orders", {"id": 2}, "shipped")
        recorder.assert_sent("shipped", channel="orders", times=1)
        # the conformance kit is pytest tests: it says what it needs
        try:
            from broadcasting.testing import DriverConformance
        except ImportError as exc:
            assert "pip install pytest" in str(exc), str(exc)
            assert "DriverConformance" in str(exc), str(exc)
        else:
            raise AssertionError("the conformance kit imported without pytest")
        """
    )
    assert result.returncode == 0, result.stderr


def test_import_broadcasting_does_not_import_pytest() -> None:
    result = _run(
        """
        import sys
        import broadcasting, broadcasting.drivers.memory, broadcasting.cli
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("pytest", "_pytest"))
        assert not leaked, leaked
        assert "broadcasting.testing" not in sys.modules
        """
    )
    assert result.returncode == 0, result.stderr


def test_the_kit_is_part_of_the_core_package() -> None:
    """``broadcasting.testing`` lives in the core's source tree, so the wheel ships it."""
    assert kit.__file__ is not None and broadcasting.__file__ is not None
    assert kit.__name__ == "broadcasting.testing"
    assert kit.__file__.startswith(broadcasting.__file__.rsplit("__init__.py", 1)[0])
    assert set(kit.__all__) >= {"DriverConformance", "Features", "Observer", "DeliveryRecorder"}
