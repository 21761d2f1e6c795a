"""The README must not drift from the code: every setting, every contract key, every command."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from envoy2mqtt.cli import build_parser
from envoy2mqtt.config import EnvoySettings, Settings
from envoy2mqtt.entities import TABLES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _settings_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if name == "envoy":
            continue
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _settings_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_setting_is_in_the_reference_table_with_its_environment_variable() -> None:
    for key in _settings_keys(Settings):
        env = "ENVOY2MQTT_" + "__".join(part.upper() for part in key.split("."))
        assert re.search(rf"\| `{re.escape(key)}` \| `{env}` \|", README), f"README lacks {key} / {env}"
    for name in EnvoySettings.model_fields:
        assert f"| `envoy[].{name}` |" in README, f"README lacks envoy[].{name}"


def test_every_contract_key_is_in_the_topic_tables() -> None:
    for component, rows in TABLES.items():
        section = README.split(f"#### `{component}`", 1)
        assert len(section) == 2, f"README has no table for {component}"
        table = section[1].split("####", 1)[0]
        for row in rows:
            assert f"`{row.key}`" in table, f"README's {component} table lacks {row.key}"


def test_the_first_screen_gives_the_two_commands() -> None:
    first_screen = README[:1500]
    assert "./scripts/demo" in first_screen
    assert "./scripts/test" in first_screen
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "./scripts/test" in ci


def test_every_command_is_documented() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for command in commands:
        assert f"envoy2mqtt {command}" in README, command
