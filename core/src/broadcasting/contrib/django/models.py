"""The outbox's tables as Django models, so ``manage.py migrate`` creates them in the
project's database (``OUTBOX = {"django": "default"}``, docs/background.md#where-the-outbox-lives).

The relay reads and writes them with SQL of its own (:mod:`broadcasting.outbox._store`): the
models only describe the tables, whose names are fixed (``broadcasting_outbox``,
``broadcasting_outbox_lease``, ``broadcasting_outbox_relay``), and are not for app code.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import models  # type: ignore[import-untyped, unused-ignore]


class OutboxRow(models.Model):  # type: ignore[misc, unused-ignore]
    """One publish (to the channels of one partition) waiting for the relay, or done."""

    id = models.BigAutoField(primary_key=True)
    partition = models.SmallIntegerField()
    created = models.FloatField()
    available_at = models.FloatField()
    driver = models.CharField(max_length=100)
    event = models.CharField(max_length=200)
    channels = models.TextField()
    body = models.TextField()
    data_kind = models.CharField(max_length=4)
    socket_id = models.CharField(max_length=100, null=True)
    message_id = models.CharField(max_length=100)
    state = models.SmallIntegerField(default=0)
    attempts = models.IntegerField(default=0)
    error = models.TextField(null=True)
    done_at = models.FloatField(null=True)

    class Meta:
        db_table = "broadcasting_outbox"
        indexes: ClassVar[list[Any]] = [
            models.Index(fields=["partition", "state", "id"], name="broadcasting_outbox_claim")
        ]
        verbose_name = "outbox row"


class OutboxLease(models.Model):  # type: ignore[misc, unused-ignore]
    """A relay's lease on one partition of the outbox, until ``until`` (epoch seconds)."""

    partition = models.SmallIntegerField(primary_key=True)
    owner = models.CharField(max_length=200, null=True)
    until = models.FloatField()

    class Meta:
        db_table = "broadcasting_outbox_lease"


class OutboxRelay(models.Model):  # type: ignore[misc, unused-ignore]
    """A live relay (with or without leases), until ``until`` (epoch seconds)."""

    owner = models.CharField(max_length=200, primary_key=True)
    until = models.FloatField()

    class Meta:
        db_table = "broadcasting_outbox_relay"
