"""JWT claim decoding: what we read from a token without verifying its signature."""

from __future__ import annotations

import jwt
import pytest

from envoy2mqtt.envoy.auth.token import check_audience, decode_token, looks_like_jwt
from envoy2mqtt.errors import TokenRejected

SECRET = b"k" * 32


def make_token(**claims: object) -> str:
    return jwt.encode(dict(claims), SECRET, algorithm="HS256")


def test_owner_token_claims() -> None:
    token = make_token(aud="122446001637", enphaseUser="owner", exp=1_900_000_000, iat=1_800_000_000)
    claims = decode_token(token)
    assert claims.audience == "122446001637"
    assert claims.token_type == "owner"
    assert claims.expires_at == 1_900_000_000
    assert claims.issued_at == 1_800_000_000
    assert claims.remaining(1_899_999_000) == 1000
    assert not claims.expired(1_899_999_999)
    assert claims.expired(1_900_000_000)


def test_installer_token_and_list_audience() -> None:
    claims = decode_token(make_token(aud=["123"], enphaseUser="installer", exp=5))
    assert claims.token_type == "installer"
    assert claims.audience == "123"
    assert claims.issued_at is None


def test_unknown_user_kind_is_none() -> None:
    assert decode_token(make_token(aud="1", enphaseUser="support", exp=5)).token_type is None


@pytest.mark.parametrize(
    "text",
    [
        "Error in generating Token",
        "",
        "eyJhbGciOiJIUzI1NiJ9",  # header only
        "not.a.jwt",
        "eyJub3QganNvbg.eyJub3QganNvbg.sig",  # base64 of "not json"
        "<html>401</html>",
    ],
)
def test_garbage_is_rejected_without_quoting_it(text: str) -> None:
    assert not looks_like_jwt(text) or text.startswith("eyJ")
    with pytest.raises(TokenRejected) as info:
        decode_token(text)
    if text:
        assert text not in str(info.value)


def test_token_without_expiry_is_rejected() -> None:
    token = make_token(aud="1", enphaseUser="owner")
    with pytest.raises(TokenRejected, match="expiry"):
        decode_token(token)
    with pytest.raises(TokenRejected) as info:
        decode_token(token)
    assert token not in str(info.value)


def test_audience_mismatch_names_both_serials() -> None:
    claims = decode_token(make_token(aud="999999999999", enphaseUser="owner", exp=5))
    with pytest.raises(TokenRejected) as info:
        check_audience(claims, "122446001637")
    assert "999999999999" in str(info.value)
    assert "122446001637" in str(info.value)
    check_audience(claims, "999999999999")  # the right serial passes
    check_audience(decode_token(make_token(exp=5)), "122446001637")  # no aud: nothing to compare
