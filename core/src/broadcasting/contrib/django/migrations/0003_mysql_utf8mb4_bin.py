"""MySQL/MariaDB only: the outbox's tables in utf8mb4 with the binary collation, as
``Store.create_tables()`` makes them there, whatever the database's default. In latin1 a
message beyond Latin-1 was refused (or stored as ``?``), and a case- or accent-insensitive
collation (MariaDB's default ``utf8mb4_general_ci`` too) took relays named ``relay-a`` and
``RELAY-A`` for one owner: both held its leases and sent the same rows. PostgreSQL and SQLite
compare text as it is: nothing to do there."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db import migrations  # type: ignore[import-untyped, unused-ignore]

TABLES = ("broadcasting_outbox", "broadcasting_outbox_lease", "broadcasting_outbox_relay")


def convert(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    if connection.vendor == "mysql":
        # only those 0001 made here (a router may keep the outbox in another database)
        present = set(connection.introspection.table_names())
        for table in (t for t in TABLES if t in present):  # the rows' text is converted too
            schema_editor.execute(
                f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )


class Migration(migrations.Migration):  # type: ignore[misc, unused-ignore]
    dependencies: ClassVar[list[Any]] = [("broadcasting", "0002_mysql_lock_rows")]

    # not atomic: MySQL cannot roll DDL back, and Django refuses DDL in a transaction there.
    # Backwards: nothing (the tables keep utf8mb4_bin, which holds all the old ones did).
    operations: ClassVar[list[Any]] = [
        migrations.RunPython(convert, migrations.RunPython.noop, atomic=False, elidable=False)
    ]
