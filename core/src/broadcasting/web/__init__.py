"""Web endpoints for channel authorization, user sign-in and webhooks, without lock-in.

:class:`AuthEndpoints` does the work for every framework: it parses what
pusher-js, Laravel Echo and Ably clients send, runs the channel rules through
:meth:`Broadcast.authorize() <broadcasting.Broadcast.authorize>` and
answers with a :class:`Response` (a status and a JSON body). The adapters
mount it on their framework's routes:

- ``broadcasting.web.starlette``: ``broadcasting_routes()`` (Starlette) and
  ``broadcasting_router()`` (FastAPI's ``include_router``);
- ``broadcasting.web.django``: ``broadcasting_urls()`` for ``include()``;
- ``broadcasting.web.flask``: ``broadcasting_blueprint()``.

Importing this package imports no web framework; each adapter imports its
own when it is imported. :func:`socket_id_from` reads Echo's ``X-Socket-ID``
header for ``toOthers``. An error's body is the signing driver's
``error_body()``.
"""

from __future__ import annotations

from broadcasting.web._handler import (
    AUTH_PATH,
    MAX_AUTH_BODY,
    MAX_WEBHOOK_BODY,
    METHODS,
    USER_AUTH_PATH,
    WEBHOOK_PATH,
    AuthEndpoints,
    Headers,
    Offload,
    Response,
    Route,
    Sent,
    UserDataFunction,
    UserFunction,
    default_user_data,
    socket_id_from,
)

__all__ = [
    "AUTH_PATH",
    "MAX_AUTH_BODY",
    "MAX_WEBHOOK_BODY",
    "METHODS",
    "USER_AUTH_PATH",
    "WEBHOOK_PATH",
    "AuthEndpoints",
    "Headers",
    "Offload",
    "Response",
    "Route",
    "Sent",
    "UserDataFunction",
    "UserFunction",
    "default_user_data",
    "socket_id_from",
]
