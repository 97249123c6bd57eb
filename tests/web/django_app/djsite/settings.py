"""Settings: the app, an app of our own (``shop``) with a ``broadcasting.py``, SQLite.

``DJAPP_BROADCASTING`` (JSON) replaces ``BROADCASTING``, for the tests of the system checks.
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "django-app-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
ROOT_URLCONF = "djsite.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "broadcasting.contrib.django",
    "shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

BROADCASTING = {
    "DRIVER": "memory",  # signs what the tests verify; the pusher entry is for the page
    "DRIVERS": {
        "memory": {},
        "pusher": {
            "app_id": "1234567",
            "key": "shop-key",
            "secret": "shop-secret-value",
            "host": "127.0.0.1",
            "port": 6001,
            "ssl": False,
        },
    },
}
if "DJAPP_BROADCASTING" in os.environ:
    BROADCASTING = json.loads(os.environ["DJAPP_BROADCASTING"])

BROADCASTING_ENDPOINTS = {"user_data": "shop.broadcasting.sign_in_data"}
