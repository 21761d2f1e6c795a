from __future__ import annotations

import pytest

from envoy2mqtt.envoy.auth.passwords import envoy_user_password, installer_password


@pytest.mark.parametrize("serial", ["121212121212", "123456789012", "202020202020", "000000000001"])
def test_installer_password_matches_the_reference_algorithm(serial: str) -> None:
    envoy_utils = pytest.importorskip("envoy_utils.envoy_utils")
    assert installer_password(serial) == envoy_utils.EnvoyUtils.get_password(serial, "installer")


def test_envoy_user_password_is_last_six_characters() -> None:
    assert envoy_user_password("121212654321") == "654321"
