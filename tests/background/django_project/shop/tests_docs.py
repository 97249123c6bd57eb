"""The background docs' Django block, run against this project's model with real commits."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.db import transaction
from django.test import TransactionTestCase

from .models import Order

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/background
from bg_support import doc_block


class DocsBlockTests(TransactionTestCase):
    def setUp(self) -> None:
        self.block: dict[str, Any] = {"__name__": "docs_block"}
        exec(doc_block("after-commit-django"), self.block)
        self.addCleanup(self.block["broadcast"].close)

    def published(self) -> list[Any]:
        return [m.data for m in self.block["broadcast"].driver("memory").driver.messages]

    def test_ship_publishes_once_committed(self) -> None:
        order = Order.objects.create(item="mug")
        self.block["ship"](order)
        assert Order.objects.get().status == "shipped"
        assert self.published() == [{"status": "shipped"}]

    def test_inside_a_transaction_that_rolls_back_nothing_is_published(self) -> None:
        order = Order.objects.create(item="mug")
        try:
            with transaction.atomic():
                self.block["ship"](order)  # its atomic() is a savepoint of this one
                raise ValueError("undo")
        except ValueError:
            pass
        assert Order.objects.get().status == "new"
        assert self.published() == []
