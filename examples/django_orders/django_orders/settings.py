"""Settings of the orders example: Django 5, SQLite, Django's auth, and BROADCASTING.

Every value a deployment changes comes from an environment variable; the
defaults are for development against the soketi of ``soketi.json`` (README.md).
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-orders-example-dev-only")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # the project's Broadcast from BROADCASTING, each app's broadcasting.py (orders has
    # its channel rules and webhook handlers there), the endpoints' URLs, the template tag,
    # `manage.py broadcasting` and the system checks
    "broadcasting.contrib.django",
    "orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",  # request.user, for the rules
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "django_orders.urls"
WSGI_APPLICATION = "django_orders.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ORDERS_DATABASE", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "board"
LOGOUT_REDIRECT_URL = "login"

# -- broadcasting -----------------------------------------------------------------------------
# The server side: what `from broadcasting.contrib.django import broadcast` is made from.
# The names of the variables are Laravel's, so an existing .env works; the defaults match
# soketi.json.

PUSHER_HOST = os.environ.get("PUSHER_HOST", "127.0.0.1")
PUSHER_PORT = int(os.environ.get("PUSHER_PORT", "6001"))
PUSHER_SCHEME = os.environ.get("PUSHER_SCHEME", "http")
PUSHER_APP_KEY = os.environ.get("PUSHER_APP_KEY", "orders-key")

BROADCASTING = {
    "DRIVER": "pusher",
    "DRIVERS": {
        "pusher": {
            "app_id": os.environ.get("PUSHER_APP_ID", "1001"),
            "key": PUSHER_APP_KEY,
            "secret": os.environ.get("PUSHER_APP_SECRET", "orders-secret"),
            "host": PUSHER_HOST,
            "port": PUSHER_PORT,
            "ssl": PUSHER_SCHEME == "https",
            # 32 bytes, base64: the driver derives each private-encrypted- channel's key from
            # it; soketi never sees it. Generate your own: `openssl rand -base64 32`.
            "encryption_master_key_base64": os.environ.get(
                "PUSHER_ENCRYPTION_MASTER_KEY_BASE64",
                "b3JkZXJzLWV4YW1wbGUtZGV2LWtleS0zMi1ieXRlcyE=",
            ),
        },
    },
}

# The browser side comes from the driver's options ({% broadcasting_client_config %}: the
# key, host, port and TLS, never the secret). Behind a proxy the browser may reach soketi by
# another host and port than the server does: these override what it gets.
BROADCASTING_CLIENT = {"disableStats": True}
if "PUSHER_WS_HOST" in os.environ:
    BROADCASTING_CLIENT["wsHost"] = os.environ["PUSHER_WS_HOST"]
if "PUSHER_WS_PORT" in os.environ:
    BROADCASTING_CLIENT["wsPort"] = BROADCASTING_CLIENT["wssPort"] = int(
        os.environ["PUSHER_WS_PORT"]
    )

# Where the page loads pusher-js and Laravel Echo from: the CDN by default, pinned. The
# pusher-with-encryption build is the one that decrypts private-encrypted- channels.
BROADCASTING_SCRIPTS = {
    "pusher": os.environ.get(
        "PUSHER_JS_URL",
        "https://cdn.jsdelivr.net/npm/pusher-js@8.6.0/dist/web/pusher-with-encryption.min.js",
    ),
    "echo": os.environ.get(
        "ECHO_JS_URL", "https://cdn.jsdelivr.net/npm/laravel-echo@2.5.0/dist/echo.iife.js"
    ),
}
