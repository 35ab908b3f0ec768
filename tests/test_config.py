"""Settings: default < THINGSRAY_* environment < command-line flag; bad values name their variable."""

from __future__ import annotations

import re

import pytest

from thingsray.cli import build_parser, main, settings_from
from thingsray.config import ConfigError, Settings, default_data_dir

EVERY_FLAG = {
    "--data-dir": ("/srv/thingsray", "data_dir", "/srv/thingsray"),
    "--host": ("127.0.0.1", "host", "127.0.0.1"),
    "--http-port": ("18080", "http_port", 18080),
    "--mqtt-port": ("11883", "mqtt_port", 11883),
    "--coap-port": ("15683", "coap_port", 15683),
    "--address": ("10.0.0.5:6379", "address", "10.0.0.5:6379"),
    "--database-url": ("postgresql://tb@db/tb", "database_url", "postgresql://tb@db/tb"),
    "--redis-url": ("redis://cache:6379/0", "redis_url", "redis://cache:6379/0"),
    "--serve-replicas": ("3", "serve_replicas", 3),
    "--bridge-config": ("bridges.json", "bridge_config", "bridges.json"),
    "--mqtt-tls-port": ("18883", "mqtt_tls_port", 18883),
    "--mqtt-tls-cert": ("server.pem", "mqtt_tls_cert", "server.pem"),  # files must exist: the test makes them
    "--mqtt-tls-key": ("server.key", "mqtt_tls_key", "server.key"),
}


def test_defaults_apply_when_nothing_is_set():
    settings = Settings.load({}, environ={})
    assert settings == Settings()
    assert (settings.host, settings.http_port, settings.mqtt_port, settings.coap_port) == ("0.0.0.0", 8080, 1883, 5683)
    assert settings.data_dir == default_data_dir()
    assert settings.embedded_database and settings.address is None and not settings.demo


def test_environment_beats_default_and_is_parsed_to_the_setting_type():
    settings = Settings.load(environ={
        "THINGSRAY_HTTP_PORT": "9000", "THINGSRAY_DEMO": "yes", "THINGSRAY_HOST": "127.0.0.1",
        "THINGSRAY_DATABASE_URL": "postgresql://x@db/x", "THINGSRAY_ACCESS_TOKEN_TTL": "60",
        "THINGSRAY_LOG_LEVEL": "debug", "UNRELATED": "1"})
    assert settings.http_port == 9000 and settings.demo is True and settings.host == "127.0.0.1"
    assert settings.database_url == "postgresql://x@db/x" and not settings.embedded_database
    assert settings.access_token_ttl == 60 and settings.log_level == "debug"


def test_flag_beats_environment_and_an_unset_flag_does_not():
    environ = {"THINGSRAY_HTTP_PORT": "9000", "THINGSRAY_HOST": "127.0.0.1", "THINGSRAY_DEMO": "true"}
    settings = Settings.load({"http_port": 9100, "host": None, "demo": False}, environ=environ)
    assert settings.http_port == 9100
    assert settings.host == "127.0.0.1"
    assert settings.demo is False


def test_an_empty_variable_counts_as_unset():
    assert Settings.load(environ={"THINGSRAY_HTTP_PORT": "", "THINGSRAY_DATABASE_URL": ""}) == Settings()


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("TRUE", True), (" on ", True), ("yes", True),
                                            ("0", False), ("false", False), ("Off", False), ("no", False)])
def test_boolean_variables_accept_the_usual_spellings(raw, value):
    assert Settings.load(environ={"THINGSRAY_DEMO": raw}).demo is value


@pytest.mark.parametrize(("variable", "raw"), [
    ("THINGSRAY_HTTP_PORT", "eighty"),
    ("THINGSRAY_HTTP_PORT", "70000"),
    ("THINGSRAY_MQTT_PORT", "-1"),
    ("THINGSRAY_COAP_PORT", "1.5"),
    ("THINGSRAY_MQTT_TLS_PORT", "70000"),
    ("THINGSRAY_DEMO", "maybe"),
    ("THINGSRAY_SERVE_REPLICAS", "0"),
    ("THINGSRAY_ACCESS_TOKEN_TTL", "0"),
    ("THINGSRAY_REFRESH_TOKEN_TTL", "-5"),
    ("THINGSRAY_DB_POOL_SIZE", "0"),
    ("THINGSRAY_LOGIN_ATTEMPTS_PER_MINUTE", "0"),
    ("THINGSRAY_MAX_PAGE_SIZE", "0"),
    ("THINGSRAY_LOG_LEVEL", "LOUD"),
])
def test_a_bad_value_is_a_config_error_naming_its_variable(variable, raw):
    with pytest.raises(ConfigError, match=variable):
        Settings.load(environ={variable: raw})


def test_a_bad_flag_value_is_a_config_error_naming_the_flag():
    with pytest.raises(ConfigError, match="--http-port"):
        Settings.load({"http_port": 65536}, environ={})


def test_joining_a_cluster_needs_a_shared_database():
    with pytest.raises(ConfigError, match="THINGSRAY_DATABASE_URL"):
        Settings.load({"address": "auto"}, environ={})
    joined = Settings.load({"address": "auto"}, environ={"THINGSRAY_DATABASE_URL": "postgresql://x@db/x"})
    assert joined.address == "auto" and joined.database_url == "postgresql://x@db/x"


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.1.1", True), ("localhost", True),
                                                ("::1", True), ("0.0.0.0", False), ("::", False),
                                                ("192.168.1.10", False)])
def test_loopback_only_is_true_only_for_loopback_hosts(host, loopback):
    assert Settings(host=host).loopback_only is loopback


def test_every_flag_of_up_help_is_parsed_into_its_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("server.pem", "server.key"):
        (tmp_path / name).write_text("checked when the listener starts")
    help_text = build_parser()._subparsers._group_actions[0].choices["up"].format_help()
    documented = set(re.findall(r"--[a-z][a-z-]+", help_text)) - {"--help", "--no-demo"}
    assert documented == {*EVERY_FLAG, "--demo"}
    argv = ["up", "--demo"]
    for flag, (raw, _, _) in EVERY_FLAG.items():
        argv += [flag, raw]
    environ = {"THINGSRAY_HTTP_PORT": "1", "THINGSRAY_HOST": "10.1.1.1", "THINGSRAY_DEMO": "false"}
    settings = settings_from(build_parser().parse_args(argv), environ=environ)
    for _, name, value in EVERY_FLAG.values():
        assert getattr(settings, name) == value, name
    assert settings.demo is True


def test_up_without_flags_leaves_everything_to_the_environment():
    args = build_parser().parse_args(["up"])
    settings = settings_from(args, environ={"THINGSRAY_HTTP_PORT": "9001", "THINGSRAY_DEMO": "on"})
    assert settings.http_port == 9001 and settings.demo is True
    assert settings_from(build_parser().parse_args(["up", "--no-demo"]), environ={"THINGSRAY_DEMO": "on"}).demo is False


@pytest.mark.parametrize("argv", [["up", "--http-port", "eighty"], ["up", "--serve-replicas", "two"],
                                  ["up", "--unknown-flag"], []])
def test_malformed_command_lines_exit_with_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert "usage: thingsray" in capsys.readouterr().err


def test_a_bad_setting_stops_the_command_with_2_and_says_why(capsys, monkeypatch):
    monkeypatch.delenv("THINGSRAY_DATABASE_URL", raising=False)
    assert main(["up", "--http-port", "70000"]) == 2
    assert "--http-port" in capsys.readouterr().err
    monkeypatch.setenv("THINGSRAY_SERVE_REPLICAS", "0")
    assert main(["up"]) == 2
    assert "THINGSRAY_SERVE_REPLICAS" in capsys.readouterr().err
