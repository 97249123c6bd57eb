"""The distributions are ready to publish: one version each, pinned core range, licenses."""

from __future__ import annotations

import importlib
import re
from importlib.metadata import distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

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
    core = Version(broadcasting.__version__)
    major, minor = core.release[:2]
    allowed = Requirement(requires[0]).specifier
    # the tree's core itself (a pre-release until it is released), and nothing of the minor
    # version before it: the drivers use what it added (broadcasting.plugin's fork helpers)
    assert allowed.contains(core, prereleases=True), (requires, core)
    assert not allowed.contains(f"{major}.{minor - 1}.99", prereleases=True), requires
    assert not allowed.contains(f"{major}.{minor + 1}.0", prereleases=True), requires


def test_the_unreleased_tree_says_so() -> None:
    """Until a release, the tree's versions are the next one's pre-release, so that a driver
    built from it cannot be installed beside a released core that lacks what it imports."""
    import broadcasting
    from broadcasting.plugin import call_after_fork, in_forked_child

    assert callable(call_after_fork) and callable(in_forked_child)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    if changelog.split("\n## ", 2)[1].startswith("Unreleased"):
        assert Version(broadcasting.__version__).is_prerelease, broadcasting.__version__


@pytest.mark.parametrize("dist", ["broadcasting", "broadcasting-pusher", "broadcasting-ably"])
def test_each_distribution_ships_its_license(dist: str) -> None:
    _, folder = PACKAGES[dist]
    assert (folder / "LICENSE").read_text().startswith("MIT License")
    assert 'license-files = ["LICENSE"]' in (folder / "pyproject.toml").read_text()
