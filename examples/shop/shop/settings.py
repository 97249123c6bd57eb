"""The shop's settings, from the environment, with defaults for a local soketi.

The defaults match ``soketi/soketi.json`` (the soketi config that ``live.py``
starts): app id ``1``, key ``app-key``, secret ``app-secret`` on
``127.0.0.1:6001``. A Pusher Channels app sets ``PUSHER_APP_ID``,
``PUSHER_APP_KEY``, ``PUSHER_APP_SECRET`` and ``PUSHER_CLUSTER`` instead.
"""

from __future__ import annotations

import os
from typing import Any

#: ``DRIVERS["pusher"]`` for the shop's Broadcast: what the server publishes with.
PUSHER: dict[str, Any] = {
    "app_id": os.environ.get("PUSHER_APP_ID", "1"),  # numeric: the pusher driver takes no other
    "key": os.environ.get("PUSHER_APP_KEY", "app-key"),
    "secret": os.environ.get("PUSHER_APP_SECRET", "app-secret"),
}
if os.environ.get("PUSHER_CLUSTER"):  # hosted Pusher Channels
    PUSHER["cluster"] = os.environ["PUSHER_CLUSTER"]
else:  # soketi, Laravel Reverb
    PUSHER["host"] = os.environ.get("PUSHER_HOST", "127.0.0.1")
    PUSHER["port"] = int(os.environ.get("PUSHER_PORT", "6001"))
    PUSHER["ssl"] = os.environ.get("PUSHER_SSL", "") == "1"

#: Where the page loads pusher-js and Laravel Echo from (their browser builds).
#: A CDN by default; point them at your own copies to serve the page offline.
PUSHER_JS_URL = os.environ.get(
    "SHOP_PUSHER_JS_URL", "https://cdn.jsdelivr.net/npm/pusher-js@8.6.0/dist/web/pusher.min.js"
)
ECHO_JS_URL = os.environ.get(
    "SHOP_ECHO_JS_URL", "https://cdn.jsdelivr.net/npm/laravel-echo@2.5.0/dist/echo.iife.js"
)


def echo_options() -> dict[str, Any]:
    """What the page's ``new Echo({...})`` needs from :data:`PUSHER`: never the secret."""
    options: dict[str, Any] = {
        "broadcaster": "pusher",
        "key": PUSHER["key"],
        # pusher-js 8 refuses to start without a cluster, even when wsHost says where to go
        "cluster": PUSHER.get("cluster", "mt1"),
        "authEndpoint": "/broadcasting/auth",
    }
    if "host" in PUSHER:  # a self-hosted server: say where, and over what
        options.update(
            wsHost=PUSHER["host"],
            wsPort=PUSHER["port"],
            wssPort=PUSHER["port"],
            forceTLS=PUSHER["ssl"],
            enabledTransports=["ws", "wss"],
            disableStats=True,
        )
    return options
