"""Settings of the background tests' Django project.

``BG_DATABASE``: ``sqlite`` (a file in ``BG_SQLITE_DIR``, default: here), a PostgreSQL URL
(``postgresql://user@host:port/name``) or a MariaDB/MySQL one (``mysql://user@host:port/name``,
through Django's mysqlclient backend); the test database's name has ``BG_SUFFIX`` in it, so
parallel runs do not collide.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

SECRET_KEY = "background-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
ROOT_URLCONF = "bgsite.urls"
INSTALLED_APPS = ["shop"]
MIDDLEWARE: list[str] = []
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_database = os.environ.get("BG_DATABASE", "sqlite")
_suffix = os.environ.get("BG_SUFFIX", "local")
if _database == "sqlite":
    _folder = Path(os.environ.get("BG_SQLITE_DIR", Path(__file__).resolve().parent))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(_folder / f"shop-{_suffix}.sqlite3"),
            # a file, not memory: TransactionTestCase commits for real
            "TEST": {"NAME": str(_folder / f"test-shop-{_suffix}.sqlite3")},
        }
    }
else:
    _url = urlsplit(_database)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends."
            + ("mysql" if _url.scheme.startswith("mysql") else "postgresql"),
            "NAME": _url.path.lstrip("/"),
            "USER": _url.username or "",
            "HOST": _url.hostname or "",
            "PORT": str(_url.port or ""),
            "TEST": {"NAME": f"test_bg_shop_{_suffix}"},
        }
    }

LOGGING_CONFIG = None
