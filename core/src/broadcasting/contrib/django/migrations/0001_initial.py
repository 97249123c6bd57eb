"""The outbox's tables (docs/background.md#where-the-outbox-lives): what
``Store.create_tables()`` creates."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations, models  # type: ignore[import-untyped, unused-ignore]


class Migration(migrations.Migration):  # type: ignore[misc, unused-ignore]
    initial = True

    dependencies: ClassVar[list[Any]] = []

    operations: ClassVar[list[Any]] = [
        migrations.CreateModel(
            name="OutboxLease",
            fields=[
                ("partition", models.SmallIntegerField(primary_key=True, serialize=False)),
                ("owner", models.CharField(max_length=200, null=True)),
                ("until", models.FloatField()),
            ],
            options={"db_table": "broadcasting_outbox_lease"},
        ),
        migrations.CreateModel(
            name="OutboxRelay",
            fields=[
                ("owner", models.CharField(max_length=200, primary_key=True, serialize=False)),
                ("until", models.FloatField()),
            ],
            options={"db_table": "broadcasting_outbox_relay"},
        ),
        migrations.CreateModel(
            name="OutboxRow",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("partition", models.SmallIntegerField()),
                ("created", models.FloatField()),
                ("available_at", models.FloatField()),
                ("driver", models.CharField(max_length=100)),
                ("event", models.CharField(max_length=200)),
                ("channels", models.TextField()),
                ("body", models.TextField()),
                ("data_kind", models.CharField(max_length=4)),
                ("socket_id", models.CharField(max_length=100, null=True)),
                ("message_id", models.CharField(max_length=100)),
                ("state", models.SmallIntegerField(default=0)),
                ("attempts", models.IntegerField(default=0)),
                ("error", models.TextField(null=True)),
                ("done_at", models.FloatField(null=True)),
            ],
            options={
                "verbose_name": "outbox row",
                "db_table": "broadcasting_outbox",
                "indexes": [
                    models.Index(
                        fields=["partition", "state", "id"], name="broadcasting_outbox_claim"
                    )
                ],
            },
        ),
    ]
