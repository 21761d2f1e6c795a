"""Logging: JSON lines or console, level filtering, stdlib routing, and secret redaction everywhere."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from envoy2mqtt import logging as elog
from envoy2mqtt.logging import redact, register_secret, setup_logging

SECRET = "Sup3r-Secret-Pa55"  # registered by the fixture
TOKEN = jwt.encode(
    {"aud": ["122233445566"], "enphaseUser": "owner", "exp": 1893456000, "username": "me@example.com"},
    "not-the-real-key-but-32-bytes-long",
    algorithm="HS256",
)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    elog._forget_registered_secrets()
    register_secret(SECRET)
    structlog.contextvars.clear_contextvars()
    yield
    elog.uninstall_logging()
    elog._forget_registered_secrets()
    structlog.contextvars.clear_contextvars()
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]


def log_everything(log: Any) -> None:
    """One line per secret form the redaction must remove."""
    log.info("by key", password="pw-value-1", mqtt_password="pw-value-2", passwd="pw-value-3")
    log.info("by key", token="tok-value-1", access_token="tok-value-2", jwt="tok-value-3")
    log.info("by key", secret="sec-value-1", client_secret="sec-value-2", cookie="cookie-value-1")
    log.info("by key", authorization="auth-value-1", session_id="sess-value-1", sessionId="sess-value-2")
    log.info("by key", sessionid="sess-value-3", enlighten_password="pw-value-4")
    log.info(
        "header dict", headers={"Authorization": "Basic YXV0aC12YWx1ZS0y", "Set-Cookie": "x=cookie-value-2"}
    )
    log.info("bearer in text", detail="sent Authorization header Bearer bearer-value-1 to the Envoy")
    log.info("bearer alone", detail="Bearer bearer-value-2")
    log.info(f"jwt in the message {TOKEN}")
    log.info("jwt in a value", response=f"token: {TOKEN}\n")
    log.info("cookie text", raw="Set-Cookie: sessionId=sess-value-4; Path=/; HttpOnly")
    log.info("query", url="https://envoy.local/auth/check_jwt?sessionId=sess-value-5&x=1")
    log.info("nested", data={"envoys": [{"auth": {"token": "tok-value-4"}}, ("x", f"Bearer {TOKEN}")]})
    log.info("registered", note=f"login with {SECRET} failed", deep=[[{"a": [SECRET]}]])
    log.info(f"registered in the message: {SECRET}")
    log.info("credential dict text", error=str({"user[email]": "me@x", "user[password]": "pw-value-5"}))
    log.info("url password", broker="mqtts://bridge:pw-value-6@broker.lan:8883")


LEAKS = [
    "pw-value-",
    "tok-value-",
    "sec-value-",
    "cookie-value-",
    "auth-value-",
    "YXV0aC12YWx1ZS0y",
    "sess-value-",
    "bearer-value-",
    TOKEN,
    TOKEN.split(".")[1],
    SECRET,
]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_every_secret_form_is_redacted(fmt: str) -> None:
    out = io.StringIO()
    setup_logging("debug", fmt, out)
    log_everything(structlog.get_logger("envoy2mqtt.test"))
    text = out.getvalue()
    for leak in LEAKS:
        assert leak not in text
    assert text.count("***") >= 25
    # what is not secret survives
    assert "jwt in the message" in text
    assert "login with *** failed" in text
    assert "envoy.local/auth/check_jwt" in text
    assert "broker.lan:8883" in text


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_registered_secret_in_a_traceback_is_redacted(fmt: str) -> None:
    out = io.StringIO()
    setup_logging("info", fmt, out)
    log = structlog.get_logger("envoy2mqtt.test")

    def login(password: str) -> None:
        raise RuntimeError(f"Enlighten rejected {password} with sessionId=sess-value-9 and {TOKEN}")

    try:
        login(SECRET)
    except RuntimeError:
        log.exception("login failed")
    try:
        login(SECRET)
    except RuntimeError as exc:
        logging.getLogger("aiohttp.client").error("request failed", exc_info=True)
        log.warning("as a value", error=exc)

    text = out.getvalue()
    assert text.count("Traceback (most recent call last)") == 2
    assert text.count("RuntimeError: Enlighten rejected *** with sessionId=*** and ***") == 3
    for leak in (SECRET, "sess-value-9", TOKEN):
        assert leak not in text


def test_json_mode_writes_one_object_per_line() -> None:
    out = io.StringIO()
    setup_logging("info", "json", out)
    log = structlog.get_logger("envoy2mqtt.supervisor")
    log.info("started", envoys=2)
    try:
        raise ValueError("line one\nline two")
    except ValueError:
        log.exception("failed")
    logging.getLogger("aiomqtt").warning("broker %s went away", "mqtt.lan")

    records = json_lines(out)
    assert [r["event"] for r in records] == ["started", "failed", "broker mqtt.lan went away"]
    assert records[0]["envoys"] == 2
    assert records[0]["level"] == "info"
    assert records[0]["logger"] == "envoy2mqtt.supervisor"
    assert records[0]["timestamp"].endswith("Z")
    assert "line two" in records[1]["exception"]
    assert records[2]["logger"] == "aiomqtt"
    assert records[2]["level"] == "warning"


def test_context_bound_by_callers_appears() -> None:
    out = io.StringIO()
    setup_logging("info", "json", out)
    structlog.contextvars.bind_contextvars(envoy="garage", cadence="system")
    structlog.get_logger("envoy2mqtt.poller").info("polled", token="tok-value-1")
    (record,) = json_lines(out)
    assert record["envoy"] == "garage"
    assert record["cadence"] == "system"
    assert record["token"] == "***"


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_level_filtering(fmt: str) -> None:
    out = io.StringIO()
    setup_logging("warning", fmt, out)
    log = structlog.get_logger("envoy2mqtt.test")
    log.debug("debug-structlog")
    log.info("info-structlog")
    log.warning("warning-structlog")
    logging.getLogger("aiohttp.client").info("info-stdlib")
    logging.getLogger("aiohttp.client").error("error-stdlib")
    text = out.getvalue()
    assert "debug-structlog" not in text
    assert "info-structlog" not in text
    assert "info-stdlib" not in text
    assert "warning-structlog" in text
    assert "error-stdlib" in text

    out = io.StringIO()
    setup_logging("debug", fmt, out)
    structlog.get_logger("envoy2mqtt.test").debug("debug-structlog")
    logging.getLogger("aiomqtt").debug("debug-stdlib")
    assert "debug-structlog" in out.getvalue()
    assert "debug-stdlib" in out.getvalue()


def test_stdlib_loggers_pass_through_redaction() -> None:
    out = io.StringIO()
    setup_logging("debug", "json", out)
    logging.getLogger("aiohttp.client").debug(
        "GET /production.json headers=%s", {"Authorization": f"Bearer {TOKEN}"}
    )
    logging.getLogger("aiomqtt").info("connecting with password %s", SECRET)
    logging.getLogger("aiohttp.client").info("cookie", extra={"cookie": "sessionId=sess-value-1"})
    records = json_lines(out)
    text = out.getvalue()
    assert len(records) == 3
    assert TOKEN not in text
    assert SECRET not in text
    assert "sess-value-1" not in text
    assert records[1]["event"] == "connecting with password ***"
    assert records[2]["cookie"] == "***"


def test_auto_format_follows_the_stream() -> None:
    piped = io.StringIO()
    setup_logging("info", "auto", piped)
    structlog.get_logger("x").info("hello", n=1)
    assert json.loads(piped.getvalue())["event"] == "hello"

    tty = Tty()
    setup_logging("info", "auto", tty)
    structlog.get_logger("x").info("hello", n=1)
    line = re.sub(r"\x1b\[[0-9;]*m", "", tty.getvalue())
    assert "hello" in line
    assert "n=1" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)

    console = io.StringIO()
    setup_logging("info", "console", console)
    structlog.get_logger("x").info("hello", password="pw-value-1")
    assert "password=***" in console.getvalue()
    assert "\x1b[" not in console.getvalue()  # no colour codes when the stream is not a terminal


def test_reconfiguring_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", "json", first)
    setup_logging("info", "json", second)
    structlog.get_logger("x").info("once")
    assert first.getvalue() == ""
    assert len(json_lines(second)) == 1


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        setup_logging("verbose")
    with pytest.raises(ValueError, match="log format"):
        setup_logging("info", "xml")


def test_default_stream_in_a_real_subprocess_is_json_on_stderr() -> None:
    code = (
        "import structlog, logging\n"
        "from envoy2mqtt.logging import setup_logging, register_secret\n"
        "setup_logging()\n"
        "register_secret('Pa55word-in-child')\n"
        "structlog.get_logger('child').info('ready', detail='using Pa55word-in-child', token='t0k3n')\n"
        "logging.getLogger('aiohttp.server').warning('Bearer abcdefgh')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == ""
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records[0] == {**records[0], "event": "ready", "detail": "using ***", "token": "***"}
    assert records[1]["event"] == "Bearer ***"
    assert "Pa55word-in-child" not in result.stderr


# --- redact() on its own -------------------------------------------------------------------------


def test_redact_keeps_the_shape_of_a_diagnostics_dump() -> None:
    dump = {
        "info": {"serial": "122233445566", "software": "D8.2.4345", "imeter": True},
        "production": [{"type": "inverters", "wNow": 1234.5, "activeCount": 24}],
        "auth": {
            "token": TOKEN,
            "token_type": "owner",
            "token_expiry_seconds": 31_000_000,
            "password_file": "/run/secrets/envoy",
            "enlighten_password": SecretStr("pw-value-1"),
            "note": None,
        },
        "headers": ("Authorization: Bearer bearer-value-1", "Accept: application/json"),
        "raw": b"sessionId=sess-value-1",
    }
    original = repr(dump)
    cleaned = redact(dump)
    assert repr(dump) == original  # the input is not modified
    assert cleaned["info"] == dump["info"]
    assert cleaned["production"] == dump["production"]
    assert cleaned["auth"] == {
        "token": "***",
        "token_type": "owner",
        "token_expiry_seconds": 31_000_000,
        "password_file": "/run/secrets/envoy",
        "enlighten_password": "***",
        "note": None,
    }
    assert cleaned["headers"] == ("Authorization: ***", "Accept: application/json")
    assert cleaned["raw"] == "sessionId=***"


def test_redact_objects_and_secretstr() -> None:
    assert redact(SecretStr("pw-value-1")) == "***"
    assert redact(RuntimeError(f"failed with {SECRET}")) == "RuntimeError: failed with ***"
    assert redact([1, 2.5, True, None]) == [1, 2.5, True, None]


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "PASSWD",
        "mqtt_password",
        "enlightenPassword",
        "token",
        "accessToken",
        "refresh_token",
        "user_token",
        "jwt",
        "secret",
        "client-secret",
        "cookie",
        "Cookie",
        "cookies",
        "Set-Cookie",
        "authorization",
        "Authorization",
        "session_id",
        "sessionId",
        "sessionid",
        "SESSION_ID",
        "api_key",
    ],
)
def test_secret_key_names(key: str) -> None:
    assert redact({key: "the-value"}) == {key: "***"}


@pytest.mark.parametrize(
    "key",
    [
        "serial",
        "username",
        "token_type",
        "token_expiry_seconds",
        "tokenExpiresAt",
        "password_file",
        "session",
    ],
)
def test_ordinary_key_names_are_kept(key: str) -> None:
    assert redact({key: "the-value"}) == {key: "the-value"}


def test_short_registered_secrets_are_ignored() -> None:
    register_secret("abc")
    register_secret("")
    assert redact("abc abcd") == "abc abcd"
    register_secret("abcd")
    assert redact("abc abcd") == "abc ***"


def test_longer_secret_containing_a_shorter_one_goes_whole() -> None:
    register_secret("wxyz")
    register_secret("wxyz-and-more")
    assert redact("a wxyz-and-more b wxyz") == "a *** b ***"


def test_register_secret_wants_the_string() -> None:
    with pytest.raises(TypeError):
        register_secret(SecretStr("pw-value-1"))  # type: ignore[arg-type]


_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!$%"


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(alphabet=_ALPHABET, min_size=4, max_size=40),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
def test_a_registered_secret_never_survives(secret: str, before: str, after: str) -> None:
    register_secret(secret)
    try:
        assert secret.strip() not in redact(before + secret + after)
        assert secret.strip() not in redact({"nested": [{"x": f"{before}{secret}{after}"}]})["nested"][0]["x"]
    finally:
        elog._forget_registered_secrets()
        register_secret(SECRET)


@settings(max_examples=100, deadline=None)
@given(claims=st.dictionaries(st.sampled_from(["aud", "exp", "sub", "enphaseUser"]), st.text(max_size=20)))
def test_any_jwt_is_redacted(claims: dict[str, str]) -> None:
    token = jwt.encode(claims, "a-test-key-of-thirty-two-bytes!!", algorithm="HS256")
    out = redact(f"got {token} from the cloud")
    assert token not in out
    assert out == "got *** from the cloud"
