"""How the core reports a plugin that is wrong, as a driver author met them (h124's walkthrough):
pluggy's and pytest's way, each error naming the plugin, the hook and what was wrong, the
driver's own traceback kept, and no option's value in any message.

- a driver plugin with no ``broadcasting_connect`` at all is said to have none (not that its
  hook "returned None"), and an installed one is named with its distribution;
- a hook implementation that matches no hook spec (``broadcasting_publsh``) is refused, as
  pluggy's ``check_pending()`` would, instead of never being called;
- a plugin passed to Broadcast is called by its module and class in pluggy's errors, not
  by its ``id()``;
- a plain exception from a driver's ``from_config`` or a plugin's ``broadcasting_connect``
  reaches the caller as it is, with a PEP 678 note naming the driver, the hook and the plugin.

Installed plugins are real distributions: a ``*.dist-info`` folder with METADATA and
entry_points.txt on sys.path, which importlib.metadata reads like any installed package's.
"""

from __future__ import annotations

import textwrap
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest
from plugin_site import plugin_site

from broadcasting import Broadcast, ConfigurationError, PluginLoadError
from broadcasting._plugins import register_everywhere, unregister_everywhere
from broadcasting.plugin import Driver, Message, hookimpl, register_driver, unregister_driver

SECRET = "s3cr3t-value-never-shown"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path where the tests install distributions."""
    with plugin_site(tmp_path, "fake_h125") as folder:
        yield folder


def install(site: Path, dist: str, group: str, name: str, module: str, source: str) -> None:
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name} = {module}\n")
    (site / f"{module.split(':')[0]}.py").write_text(textwrap.dedent(source))


# 1. a driver plugin with no broadcasting_connect hook


def test_an_installed_driver_module_with_no_connect_hook_says_so_and_names_its_package(
    site: Path,
) -> None:
    install(
        site,
        "broadcasting-h125-nohook",
        "broadcasting.drivers",
        "h125nohook",
        "fake_h125_nohook",
        '"""a factory module that forgot broadcasting_connect"""\n',
    )
    with pytest.raises(PluginLoadError) as info:
        Broadcast({"DRIVER": "h125nohook"}).driver()
    said = str(info.value)
    assert "implements no broadcasting_connect hook and is not a Driver class" in said
    assert "returned None" not in said
    assert info.value.distribution == "broadcasting-h125-nohook"
    assert "from broadcasting-h125-nohook" in said and "unknown distribution" not in said
    assert info.value.value == "fake_h125_nohook"  # the entry point's value, not a repr


def test_a_registered_plugin_with_no_connect_hook_says_so() -> None:
    class NoHook:
        pass

    register_driver("h125-nohook", NoHook())
    try:
        with pytest.raises(PluginLoadError) as info:
            Broadcast({"DRIVER": "h125-nohook"}).driver()
    finally:
        unregister_driver("h125-nohook")
    said = str(info.value)
    assert "implements no broadcasting_connect hook and is not a Driver class" in said
    assert f"({__name__}.{NoHook.__qualname__})" in said  # its class, not an object's repr
    assert " object at 0x" not in said


def test_an_installed_driver_whose_hook_returns_no_driver_names_its_package(site: Path) -> None:
    install(
        site,
        "broadcasting-h125-wrong",
        "broadcasting.drivers",
        "h125wrong",
        "fake_h125_wrong",
        """
        from broadcasting.plugin import hookimpl

        @hookimpl
        def broadcasting_connect(name, options):
            return {"not": "a driver"} if name == "h125wrong" else None
        """,
    )
    with pytest.raises(PluginLoadError) as info:
        Broadcast({"DRIVER": "h125wrong"}).driver()
    assert "returned dict, not a Driver" in str(info.value)
    assert info.value.distribution == "broadcasting-h125-wrong"


# 2. a hook implementation that matches no hook spec


class Misspelt:
    @hookimpl
    def broadcasting_publsh(self, driver: Driver, message: Message) -> None:
        raise AssertionError("never called")


def test_a_misspelt_hook_of_a_plugin_passed_to_broadcast_is_refused() -> None:
    with pytest.raises(pluggy.PluginValidationError) as info:
        Broadcast({"DRIVER": "memory"}, plugins=[Misspelt()])
    said = str(info.value)
    assert f"Plugin '{__name__}.Misspelt'" in said
    assert "'broadcasting_publsh' is not a broadcasting hook" in said
    assert "did you mean 'broadcasting_publish'?" in said
    assert "optionalhook=True" in said


def test_a_hook_marked_optional_is_accepted() -> None:
    class Optional:
        @hookimpl(optionalhook=True)
        def other_project_hook(self) -> None:
            raise AssertionError("never called")

    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[Optional()])
    assert broadcast.channel("c", "m").driver == "memory"


def test_an_installed_plugin_with_a_misspelt_hook_is_refused_with_its_package(
    site: Path,
) -> None:
    install(
        site,
        "broadcasting-h125-typo",
        "broadcasting.plugins",
        "h125typo",
        "fake_h125_typo",
        """
        from broadcasting.plugin import hookimpl

        @hookimpl
        def broadcasting_publsh(driver, message):
            return None
        """,
    )
    with pytest.raises(PluginLoadError) as info:
        Broadcast({"DRIVER": "memory"})
    said = str(info.value)
    assert info.value.distribution == "broadcasting-h125-typo"
    assert "'broadcasting_publsh' is not a broadcasting hook" in said
    assert "did you mean 'broadcasting_publish'?" in said


def test_an_installed_driver_with_a_misspelt_hook_is_refused_with_its_package(
    site: Path,
) -> None:
    install(
        site,
        "broadcasting-h125-typodrv",
        "broadcasting.drivers",
        "h125typodrv",
        "fake_h125_typodrv",
        """
        from broadcasting.plugin import hookimpl

        @hookimpl
        def broadcasting_conect(name, options):
            return None
        """,
    )
    with pytest.raises(PluginLoadError) as info:
        Broadcast({"DRIVER": "h125typodrv"}).driver()
    said = str(info.value)
    assert info.value.distribution == "broadcasting-h125-typodrv"
    assert "'broadcasting_conect' is not a broadcasting hook" in said
    assert "did you mean 'broadcasting_connect'?" in said


def test_a_registered_driver_plugin_with_a_misspelt_hook_is_refused_and_not_kept() -> None:
    class Factory:
        @hookimpl
        def broadcasting_connect(self, name: str, options: Any) -> Driver | None:
            raise AssertionError("not asked: refused before")

        @hookimpl
        def broadcasting_publsh(self, driver: Driver, message: Message) -> None:
            raise AssertionError("never called")

    factory = Factory()
    register_driver("h125-typo", factory)
    broadcast = Broadcast({"DRIVER": "memory"})
    try:
        for _ in range(2):  # refused each time: not left registered by the first
            with pytest.raises(pluggy.PluginValidationError, match="'broadcasting_publsh'"):
                broadcast.driver("h125-typo")
            assert not broadcast.plugin_manager.is_registered(factory)
    finally:
        unregister_driver("h125-typo")
    assert broadcast.channel("c", "m").driver == "memory"


def test_a_plugin_registered_everywhere_with_a_misspelt_hook_is_refused() -> None:
    broadcast = Broadcast({"DRIVER": "memory"})
    plugin = Misspelt()
    with pytest.raises(pluggy.PluginValidationError, match="'broadcasting_publsh'"):
        register_everywhere(plugin)
    try:
        assert not broadcast.plugin_manager.is_registered(plugin)
        assert Broadcast({"DRIVER": "memory"}).channel("c", "m").driver == "memory"
    finally:
        unregister_everywhere(plugin)


# 3. plugins passed to Broadcast have readable names


class WrongArg:
    @hookimpl
    def broadcasting_publish(self, drv: Driver, message: Message) -> None:
        return None


class Observer:
    @hookimpl
    def broadcasting_publish(self, driver: Driver, message: Message) -> None:
        return None


class AsClass:
    """A class registered as a plugin itself (its hooks static), not an instance of it."""

    @staticmethod
    @hookimpl
    def broadcasting_publish(driver: Driver, message: Message) -> None:
        return None


def test_a_plugin_passed_to_broadcast_is_named_by_its_class_in_pluggys_errors() -> None:
    with pytest.raises(pluggy.PluginValidationError) as info:
        Broadcast({"DRIVER": "memory"}, plugins=[WrongArg()])
    said = str(info.value)
    assert f"Plugin '{__name__}.WrongArg' for hook 'broadcasting_publish'" in said
    assert str(id(info.value.plugin)) not in said


def test_two_plugins_of_one_class_get_unique_readable_names() -> None:
    first, second = Observer(), Observer()
    broadcast = Broadcast({"DRIVER": "memory"}, plugins=[first, second, AsClass])
    pm = broadcast.plugin_manager
    assert pm.get_name(first) == f"{__name__}.Observer"
    assert pm.get_name(second) == f"{__name__}.Observer#2"
    assert pm.get_name(AsClass) == f"{__name__}.AsClass"  # its own name, not its type's
    assert broadcast.channel("c", "m").driver == "memory"


def test_an_installed_plugin_with_a_wrong_argument_is_named_by_its_entry_point(
    site: Path,
) -> None:
    install(
        site,
        "broadcasting-h125-arg",
        "broadcasting.plugins",
        "h125arg",
        "fake_h125_arg",
        """
        from broadcasting.plugin import hookimpl

        @hookimpl
        def broadcasting_publish(drv, message):
            return None
        """,
    )
    with pytest.raises(PluginLoadError) as info:
        Broadcast({"DRIVER": "memory"})
    said = str(info.value)
    assert "Plugin 'fake_h125_arg' for hook 'broadcasting_publish'" in said
    assert "'drv'" in said
    assert info.value.distribution == "broadcasting-h125-arg"


# 4. a plain exception while a driver connects: kept, with a note


class Buggy(Driver):
    name = "h125-buggy"

    @classmethod
    def from_config(cls, options: Any) -> Buggy:
        raise RuntimeError(f"bug reading {sorted(options)}")  # the keys, never the values

    def send(self, batch: Any) -> None:
        return None


def _notes(error: BaseException) -> list[str]:
    notes = getattr(error, "__notes__", [])
    assert isinstance(notes, list)
    return notes


def _raised_in(error: BaseException) -> traceback.FrameSummary:
    return traceback.extract_tb(error.__traceback__)[-1]


def test_a_registered_driver_class_whose_from_config_raises_keeps_its_error_with_a_note() -> None:
    register_driver("h125-buggy", Buggy)
    config = {"DRIVER": "h125-buggy", "DRIVERS": {"h125-buggy": {"token": SECRET}}}
    try:
        with pytest.raises(RuntimeError, match="bug reading") as info:
            Broadcast(config).channel("c", "m")
    finally:
        unregister_driver("h125-buggy")
    assert type(info.value) is RuntimeError  # not wrapped: its traceback is the driver's
    assert _raised_in(info.value).name == "from_config"
    assert _raised_in(info.value).filename == __file__
    assert _notes(info.value) == [
        f"while the 'h125-buggy' driver's {__name__}.Buggy.from_config ran"
        " (registered with register_driver())"
    ]
    shown = "".join(traceback.format_exception(info.value))
    assert "h125-buggy" in shown and SECRET not in shown


def test_a_driver_class_connected_directly_gets_a_note_too() -> None:
    with pytest.raises(RuntimeError) as info:
        Broadcast({"DRIVER": "memory"}).driver(Buggy)
    assert _notes(info.value) == [
        f"while the 'h125-buggy' driver's {__name__}.Buggy.from_config ran"
    ]


def test_an_installed_factory_whose_connect_raises_is_named_with_its_package(site: Path) -> None:
    install(
        site,
        "broadcasting-h125-raising",
        "broadcasting.drivers",
        "h125raising",
        "fake_h125_raising",
        """
        from broadcasting.plugin import hookimpl

        @hookimpl
        def broadcasting_connect(name, options):
            if name == "h125raising":
                return options["endpoint"]  # a KeyError: the option is missing
        """,
    )
    config = {"DRIVER": "h125raising", "DRIVERS": {"h125raising": {"token": SECRET}}}
    with pytest.raises(KeyError) as info:
        Broadcast(config).driver()
    assert type(info.value) is KeyError
    frames = traceback.extract_tb(info.value.__traceback__)
    assert any(
        f.name == "broadcasting_connect" and "fake_h125_raising" in f.filename for f in frames
    )
    assert _notes(info.value) == [
        "while the 'h125raising' driver's broadcasting_connect ran"
        " (plugin fake_h125_raising, distribution broadcasting-h125-raising)"
    ]
    assert SECRET not in "".join(traceback.format_exception(info.value))


def test_an_installed_driver_class_whose_from_config_raises_is_named_with_its_package(
    site: Path,
) -> None:
    install(
        site,
        "broadcasting-h125-cls",
        "broadcasting.drivers",
        "h125cls",
        "fake_h125_cls:Broken",
        """
        from broadcasting.plugin import Driver

        class Broken(Driver):
            name = "h125cls"

            @classmethod
            def from_config(cls, options):
                raise LookupError("no endpoint")

            def send(self, batch):
                return None
        """,
    )
    with pytest.raises(LookupError) as info:
        Broadcast({"DRIVER": "h125cls"}).driver()
    assert _raised_in(info.value).name == "from_config"
    assert _notes(info.value) == [
        "while the 'h125cls' driver's fake_h125_cls.Broken.from_config ran"
        " (entry point fake_h125_cls:Broken, distribution broadcasting-h125-cls)"
    ]


def test_the_plugin_passed_to_broadcast_that_raised_is_the_one_named() -> None:
    class Stand:
        @hookimpl
        def broadcasting_connect(self, name: str, options: Any) -> Driver | None:
            raise RuntimeError("stand-in bug")

    register_driver("h125-buggy", Buggy)  # asked after Stand: never reached
    try:
        with pytest.raises(RuntimeError, match="stand-in bug") as info:
            Broadcast({"DRIVER": "h125-buggy"}, plugins=[Stand()]).driver()
    finally:
        unregister_driver("h125-buggy")
    assert _notes(info.value) == [
        f"while the 'h125-buggy' driver's broadcasting_connect ran"
        f" (plugin {__name__}.{Stand.__qualname__})"
    ]


def test_a_configuration_error_from_the_driver_is_left_as_it_is() -> None:
    class Strict(Driver):
        name = "h125-strict"

        @classmethod
        def from_config(cls, options: Any) -> Strict:
            raise ConfigurationError(cls.name, "endpoint", "is required")

        def send(self, batch: Any) -> None:
            return None

    register_driver("h125-strict", Strict)
    try:
        with pytest.raises(ConfigurationError) as info:
            Broadcast({"DRIVER": "h125-strict"}).driver()
    finally:
        unregister_driver("h125-strict")
    assert not hasattr(info.value, "__notes__")
    assert (info.value.driver, info.value.key) == ("h125-strict", "endpoint")


def test_the_note_is_added_once_when_the_same_error_is_raised_again() -> None:
    error = RuntimeError("one object")

    class Again(Driver):
        name = "h125-again"

        @classmethod
        def from_config(cls, options: Any) -> Again:
            raise error

        def send(self, batch: Any) -> None:
            return None

    register_driver("h125-again", Again)
    try:
        for _ in range(2):
            with pytest.raises(RuntimeError):
                Broadcast({"DRIVER": "h125-again"}).driver()
    finally:
        unregister_driver("h125-again")
    assert len(_notes(error)) == 1


# 5. a wrong delivery option and the driver's own problems, reported at once


class Picky(Driver):
    """Knows no option but ``endpoint``, which it requires: names every other key."""

    name = "h125-picky"

    @classmethod
    def from_config(cls, options: Any) -> Picky:
        problems = [ConfigurationError(cls.name, k, "unknown option") for k in options]
        if "endpoint" not in options:
            problems.append(ConfigurationError(cls.name, "endpoint", "is required"))
        else:
            problems = [p for p in problems if p.key != "endpoint"]
        if problems:
            raise ConfigurationError.combine(problems)
        return cls()

    def send(self, batch: Any) -> None:
        return None

    def close(self) -> None:
        closed.append(self)


#: The Picky drivers closed: one built only to find its problems is closed unused.
closed: list[Picky] = []


@pytest.fixture
def picky() -> Iterator[None]:
    register_driver("h125-picky", Picky)
    try:
        yield
    finally:
        unregister_driver("h125-picky")


def test_a_wrong_delivery_option_and_the_drivers_problems_are_one_error(picky: None) -> None:
    options = {"retries": SECRET, "batch_linger": -1, "colour": SECRET}
    with pytest.raises(ConfigurationError) as info:
        Broadcast({"DRIVER": "h125-picky", "DRIVERS": {"h125-picky": options}}).driver()
    error = info.value
    assert [(p.driver, p.key) for p in error.problems] == [
        ("h125-picky", "batch_linger"),
        ("h125-picky", "retries"),
        ("h125-picky", "colour"),
        ("h125-picky", "endpoint"),
    ]
    shown = "".join(traceback.format_exception(error)) + repr(error)
    assert "'colour': unknown option" in shown and "'endpoint': is required" in shown
    assert SECRET not in shown


def test_a_wrong_delivery_option_alone_is_said_alone(picky: None) -> None:
    options = {"retries": -1, "endpoint": "https://example.test"}
    closed.clear()
    with pytest.raises(ConfigurationError) as info:
        Broadcast({"DRIVER": "h125-picky", "DRIVERS": {"h125-picky": options}}).driver()
    assert [p.key for p in info.value.problems] == ["retries"]
    # the driver built only to ask its problems is closed: a from_config may open something
    assert [type(driver) for driver in closed] == [Picky]


def test_a_driver_whose_errors_name_another_driver_leaves_the_delivery_error_alone() -> None:
    register_driver("h125-alias", Picky)  # Picky names itself 'h125-picky' in its errors
    try:
        with pytest.raises(ConfigurationError) as info:
            Broadcast({"DRIVER": "h125-alias", "DRIVERS": {"h125-alias": {"retries": -1}}}).driver()
    finally:
        unregister_driver("h125-alias")
    assert [(p.driver, p.key) for p in info.value.problems] == [("h125-alias", "retries")]


def test_a_driver_bug_beside_a_wrong_delivery_option_is_raised_with_its_note() -> None:
    register_driver("h125-buggy", Buggy)
    config = {"DRIVER": "h125-buggy", "DRIVERS": {"h125-buggy": {"retries": -1}}}
    try:
        with pytest.raises(RuntimeError) as info:
            Broadcast(config).driver()
    finally:
        unregister_driver("h125-buggy")
    assert _raised_in(info.value).name == "from_config"
    assert "Buggy.from_config ran" in _notes(info.value)[0]
