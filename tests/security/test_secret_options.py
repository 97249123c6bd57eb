"""Issue 17, item 12: options a driver declares secret reach it as one type, a Secret.

A Driver's ``secret_options`` (options that hold a secret though not named
so) reach its ``from_config`` wrapped on every path where the core knows the
class before connecting: an entry point or ``register_driver()`` naming the
class, ``Broadcast.driver(cls)``, ``with_options()``. A factory plugin (its own
``broadcasting_connect``) builds a class the core cannot know in advance: it
declares the names on itself. Connecting a driver never changes
``broadcast.config``, and the configuration holds no option as text at rest.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from plugin_site import plugin_site

import broadcasting._plugins as plugins
from broadcasting import Broadcast, Broadcaster, PluginLoadError, Receipt
from broadcasting.plugin import (
    Driver,
    Message,
    Secret,
    hookimpl,
    register_driver,
    unregister_driver,
)
from broadcasting.testing._suite.leaks import holders

URL = "https://hooks.example.test/t/tok-4f1b9e0c2a77"
OTHER_URL = "https://hooks.example.test/t/tok-other-83d0aa51"


class Hooked(Driver):
    """Declares ``url`` secret; records the type each option reached ``from_config`` as."""

    name = "hooked"
    secret_options = frozenset({"url"})
    seen: list[dict[str, type]] = []  # noqa: RUF012 - a test's record

    def __init__(self, url: Secret, region: str) -> None:
        self.url = url
        self.region = region

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> Hooked:
        cls.seen.append({key: type(value) for key, value in options.items()})
        url = options["url"]
        return cls(url if isinstance(url, Secret) else Secret(url), options.get("region", "eu"))

    def publish(self, message: Message) -> Receipt:
        return Receipt(self.name, message.event, message.channels, message.id)


def _config(name: str = "hooked", **extra: Any) -> dict[str, Any]:
    return {"DRIVER": name, "DRIVERS": {name: {"url": URL, "region": "eu", **extra}}}


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    Hooked.seen.clear()
    yield
    unregister_driver("hooked")


def _assert_wrapped_everywhere(broadcast: Broadcast, driver: Broadcaster[Any]) -> None:
    """from_config got a Secret; nothing reachable from the driver holds the URL as text."""
    assert Hooked.seen, "from_config was not called"
    assert all(seen["url"] is Secret for seen in Hooked.seen), Hooked.seen
    assert all(seen["region"] is str for seen in Hooked.seen)  # only what is declared
    assert driver.options["url"] == Secret(URL)  # the core's copy, for with_options
    assert holders(driver, [URL]) == []
    assert holders(broadcast, [URL]) == []


def test_registered_class(tmp_path: Path) -> None:
    register_driver("hooked", Hooked)
    broadcast = Broadcast(_config())
    driver = broadcast.driver()
    assert isinstance(driver.driver, Hooked)
    _assert_wrapped_everywhere(broadcast, driver)


def test_a_class_no_plugin_provides() -> None:
    broadcast = Broadcast(_config())
    driver = broadcast.driver(Hooked)
    _assert_wrapped_everywhere(broadcast, driver)


def test_with_options() -> None:
    register_driver("hooked", Hooked)
    broadcast = Broadcast(_config())
    driver = broadcast.driver("hooked").with_options(url=OTHER_URL, region="us")
    assert isinstance(driver.driver, Hooked) and driver.driver.region == "us"
    assert Hooked.seen[-1] == {"url": Secret, "region": str}
    assert holders(driver, [OTHER_URL, URL]) == []
    # the same options again give the same driver: keyed by value, wrapped or not
    assert broadcast.driver("hooked").with_options(url=OTHER_URL, region="us") is driver
    assert broadcast.driver(Hooked).with_options(url=Secret(OTHER_URL), region="us") is driver


# -- an installed distribution whose entry point names the class ------------------------

ENTRY_POINT_MODULE = """
from broadcasting import Receipt
from broadcasting.plugin import Driver, Secret

SEEN = []

class BroadcastHookedEpDriver(Driver):
    name = "hooked-ep"
    secret_options = frozenset({"url"})

    @classmethod
    def from_config(cls, options):
        SEEN.append({key: type(value) for key, value in options.items()})
        driver = cls()
        url = options["url"]
        driver.url = url if isinstance(url, Secret) else Secret(url)
        return driver

    def publish(self, message):
        return Receipt(self.name, message.event, message.channels, message.id)
"""

FACTORY_MODULE = """
from broadcasting import Receipt
from broadcasting.plugin import Driver, Secret, hookimpl

SEEN = []
{declaration}

class BroadcastFactoryDriver(Driver):
    name = {name!r}
    secret_options = frozenset({{"url"}})

    def publish(self, message):
        return Receipt(self.name, message.event, message.channels, message.id)

@hookimpl
def broadcasting_connect(name, options):
    if name != {name!r}:
        return None
    SEEN.append({{key: type(value) for key, value in options.items()}})
    driver = BroadcastFactoryDriver()
    url = options["url"]
    driver.url = url if isinstance(url, Secret) else Secret(url)
    return driver
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path where a test installs a fake distribution."""
    try:
        with plugin_site(tmp_path, "fake_secret_") as folder:
            yield folder
    finally:
        plugins._class_plugins.pop("hooked-ep", None)
        plugins._entry_points.cache_clear()


def _install(site: Path, driver: str, target: str, module: str, source: str) -> None:
    info = site / f"fake_secret_{driver.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-{driver}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[broadcasting.drivers]\n{driver} = {target}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


def test_an_entry_point_naming_the_class(site: Path) -> None:
    _install(
        site,
        "hooked-ep",
        "fake_secret_ep:BroadcastHookedEpDriver",
        "fake_secret_ep",
        ENTRY_POINT_MODULE,
    )
    broadcast = Broadcast(_config("hooked-ep"))
    driver = broadcast.driver()
    seen = sys.modules["fake_secret_ep"].SEEN
    assert seen == [{"url": Secret, "region": str}]
    assert holders(driver, [URL]) == []
    assert holders(broadcast, [URL]) == []
    # and the same through with_options and Broadcast.driver(cls)
    driver.with_options(url=OTHER_URL)
    broadcast.driver(type(driver.driver))
    assert all(s["url"] is Secret for s in seen), seen


@pytest.mark.parametrize(
    ("name", "declaration", "expected"),
    [
        ("factory-a", 'secret_options = frozenset({"url"})', Secret),  # declared: wrapped
        ("factory-b", "", str),  # not declared: the core cannot know, passed as written
    ],
)
def test_a_factory_plugin(site: Path, name: str, declaration: str, expected: type) -> None:
    module = f"fake_secret_{name.replace('-', '_')}"
    _install(site, name, module, module, FACTORY_MODULE.format(name=name, declaration=declaration))
    broadcast = Broadcast(_config(name))
    driver = broadcast.driver()
    seen = sys.modules[module].SEEN
    assert seen == [{"url": expected, "region": str}]
    # whoever built it, the copy the core keeps wraps what the class declares
    assert driver.options["url"] == Secret(URL)
    assert holders(driver, [URL]) == []
    assert holders(broadcast, [URL]) == []


def test_a_factory_plugin_with_a_malformed_declaration(site: Path) -> None:
    module = "fake_secret_factory_c"
    source = FACTORY_MODULE.format(name="factory-c", declaration='secret_options = "url"')
    _install(site, "factory-c", module, module, source)
    with pytest.raises(PluginLoadError, match="secret_options must be a set of option names"):
        Broadcast(_config("factory-c")).driver()


def test_a_plugin_object_may_declare_them_too() -> None:
    """A plugin object given to register_driver (a factory) declares them as an attribute."""
    got: list[type] = []

    @hookimpl
    def broadcasting_connect(name: str, options: Mapping[str, Any]) -> Driver | None:
        if name != "hooked":
            return None
        got.append(type(options["url"]))
        return Hooked.from_config(options)

    plugin = SimpleNamespace(
        broadcasting_connect=broadcasting_connect, secret_options=frozenset({"url"})
    )
    register_driver("hooked", plugin)
    Broadcast(_config()).driver()
    assert got == [Secret]


# -- the configuration: never changed by connecting, no option held as text ------------


def test_connecting_never_changes_the_configuration() -> None:
    register_driver("hooked", Hooked)
    broadcast = Broadcast(_config(api_key="k-1"))
    config = broadcast.config
    before = dict(config.options("hooked"))
    drivers_before = config.drivers
    broadcast.driver()
    broadcast.driver().with_options(url=OTHER_URL)
    broadcast.driver(Hooked)
    assert broadcast.config is config
    assert dict(config.options("hooked")) == before
    assert config.drivers == drivers_before
    # what reading it gives, before and after: text for text, a Secret for a secret name
    assert before == {"url": URL, "region": "eu", "api_key": Secret("k-1")}
    # at rest, it holds no option string as text: not even those only the driver knows
    assert holders(config, [URL, "k-1"]) == []
    assert URL not in repr(config)


def test_the_configuration_is_read_only() -> None:
    broadcast = Broadcast(_config())
    with pytest.raises(AttributeError):
        broadcast.config.driver = "other"
    drivers = broadcast.config.drivers
    drivers["hooked"] = {}  # type: ignore[index]  # a copy: the configuration is untouched
    assert broadcast.config.options("hooked")["url"] == URL
