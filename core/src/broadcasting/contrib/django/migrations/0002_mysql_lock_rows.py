"""MySQL/MariaDB only: the channels' lock rows that keep each channel's ids in commit order
(``Store.create_tables()`` makes the same table there; PostgreSQL and SQLite need none)."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations  # type: ignore[import-untyped, unused-ignore]

from broadcasting.outbox import _sql

TABLE = "broadcasting_outbox"


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "mysql":
        schema_editor.execute(_sql.render(_sql.create_lock_table(TABLE), _sql.MYSQL, "format"))


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "mysql":
        schema_editor.execute(f"DROP TABLE IF EXISTS `{_sql.lock_table(TABLE)}`")


class Migration(migrations.Migration):  # type: ignore[misc, unused-ignore]
    dependencies: ClassVar[list[Any]] = [("broadcasting", "0001_initial")]

    # not atomic: MySQL cannot roll DDL back, and Django refuses DDL in a transaction there
    operations: ClassVar[list[Any]] = [
        migrations.RunPython(create, drop, atomic=False, elidable=False)
    ]
