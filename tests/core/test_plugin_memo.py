"""The core's plugin manager remembers what a module or class marks as a hook, and registers
exactly what pluggy's own manager registers.

Every ``Broadcast()`` builds a plugin manager and registers the built-in plugins; pluggy reads
each name of each plugin statically (``inspect.getattr_static``), which was most of what a
``Broadcast()`` cost. ``broadcasting._manager.PluginManager`` keeps those answers per module
or class. These tests register the same plugins on it (twice: the second time from memory)
and on a plain ``pluggy.PluginManager``, with the real hookspecs, and compare what each hook
got.
"""

from __future__ import annotations

import gc
import inspect
import types
import weakref
from typing import Any

import pluggy
import pytest

from broadcasting import Broadcast, hookspecs
from broadcasting._manager import PluginManager, _impls, _instances
from broadcasting.hookspecs import PROJECT, hookimpl


def seen(pm: pluggy.PluginManager, plugin: object) -> list[tuple[str, Any, dict[str, Any]]]:
    """Each hook ``plugin`` implements on ``pm``: its name, the function, the options."""
    found = []
    for caller in pm.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                options = {k: getattr(impl, k) for k in ("tryfirst", "trylast", "wrapper")}
                found.append((caller.name, impl.function, options))
    return sorted(found, key=lambda item: item[0])


def both(plugin: object) -> tuple[list[Any], list[Any], list[Any]]:
    """What pluggy's manager registers for ``plugin``, and ours, the first time and again."""
    ours = []
    for _ in range(2):
        pm = PluginManager(PROJECT)
        pm.add_hookspecs(hookspecs)
        pm.register(plugin)
        ours.append(seen(pm, plugin))
    plain = pluggy.PluginManager(PROJECT)
    plain.add_hookspecs(hookspecs)
    plain.register(plugin)
    return seen(plain, plugin), ours[0], ours[1]


def module_plugin() -> types.ModuleType:
    module = types.ModuleType("a_plugin_module")

    @hookimpl(tryfirst=True)
    def broadcasting_webhook(broadcast: Any, driver: Any, event: Any) -> None:
        return None

    def broadcasting_publish(broadcast: Any, driver: Any, message: Any) -> None:
        return None  # not marked: not a hook

    module.broadcasting_webhook = broadcasting_webhook  # type: ignore[attr-defined]
    module.broadcasting_publish = broadcasting_publish  # type: ignore[attr-defined]
    return module


class Marked:
    @hookimpl
    def broadcasting_webhook(self, broadcast: Any, driver: Any, event: Any) -> None:
        return None

    @hookimpl(trylast=True)
    @staticmethod
    def broadcasting_transaction(broadcast: Any, transaction: object) -> None:
        return None

    @hookimpl
    @classmethod
    def broadcasting_connect(cls, name: str, options: Any) -> None:
        return None


class Slotted(Marked):
    __slots__ = ("broadcasting_publish",)


def own_hook(broadcast: Any, driver: Any, message: Any) -> None:
    return None


def own_webhook(broadcast: Any, driver: Any, event: Any) -> None:
    return None


def unmarked_webhook(broadcast: Any, driver: Any, event: Any) -> None:
    return None


own_hook.broadcasting_impl = {"tryfirst": True}  # type: ignore[attr-defined]
own_webhook.broadcasting_impl = {"tryfirst": True}  # type: ignore[attr-defined]


def test_a_module_plugin() -> None:
    plain, first, again = both(module_plugin())
    assert [name for name, _, _ in plain] == ["broadcasting_webhook"]
    assert plain[0][2]["tryfirst"] is True
    assert first == plain and again == plain


def test_a_class_registered_as_a_plugin() -> None:
    plain, first, again = both(Marked)
    assert {name for name, _, _ in plain} == {
        "broadcasting_webhook",
        "broadcasting_transaction",
        "broadcasting_connect",
    }
    assert first == plain and again == plain


def test_instances_of_one_class_each_get_their_own_bound_methods() -> None:
    one, two = Marked(), Marked()
    plain, first, again = both(one)
    assert first == plain and again == plain
    assert len(plain) == 3
    plain_two, first_two, _ = both(two)
    assert first_two == plain_two  # from memory, bound to the second instance
    webhook = {name: fn for name, fn, _ in first_two}["broadcasting_webhook"]
    assert webhook.__self__ is two


def test_a_hook_an_instance_holds_itself_is_not_taken_from_its_class() -> None:
    both(Marked())  # the class's answers are remembered, broadcasting_webhook's among them
    for own, expected in ((own_webhook, True), (unmarked_webhook, None)):
        holder = Marked()
        holder.broadcasting_webhook = own  # type: ignore[method-assign]
        plain, first, again = both(holder)
        webhook = [(fn, opts) for name, fn, opts in plain if name == "broadcasting_webhook"]
        assert webhook == ([(own_webhook, {"tryfirst": True, "trylast": False, "wrapper": False})]
                           if expected else [])  # fmt: skip
        assert first == plain and again == plain
    plain, first, again = both(Marked())  # and the class's answer is still the class's
    assert first == plain and again == plain


def test_a_hook_only_an_instance_has_is_found() -> None:
    holder = Marked()
    holder.broadcasting_publish = own_hook  # type: ignore[attr-defined]
    plain, first, again = both(holder)
    assert "broadcasting_publish" in [name for name, _, _ in plain]
    assert first == plain and again == plain


def test_a_hook_in_a_slot_is_found_too() -> None:
    both(Slotted())  # an empty slot first
    holder = Slotted()
    holder.broadcasting_publish = own_hook  # type: ignore[misc]
    plain, first, again = both(holder)
    assert "broadcasting_publish" in [name for name, _, _ in plain]
    assert first == plain and again == plain


def test_a_module_or_class_changed_since_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    module = module_plugin()
    both(module)
    monkeypatch.setattr(module, "broadcasting_webhook", unmarked_webhook, raising=True)
    plain, first, again = both(module)  # no longer a hook
    assert plain == [] and first == plain and again == plain
    monkeypatch.setattr(module, "broadcasting_publish", own_hook)
    plain, first, again = both(module)  # a hook now
    assert [name for name, _, _ in plain] == ["broadcasting_publish"]
    assert first == plain and again == plain

    class Changing(Marked):
        pass

    both(Changing())
    monkeypatch.setattr(Changing, "broadcasting_webhook", own_webhook)  # on the subclass
    plain, first, again = both(Changing())
    webhook = [(fn, opts["tryfirst"]) for name, fn, opts in plain if name == "broadcasting_webhook"]
    assert len(webhook) == 1 and webhook[0][1] is True
    assert first == plain and again == plain


def test_an_invalid_hook_is_refused_every_time() -> None:
    class Wrong:
        @hookimpl
        def broadcasting_webhook(self, broadcast: Any, nonsense: Any) -> None:
            return None

    for _ in range(2):
        pm = PluginManager(PROJECT)
        pm.add_hookspecs(hookspecs)
        with pytest.raises(pluggy.PluginValidationError, match="nonsense"):
            pm.register(Wrong())


def test_what_is_remembered_goes_with_the_class_or_module() -> None:
    class Passing(Marked):
        pass

    class Fresh:  # its own __dict__ and __weakref__ descriptors, which refer back to it
        @hookimpl
        def broadcasting_webhook(self, broadcast: Any, driver: Any, event: Any) -> None:
            return None

    module = module_plugin()
    both(Passing())
    both(Fresh())
    both(Fresh)
    both(module)
    assert Passing in _instances and Fresh in _instances and Fresh in _impls
    assert module in _impls
    gone = weakref.ref(Passing), weakref.ref(Fresh), weakref.ref(module)
    del Passing, Fresh, module
    # inspect.getattr_static (which pluggy uses) caches MRO tuples in an lru_cache on
    # CPython 3.12.0-3.12.x, keeping every class it saw alive whatever the manager does
    shadowed = getattr(inspect, "_shadowed_dict_from_mro_tuple", None)
    if shadowed is not None and hasattr(shadowed, "cache_clear"):
        shadowed.cache_clear()
    gc.collect()
    assert [ref() for ref in gone] == [None, None, None]


def test_a_broadcast_has_the_same_hooks_as_with_pluggys_own_manager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = {"DRIVER": "log", "DRIVERS": {"log": {}}}

    def hooks(broadcast: Broadcast) -> dict[str, list[Any]]:
        return {
            caller.name: [(impl.plugin_name, impl.function) for impl in caller.get_hookimpls()]
            for caller in broadcast.plugin_manager.hook.__dict__.values()
            if isinstance(caller, pluggy.HookCaller)
        }

    with Broadcast(config) as ours:
        remembered = hooks(ours)
    monkeypatch.setattr("broadcasting._manager.PluginManager", pluggy.PluginManager)
    with Broadcast(config) as plain:
        assert type(plain.plugin_manager) is pluggy.PluginManager
        assert hooks(plain) == remembered
    assert "broadcasting_publish" in remembered
