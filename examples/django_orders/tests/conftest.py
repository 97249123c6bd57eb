"""Fixtures: the example's Django settings for one test at a time, a database, two users.

In your own project, pytest-django does what ``site`` does here
(``DJANGO_SETTINGS_MODULE = "django_orders.settings"`` and its ``db`` fixture),
or Django's ``TestCase``. This repository's suite runs other Django tests in the
same process with settings of their own (tests/web), so ``site`` installs the
example's settings with ``override_settings`` for the test only, on a fresh
in-memory SQLite database, and puts everything back afterwards: whichever runs
first, both work.

The browser test needs none of this: it runs the example in a process of its own.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[1]
if str(EXAMPLE) not in sys.path:  # the example need not be installed to be tested
    sys.path.insert(0, str(EXAMPLE))


def example_settings() -> dict[str, Any]:
    """django_orders/settings.py, on an in-memory SQLite database, with a fast password hasher.

    The in-memory database lives as long as the test's connection: Django's test client
    keeps it open across requests, and the ``site`` fixture closes it after the test.
    """
    module = importlib.import_module("django_orders.settings")
    values = {name: getattr(module, name) for name in dir(module) if name.isupper()}
    values["DATABASES"] = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    values["ALLOWED_HOSTS"] = ["testserver"]
    values["PASSWORD_HASHERS"] = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    values["DEBUG"] = False
    return values


def _reconnect() -> None:
    """Drop the open connections and the cached DATABASES: the next query reads the setting."""
    from asgiref.local import Local
    from django.db import connections

    connections.close_all()
    connections._settings = None  # what the cached_property below was computed from
    connections.__dict__.pop("settings", None)
    connections._connections = Local(connections.thread_critical)


@pytest.fixture
def site() -> Iterator[None]:
    """The example's settings and a migrated SQLite database, for this test only."""
    from django.apps import apps
    from django.conf import settings
    from django.core.management import call_command
    from django.test.utils import override_settings
    from django.utils.functional import empty

    configured_here = not settings.configured
    if configured_here:
        # Django's defaults (with a SECRET_KEY, which override_settings reads back); the
        # override below replaces them, and they are dropped again after the test
        settings.configure(SECRET_KEY="until-the-override")
    if not apps.ready:
        apps.populate([])  # override_settings(INSTALLED_APPS=...) needs a ready registry
    values = example_settings()
    # the settings first, then the apps: override_settings installs INSTALLED_APPS before it
    # swaps the settings in, and OrdersConfig.ready() reads BROADCASTING (it loads the rules)
    apps_only = override_settings(INSTALLED_APPS=values.pop("INSTALLED_APPS"))
    everything_else = override_settings(**values)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES", UserWarning)
        everything_else.enable()
    apps_only.enable()
    _reconnect()
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield
    finally:
        _reconnect()
        apps_only.disable()
        everything_else.disable()
        if configured_here:
            settings._wrapped = empty  # as before: whoever configures next, configures


@pytest.fixture
def ann(site: None) -> Any:
    """A signed-up user with two orders."""
    from django.contrib.auth import get_user_model

    from orders.models import Order

    user = get_user_model().objects.create_user("ann", password="orders-demo")
    Order.objects.create(customer=user, item="Blue mug")
    Order.objects.create(customer=user, item="Tea towel")
    return user


@pytest.fixture
def bob(site: None) -> Any:
    """Another user, with one order."""
    from django.contrib.auth import get_user_model

    from orders.models import Order

    user = get_user_model().objects.create_user("bob", password="orders-demo")
    Order.objects.create(customer=user, item="Teapot")
    return user
