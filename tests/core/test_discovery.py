"""Finding drivers by name through entry points, in-process registration and isolation.

Fake distributions are real: a `*.dist-info` folder with METADATA and
entry_points.txt on sys.path, which importlib.metadata reads like any other.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from plugin_site import plugin_site

import broadcasting._plugins as plugins
from broadcasting import Broadcast, DriverNotFoundError, PluginLoadError, Receipt
from broadcasting.plugin import (
    Driver,
    Message,
    installed_drivers,
    register_driver,
    unregister_driver,
)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path where tests install fake distributions."""
    with plugin_site(tmp_path, "fake_") as folder:
        yield folder


DRIVER_MODULE = """
from broadcasting import Receipt
from broadcasting.plugin import Driver, hookimpl

class Broadcast{cls}Driver(Driver):
    name = {name!r}
    def publish(self, message):
        return Receipt(self.name, message.event, message.channels, message.id)

@hookimpl
def broadcasting_connect(name, options):
    if name == {name!r}:
        return Broadcast{cls}Driver.from_config(options)
"""


def install_fake(site: Path, dist: str, name: str, module: str, source: str) -> None:
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[broadcasting.drivers]\n{name} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


def test_builtins_come_from_the_cores_own_entry_points() -> None:
    infos = {info.name: info for info in installed_drivers()}
    for name in ("log", "memory", "null"):
        assert infos[name].distribution == "broadcasting"
        # the entry point names the Driver class itself: no connect hook needed
        assert infos[name].module == f"broadcasting.drivers.{name}:Broadcast{name.title()}Driver"
        assert infos[name].version


def test_a_packaged_driver_is_found_by_name_without_touching_the_core(site: Path) -> None:
    install_fake(
        site, "broadcasting-fax", "fax", "fake_fax", DRIVER_MODULE.format(cls="Fax", name="fax")
    )
    assert "fake_fax" not in sys.modules
    info = {i.name: i for i in installed_drivers()}["fax"]
    assert (info.distribution, info.version, info.module) == (
        "broadcasting-fax",
        "1.2.3",
        "fake_fax",
    )
    assert "fake_fax" not in sys.modules  # listing imports nothing
    receipt = Broadcast({"DRIVER": "fax"}).channel("c", "m")
    assert receipt.driver == "fax"
    from broadcasting.drivers import BroadcastFaxDriver  # type: ignore[attr-defined]

    assert BroadcastFaxDriver.__module__ == "fake_fax"


CLASS_DRIVER_MODULE = """
from broadcasting.plugin import Batch, Capabilities, Driver

SENT = []

class BroadcastTelexDriver(Driver):
    name = "telex"
    capabilities = Capabilities(channels_per_request=2)
    def __init__(self, prefix="!"):
        self.prefix = prefix
    @classmethod
    def from_config(cls, options):
        return cls(**options)
    def send(self, batch: Batch):
        SENT.append((batch.channels, self.prefix + batch.message.text))
"""


def test_an_entry_point_may_name_the_driver_class(site: Path) -> None:
    """`telex = "fake_telex:BroadcastTelexDriver"`: no connect hook, name written once."""
    install_fake(
        site, "broadcasting-telex", "telex", "fake_telex:BroadcastTelexDriver", CLASS_DRIVER_MODULE
    )
    (site / "fake_telex:BroadcastTelexDriver.py").rename(site / "fake_telex.py")
    config = {"DRIVER": "telex", "DRIVERS": {"telex": {"prefix": ">", "retries": 0}}}
    receipt = Broadcast(config).channel(["a", "b", "c"], "hi")
    import fake_telex  # type: ignore[import-not-found]

    assert fake_telex.SENT == [(("a", "b"), ">hi"), (("c",), ">hi")]
    assert receipt.requests == 2
    from broadcasting.drivers import BroadcastTelexDriver  # type: ignore[attr-defined]

    assert BroadcastTelexDriver is fake_telex.BroadcastTelexDriver


def test_only_the_selected_driver_is_imported(site: Path) -> None:
    install_fake(
        site, "broadcasting-aa", "aa", "fake_aa", DRIVER_MODULE.format(cls="Aa", name="aa")
    )
    install_fake(
        site, "broadcasting-bb", "bb", "fake_bb", DRIVER_MODULE.format(cls="Bb", name="bb")
    )
    Broadcast({"DRIVER": "aa"}).channel("c", "m")
    assert "fake_aa" in sys.modules
    assert "fake_bb" not in sys.modules


def test_an_entry_point_is_loaded_once_and_cached(site: Path) -> None:
    install_fake(
        site,
        "broadcasting-count",
        "count",
        "fake_count",
        DRIVER_MODULE.format(cls="Count", name="count")
        + "\nimport builtins\n"
        + "builtins.fake_count_imports = getattr(builtins, 'fake_count_imports', 0) + 1\n",
    )
    import builtins

    for _ in range(3):
        Broadcast({"DRIVER": "count"}).channel("c", "m")
    assert builtins.fake_count_imports == 1  # type: ignore[attr-defined]
    del builtins.fake_count_imports  # type: ignore[attr-defined]


def test_a_broken_plugin_is_named_and_isolated(site: Path) -> None:
    install_fake(
        site, "broadcasting-broken", "broken", "fake_broken", "import does_not_exist_xyz\n"
    )
    install_fake(
        site, "broadcasting-ok", "ok", "fake_ok", DRIVER_MODULE.format(cls="Ok", name="ok")
    )
    broadcast = Broadcast({"DRIVER": "broken"})
    with pytest.raises(PluginLoadError) as info:
        broadcast.channel("c", "m")
    message = str(info.value)
    assert "broadcasting-broken" in message
    assert "'broken'" in message and "fake_broken" in message
    assert "ModuleNotFoundError" in message and "does_not_exist_xyz" in message
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    # the failure is remembered, and every other driver still works
    with pytest.raises(PluginLoadError):
        broadcast.driver("broken")
    assert broadcast.driver("ok").channel("c", "m").driver == "ok"
    assert broadcast.driver("memory").channel("c", "m").driver == "memory"
    assert "broken" in {i.name for i in installed_drivers()}


def test_a_plugin_whose_hook_returns_nothing(site: Path) -> None:
    source = (
        "from broadcasting.plugin import hookimpl\n"
        "@hookimpl\n"
        "def broadcasting_connect(name, options):\n"
        "    return None\n"
    )
    install_fake(site, "broadcasting-mute", "mute", "fake_mute", source)
    with pytest.raises(PluginLoadError, match="returned None for 'mute'"):
        Broadcast({"DRIVER": "mute"}).driver()


def test_not_installed_lists_the_installed_and_suggests_the_closest() -> None:
    with pytest.raises(DriverNotFoundError) as info:
        Broadcast().driver("memroy")
    assert "Did you mean 'memory'?" in str(info.value)
    assert "pip install" not in str(info.value)  # only this project's own drivers get a hint
    assert {"log", "memory", "null"} <= set(info.value.installed)
    assert isinstance(info.value, LookupError)


def test_the_install_hint_is_only_for_this_projects_drivers() -> None:
    assert "Try: pip install broadcasting-pusher" in str(DriverNotFoundError("pusher", ["log"]))
    assert "Try: pip install broadcasting-ably" in str(DriverNotFoundError("Ably", ["log"]))
    assert "pip install" not in str(DriverNotFoundError("smoke-signal", ["log"]))


def test_seed_class_name_for_a_missing_plugin_fails_to_import() -> None:
    with pytest.raises(ImportError, match="No broadcasting driver named 'smokesignal'"):
        from broadcasting.drivers import BroadcastSmokeSignalDriver  # type: ignore[attr-defined]  # noqa: F401
    with pytest.raises(ImportError):
        from broadcasting.drivers import NotADriverName  # type: ignore[attr-defined]  # noqa: F401


class Pigeon(Driver):
    name = "pigeon"

    def publish(self, message: Message) -> Receipt:
        return Receipt(self.name, message.event, message.channels, message.id, ("coo",))


def test_register_a_driver_in_process() -> None:
    register_driver("pigeon", Pigeon)
    try:
        info = {i.name: i for i in installed_drivers()}["pigeon"]
        # the listing names the registered class, not the core's wrapper around it
        assert info.module == f"{__name__}.Pigeon"
        receipt = Broadcast({"DRIVER": "pigeon"}).channel("c", "m")
        assert receipt.ids == ("coo",)
        from broadcasting.drivers import BroadcastPigeonDriver  # type: ignore[attr-defined]

        assert BroadcastPigeonDriver is Pigeon
    finally:
        unregister_driver("pigeon")
    with pytest.raises(DriverNotFoundError):
        Broadcast({"DRIVER": "pigeon"}).driver()


def test_an_unregistered_class_is_connected_directly() -> None:
    broadcast = Broadcast()
    pigeon = broadcast.driver(Pigeon)
    assert isinstance(pigeon.driver, Pigeon)
    assert broadcast.driver(Pigeon) is pigeon
    assert pigeon.channel("c", "m").ids == ("coo",)


def test_a_plugin_object_passed_to_broadcast_provides_a_driver() -> None:
    from broadcasting.plugin import hookimpl

    class Provider:
        @hookimpl
        def broadcasting_connect(self, name: str, options: object) -> Driver | None:
            return Pigeon() if name == "homing" else None

    broadcast = Broadcast({"DRIVER": "homing"}, plugins=[Provider()])
    assert broadcast.channel("c", "m").ids == ("coo",)


def test_selecting_a_builtin_imports_no_other_driver_module() -> None:
    code = (
        "import sys\n"
        "from broadcasting import Broadcast\n"
        "Broadcast({'DRIVER': 'memory'}).channel('c', 'm')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'ably', 'pusher', 'broadcasting_pusher', 'broadcasting_ably', 'broadcasting_webhook'}"
        " or m in {'broadcasting.drivers.log', 'broadcasting.drivers.null'})\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def install_observer(site: Path, dist: str, module: str, source: str) -> None:
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[broadcasting.plugins]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


def test_an_installed_observer_plugin_wraps_every_broadcast(site: Path) -> None:
    install_observer(
        site,
        "broadcasting-audit",
        "fake_audit",
        """
        from broadcasting.plugin import hookimpl
        seen = []

        @hookimpl(wrapper=True)
        def broadcasting_publish(driver, message):
            receipt = yield
            seen.append((driver.name, message.event))
            return receipt
        """,
    )
    Broadcast({"DRIVER": "null"}).channel("c", "m", "one")
    Broadcast({"DRIVER": "memory"}).channel("c", "m", "two")
    import fake_audit  # type: ignore[import-not-found]

    assert fake_audit.seen == [("null", "one"), ("memory", "two")]


def test_a_broken_observer_plugin_is_named(site: Path) -> None:
    install_observer(site, "broadcasting-badaudit", "fake_badaudit", "raise ValueError('boom')\n")
    with pytest.raises(PluginLoadError, match=r"broadcasting-badaudit.*ValueError: boom"):
        Broadcast()


class _Stand:
    """A plugin passed to Broadcast that provides a driver name an installed package has."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked: list[str] = []

    @plugins.hookimpl
    def broadcasting_connect(self, name: str, options: object) -> Driver | None:
        self.asked.append(name)
        if name != self.name:
            return None

        class StandIn(Driver):
            def publish(self, message: Message) -> Receipt:
                return Receipt("stand-in", message.event, message.channels, message.id)

        return StandIn()


@pytest.mark.parametrize("kind", ["module", "class"])
def test_a_plugin_passed_to_broadcast_comes_before_the_installed_driver_of_its_name(
    site: Path, kind: str
) -> None:
    """docs/hooks.md: entry-point plugins come before those passed to Broadcast, which pluggy
    then calls first. A driver's entry point is registered only when its name is first
    used, after them: its hook ran first, and the installed driver took the name from the
    plugin the application passed (a stand-in in a test, a factory of its own)."""
    if kind == "module":
        source = DRIVER_MODULE.format(cls="Zeta", name="zeta")
        install_fake(site, "fake-zeta", "zeta", "fake_zeta", source)
    else:  # the entry point names the class; install_fake names the module's file by it
        source = DRIVER_MODULE.format(cls="Zeta", name="zeta")
        install_fake(site, "fake-zeta", "zeta", "fake_zeta:BroadcastZetaDriver", source)
        (site / "fake_zeta.py").write_text(textwrap.dedent(source))
    stand = _Stand("zeta")
    with Broadcast({"DRIVER": "zeta"}, plugins=[stand]) as broadcast:
        assert broadcast.channel("orders", {"id": 1}, "e").driver == "stand-in"
        # a name the plugin does not have still reaches the installed driver, once asked
        assert broadcast.driver("memory").driver.name == "memory"
    assert stand.asked == ["zeta", "memory"]
    with Broadcast({"DRIVER": "zeta"}) as alone:  # without it, the installed one
        assert type(alone.driver().driver).__name__ == "BroadcastZetaDriver"


@dataclass  # eq=True: __hash__ is None, so it cannot go in a set
class _UnhashableStand:
    """An application's plugin that cannot be hashed, standing in for a driver name."""

    name: str
    asked: list[str] = field(default_factory=list)

    @plugins.hookimpl
    def broadcasting_connect(self, name: str, options: object) -> Driver | None:
        self.asked.append(name)
        return Pigeon() if name == self.name else None


@dataclass
class _UnhashableDriverPlugin:
    """A factory plugin given to register_driver() that cannot be hashed either."""

    name: str

    @plugins.hookimpl
    def broadcasting_connect(self, name: str, options: object) -> Driver | None:
        if name != self.name:
            return None

        class Registered(Driver):
            def publish(self, message: Message) -> Receipt:
                return Receipt("registered", message.event, message.channels, message.id)

        return Registered()


def test_plugins_that_cannot_be_hashed_come_first_and_keep_working(site: Path) -> None:
    """The first fix of the order above asked pluggy for subsets of the plugins, which it
    keeps in sets: a plugin that cannot be hashed (a dataclass with eq, a SimpleNamespace)
    made every connect raise TypeError. Such plugins still come first, an installed driver's
    other hooks still run once its name is used, and a registered name still comes before
    the installed one."""
    wrapped = "\n".join(
        [
            "SEEN = []",
            "",
            "@hookimpl(wrapper=True)",
            "def broadcasting_publish(broadcast, driver, message):",
            "    SEEN.append(message.event)",
            "    return (yield)",
        ]
    )
    source = DRIVER_MODULE.format(cls="Zeta", name="zeta") + "\n" + wrapped + "\n"
    install_fake(site, "fake-zeta", "zeta", "fake_zeta", source)
    for name in ("eta", "theta"):  # two installed drivers, one also registered below
        module = f"fake_{name}"
        source = DRIVER_MODULE.format(cls=name.title(), name=name)
        install_fake(site, f"fake-{name}", name, module, source)
    stand = _UnhashableStand("zeta")
    seen: list[str] = []

    def observe(broadcast: object, driver: Driver, message: Message) -> Iterator[None]:
        seen.append(message.event)
        return (yield)

    observer = SimpleNamespace(broadcasting_publish=plugins.hookimpl(wrapper=True)(observe))
    with pytest.raises(TypeError):
        hash(stand)
    with pytest.raises(TypeError):
        hash(observer)
    register_driver("eta", _UnhashableDriverPlugin("eta"))
    try:
        with Broadcast({"DRIVER": "zeta"}, plugins=[stand, observer]) as broadcast:
            assert broadcast.channel("orders", {"id": 1}, "first").ids == ("coo",)
            # names the stand-in does not have: the registered one, then the installed one
            assert broadcast.driver("eta").channel("c", {}, "second").driver == "registered"
            assert broadcast.driver("theta").channel("c", {}, "third").driver == "theta"
        assert stand.asked == ["zeta", "eta", "theta"]
        assert seen == ["first", "second", "third"]
        fake_zeta = sys.modules["fake_zeta"]  # its name was used: loaded, though not asked
        fake_zeta.SEEN.clear()
        with Broadcast({"DRIVER": "zeta"}, plugins=[observer]) as alone:
            assert alone.channel("orders", {"id": 1}, "fourth").driver == "zeta"
        # the installed driver's other hook runs once its name is used
        assert fake_zeta.SEEN == ["fourth"]
    finally:
        unregister_driver("eta")
