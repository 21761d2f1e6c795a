"""Structured logging for the bridge, with secret redaction as the last step before rendering.

``setup_logging`` configures structlog and routes the standard library's loggers (aiohttp, aiomqtt,
asyncio) through the same processors, so every line, whoever wrote it, is redacted and rendered
alike: a human-readable console renderer on a TTY, one JSON object per line otherwise.

Redaction removes, from every value of every log line (nested dicts and lists included, and the
formatted traceback of an exception):

- the value of any key named like a secret (``password``, ``mqtt_password``, ``token``, ``jwt``,
  ``secret``, ``cookie``, ``authorization``, ``session_id``, ``sessionId``...), replaced by ``***``;
- ``Bearer <token>``, JWTs (``eyJ...``.``...``.``...``), ``sessionId=...`` and ``password=...``-like
  pairs, ``Authorization:``/``Cookie:`` headers and URL passwords inside any string;
- every exact string registered with ``register_secret`` (configured passwords, tokens).

Context (which Envoy, which cadence) is bound by callers with ``structlog.contextvars``.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sys
import threading
from collections.abc import Mapping
from typing import Any, Final, TextIO

import structlog
from pydantic import SecretStr
from structlog.types import EventDict, Processor, WrappedLogger

__all__ = ["REDACTED", "redact", "register_secret", "setup_logging"]

REDACTED: Final = "***"
MIN_SECRET_LENGTH: Final = 4
_MAX_DEPTH: Final = 32

# --- key names -------------------------------------------------------------------------------------

# A key is secret when one of its words is one of these (``mqtt_password``, ``access_token``,
# ``Set-Cookie``, ``sessionId``)...
_SECRET_WORDS: Final = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "token",
        "tokens",
        "jwt",
        "secret",
        "cookie",
        "cookies",
        "authorization",
        "sessionid",
        "apikey",
    }
)
# ...or the whole key, words joined, is one of these.
_SECRET_JOINED: Final = frozenset({"sessionid", "apikey", "setcookie", "authheader"})
# ...unless it names facts about the secret rather than the secret itself: the token's expiry and
# type are exactly what an operator needs to see (``token_expiry_seconds``, ``token_type``,
# ``password_file``). String values under those keys are still scanned for secret patterns.
_METADATA_WORDS: Final = frozenset(
    {
        "expiry",
        "expires",
        "expire",
        "expired",
        "exp",
        "type",
        "kind",
        "source",
        "file",
        "path",
        "url",
        "length",
        "len",
        "age",
        "days",
        "hours",
        "seconds",
        "valid",
        "present",
        "configured",
        "status",
        "error",
        "errors",
        "issued",
        "count",
    }
)
_CAMEL_BOUNDARY: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT: Final = re.compile(r"[^a-z0-9]+")


def _is_secret_key(key: str) -> bool:
    words = [w for w in _WORD_SPLIT.split(_CAMEL_BOUNDARY.sub("_", key).lower()) if w]
    if not words:
        return False
    if "".join(words) in _SECRET_JOINED or (
        any(w in _SECRET_WORDS for w in words) and not any(w in _METADATA_WORDS for w in words)
    ):
        return True
    # "session_id", "api_key": two words that together name a secret
    return any(a + b in _SECRET_JOINED for a, b in itertools.pairwise(words))


# --- patterns inside strings -----------------------------------------------------------------------

_SECRET_NAME = (
    r"(?:password|passwd|pwd|passphrase|secret|token|access_token|refresh_token|jwt|"
    r"session_?id|api_?key|enlighten_password)"
)
_TEXT_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # Authorization / Cookie headers, in any spelling: the rest of the header value goes
    (
        re.compile(r"(?i)\b((?:proxy-)?authorization|set-cookie|cookie)([\"']?\s*[:=]\s*[\"']?)[^\"'\r\n}]+"),
        r"\1\2" + REDACTED,
    ),
    # Bearer <token>
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*"), r"\1 " + REDACTED),
    # JSON Web Tokens: base64url header starting with '{"', a payload and an optional signature
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # sessionId=..., password: '...', "token": "...", in URLs, cookies, reprs and JSON text
    (
        re.compile(
            r"(?i)(?<![A-Za-z0-9])(" + _SECRET_NAME + r")(\]?[\"']?\s*[=:]\s*[\"']?)(?!\*\*\*)[^\s;&,\"'}\]]+"
        ),
        r"\1\2" + REDACTED,
    ),
    # scheme://user:password@host
    (re.compile(r"(://[^/\s:@]*:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
)

# --- registered secrets ----------------------------------------------------------------------------

_secrets_lock = threading.Lock()
_registered: frozenset[str] = frozenset()
_registered_pattern: re.Pattern[str] | None = None


def register_secret(value: str) -> None:
    """Redact this exact string wherever it appears from now on (values shorter than 4 are ignored).

    Short values are ignored because replacing "1234" or "abc" everywhere would mangle ordinary
    numbers and words without protecting anything worth protecting.
    """
    global _registered, _registered_pattern
    if not isinstance(value, str):
        raise TypeError("register_secret takes the secret string (call .get_secret_value() on a SecretStr)")
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        if value in _registered:
            return
        secrets = _registered | {value}
        # longest first, so a secret that contains another is removed whole
        alternatives = "|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True))
        _registered_pattern = re.compile(alternatives)
        _registered = secrets


def _forget_registered_secrets() -> None:
    """Tests only: start again from no registered secret."""
    global _registered, _registered_pattern
    with _secrets_lock:
        _registered = frozenset()
        _registered_pattern = None


def _scrub(text: str) -> str:
    pattern = _registered_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for regex, replacement in _TEXT_PATTERNS:
        text = regex.sub(replacement, text)
    return text


def redact(value: Any) -> Any:
    """Return a copy of ``value`` with every secret removed (same rules as the log processor).

    Strings, numbers, booleans, None, mappings and lists/tuples keep their shape (mappings become
    dicts); ``SecretStr`` becomes ``***``; bytes and any other object become their redacted text.
    """
    return _redact(value, 0)


def _redact(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _scrub(value)
    if depth >= _MAX_DEPTH:
        return "<too deep>"
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, Mapping):
        return _redact_mapping(value, depth + 1)
    if isinstance(value, list | tuple | set | frozenset):
        items = [_redact(item, depth + 1) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, bytes | bytearray):
        return _scrub(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, BaseException):
        return _scrub(f"{type(value).__name__}: {value}")
    return _scrub(repr(value))


def _redact_mapping(mapping: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for key, item in mapping.items():
        if isinstance(key, str) and _is_secret_key(key) and item is not None and not isinstance(item, bool):
            out[key] = REDACTED
        else:
            out[key] = _redact(item, depth)
    return out


def redact_processor(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the last one before the renderer."""
    redacted: EventDict = _redact_mapping(event_dict, 0)
    return redacted


# --- setup -----------------------------------------------------------------------------------------

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_FORMATS: Final = ("auto", "console", "json")
_installed_handler: logging.Handler | None = None


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _drop_color_message(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn-style duplicates of the message; harmless for aiohttp, kept out of the output
    event_dict.pop("color_message", None)
    return event_dict


def setup_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library's logging; callable again to reconfigure.

    ``fmt``: ``"auto"`` (console renderer on a TTY, JSON lines otherwise), ``"console"`` or
    ``"json"``. ``stream`` defaults to standard error.
    """
    global _installed_handler
    try:
        numeric_level = _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}: use one of debug, info, warning, error") from None
    if fmt not in _FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use one of auto, console, json")
    out = stream if stream is not None else sys.stderr
    tty = _is_tty(out)
    use_json = fmt == "json" or (fmt == "auto" and not tty)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    colors = tty and not os.environ.get("NO_COLOR")  # https://no-color.org
    renderer: Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=colors)
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            # tracebacks become text here, so the redaction below sees them (and no pretty
            # traceback renderer ever prints local variables holding a password)
            structlog.processors.format_exc_info,
            redact_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    if _installed_handler is not None:
        root.removeHandler(_installed_handler)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    _installed_handler = handler
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            # redact here too, not only in the formatter: any other handler on the root logger
            # (pytest's caplog, an embedding application's) receives this event dict as it is
            structlog.processors.format_exc_info,
            redact_processor,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # not cached: setup_logging may run again (tests, reconfiguration after reading the config)
        cache_logger_on_first_use=False,
    )


LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def log_level() -> str:
    """The level in force now, by name (`debug`, `info`, `warning`, `error`)."""
    level = logging.getLogger().getEffectiveLevel()
    for name in LOG_LEVELS:
        if _LEVELS[name] == level:
            return name
    return logging.getLevelName(level).lower()


def set_log_level(level: str) -> str:
    """Change the level at run time (the bridge's `log_level` request); returns the previous level.

    Every structlog logger filters through the standard library's root level, so this one call is enough.
    """
    if level not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(LOG_LEVELS)}")
    previous = log_level()
    logging.getLogger().setLevel(_LEVELS[level])
    return previous


def uninstall_logging() -> None:
    """Remove the handler installed by setup_logging (tests, embedding) and reset structlog."""
    global _installed_handler
    if _installed_handler is not None:
        logging.getLogger().removeHandler(_installed_handler)
        _installed_handler = None
    structlog.reset_defaults()
