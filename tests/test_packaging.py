"""The distributions are ready to publish: one version each, pinned core range, licenses."""

from __future__ import annotations

import importlib
import re
from importlib.metadata import distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "broadcasting": ("broadcasting", ROOT / "core"),
    "broadcasting-pusher": ("broadcasting_pusher", ROOT / "plugins" / "pusher_driver"),
    "broadcasting-ably": ("broadcasting_ably", ROOT / "plugins" / "ably_driver"),
    "broadcasting-webhook": ("broadcasting_webhook", ROOT / "examples" / "webhook"),
}


@pytest.mark.parametrize("dist", sorted(PACKAGES))
def test_the_installed_version_is_the_modules_version(dist: str) -> None:
    module, _ = PACKAGES[dist]
    assert distribution(dist).version == importlib.import_module(module).__version__


@pytest.mark.parametrize(
    "dist", ["broadcasting-pusher", "broadcasting-ably", "broadcasting-webhook"]
)
def test_drivers_pin_the_core_range_they_are_built_on(dist: str) -> None:
    import broadcasting

    requires = [r for r in distribution(dist).requires or [] if re.match(r"broadcasting\b", r)]
    assert requires, f"{dist} does not depend on broadcasting"
    major, minor, _ = broadcasting.__version__.split(".")
    assert f">={major}.{minor}" in requires[0] and f"<{major}.{int(minor) + 1}" in requires[0], (
        requires
    )


@pytest.mark.parametrize("dist", ["broadcasting", "broadcasting-pusher", "broadcasting-ably"])
def test_each_distribution_ships_its_license(dist: str) -> None:
    _, folder = PACKAGES[dist]
    assert (folder / "LICENSE").read_text().startswith("MIT License")
    assert 'license-files = ["LICENSE"]' in (folder / "pyproject.toml").read_text()
