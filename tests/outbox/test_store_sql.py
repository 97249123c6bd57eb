"""The outbox's statements as each database and DB-API paramstyle gets them (no database:
MySQL/MariaDB has no server in the test suite, so its rendering is checked here)."""

from __future__ import annotations

import pytest

from broadcasting.outbox import _sql


def test_placeholders_per_paramstyle() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c IN (?, ?)"
    assert _sql.render(sql, "sqlite", "qmark") == sql
    assert _sql.render(sql, "postgresql", "format") == (
        "SELECT a FROM t WHERE b = %s AND c IN (%s, %s)"
    )
    assert _sql.render(sql, "postgresql", "pyformat").count("%s") == 3
    assert _sql.render(sql, "sqlite", "numeric").endswith("b = :1 AND c IN (:2, :3)")
    assert _sql.render(sql, "postgresql", "numeric_dollar").endswith("b = $1 AND c IN ($2, $3)")
    with pytest.raises(ValueError, match="paramstyle 'named' is not supported"):
        _sql.render(sql, "sqlite", "named")


def test_mysql_quotes_with_backquotes() -> None:
    ddl = [_sql.render(s, "mysql", "format") for s in _sql.create_tables("mysql", "outbox")]
    assert '"' not in "".join(ddl)
    assert "`partition` SMALLINT NOT NULL" in ddl[0] and "AUTO_INCREMENT" in ddl[0]
    assert "INDEX `outbox_claim` (`partition`, state, id)" in ddl[0]
    assert "`until` DOUBLE PRECISION" in ddl[1]
    upsert = _sql.render(_sql.present("mysql", "outbox"), "mysql", "format")
    assert upsert.endswith("ON DUPLICATE KEY UPDATE `until` = VALUES(`until`)")
    assert "FOR UPDATE SKIP LOCKED" in _sql.free("mysql", "outbox")


def test_postgresql_insert_locks_each_channel_once_in_order() -> None:
    from broadcasting.outbox._row import NewRow

    row = NewRow(1, 1.0, 1.0, "pusher", "e", ("b", "a", "b2"), "x", "text", None, "m")
    sql, params = _sql.insert_params("postgresql", "s.outbox", [row, row])
    keys = params[20:-1]
    assert keys == sorted(keys) and len(keys) == 3  # one lock per channel, sorted
    assert params[-1] == "outbox"  # the NOTIFY channel: the table's name
    assert sql.count("pg_advisory_xact_lock") == 1 and sql.count("pg_notify") == 1
    assert _sql.lock_keys("s.outbox", ["a"]) != _sql.lock_keys("other", ["a"])


def test_names_are_checked() -> None:
    assert _sql.check_table("schema_1.outbox") == "schema_1.outbox"
    for bad in ("", "a.b.c", "out box", 'x"; DROP TABLE y; --', "1table"):
        with pytest.raises(ValueError, match="must be an identifier"):
            _sql.check_table(bad)
    assert _sql.dialect_of("mariadb") == "mysql" and _sql.dialect_of("postgres") == "postgresql"
    with pytest.raises(ValueError, match="not 'oracle'"):
        _sql.dialect_of("oracle")
