"""The outbox's SQLAlchemy engine holds no password: not in its URL, its repr, or a frame.

A SQLAlchemy URL may carry the password in its user part or as ``?password=`` (the outbox
takes both out of error messages). The engine was made from the whole URL, so it kept the
password as text (``engine.url.password``, ``engine.url.query``), and SQLAlchemy's repr of
an engine hides the first but not the second: a failure to connect raised an OutboxError
whose traceback held ``opener`` (the engine's bound ``connect``), shown by an error tracker
as ``<bound method Engine.connect of Engine(...?password=<the password>)>``. Now the engine
is made from the URL less its password, which is handed to the database driver only as it
connects.

Against the real MariaDB (a user of the test's own, with a password: a wrong one is refused)
and PostgreSQL (trust authentication here: any password connects), and a port nothing
listens on.
"""

from __future__ import annotations

import secrets
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))
from secret_scan import showing
from soketi_pytest import unavailable  # skips, but fails under CI

from broadcasting import Broadcast, OutboxError
from broadcasting.outbox import Relay
from broadcasting.outbox._store import Store

pymysql = pytest.importorskip("pymysql")
psycopg = pytest.importorskip("psycopg")

PASSWORD = "s36-Pw_" + secrets.token_hex(8)
WRONG = "s36-Wrong_" + secrets.token_hex(8)
TABLE = "s36_secret_outbox"


@pytest.fixture(scope="module")
def mysql_user() -> Iterator[tuple[str, str]]:
    """A MariaDB user with :data:`PASSWORD` and a database of its own (both dropped after)."""
    name = "s36sec_" + uuid.uuid4().hex[:10]
    try:
        root = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    except pymysql.Error:
        unavailable("MariaDB", "MariaDB is not running on 127.0.0.1:3306")
    try:
        with root.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
            cursor.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{PASSWORD}'")
            cursor.execute(f"GRANT ALL ON {name}.* TO '{name}'@'%'")
        yield name, name
    finally:
        with root.cursor() as cursor:
            cursor.execute(f"DROP USER IF EXISTS '{name}'@'%'")
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        root.close()


@pytest.fixture(scope="module")
def pg_role() -> Iterator[str]:
    """A PostgreSQL role with :data:`PASSWORD` owning a schema of its name (dropped after)."""
    name = "s36sec_" + uuid.uuid4().hex[:10]
    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True)
    except psycopg.Error:
        unavailable("PostgreSQL", "PostgreSQL is not running on 127.0.0.1:5432")
    try:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'")
        admin.execute(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
        yield name
    finally:
        admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        admin.execute(f"DROP ROLE IF EXISTS {name}")
        admin.close()


def _forms(user: str, password: str, rest: str, scheme: str) -> list[str]:
    return [
        f"{scheme}://{user}:{password}@{rest}",
        f"{scheme}://{user}@{rest}?password={password}",
    ]


@pytest.mark.parametrize("scheme", ["mysql+pymysql", "postgresql+psycopg"])
@pytest.mark.parametrize("form", [0, 1], ids=["user-part", "query"])
def test_a_refused_connection_keeps_the_password_out_of_every_frame(scheme: str, form: int) -> None:
    url = _forms("someone", WRONG, "127.0.0.1:1/test", scheme)[form]
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}}) as broadcast,
        pytest.raises(OutboxError, match="cannot connect") as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert showing(info.value, WRONG, skip=__file__) == []


@pytest.mark.parametrize("form", [0, 1], ids=["user-part", "query"])
def test_mariadb_connects_with_the_password_the_engine_does_not_hold(
    mysql_user: tuple[str, str], form: int
) -> None:
    user, database = mysql_user
    url = _forms(user, PASSWORD, f"127.0.0.1:3306/{database}", "mysql+pymysql")[form]
    table = f"{TABLE}_{form}"  # each its own: a relay holds its partitions' leases
    store = Store.from_config({"url": url, "table": table})
    try:
        store.create_tables()  # connects: the password reached the server
        engine = store._source.engine  # type: ignore[attr-defined]
        assert engine.url.password is None
        assert not any(key.lower() in ("password", "passwd") for key in engine.url.query)
        assert PASSWORD not in repr(engine) and PASSWORD not in repr(engine.connect)
        config = {"DRIVER": "memory", "OUTBOX": {"url": url, "table": table}}
        with Broadcast(config) as broadcast:
            receipt = broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
            assert receipt.pending
            assert Relay(broadcast).run_once().delivered == 1
    finally:
        store.close()
    # a wrong password is still refused (not connected without one), and not shown
    wrong = _forms(user, WRONG, f"127.0.0.1:3306/{database}", "mysql+pymysql")[form]
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": wrong, "table": TABLE}}) as broadcast,
        pytest.raises(OutboxError, match="Access denied") as info,
    ):
        broadcast.channel("orders", {"id": 2}, "shipped", send="outbox")
    assert showing(info.value, WRONG, skip=__file__) == []


@pytest.mark.parametrize("form", [0, 1], ids=["user-part", "query"])
def test_postgresql_through_sqlalchemy_publishes_and_listens(pg_role: str, form: int) -> None:
    url = _forms(pg_role, PASSWORD, "127.0.0.1:5432/test", "postgresql+psycopg")[form]
    table = f"{pg_role}.{TABLE}_{form}"
    store = Store.from_config({"url": url, "table": table})
    try:
        store.create_tables()
        engine = store._source.engine  # type: ignore[attr-defined]
        assert engine.url.password is None and "password" not in engine.url.query
        assert PASSWORD not in repr(engine)
        listener = store._source.listener()  # type: ignore[attr-defined]
        assert listener is not None
        assert listener.info.password == PASSWORD  # LISTEN connects as the store does
        listener.close()
        config = {"DRIVER": "memory", "OUTBOX": {"url": url, "table": table}}
        with Broadcast(config) as broadcast:
            broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
            assert Relay(broadcast).run_once().delivered == 1
    finally:
        store.close()
