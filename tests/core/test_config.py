"""Configuration: the seed's DRIVER/DRIVERS as a mapping, a module or a file; the env default."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from broadcasting import Broadcast, ConfigurationError, DriverNotFoundError
from broadcasting._config import load_config
from broadcasting.plugin import Secret


def test_mapping_in_the_seed_shape() -> None:
    config = load_config(
        {
            "DRIVER": "pusher",
            "DRIVERS": {
                "pusher": {"app_id": "1", "client": "k", "secret": "s"},
                "ably": {"secret": "api:key"},
            },
        }
    )
    assert config.driver == "pusher"
    assert config.options("ably") == {"secret": Secret("api:key")}  # wrapped on load
    assert config.options("pusher")["client"] == "k"  # not a secret-looking name
    assert config.options("missing") == {}


def test_module_object() -> None:
    module = types.ModuleType("broadcast_config")
    module.DRIVER = "memory"  # type: ignore[attr-defined]
    module.DRIVERS = {"memory": {"max_history": 3}}  # type: ignore[attr-defined]
    broadcast = Broadcast(module)
    assert broadcast.config.driver == "memory"
    assert broadcast.driver().driver.limits is not None
    for i in range(5):
        broadcast.channel("c", str(i))
    assert [m.data for m in broadcast.driver("memory").driver.messages] == ["2", "3", "4"]  # type: ignore[attr-defined]


def test_path_to_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "broadcast.py"
    path.write_text(
        "import os\nDRIVER = 'null'\nDRIVERS = {'null': {}, 'log': {'level': 'WARNING'}}\n"
    )
    assert load_config(path).driver == "null"
    assert load_config(str(path)).options("log") == {"level": "WARNING"}
    assert Broadcast(str(path)).channel("c", "m").driver == "null"


def test_missing_file_and_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no configuration file"):
        load_config(tmp_path / "nope.py")
    broken = tmp_path / "broken.py"
    broken.write_text("SECRET = 'hunter2'\nraise RuntimeError('bad ' + SECRET)\n")
    with pytest.raises(
        ConfigurationError, match=r"broken.py' line 2 failed: RuntimeError \("
    ) as info:
        load_config(broken)
    assert "hunter2" not in str(info.value)  # the message is withheld, not scrubbed
    assert f"run `python {broken}` to see the whole error" in str(info.value)
    syntax = tmp_path / "syntax.py"
    syntax.write_text("DRIVER = 'log'\nDRIVERS = {\n")
    with pytest.raises(ConfigurationError, match=r"syntax.py' line 2: SyntaxError"):
        load_config(syntax)


def test_no_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROADCAST_DRIVER", raising=False)
    assert Broadcast().config.driver == "log"
    monkeypatch.setenv("BROADCAST_DRIVER", "null")
    assert Broadcast().config.driver == "null"
    assert Broadcast().channel("c", "m").driver == "null"


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ({"DRIVER": 3}, "DRIVER"),
        ({"DRIVER": "log", "DRIVERS": ["log"]}, "DRIVERS"),
        ({"DRIVER": "log", "DRIVERS": {"log": "level=INFO"}}, None),
    ],
)
def test_bad_shapes_are_configuration_errors(source: dict[str, object], key: str | None) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(source)
    assert info.value.key == key


def test_wrong_source_type() -> None:
    with pytest.raises(ConfigurationError, match="not int"):
        load_config(42)  # type: ignore[arg-type]


def test_unknown_option_of_a_builtin_driver_names_the_key_not_the_value() -> None:
    broadcast = Broadcast({"DRIVER": "log", "DRIVERS": {"log": {"token": "s3cr3t-value"}}})
    with pytest.raises(ConfigurationError) as info:
        broadcast.channel("c", "m")
    assert info.value.driver == "log"
    assert info.value.key == "token"
    assert "token" in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


def test_driver_named_in_config_but_not_installed() -> None:
    broadcast = Broadcast({"DRIVER": "carrier-pigeon"})
    with pytest.raises(DriverNotFoundError) as info:
        broadcast.channel("c", "m")
    message = str(info.value)
    assert "pip install" not in message  # an unknown name gets no install hint to squat on
    for name in ("log", "memory", "null"):
        assert name in message


def test_config_repr_shows_option_keys_not_values() -> None:
    config = load_config({"DRIVER": "pusher", "DRIVERS": {"pusher": {"secret": "hunter2-xyz"}}})
    assert repr(config) == "Config(driver='pusher', option keys={'pusher': ['secret']})"
    assert "hunter2" not in str(config)


@pytest.mark.parametrize(
    ("source", "key", "guess"),
    [
        ({"driver": "memory"}, "driver", "DRIVER"),
        ({"DRIVER": "log", "DRIVER_S": {}}, "DRIVER_S", "DRIVERS"),
        ({"DRIVER": "log", "drivers": {}}, "drivers", "DRIVERS"),
    ],
)
def test_slips_of_the_setting_names_are_errors_with_a_guess(
    source: dict[str, object], key: str, guess: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"did you mean '{guess}'") as info:
        load_config(source)
    assert info.value.key == key


def test_a_mapping_holds_only_the_settings() -> None:
    with pytest.raises(ConfigurationError, match="only DRIVER, DRIVERS, SEND and OUTBOX"):
        load_config({"DRIVER": "log", "TIMEOUT": 3})
    for key in (5, (1, 2), None, b"DRIVER"):  # no setting has such a name: not skipped
        with pytest.raises(ConfigurationError, match=f"must be a str, not {type(key).__name__}"):
            load_config({"DRIVER": "log", key: 1})


def test_send_and_outbox_are_read_and_checked() -> None:
    config = load_config(
        {"DRIVER": "log", "SEND": "outbox", "OUTBOX": {"url": "postgresql://u:pw@h/db"}}
    )
    assert config.send == "outbox"
    assert config.outbox == {"url": Secret("postgresql://u:pw@h/db")}  # it may hold a password
    assert "pw" not in repr(config)
    assert "outbox keys=['url']" in repr(config)
    assert load_config({}).send == "now"
    with pytest.raises(ConfigurationError, match="SEND"):
        load_config({"SEND": ""})
    with pytest.raises(ConfigurationError, match="OUTBOX"):
        load_config({"OUTBOX": "sqlite:///x"})


def test_a_module_may_name_a_helper_send(tmp_path: Path) -> None:
    module = tmp_path / "conf.py"
    module.write_text("def send():\n    pass\nDRIVER = 'null'\nSEND = 'after_commit'\n")
    assert load_config(module).send == "after_commit"


def test_a_module_may_hold_other_names_but_not_slips(tmp_path: Path) -> None:
    fine = tmp_path / "fine.py"
    fine.write_text("import os\nHOST = 'x'\nDRIVER = 'null'\n")
    assert load_config(fine).driver == "null"
    slip = tmp_path / "slip.py"
    slip.write_text("driver = 'memory'\n")
    with pytest.raises(ConfigurationError, match="did you mean 'DRIVER'"):
        load_config(slip)


@pytest.mark.parametrize("value", [None, ""])
def test_an_empty_driver_is_an_error_not_the_log_default(value: object) -> None:
    with pytest.raises(ConfigurationError, match="unset environment variable") as info:
        load_config({"DRIVER": value})
    assert info.value.key == "DRIVER"


def test_json_and_toml_files(tmp_path: Path) -> None:
    import json
    import sys

    data = tmp_path / "broadcast.json"
    data.write_text(json.dumps({"DRIVER": "memory", "DRIVERS": {"memory": {"max_history": 2}}}))
    assert load_config(data).options("memory") == {"max_history": 2}
    typo = tmp_path / "typo.json"
    typo.write_text('{"Driver": "memory"}')
    with pytest.raises(ConfigurationError, match="did you mean 'DRIVER'"):
        load_config(typo)
    toml = tmp_path / "broadcast.toml"
    toml.write_text('DRIVER = "null"\n[DRIVERS.log]\nlevel = "WARNING"\n')
    if sys.version_info >= (3, 11):
        assert load_config(toml).options("log") == {"level": "WARNING"}
    else:
        with pytest.raises(ConfigurationError, match=r"needs Python 3\.11"):
            load_config(toml)
    other = tmp_path / "broadcast.yaml"
    other.write_text("DRIVER: log\n")
    with pytest.raises(ConfigurationError, match=r"a \.py, \.toml or \.json file"):
        load_config(other)
