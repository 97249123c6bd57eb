"""The outbox operations commands on an outbox that is not where its settings say, on the
real SQLite files, PostgreSQL and MariaDB.

- A mistyped SQLite path (a file that does not exist) given to ``outbox list``, ``retry``,
  ``drop``, ``purge`` or ``relay --stats`` made a new empty outbox there (the store's first
  use creates its file and tables), and e.g. ``drop 3`` said the row was "left alone (or no
  such row)". They now exit 1 in one line naming the path, and make no file; ``outbox init``
  and an application's first publish still make it.
- ``outbox init`` of a table in a schema (PostgreSQL) or database (MariaDB) that does not
  exist said "InvalidSchemaName" (or "Unknown database") and asked whether the database is
  up. It now says that the schema does not exist and how to make it, with no such hint.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pymysql
import pytest
from outbox_ops import config_file, main

from broadcasting import Broadcast
from broadcasting.outbox import store_for
from broadcasting.outbox._cli import HINT

SECRET = "pw-0f9c2be7-never-shown"
#: The operations commands that must not make the outbox's SQLite file.
OPERATIONS = (
    ["outbox", "list"],
    ["outbox", "list", "--state", "unknown", "--json"],
    ["outbox", "retry", "3"],
    ["outbox", "retry", "--all-dead"],
    ["outbox", "drop", "3"],
    ["outbox", "drop", "--all-dead", "--all-unknown"],
    ["outbox", "purge", "--before", "0"],
    ["relay", "--stats"],
)


@pytest.mark.parametrize("where", ["file", "directory"])
def test_operations_on_a_sqlite_file_that_does_not_exist_refuse_and_make_none(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped file name, or a directory that does not exist either."""
    path = tmp_path / "outbox.sqlite3" if where == "file" else tmp_path / "nodir" / "x.sqlite3"
    config = config_file(tmp_path, {"url": f"sqlite:///{path}"})
    for argv in OPERATIONS:
        status, out, err = main(*argv, "--config", config, capsys=capsys)
        assert (status, out) == (1, ""), (argv, out, err)
        assert len(err.splitlines()) == 1 and "OutboxError" in err, (argv, err)
        assert repr(str(path)) in err and "does not exist" in err, (argv, err)
        assert "outbox init" in err and HINT not in err and "left alone" not in err, err
        assert not path.exists() and not path.parent.joinpath("x.sqlite3-wal").exists()
    assert path.parent.exists() == (where == "file")


def test_the_default_sqlite_file_missing_is_named_with_its_full_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No OUTBOX url: the file in the working directory, which a command run from another
    directory than the application's does not find (said, with the directory)."""
    monkeypatch.delenv("BROADCASTING_OUTBOX", raising=False)
    monkeypatch.chdir(tmp_path)
    config = config_file(tmp_path, {})
    status, out, err = main("outbox", "drop", "3", "--config", config, capsys=capsys)
    assert (status, out) == (1, ""), err
    assert "'broadcasting-outbox.sqlite3'" in err, err
    assert str(tmp_path / "broadcasting-outbox.sqlite3") in err, err
    assert "BROADCASTING_OUTBOX" in err and HINT not in err, err
    assert list(tmp_path.glob("broadcasting-outbox*")) == []


def test_init_and_the_first_publish_still_make_the_sqlite_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = tmp_path / "made-by-init.sqlite3"
    config = config_file(tmp_path, {"url": f"sqlite:///{made}"})
    status, out, err = main("outbox", "init", "--config", config, capsys=capsys)
    assert (status, err) == (0, "") and "outbox ready" in out and made.exists()
    status, out, err = main("outbox", "drop", "3", "--config", config, capsys=capsys)
    assert (status, out) == (0, "0 row(s) deleted\n"), err

    published = tmp_path / "made-by-publish.sqlite3"
    config = config_file(tmp_path, {"url": f"sqlite:///{published}"})
    status, out, err = main("outbox", "list", "--config", config, capsys=capsys)
    assert status == 1 and not published.exists(), err
    with Broadcast(config) as broadcast:
        broadcast.channel("orders", "created", "e", send="outbox")
        assert store_for(broadcast).stats(0.0).backlog["pending"] == 1
    assert published.exists()
    status, out, err = main("relay", "--stats", "--json", "--config", config, capsys=capsys)
    assert status == 0 and '"pending": 1' in out, err


def test_operations_on_a_sqlite_file_without_the_outbox_make_no_tables_in_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The application's own database given by mistake: the commands say the outbox's
    tables are missing and what makes them, as on another database, and leave the file as
    it was (they made the outbox's tables in it)."""
    import sqlite3

    path = tmp_path / "app.sqlite3"
    with sqlite3.connect(path) as app:
        app.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
    app.close()
    config = config_file(tmp_path, {"url": f"sqlite:///{path}"})
    for argv in OPERATIONS:
        status, out, err = main(*argv, "--config", config, capsys=capsys)
        assert (status, out) == (1, ""), (argv, out, err)
        assert "does not exist" in err and "outbox init" in err and HINT not in err, err
        with sqlite3.connect(path) as app:
            names = [n for (n,) in app.execute("SELECT name FROM sqlite_master")]
        app.close()
        assert names == ["orders"], (argv, names)


def test_init_of_a_sqlite_file_in_a_folder_that_does_not_exist_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nodir" / "outbox.sqlite3"
    config = config_file(tmp_path, {"url": f"sqlite:///{path}"})
    status, out, err = main("outbox", "init", "--config", config, capsys=capsys)
    assert (status, out) == (1, ""), err
    assert len(err.splitlines()) == 1 and HINT not in err, err
    assert repr(str(path.parent)) in err and "does not exist" in err, err
    path.parent.mkdir()
    status, out, err = main("outbox", "init", "--config", config, capsys=capsys)
    assert status == 0 and "outbox ready" in out and path.exists(), err


def mysql_admin(sql: str) -> None:
    with pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True) as conn:
        conn.cursor().execute(sql)


def test_init_in_a_postgresql_schema_that_does_not_exist_says_so_and_how_to_make_it(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL trusts this machine's connections whatever the password: the URL carries
    one, which the message must not show."""
    schema = f"nosuch_{uuid.uuid4().hex[:8]}"
    url = pg_url.replace("@", f":{SECRET}@", 1)
    config = config_file(tmp_path, {"url": url, "table": f"{schema}.broadcasting_outbox"})
    status, out, err = main("outbox", "init", "--config", config, capsys=capsys)
    assert (status, out) == (1, ""), err
    assert len(err.splitlines()) == 1 and SECRET not in err, err
    assert f"schema {schema!r}" in err and "does not exist" in err, err
    assert f'CREATE SCHEMA "{schema}"' in err and HINT not in err, err
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        status, out, err = main("outbox", "init", "--config", config, capsys=capsys)
        assert status == 0 and "outbox ready" in out, err
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_init_in_a_mariadb_database_that_does_not_exist_says_so_and_how_to_make_it(
    mysql_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = f"nosuch_{uuid.uuid4().hex[:8]}"
    config = config_file(tmp_path, {"url": mysql_url, "table": f"{database}.broadcasting_outbox"})
    status, out, err = main("outbox", "init", "--config", config, capsys=capsys)
    assert (status, out) == (1, ""), err
    assert len(err.splitlines()) == 1 and "[SQL:" not in err, err
    assert f"database {database!r}" in err and "does not exist" in err, err
    assert f"CREATE DATABASE `{database}`" in err and HINT not in err, err
    mysql_admin(f"CREATE DATABASE `{database}`")
    try:
        status, out, err = main("outbox", "init", "--config", config, capsys=capsys)
        assert status == 0 and "outbox ready" in out, err
    finally:
        mysql_admin(f"DROP DATABASE `{database}`")


def test_a_url_whose_own_database_does_not_exist_keeps_the_connection_message(
    mysql_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MariaDB's error for the URL's database missing is the same number (1049): that one
    is not taken for the table's database (the table here has none of its own)."""
    url = mysql_url.rsplit("/", 1)[0] + f"/nosuch_{uuid.uuid4().hex[:8]}"
    config = config_file(tmp_path, {"url": url})
    status, out, err = main("outbox", "init", "--config", config, capsys=capsys)
    assert (status, out) == (1, ""), err
    assert "cannot connect" in err and "Unknown database" in err and HINT in err, err


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_operations_on_a_table_whose_schema_does_not_exist_say_the_schema_is_missing(
    dialect: str,
    pg_url: str,
    mysql_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A query on ``schema.table`` says only that the table does not exist (PostgreSQL's
    42P01, MariaDB's 1146): ``outbox list`` and the others said "its tables were never made;
    create them with `broadcasting outbox init`", which then failed on the schema. They now
    say what init would: the schema (database) is missing, and how to make it."""
    schema = f"nosuch_{uuid.uuid4().hex[:8]}"
    url = pg_url if dialect == "postgresql" else mysql_url
    config = config_file(tmp_path, {"url": url, "table": f"{schema}.broadcasting_outbox"})
    make = f'CREATE SCHEMA "{schema}"' if dialect == "postgresql" else f"CREATE DATABASE `{schema}`"
    for argv in OPERATIONS:
        status, out, err = main(*argv, "--config", config, capsys=capsys)
        assert (status, out) == (1, ""), (argv, err)
        assert len(err.splitlines()) == 1, (argv, err)
        assert repr(schema) in err and "does not exist" in err and make in err, (argv, err)
        assert "never made" not in err and HINT not in err, (argv, err)


def test_a_table_missing_in_a_schema_that_exists_is_still_the_tables_error(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, {"url": pg_url, "table": "public.broadcasting_nosuch"})
    status, out, err = main("outbox", "list", "--config", config, capsys=capsys)
    assert (status, out) == (1, ""), err
    assert "never made" in err and "outbox init" in err and "schema" not in err, err
