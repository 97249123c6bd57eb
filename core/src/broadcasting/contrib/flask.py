"""The Flask extension: ``Broadcasting(app)`` or ``init_app(app)``, config from
``app.config["BROADCASTING"]`` (docs/flask.md).

Per application: a :class:`~broadcasting.Broadcast` in ``app.extensions["broadcasting"]``
(``broadcast``, a proxy to the current application's), the endpoints' blueprint, the
browser's config as the Jinja global ``broadcasting_client_config()``, and the
``flask broadcasting ...`` command. The channel rules and webhook handlers belong to the
extension, so every application it is initialized on has them.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import click
from flask import Flask, current_app, g, url_for
from flask.cli import with_appcontext
from markupsafe import Markup
from werkzeug.local import LocalProxy

from broadcasting._auth import ChannelRules, R
from broadcasting._broadcast import Broadcast, _frozen
from broadcasting._client import DEFAULT_ELEMENT_ID, client_config, script_element
from broadcasting._errors import ConfigurationError
from broadcasting._webhooks import H, WebhookHandlers
from broadcasting.web import UserDataFunction, UserFunction
from broadcasting.web.flask import broadcasting_blueprint

__all__ = ["EXTENSION", "Broadcasting", "broadcast", "current_user"]

#: The key of ``app.extensions`` (the application's Broadcast) and the blueprint's name.
EXTENSION = "broadcasting"
#: ``app.config`` keys the extension reads, with their defaults.
DEFAULTS: Mapping[str, Any] = {
    "BROADCASTING": None,  # DRIVER and DRIVERS, what Broadcast() takes (None: the log driver)
    "BROADCASTING_URL_PREFIX": "/broadcasting",  # the endpoints: <prefix>/auth, ...
    "BROADCASTING_CLIENT": None,  # overrides for the browser's config ({"wsHost": ...})
}


def current_user(request: Any) -> Any:
    """The default ``user``: Flask-Login's ``current_user`` when it is authenticated (with a
    ``LoginManager`` on the app), else ``g.user`` (Flask's tutorial), else ``None``."""
    if getattr(current_app, "login_manager", None) is not None:
        from flask_login import current_user as login_user  # type: ignore[import-untyped, import-not-found, unused-ignore]

        user = login_user._get_current_object()
        return user if getattr(user, "is_authenticated", False) else None
    return g.get("user")


class Broadcasting:
    """The extension: ``Broadcasting(app)``, or ``broadcasting = Broadcasting()`` and later
    ``broadcasting.init_app(app)``.

    Args:
        app: the application to initialize now (else call :meth:`init_app`).
        user: ``user(request)``, the current user or ``None`` (default :func:`current_user`).
        user_data: ``user_data(request, user)``, the sign-in data (default ``{"id": ...}``).
        driver: the driver the endpoints sign with (default ``DRIVER``).
        plugins: hook implementations for each application's Broadcast.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        user: UserFunction | None = None,
        user_data: UserDataFunction | None = None,
        driver: str | None = None,
        plugins: Iterable[object] = (),
    ) -> None:
        self.user: UserFunction = current_user if user is None else user
        self.user_data = user_data
        self.driver = driver
        self.plugins = tuple(plugins)
        #: The channel rules of every application (:meth:`rule`).
        self.rules = ChannelRules()
        #: The webhook handlers of every application (:meth:`on_webhook`).
        self.webhook_handlers = WebhookHandlers()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build ``app``'s Broadcast from ``app.config["BROADCASTING"]`` and register the
        blueprint, the Jinja global and the ``flask broadcasting`` command."""
        if EXTENSION in app.extensions:
            raise RuntimeError(f"{app.name}: Broadcasting is initialized on this app already")
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, value)
        prefix = app.config["BROADCASTING_URL_PREFIX"]
        if prefix and not (isinstance(prefix, str) and prefix.startswith("/")):
            problem = "must be the endpoints' path prefix, starting with '/' ('/broadcasting')"
            raise ConfigurationError("config", "BROADCASTING_URL_PREFIX", problem)
        _client_overrides(app.config)
        broadcast = Broadcast(app.config["BROADCASTING"], plugins=self.plugins)
        broadcast.rules, broadcast.webhook_handlers = self.rules, self.webhook_handlers
        _read[broadcast] = _frozen(app.config["BROADCASTING"])
        blueprint = broadcasting_blueprint(
            broadcast,
            name=EXTENSION,
            url_prefix=prefix or None,
            user=self.user,
            user_data=self.user_data,
            driver=self.driver,
            auth_path="/auth",
            user_auth_path="/user-auth",
            webhook_path="/webhook",
        )
        blueprint.before_request(_unchanged)  # the endpoints refuse a changed config too
        app.register_blueprint(blueprint)
        app.extensions[EXTENSION] = broadcast
        app.add_template_global(self._client_config, "broadcasting_client_config")
        app.cli.add_command(_command)

    def _client_config(
        self, driver: str | None = None, element_id: str = DEFAULT_ELEMENT_ID, **overrides: Any
    ) -> Markup:
        """The Jinja global: :func:`broadcasting_client_config`, by default for the driver the
        endpoints sign with (``driver=``), whose tokens the page's client must take."""
        chosen = self.driver if driver is None else driver
        return broadcasting_client_config(chosen, element_id, **overrides)

    def rule(self, pattern: str) -> Callable[[R], R]:
        """Decorator: a channel rule for every application (:meth:`Broadcast.rule`)."""
        return self.rules.adding(pattern)

    def on_webhook(self, name: str = "*") -> Callable[[H], H]:
        """Decorator: a webhook handler for every application (:meth:`Broadcast.on_webhook`)."""

        def add(handler: H) -> H:
            self.webhook_handlers.add(name, handler)
            return handler

        return add

    @property
    def broadcast(self) -> Broadcast:
        """The current application's Broadcast (needs an application context)."""
        return _current()

    def __repr__(self) -> str:
        return f"<Broadcasting driver={self.driver!r}>"


#: each application's Broadcast: the BROADCASTING it was built from, as init_app read it
_read: weakref.WeakKeyDictionary[Broadcast, object] = weakref.WeakKeyDictionary()


def _current() -> Broadcast:
    found = current_app.extensions.get(EXTENSION)
    if not isinstance(found, Broadcast):
        raise RuntimeError(
            f"{current_app.name}: Broadcasting is not initialized on this app "
            "(Broadcasting(app) or broadcasting.init_app(app))"
        )
    read = _read.get(found)
    if read is not None and _frozen(current_app.config.get("BROADCASTING")) != read:
        # read once, by init_app: a test's app.config.update() after the factory ran would
        # have gone on publishing through the driver the factory configured
        raise ConfigurationError(
            "config",
            "BROADCASTING",
            f"app.config['BROADCASTING'] of {current_app.name!r} changed after "
            "Broadcasting.init_app(app) read it; set it before init_app (in a test: "
            "create_app(test_config), as in docs/flask.md)",
        )
    return found


def _unchanged() -> None:
    """Before each endpoint's request: :func:`_current`'s check of the config."""
    _current()


#: The current application's Broadcast, for views: ``broadcast.channel(...)``.
broadcast: Broadcast = cast(Broadcast, LocalProxy(_current))


def broadcasting_client_config(
    driver: str | None = None, element_id: str = DEFAULT_ELEMENT_ID, **overrides: Any
) -> Markup:
    """The Jinja global ``broadcasting_client_config()``: the browser's config as a
    ``<script type="application/json" id="broadcasting-config">`` element.

    The endpoints' URLs are the blueprint's; ``app.config["BROADCASTING_CLIENT"]`` and then
    ``overrides`` replace client options (docs/frontend.md).
    """
    config = client_config(
        _current(),
        driver=driver,
        auth_endpoint=url_for(f"{EXTENSION}.auth"),
        user_auth_endpoint=url_for(f"{EXTENSION}.user_auth"),
        overrides={**_client_overrides(current_app.config), **overrides},
    )
    return Markup(script_element(config, element_id))  # escaped by script_element


def _client_overrides(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """``BROADCASTING_CLIENT``, checked: a dict of client options (or nothing)."""
    overrides = config.get("BROADCASTING_CLIENT") or {}
    if not isinstance(overrides, Mapping) or not all(isinstance(k, str) for k in overrides):
        problem = "must be a dict of the browser client's options ({'wsHost': ...})"
        raise ConfigurationError("config", "BROADCASTING_CLIENT", problem)
    return overrides


@click.command(
    "broadcasting",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,  # --help is the command line's own
    help="The broadcasting command line with app.config['BROADCASTING'] as its config.",
)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def _command(argv: tuple[str, ...]) -> None:
    """``flask broadcasting COMMAND ...``: send, check, channels, members, listen, drivers."""
    from broadcasting.contrib import run_cli

    config = current_app.config.get("BROADCASTING")
    status = run_cli(argv, prog="flask broadcasting", config=config, out=sys.stdout)
    if status:
        click.get_current_context().exit(status)
