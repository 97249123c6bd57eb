"""Driver discovery through entry points, the in-process registry, and hook calling."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from broadcasting import _background, _manager, hookspecs
from broadcasting._auth import AuthRequest, authorize
from broadcasting._driver import Driver
from broadcasting._errors import DriverNotFoundError, PluginLoadError
from broadcasting._flow import drive
from broadcasting._fork import in_forked_child
from broadcasting._types import Message, Receipt, wrap_named
from broadcasting.hookspecs import PROJECT, hookimpl

if TYPE_CHECKING:
    from broadcasting._broadcast import Broadcast

D = TypeVar("D", bound=Driver)

DRIVER_GROUP = "broadcasting.drivers"
PLUGIN_GROUP = "broadcasting.plugins"


@dataclass(frozen=True)
class DriverInfo:
    """An installed or registered driver, as ``broadcasting drivers`` lists it."""

    name: str
    distribution: str | None
    version: str | None
    module: str


@cache  # one metadata scan per group per process
def _entry_points(group: str) -> dict[str, tuple[EntryPoint, ...]]:
    """Every entry point of ``group`` by name, in discovery order; a name that two packages
    claim for different objects has several (a driver's is then refused: :func:`_claimed`)."""
    found: dict[str, dict[str, EntryPoint]] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, {}).setdefault(ep.value, ep)
    return {name: tuple(eps.values()) for name, eps in found.items()}


def _origin(ep: EntryPoint) -> str:
    return f"{ep.dist.name if ep.dist else 'an unknown distribution'} ({ep.value})"


def _claimed(name: str, eps: tuple[EntryPoint, ...]) -> EntryPoint:
    """The one entry point of driver ``name``; two packages claiming it is an error, rather
    than one of them quietly chosen by the order of sys.path."""
    if len(eps) == 1:
        return eps[0]
    first, *others = eps
    raise PluginLoadError(
        entry_point=name,
        value=first.value,
        distribution=first.dist.name if first.dist else None,
        reason=f"driver {name!r} is also provided by "
        + ", ".join(_origin(ep) for ep in others)
        + ": uninstall all but one, or choose one with register_driver()",
    )


def _hook_problem(plugin: object) -> str | None:
    """What pluggy finds wrong with ``plugin``'s hook implementations (a parameter the
    spec does not have...), on one line; ``None`` when they are sound."""
    scratch = _manager.PluginManager(PROJECT)
    scratch.add_hookspecs(hookspecs)
    try:
        scratch.register(plugin)
    except pluggy.PluginValidationError as exc:
        return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return None


_lock = threading.RLock()


@in_forked_child
def _forget_lock_in_child() -> None:
    """After fork: another thread of the parent may have held the lock (importing a plugin,
    building a plugin manager); it does not exist in the child, which gets a fresh one."""
    global _lock
    _lock = threading.RLock()


_loaded: dict[str, object] = {}
_failed: dict[str, PluginLoadError] = {}
_registered: dict[str, object] = {}
_class_plugins: dict[str, _ClassPlugin] = {}


def _load(ep: EntryPoint) -> object:
    key = f"{ep.group}:{ep.name}:{ep.value}"
    with _lock:
        if key in _failed:
            raise _failed[key]  # imported once: a failure is kept
        if key not in _loaded:
            try:
                loaded = ep.load()
            except Exception as exc:
                error = _failed[key] = _load_error(ep, f"{type(exc).__name__}: {exc}")
                raise error from exc
            # a Driver class has no hooks of its own: the core connects it
            if not (isinstance(loaded, type) and issubclass(loaded, Driver)):
                problem = _hook_problem(loaded)
                if problem is not None:
                    raise _failed.setdefault(key, _load_error(ep, problem))
            _loaded[key] = loaded
        return _loaded[key]


def _load_error(ep: EntryPoint, reason: str) -> PluginLoadError:
    return PluginLoadError(
        entry_point=ep.name,
        value=ep.value,
        distribution=ep.dist.name if ep.dist else None,
        reason=reason,
    )


def installed_drivers() -> list[DriverInfo]:
    """Every driver this process can use, sorted by name, without importing any (a name two
    packages claim, which cannot be used until one is uninstalled, once per package)."""
    infos: dict[str, list[DriverInfo]] = {}
    for name, eps in _entry_points(DRIVER_GROUP).items():
        # a name two packages claim is listed once per package: the listing shows the clash
        for ep in eps:
            dist, version = (ep.dist.name, ep.dist.version) if ep.dist else (None, None)
            infos.setdefault(name, []).append(DriverInfo(name, dist, version, ep.value))
    with _lock:
        for name, plugin in _registered.items():
            infos[name] = [DriverInfo(name, None, None, _describe(plugin))]
    return [info for name in sorted(infos) for info in infos[name]]


def driver_names() -> list[str]:
    """Names of every installed or registered driver."""
    return list(dict.fromkeys(info.name for info in installed_drivers()))


def _describe(plugin: object) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    cls = plugin.cls if isinstance(plugin, _ClassPlugin) else type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


def built(cls: type[D], options: Mapping[str, Any]) -> D:
    """``cls.from_config(options)``, which must return a ``cls``: a ``from_config`` that
    returns nothing (a forgotten ``return``) is named, not taken for a plugin's hook."""
    driver = cls.from_config(options)
    if not isinstance(driver, cls):
        name = cls.__qualname__
        raise TypeError(f"{name}.from_config() returned {type(driver).__name__}, not a {name}")
    return driver


class _ClassPlugin:
    """A Driver class (registered, or named by an entry point) as a plugin that connects it."""

    def __init__(self, name: str, cls: type[Driver]) -> None:
        self.name = name
        self.cls = cls

    @hookimpl
    def broadcasting_connect(self, name: str, options: Mapping[str, Any]) -> Driver | None:
        if name != self.name:
            return None
        # the class is known: the options it declares secret reach it wrapped
        return built(self.cls, wrap_named(options, self.cls.secret_options))

    def __repr__(self) -> str:
        return f"<driver {self.name!r}: {self.cls.__module__}.{self.cls.__qualname__}>"


def register_driver(name: str, driver: type[Driver] | object) -> None:
    """Make a driver available in this process under ``name``, without packaging.

    ``driver`` is a :class:`Driver` subclass (built with ``from_config``) or
    a plugin object implementing ``broadcasting_connect``. A registered name
    takes precedence over an installed entry point of the same name.
    """
    if not name or not isinstance(name, str):
        raise ValueError("a driver name must be a non-empty string")
    if isinstance(driver, type) and issubclass(driver, Driver):
        driver = _ClassPlugin(name, driver)
    with _lock:
        _registered[name] = driver


def unregister_driver(name: str) -> None:
    """Undo :func:`register_driver` (no error if ``name`` is not registered)."""
    with _lock:
        _registered.pop(name, None)


def driver_plugin(name: str) -> object | None:
    """The plugin for driver ``name``: registered, else its entry point (imported once)."""
    with _lock:
        plugin = _registered.get(name)
    if plugin is not None:
        return plugin
    eps = _entry_points(DRIVER_GROUP).get(name)
    if eps is None:
        return None
    loaded = _load(_claimed(name, eps))
    if not (isinstance(loaded, type) and issubclass(loaded, Driver)):
        return loaded
    # an entry point that names a Driver class: the core connects it by name
    with _lock:
        plugin = _class_plugins.get(name)
        if plugin is None or plugin.cls is not loaded:
            plugin = _class_plugins[name] = _ClassPlugin(name, loaded)
        return plugin


def declared_secret_options(name: str, plugin: object) -> frozenset[str]:
    """The options a driver's plugin declares secret: its class's, or a factory plugin's own."""
    if isinstance(plugin, _ClassPlugin):
        return plugin.cls.secret_options
    declared = getattr(plugin, "secret_options", None)
    if declared is None:
        return frozenset()
    if isinstance(declared, (set, frozenset, list, tuple)) and all(
        isinstance(key, str) for key in declared
    ):
        return frozenset(declared)
    raise PluginLoadError(
        entry_point=name,
        value=_describe(plugin),
        distribution=None,
        reason="its secret_options must be a set of option names (str)",
    )


def driver_class(name: str, attribute: str) -> type[Driver]:
    """Resolve a seed-style class name (``BroadcastPusherDriver``) of driver ``name``."""
    plugin = driver_plugin(name)
    if plugin is None:
        raise DriverNotFoundError(name, driver_names())
    if isinstance(plugin, _ClassPlugin):
        return plugin.cls
    cls = getattr(plugin, attribute, None)
    if isinstance(cls, type) and issubclass(cls, Driver):
        return cls
    raise AttributeError(f"driver plugin {_describe(plugin)!r} has no Driver class {attribute!r}")


class _CorePlugin:
    """The core's own implementations: they run last, after every plugin's."""

    @hookimpl(trylast=True)
    def broadcasting_publish(
        self, broadcast: Broadcast, driver: Driver, message: Message
    ) -> Receipt:
        return broadcast.broadcaster_of(driver).deliver(message)

    @hookimpl(trylast=True)
    def broadcasting_authorize(
        self, broadcast: Broadcast, driver: Driver, request: AuthRequest
    ) -> dict[str, Any]:
        body: dict[str, Any] = drive(authorize(broadcast.rules, driver, request))
        return body

    @hookimpl(trylast=True)
    def broadcasting_defer(
        self, broadcast: Broadcast, driver: Driver, message: Message, transaction: Any
    ) -> Receipt:
        return _background.defer(broadcast.broadcaster_of(driver), message, transaction)


CORE_PLUGIN = _CorePlugin()

_multicall: Any
try:  # pluggy's own call loop, which add_hookcall_monitoring() replaces
    from pluggy._callers import _multicall
except ImportError:  # another pluggy: the core never calls its own part directly
    _multicall = None


def core_alone(pm: pluggy.PluginManager, name: str) -> bool:
    """Whether the core's is the only implementation of hook ``name`` (no other plugin, no
    wrapper) and no hook-call monitor (pluggy's tracing) watches: calling the hook is then
    calling the core's part, which the caller may do directly, without pluggy's call (and on
    the async path, without a greenlet)."""
    if _multicall is None or getattr(pm, "_inner_hookexec", None) is not _multicall:
        return False
    impls = getattr(pm.hook, name)._hookimpls  # read, not copied (get_hookimpls() copies)
    return len(impls) == 1 and impls[0].plugin is CORE_PLUGIN


# every Broadcast's plugin manager, so a plugin registered everywhere reaches existing ones
_managers: weakref.WeakSet[pluggy.PluginManager] = weakref.WeakSet()
_everywhere: list[object] = []  # in registration order


def make_plugin_manager(plugins: Iterable[object] = ()) -> _manager.PluginManager:
    """A plugin manager with the specs, the core's, the installed, the given plugins and
    those registered everywhere (last, now and later)."""
    pm = _manager.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(CORE_PLUGIN, name="broadcasting.core")
    with _lock:
        groups = sorted(_entry_points(PLUGIN_GROUP).items())
        installed = [_load(ep) for _, eps in groups for ep in eps]  # every package's
        for plugin in (*installed, *plugins, *_everywhere):
            if not pm.is_registered(plugin):
                pm.register(plugin)
        _managers.add(pm)
    return pm


def add_driver_plugin(pm: _manager.PluginManager, name: str, plugin: object) -> None:
    """Register driver ``name``'s plugin on ``pm`` (once), as its name is first used there.

    Its other hooks take effect from then on, as any plugin's. Its ``broadcasting_connect``
    is asked after every other plugin's: registered now, after the plugins passed to
    Broadcast and those registered everywhere, pluggy would ask it first, and an installed
    or registered driver would take its name from the application's own plugin (a stand-in
    in a test, a factory of its own), which docs/hooks.md says is asked first."""
    with _lock:  # register_everywhere() registers on the same managers
        if not pm.is_registered(plugin):
            pm.register_asked_last(plugin, f"driver:{name}", "broadcasting_connect")


def register_everywhere(plugin: object) -> None:
    """Register ``plugin`` on every Broadcast of this process, existing and future, after
    its own plugins, so it is called first (how ``broadcasting.testing.fake`` intercepts)."""
    with _lock:
        if any(p is plugin for p in _everywhere):
            raise ValueError(f"{plugin!r} is already registered everywhere")
        _everywhere.append(plugin)
        for pm in list(_managers):
            if not pm.is_registered(plugin):
                pm.register(plugin)


def unregister_everywhere(plugin: object) -> None:
    """Undo :func:`register_everywhere` (no error if ``plugin`` is not registered)."""
    with _lock:
        if not any(p is plugin for p in _everywhere):
            return
        _everywhere[:] = [p for p in _everywhere if p is not plugin]
        for pm in list(_managers):
            if pm.is_registered(plugin):
                pm.unregister(plugin)
