"""Declaring what a driver supports, so the kit checks the right behaviour."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Features:
    """What the driver under test supports; every flag changes what is asserted.

    Switching a feature off never removes a test: the test then checks the
    declared alternative (for example that the unsupported call is refused
    with a :class:`~broadcasting.BroadcastError` before any request).

    Attributes:
        observe: the test suite can see what the receiving side got (an
            ``observer`` fixture is provided). Off: only receipts and the
            hook calls are checked.
        multiple_channels: one publish can target several channels. Off: a
            publish to two channels must raise a ``InputError`` (from
            ``Driver.validate``) before any request.
        async_publish: ``achannel`` works. Off: it must raise a
            ``BroadcastError``.
        socket_id: the driver can exclude a sender's connection; must equal
            ``Driver.supports_socket_id``. Off: passing ``socket_id`` is
            refused before any request.
        reconnect_after_close: a closed driver reconnects on its next
            publish. Off: that publish must raise a ``BroadcastError``.
        network: the driver talks to a service: it implements ``send()`` /
            ``asend()`` and leaves ``publish()`` to the core. On: receipts
            count at least one request; the ``failing_options`` fixture must
            give configurations whose publishes fail with a ``PublishError``
            whose ``delivered`` / ``failed`` / ``unknown`` channels are true to
            what the receiving side got; and the kit wraps ``send()`` /
            ``asend()`` on the connected driver to lose an answer after the
            service got the request, or to refuse a request unsent, checking
            the retries that follow (a lost answer is re-sent only if
            ``Capabilities.deduplicates`` or ``at_least_once``, and the
            receiving side still sees one delivery). Off: the driver delivers
            in process (overrides ``publish`` / ``apublish``), receipts report
            ``requests == 0``, no ``failing_options`` are given, and delivery
            options such as ``at_least_once`` are refused.
        strict_options: an unknown option in the driver's configuration is a
            ``ConfigurationError`` naming it. Off: unknown options are ignored.
    """

    observe: bool = True
    multiple_channels: bool = True
    async_publish: bool = True
    socket_id: bool = False
    reconnect_after_close: bool = True
    network: bool = True
    strict_options: bool = True
