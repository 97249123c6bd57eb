"""Orders, and the presence joins soketi reported by webhook."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SHIPPED = "shipped"

    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders"
    )
    item = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    carrier = models.CharField(max_length=50, blank=True)
    tracking_code = models.CharField(max_length=50, blank=True)  # sent encrypted only
    shipped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("pk",)

    def __str__(self) -> str:
        return f"#{self.pk} {self.item} ({self.status})"


class BoardVisit(models.Model):
    """Someone joined the board's presence channel: soketi's ``member_added`` webhook."""

    event_id = models.CharField(max_length=200, unique=True)  # a retried delivery: same id
    channel = models.CharField(max_length=200)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    joined_at = models.DateTimeField()

    class Meta:
        ordering = ("-joined_at", "-pk")

    def __str__(self) -> str:
        return f"{self.user} joined {self.channel} at {self.joined_at:%H:%M:%S}"
