"""`/info` parsing over every shared capture, and firmware version strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from envoy2mqtt.envoy.firmware import parse_info, version_tuple
from envoy2mqtt.errors import BadEnvoyData
from tests.conftest import capture_params, require_capture


@pytest.mark.parametrize("folder", capture_params())
def test_parse_info_every_capture(folder: Path) -> None:
    text = (folder / "info").read_text(encoding="utf-8")
    info = parse_info(text)
    assert info.serial
    assert "<" not in info.serial
    assert info.part_number is not None
    assert info.part_number.startswith(("800-", "880-"))
    assert info.firmware[0] in "RDM"
    # The folder name starts with the firmware version, except two known mislabelled folders.
    folder_version = version_tuple(folder.name.split("_")[0])
    if folder.name not in ("3.8.10", "5.0.49"):
        assert info.version == folder_version
    assert info.auth_mode == ("token" if info.version >= (7,) else "legacy")
    # web-tokens exists from firmware 7 on, and only there
    assert info.web_tokens is (True if info.version >= (7,) else None)


@pytest.mark.parametrize(
    ("folder", "serial", "pn", "firmware", "imeter"),
    [
        ("3.9.36", "121426016034", "800-00069-r05", "R3.9.36", None),
        ("3.8.10", "121430030548", "800-00069-r05", "D3.18.10", None),
        ("4.2.33", "123456789012", "800-00547-r05", "M4.2.33", None),
        ("4.2.27", "121621012167", "800-00551-r02", "D4.2.27", False),
        ("7.6.175_standard", "122302045041", "800-00656-r06", "D7.6.175", False),
        ("8.2.4345_with_device_data", "122446001637", "800-00649-r01", "D8.2.4345", True),
        ("8.3.5169_ACB_inventory", "122035000000", "800-00554-r03", "D8.3.5169", True),  # tab-indented
    ],
)
def test_parse_info_fields(folder: str, serial: str, pn: str, firmware: str, imeter: bool | None) -> None:
    info = parse_info((require_capture(folder) / "info").read_text(encoding="utf-8"))
    assert (info.serial, info.part_number, info.firmware, info.imeter) == (serial, pn, firmware, imeter)


def test_legacy_and_token_modes() -> None:
    legacy = parse_info((require_capture("3.9.36") / "info").read_text(encoding="utf-8"))
    token = parse_info((require_capture("8.1.41") / "info").read_text(encoding="utf-8"))
    assert legacy.version == (3, 9, 36)
    assert legacy.auth_mode == "legacy"
    assert legacy.web_tokens is None
    assert token.version == (8, 1, 41)
    assert token.auth_mode == "token"
    assert token.web_tokens is True


@pytest.mark.parametrize(
    ("software", "expected"),
    [
        ("D8.2.4345", (8, 2, 4345)),
        ("R3.9.36", (3, 9, 36)),
        ("M4.2.33", (4, 2, 33)),
        ("D7.0.43", (7, 0, 43)),
        ("8.3.5433", (8, 3, 5433)),
        (" D5.0.62 ", (5, 0, 62)),
        ("D8.3.5167-rc1", (8, 3, 5167)),
    ],
)
def test_version_tuple(software: str, expected: tuple[int, ...]) -> None:
    assert version_tuple(software) == expected


def test_version_tuple_without_number() -> None:
    with pytest.raises(BadEnvoyData):
        version_tuple("Dx.y")


MINIMAL = (
    "<?xml version='1.0' encoding='UTF-8'?><envoy_info><time>1</time><device><sn>123</sn>"
    "<software>D7.6.1</software>{extra}</device>{tokens}</envoy_info>"
)


def test_minimal_info_without_optional_fields() -> None:
    info = parse_info(MINIMAL.format(extra="", tokens=""))
    assert info.part_number is None
    assert info.imeter is None
    assert info.web_tokens is None
    info = parse_info(MINIMAL.format(extra="<imeter>false</imeter>", tokens="<web-tokens>true</web-tokens>"))
    assert info.imeter is False
    assert info.web_tokens is True


@pytest.mark.parametrize(
    "body",
    [
        "",
        '{"serial": "123"}',
        "<html><body>Page Not Found</body></html>",
        "<envoy_info><device><sn>1</sn>",  # truncated
        "<envoy_info><device><software>D8.1.1</software></device></envoy_info>",  # no serial
        "<envoy_info><device><sn>1</sn></device></envoy_info>",  # no firmware
        "<envoy_info></envoy_info>",
    ],
)
def test_parse_info_rejects_garbage(body: str) -> None:
    with pytest.raises(BadEnvoyData):
        parse_info(body)
