"""What driver and plugin authors use (docs/writing-a-driver.md); applications use the top level."""

from __future__ import annotations

from broadcasting import (
    BadRequestError,
    BroadcastError,
    ChannelInfo,
    ConfigurationError,
    ForbiddenError,
    Health,
    InputError,
    InvalidChannelError,
    InvalidEventError,
    InvalidPayloadError,
    Member,
    NotSupportedError,
    PayloadTooLargeError,
    PublishError,
    QueryError,
    Receipt,
    ServiceError,
    UnauthorizedError,
    WebhookEvent,
)
from broadcasting._auth import AuthKind, AuthRequest
from broadcasting._background import Transaction
from broadcasting._channels import ChannelKind
from broadcasting._delivery import (
    DELIVERY_OPTIONS,
    Answer,
    Batch,
    Capabilities,
    DeliveryOptions,
    Part,
    SendResult,
)
from broadcasting._driver import PUSHER_SOCKET_ID, Driver, Feature
from broadcasting._errors import ERROR_KINDS, ErrorKind
from broadcasting._flow import wait_for
from broadcasting._fork import call_after_fork, in_forked_child
from broadcasting._health import HEALTH_STATUSES, HealthStatus
from broadcasting._loop import run_sync
from broadcasting._perloop import PerLoop
from broadcasting._plugins import DriverInfo, installed_drivers, register_driver, unregister_driver
from broadcasting._retry import Retry
from broadcasting._state import SUBSCRIBED, Heard
from broadcasting._types import Limits, Message, Options, Payload, Secret, encode_payload
from broadcasting.hookspecs import hookimpl, hookspec

__all__ = [
    "DELIVERY_OPTIONS",
    "ERROR_KINDS",
    "HEALTH_STATUSES",
    "PUSHER_SOCKET_ID",
    "SUBSCRIBED",
    "Answer",
    "AuthKind",
    "AuthRequest",
    "BadRequestError",
    "Batch",
    "BroadcastError",
    "Capabilities",
    "ChannelInfo",
    "ChannelKind",
    "ConfigurationError",
    "DeliveryOptions",
    "Driver",
    "DriverInfo",
    "ErrorKind",
    "Feature",
    "ForbiddenError",
    "Health",
    "HealthStatus",
    "Heard",
    "InputError",
    "InvalidChannelError",
    "InvalidEventError",
    "InvalidPayloadError",
    "Limits",
    "Member",
    "Message",
    "NotSupportedError",
    "Options",
    "Part",
    "Payload",
    "PayloadTooLargeError",
    "PerLoop",
    "PublishError",
    "QueryError",
    "Receipt",
    "Retry",
    "Secret",
    "SendResult",
    "ServiceError",
    "Transaction",
    "UnauthorizedError",
    "WebhookEvent",
    "call_after_fork",
    "encode_payload",
    "hookimpl",
    "hookspec",
    "in_forked_child",
    "installed_drivers",
    "register_driver",
    "run_sync",
    "unregister_driver",
    "wait_for",
]
