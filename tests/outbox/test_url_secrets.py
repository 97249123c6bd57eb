"""The outbox's URL is a secret: it may hold the database's password.

The settings keep it in a ``Secret``. When the outbox's database fails on a connection of the
store's own, the publish (or the relay's step) raises ``OutboxError``: the database's message
with the password taken out. A failed statement's error is chained to it; a failure to connect
is chained only where the URL has no password, since the database driver's frames then hold
it in their locals (psycopg's ``conninfo``, PyMySQL's ``password``, SQLAlchemy's
``cparams``). Checked against real drivers failing for real: a closed port, MariaDB refusing a
wrong password, a missing table on PostgreSQL and MariaDB; the CLI, ``check`` and the relay's
log print the message, which they withheld before.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import traceback
import uuid
from pathlib import Path
from typing import Any

import pytest
from secret_scan import raised_in
from secret_scan import showing as scan

from broadcasting import Broadcast, ConfigurationError, OutboxError
from broadcasting.cli import main
from broadcasting.outbox import Relay
from broadcasting.outbox._store import _connect, _secrets_of
from broadcasting.plugin import Secret

PASSWORD = "pw-9f3e1c0b7a42"
#: A port nothing listens on: every driver's connection is refused at once.
URLS = {
    "postgresql": f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",
    "postgresql+psycopg": f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/test",
    "mysql+pymysql": f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:1/test",
}
REFUSED = r"Connection refused|Can't connect"


def showing(error: BaseException, secret: str) -> list[str]:
    """Where ``secret`` shows in ``error``'s chain, outside this module's frames."""
    return scan(error, secret, skip=__file__)


@pytest.mark.parametrize("kind", sorted(URLS))
def test_a_publish_to_an_unreachable_outbox_is_an_outbox_error_without_the_password(
    kind: str,
) -> None:
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": URLS[kind]}}) as broadcast,
        pytest.raises(OutboxError, match=REFUSED) as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert str(info.value).startswith("cannot connect to the outbox's database: ")
    assert showing(info.value, PASSWORD) == []
    assert PASSWORD not in "".join(traceback.format_exception(info.value))
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert raised_in(info.value) == "_connect"  # the traceback points where it was raised


@pytest.mark.parametrize("kind", sorted(URLS))
async def test_the_async_publish_is_the_same(kind: str) -> None:
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": URLS[kind]}}) as broadcast,
        pytest.raises(OutboxError, match=REFUSED) as info,
    ):
        await broadcast.achannel("orders", {"id": 1}, "shipped", send="outbox")
    assert showing(info.value, PASSWORD) == []


def test_mariadb_refusing_the_password_says_so_without_it(mysql_url: str) -> None:
    """The real server's refusal (root has no password here): the reason is in the message."""
    url = mysql_url.replace("root@", f"root:{PASSWORD}@", 1)
    assert PASSWORD in url
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}}) as broadcast,
        pytest.raises(OutboxError, match=r"Access denied for user 'root'") as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert showing(info.value, PASSWORD) == []


def test_without_a_password_the_drivers_error_is_chained_with_its_traceback() -> None:
    import psycopg

    url = "postgresql://postgres@127.0.0.1:1/test"
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}}) as broadcast,
        pytest.raises(OutboxError, match=REFUSED) as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    cause = info.value.__cause__
    assert isinstance(cause, psycopg.OperationalError)
    assert cause.__traceback__ is not None


def test_an_unopenable_sqlite_file_is_an_outbox_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/no/such/folder/outbox.sqlite3"
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}}) as broadcast,
        pytest.raises(OutboxError, match="unable to open database file") as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    import sqlite3

    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


def test_the_relay_round_raises_it_and_the_running_relay_logs_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broadcast = Broadcast({"DRIVER": "memory", "OUTBOX": {"url": URLS["postgresql"]}})
    relay = Relay(broadcast)
    with pytest.raises(OutboxError, match=REFUSED) as info:
        relay.run_once()
    assert showing(info.value, PASSWORD) == []

    caplog.set_level(logging.WARNING, logger="broadcasting.outbox")
    thread = threading.Thread(target=lambda: asyncio.run(relay.arun()))
    thread.start()
    try:
        for _ in range(100):
            if any("database failed" in r.getMessage() for r in caplog.records):
                break
            threading.Event().wait(0.05)
    finally:
        relay.stop()
        thread.join(timeout=30)
        broadcast.close()
    assert not thread.is_alive()
    [line] = {r.getMessage() for r in caplog.records if "database failed" in r.getMessage()}
    assert "OutboxError: cannot connect to the outbox's database: OperationalError" in line
    assert "Connection refused" in line and PASSWORD not in caplog.text


def test_a_store_that_cannot_listen_says_why_and_polls(caplog: pytest.LogCaptureFixture) -> None:
    from broadcasting.outbox import store_for

    caplog.set_level(logging.WARNING, logger="broadcasting.outbox")
    with Broadcast({"DRIVER": "memory", "OUTBOX": {"url": URLS["postgresql"]}}) as broadcast:
        store_for(broadcast).wait(0.01)
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("outbox: cannot LISTEN for new rows (OutboxError: cannot connect")
    assert "Connection refused" in line and line.endswith("; polling")
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # libpq stops at the bad escape and its message quotes it: "50%off"
        ("postgresql://postgres:50%off-{pw}@127.0.0.1:1/test", "libpq cannot read it"),
        # a second "@": the parsers take the password's tail for the host, and quote it
        ("postgresql://postgres:p@ss-{pw}@127.0.0.1:1/test", "percent-encode"),
        ("mysql+pymysql://root:p@ss:{pw}@127.0.0.1:1/test", "percent-encode"),
        # a "/" before the "@": the password's head is taken for the port
        ("postgresql://postgres:pa/ss-{pw}@127.0.0.1:1/test", "percent-encode"),
        ("postgresql+psycopg://postgres:pa?ss-{pw}@127.0.0.1:1/test", "percent-encode"),
    ],
)
def test_a_url_the_parsers_would_split_in_the_password_is_refused_quoting_nothing(
    url: str, shown: str
) -> None:
    url = url.format(pw=PASSWORD)
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}}) as broadcast,
        pytest.raises(ConfigurationError, match=shown) as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert "%40" in str(info.value)  # says how to write it
    assert info.value.__context__ is None and showing(info.value, PASSWORD) == []
    assert not [part for part in ("50%off", "ss-", "pa") if f"'{part}" in str(info.value)]


@pytest.mark.parametrize("scheme", ["sqlite", "sqlite+pysqlite"])
def test_a_sqlite_path_may_hold_an_at_sign(tmp_path: Path, scheme: str) -> None:
    folder = tmp_path / "me@host"
    folder.mkdir()
    url = f"{scheme}:///{folder}/outbox.sqlite3"
    with Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}}) as broadcast:
        if scheme != "sqlite":  # SQLAlchemy's SQLite makes no tables by itself
            from broadcasting.outbox import store_for

            store_for(broadcast).create_tables()
        receipt = broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert receipt.pending and (folder / "outbox.sqlite3").is_file()


def test_the_same_password_percent_encoded_is_read(reachable: tuple[str, str | None]) -> None:
    """The refused URLs' fix works: "p@ss/w?rd#1%" percent-encoded is read as the password.
    PostgreSQL (trusting local users) answers that the table is missing; MariaDB refuses the
    password it was given, as it does any, which shows it came through as one."""
    url, password = reachable
    quoted = "p%40ss%2Fw%3Frd%231%25"
    if password is None:
        url = url.replace("root@", f"root:{quoted}@", 1)
    else:
        url = url.replace(f":{password}@", f":{quoted}@", 1)
    settings = {"url": url, "table": missing_table()}
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": settings}) as broadcast,
        pytest.raises(OutboxError, match=r"does not exist|doesn't exist|using password: YES"),
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")


def test_a_password_too_short_to_take_out_withholds_the_message() -> None:
    url = "postgresql://postgres:a@127.0.0.1:1/test"
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}}) as broadcast,
        pytest.raises(OutboxError) as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert str(info.value) == (
        "cannot connect to the outbox's database: OperationalError "
        "(message withheld: the URL's password is too short)"
    )


def test_the_message_is_one_line() -> None:
    """psycopg's refusal spans two lines (a hint after a newline and a tab): the CLI and the
    log print one."""
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": URLS["postgresql"]}}) as broadcast,
        pytest.raises(OutboxError, match="Is the server running") as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert "\n" not in str(info.value) and "\t" not in str(info.value)


def test_describe_shows_a_database_error_less_the_password_and_a_bug_by_its_type() -> None:
    """What the relay's log and the commands print of an error (the errors are built here: the
    real ones are above; this is the choice between the three kinds)."""
    import psycopg

    from broadcasting.outbox import store_for

    with Broadcast({"DRIVER": "memory", "OUTBOX": {"url": URLS["postgresql"]}}) as broadcast:
        store = store_for(broadcast)
        said = f"connection failed for postgres:{PASSWORD}\n\tmore"
        assert store.describe(psycopg.OperationalError(said)) == (
            "OperationalError: connection failed for postgres:*** more"
        )
        assert store.describe(OutboxError("as it is")) == "OutboxError: as it is"
        assert store.describe(TypeError(f"a bug's message: {PASSWORD}")) == "TypeError"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "broadcasting_config.py"
    path.write_text(f'DRIVER = "memory"\nOUTBOX = {{"url": {URLS["postgresql"]!r}}}\n', "utf-8")
    return path


@pytest.mark.parametrize("command", [["relay", "--once"], ["relay", "--stats"]])
def test_the_relay_command_prints_why(
    config_file: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--config", str(config_file)]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("broadcasting: error: OutboxError: cannot connect"), err
    assert "Connection refused" in err and PASSWORD not in out + err


def test_check_prints_why(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(config_file)]) == 1
    out, err = capsys.readouterr()
    [row] = [line for line in out.splitlines() if line.startswith("outbox")]
    assert "OutboxError: cannot connect to the outbox's database" in row, out
    assert "Connection refused" in row and PASSWORD not in out + err


def test_the_settings_hold_the_url_in_a_secret() -> None:
    broadcast = Broadcast({"DRIVER": "memory", "OUTBOX": {"url": URLS["postgresql"]}})
    url = broadcast.config.outbox["url"]
    assert isinstance(url, Secret) and url.reveal() == URLS["postgresql"]
    assert PASSWORD not in repr(broadcast.config.outbox) + repr(dict(broadcast.config.outbox))


def test_a_url_sqlalchemy_cannot_read_is_a_configuration_error_holding_nothing() -> None:
    url = f"nosuchdatabase+x://root:{PASSWORD}@127.0.0.1/test"
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}}) as broadcast,
        pytest.raises(ConfigurationError, match="SQLAlchemy knows no database") as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert info.value.__context__ is None and showing(info.value, PASSWORD) == []


#: URLs SQLAlchemy reads whose engine it cannot make: the error of create_engine() has frames
#: holding the whole URL (create_engine's ``url``, the dialect's connect arguments).
NOT_AN_INT = (
    "url: SQLAlchemy cannot make an engine of it: "
    "ValueError: invalid literal for int() with base 10: 'abc'"
)
NO_ENGINE = {
    "driver not installed": (
        f"mysql+mysqlconnector://root:{PASSWORD}@127.0.0.1:1/test",
        "url: its database driver is not installed (mysql)",
    ),
    "query value": (
        f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:1/test?connect_timeout=abc",
        NOT_AN_INT,
    ),
    "query value, password in the query": (
        f"mysql+pymysql://root@127.0.0.1:1/test?connect_timeout=abc&password={PASSWORD}",
        NOT_AN_INT,
    ),
}


class _NoMySQLConnector:
    """A meta path finder that finds no ``mysql`` package, as where it is not installed."""

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "mysql" or name.startswith("mysql."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="mysql")


@pytest.mark.parametrize("case", sorted(NO_ENGINE))
def test_an_engine_sqlalchemy_cannot_make_is_a_configuration_error_holding_nothing(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not chained, nor kept as the __context__ ("from None" keeps it there, where an error
    tracker reads the frames' locals): the message says what is wrong, less the password."""
    # mysql-connector made missing wherever it is installed: its import fails as it would
    for name in [n for n in sys.modules if n == "mysql" or n.startswith("mysql.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoMySQLConnector(), *sys.meta_path])
    url, said = NO_ENGINE[case]
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url}}) as broadcast,
        pytest.raises(ConfigurationError) as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert showing(info.value, PASSWORD) == []
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert PASSWORD not in "".join(traceback.format_exception(info.value))
    assert raised_in(info.value) == "__init__"  # the traceback points where it was raised
    assert str(info.value) == f"Configuration error (setting 'OUTBOX'): {said}"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("oracle+oracledb://u@127.0.0.1:1/db?password={pw}", "supports PostgreSQL, SQLite"),
        ("postgresql+asyncpg://u@127.0.0.1:1/db?password={pw}", "the store is blocking"),
        # libpq's parser cannot encode it: its frames hold the URL (conninfo)
        ("postgresql://postgres:{pw}@127.0.0.1:1/te\udc80st", "surrogates not allowed"),
    ],
)
def test_a_database_the_outbox_cannot_use_is_refused_holding_nothing(url: str, shown: str) -> None:
    """Refused once SQLAlchemy or libpq has read the URL: no frame keeps the URL as they read
    it (SQLAlchemy's repr of a URL hides its password, not a ``password=`` of its query)."""
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url.format(pw=PASSWORD)}}) as broadcast,
        pytest.raises(ConfigurationError, match=shown) as info,
    ):
        broadcast.channel("orders", {"id": 1}, "shipped", send="outbox")
    assert showing(info.value, PASSWORD) == []
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.fixture(params=["postgresql", "postgresql+psycopg", "mysql+pymysql"])
def reachable(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """A URL of a running database, and the password in it: PostgreSQL trusts local users here
    whatever the password (so one is given); MariaDB's root has none."""
    if request.param == "mysql+pymysql":
        return request.getfixturevalue("mysql_url"), None
    url = request.getfixturevalue("pg_url").replace("@", f":{PASSWORD}@", 1)
    return url.replace("postgresql://", f"{request.param}://", 1), PASSWORD


def missing_table() -> str:
    return f"no_such_outbox_{uuid.uuid4().hex[:8]}"


def test_a_failed_statement_is_an_outbox_error_chained_to_the_databases(
    reachable: tuple[str, str | None],
) -> None:
    """Connected, a statement on a table that does not exist fails: an OutboxError whose
    message is the database's (the SQL, not the row's values: SQLAlchemy's hide_parameters),
    chained to the database's error with its traceback, where no frame shows the password."""
    url, password = reachable
    marker = "payload-" + uuid.uuid4().hex
    with (
        Broadcast({"DRIVER": "memory", "OUTBOX": {"url": url, "table": missing_table()}}) as b,
        pytest.raises(OutboxError, match=r"^the outbox's database failed: \w+: ") as info,
    ):
        b.channel("orders", {"note": marker}, "shipped", send="outbox")
    assert re.search(r"no_such_outbox_\w+.* (does not exist|doesn't exist)", str(info.value))
    assert marker not in str(info.value)
    cause = info.value.__cause__
    assert cause is not None and cause.__traceback__ is not None
    assert type(cause).__name__ in ("UndefinedTable", "ProgrammingError")
    if password is not None:
        assert showing(info.value, password) == []


def test_the_relay_command_prints_the_statements_failure(
    reachable: tuple[str, str | None], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, password = reachable
    path = tmp_path / "broadcasting_config.py"
    outbox = {"url": url, "table": missing_table()}
    path.write_text(f'DRIVER = "memory"\nOUTBOX = {outbox!r}\n', "utf-8")
    assert main(["relay", "--stats", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    # the table is missing: said so, with what makes it (the database's words, not its SQL)
    assert err.startswith("broadcasting: error: OutboxError: the outbox's table "), err
    assert outbox["table"] in err and "`broadcasting outbox init`" in err, err
    assert password is None or password not in out + err


def test_the_password_is_taken_out_as_written_and_as_decoded() -> None:
    """The scrubbing itself, on a stand-in error: none of the real drivers here put the password
    in a message we could make them write."""
    password = "p@ss w/rd:1"
    hidden = _secrets_of(None, {"password": password})
    assert all(isinstance(secret, Secret) for secret in hidden)

    def opener() -> Any:
        raise RuntimeError(f"bad {password} / p%40ss%20w%2Frd%3A1 / p%40ss+w%2Frd%3A1")

    with pytest.raises(OutboxError) as info:
        _connect(opener, (RuntimeError,), hidden)
    assert str(info.value) == (
        "cannot connect to the outbox's database: RuntimeError: bad *** / *** / ***"
    )
    assert info.value.__cause__ is None

    def bug() -> Any:
        raise AssertionError("not the database's: a bug, raised as it is")

    with pytest.raises(AssertionError):
        _connect(bug, (RuntimeError,), hidden)

    def refused() -> Any:  # what a driver raises for an option it cannot take
        raise TypeError(f"an unexpected keyword argument, beside {password}")

    with pytest.raises(ConfigurationError, match=r"refused it: TypeError: .*beside \*\*\*$"):
        _connect(refused, (RuntimeError,), hidden)
    with pytest.raises(TypeError):  # no password: as it is, with its traceback
        _connect(refused, (RuntimeError,), ())


@pytest.mark.parametrize(
    ("query", "refusal"),
    [
        ("foo=bar", "TypeError: .*unexpected keyword argument 'foo'"),
        ("charset=nosuch", "AttributeError"),
    ],
)
def test_an_option_the_database_driver_refuses_while_connecting_keeps_the_password_out(
    query: str, refusal: str
) -> None:
    """PyMySQL refuses some of a URL's options only when it connects (``?foo=bar``: a
    TypeError; ``?charset=nosuch``: an AttributeError), and those errors came out as they
    were, the password beside them in the locals of their frames. Now a ConfigurationError,
    unchained; without a password, the driver's error as it is, with its traceback."""
    from broadcasting.outbox._store import Store

    store = Store.from_config({"url": f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:1/test?{query}"})
    try:
        with pytest.raises(ConfigurationError, match=f"driver refused it: {refusal}") as info:
            store.create_tables()
    finally:
        store.close()
    error = info.value
    assert showing(error, PASSWORD) == []
    assert error.__cause__ is None and error.__context__ is None
    bare = Store.from_config({"url": f"mysql+pymysql://root@127.0.0.1:1/test?{query}"})
    try:
        with pytest.raises((TypeError, AttributeError)):
            bare.create_tables()
    finally:
        bare.close()
