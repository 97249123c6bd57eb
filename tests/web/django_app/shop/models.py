"""Orders, and what the webhook handlers record."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Order(models.Model):
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)


class Occupied(models.Model):
    channel = models.CharField(max_length=200)
