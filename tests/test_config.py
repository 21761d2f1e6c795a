"""Configuration: TOML + environment, secrets from files, clear errors naming the key and the fix."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from envoy2mqtt.config import (
    EnvoySettings,
    MqttSettings,
    PollingSettings,
    Settings,
    config_file_warnings,
    format_validation_error,
    load_settings,
)
from envoy2mqtt.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("ENVOY2MQTT_"):
            monkeypatch.delenv(key)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_example_config_loads_and_documents_every_key() -> None:
    settings = load_settings(ROOT / "config.example.toml")
    assert settings.envoy[0].host == "192.168.1.50"
    document = tomllib.loads((ROOT / "config.example.toml").read_text())

    def check(model: type[BaseModel], section: dict[str, object], where: str) -> None:
        for name, field in model.model_fields.items():
            assert name in section, f"config.example.toml lacks {where}{name}"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                value = section[name]
                assert isinstance(value, dict)
                check(annotation, value, f"{where}{name}.")

    top = dict(document.items())
    top["envoy"] = top["envoy"][0]
    for name, field in Settings.model_fields.items():
        assert name in top, f"config.example.toml lacks {name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            check(annotation, top[name], f"{name}.")
    from envoy2mqtt.config import EnvoySettings

    check(EnvoySettings, top["envoy"], "envoy.")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[mqtt]\nhost = "file-host"\nport = 1884\n[[envoy]]\nhost = "10.0.0.1"\n')
    monkeypatch.setenv("ENVOY2MQTT_MQTT__HOST", "env-host")
    settings = load_settings(path)
    assert settings.mqtt.host == "env-host"
    assert settings.mqtt.port == 1884


def test_envoys_from_environment_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ENVOY2MQTT_ENVOY", '[{"host": "10.0.0.1", "name": "A"}, {"host": "10.0.0.2", "name": "B"}]'
    )
    settings = load_settings(None)
    assert [e.name for e in settings.envoy] == ["A", "B"]
    assert settings.envoy[0].base_urls == ("https://10.0.0.1", "http://10.0.0.1")


def test_secrets_read_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    path = write(
        tmp_path,
        f'[mqtt]\npassword_file = "{secret}"\n[[envoy]]\nhost = "h"\nenlighten_password_file = "{secret}"\n',
    )
    settings = load_settings(path)
    assert settings.mqtt.password.get_secret_value() == "s3cr3t-value"
    assert settings.envoy[0].enlighten_password.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t" not in repr(settings)


def test_missing_secret_file_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[[envoy]]\nhost = "h"\ntoken_file = "/nonexistent/token"\n')
    with pytest.raises(ConfigError, match=r"envoy\[0\].*token_file"):
        load_settings(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[mqtt]\nport = "abc"\n[[envoy]]\nhost = "h"\n', r"mqtt\.port: .*integer.*ENVOY2MQTT_MQTT__PORT"),
        ('[mqtt]\nhots = "x"\n[[envoy]]\nhost = "h"\n', r"mqtt\.hots: unknown key"),
        (
            '[polling]\nsystem_interval = 2\n[[envoy]]\nhost = "h"\n',
            r"polling\.system_interval: must be at least 10",
        ),
        (
            '[polling]\ndevice_interval = 5\n[[envoy]]\nhost = "h"\n',
            r"polling\.device_interval: must be at least 60",
        ),
        ("[mqtt]\n", r"no Envoy configured: add an \[\[envoy\]\] table"),
        ('[[envoy]]\nname = "x"\n', r"envoy\[0\]\.host: required key is missing"),
        (
            '[[envoy]]\nhost = "h"\ncert_fingerprint = "zz"\n',
            r"envoy\[0\]\.cert_fingerprint: must be the certificate",
        ),
        ('[mqtt]\nbase_topic = "/envoy"\n[[envoy]]\nhost = "h"\n', r"mqtt\.base_topic: must be a topic"),
        ('[[envoy]]\nhost = "ftp://h"\n', r"envoy\[0\]\.host: a URL must start with http"),
    ],
)
def test_errors_name_the_key_and_the_fix(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_settings(write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(tmp_path / "nope.toml")


def test_toml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(write(tmp_path, "[mqtt\nhost=1"))


def test_world_readable_config_with_secrets_warns(tmp_path: Path) -> None:
    path = write(tmp_path, '[[envoy]]\nhost = "h"\ntoken = "abcdef"\n')
    path.chmod(0o644)
    assert config_file_warnings(path, load_settings(path))
    path.chmod(0o600)
    assert config_file_warnings(path, load_settings(path)) == []


# -- issue 14: values that used to pass validation and fail at run time ------------------------------


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("http://admin:pw@192.168.1.50", "username / password"),
        ("http://", "no address"),
        ("192.168.1.50/home", "without a path"),
        ("192.168.1.50:99999", "port outside"),
        ("envoy local", "spaces"),
        ("fd00::50", "brackets"),
    ],
)
def test_envoy_hosts_that_cannot_work_are_refused(host: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        EnvoySettings(host=host)
    message = format_validation_error(info.value)
    assert words in message
    assert "pw@" not in message


@pytest.mark.parametrize("host", ["192.168.1.50", "envoy.local:8443", "https://[fd00::50]", "http://envoy/"])
def test_envoy_hosts_that_work_are_kept(host: str) -> None:
    assert EnvoySettings(host=host).host == host.rstrip("/")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_intervals_are_refused(value: float) -> None:
    with pytest.raises(ValidationError):
        PollingSettings(system_interval=value)


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for path in (afile, afile / "state"):
        with pytest.raises(ValidationError) as info:
            Settings(state_dir=path, envoy=[EnvoySettings(host="192.168.1.50")])
        assert "state_dir" in format_validation_error(info.value)


def test_mqtt_strings_longer_than_mqtt_allows_are_refused() -> None:
    with pytest.raises(ValidationError) as info:
        MqttSettings(client_id="x" * 70_000)
    assert "65535" in format_validation_error(info.value)
