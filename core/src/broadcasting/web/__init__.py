"""Web endpoints for channel authorization, user sign-in and webhooks, for any framework.

The adapters are ``broadcasting.web.starlette``, ``.django`` and ``.flask``; this
package imports no framework (docs/web.md).
"""

from __future__ import annotations

from broadcasting._webhooks import Headers
from broadcasting.web._handler import (
    AUTH_PATH,
    MAX_AUTH_BODY,
    MAX_WEBHOOK_BODY,
    METHODS,
    USER_AUTH_PATH,
    WEBHOOK_PATH,
    AuthEndpoints,
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
