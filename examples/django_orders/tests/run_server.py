"""Serve the example for the browser test: migrate, seed, then a threaded WSGI server.

``python tests/run_server.py PORT``, with the example's folder on ``PYTHONPATH``
and its settings taken from the environment (``ORDERS_DATABASE``,
``PUSHER_PORT``, ``PUSHER_JS_URL``...). The standard library's WSGI server,
threaded (the page makes several requests at once, and soketi posts its
webhooks meanwhile), with static files served as ``runserver`` serves them.
Prints ``listening`` once the socket accepts connections.
"""

from __future__ import annotations

import logging
import os
import sys
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger("run_server").debug(format, *args)


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_orders.settings")
    import django

    django.setup()
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    call_command("migrate", verbosity=0, interactive=False)
    call_command("seed_orders")
    app = StaticFilesHandler(get_wsgi_application())
    server = make_server(
        "127.0.0.1", port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler
    )
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
