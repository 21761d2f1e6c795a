"""Every structlog event of the bridge is a short snake_case name; the detail goes into key=value context.

Walks the source of envoy2mqtt/ (simulator included) with ``ast`` and checks the first argument of every
logging call on a structlog logger: ``log.info(...)``, ``self.log.warning(...)``, ``self._log.debug(...)``,
``(log.debug if quiet else log.info)(...)`` and ``getattr(log, level)(...)``. A literal event (or both
branches of a conditional one) must match ``^[a-z][a-z0-9_]*$``; an f-string event is refused outright
(the variable part belongs in a key). The standard library's loggers (paho's ``mqtt`` logger) are not
structlog and keep their own messages.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import envoy2mqtt

PACKAGE = Path(envoy2mqtt.__file__).parent
EVENT = re.compile(r"^[a-z][a-z0-9_]*$")
METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "msg"})
# structlog loggers are named log, _log, logger (module level, self.log, self._log, bound copies)
LOGGER = re.compile(r"(?:^|\.)_?log(?:ger)?$")


def _is_logger(node: ast.expr) -> bool:
    return LOGGER.search(ast.unparse(node)) is not None


def _is_logging_callee(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr in METHODS and _is_logger(func.value)
    if isinstance(func, ast.IfExp):  # (log.debug if quiet else log.info)("event", ...)
        return _is_logging_callee(func.body) and _is_logging_callee(func.orelse)
    if isinstance(func, ast.Call) and isinstance(func.func, ast.Name) and func.func.id == "getattr":
        return bool(func.args) and _is_logger(func.args[0])  # getattr(log, level)("event", ...)
    return False


def _events(node: ast.expr) -> list[str | None]:
    """The literal event names a first argument can take; None for an f-string (never allowed)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _events(node.body) + _events(node.orelse)
    if isinstance(node, ast.JoinedStr):
        return [None]
    return []  # a name passed through (a variable): checked where it is written


def logging_calls(path: Path) -> list[tuple[int, str | None]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and _is_logging_callee(node.func):
            found.extend((node.lineno, event) for event in _events(node.args[0]))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_the_walk_finds_the_logging_calls() -> None:
    """The walker sees every call shape in use: a scan that finds nothing would pass vacuously."""
    events = {event for path in SOURCES for _, event in logging_calls(path)}
    assert len(events) > 80, sorted(e or "" for e in events)
    # one of each shape: plain, bound self.log, self._log, conditional callee, getattr, conditional event
    for expected in (
        "envoy_probed",  # log.info
        "poll_failed",  # self.log.warning
        "token_expired",  # self._log.error
        "mqtt_connected",  # (log.debug if ... else log.info)
        "control_command",  # getattr(log, level)
        "mqtt_connection_failed",  # "a" if ... else "b"
        "simulator_started",  # the simulator's structlog events too
    ):
        assert expected in events, expected


def test_the_walk_catches_sentences() -> None:
    source = (
        "log.warning(\n    'poll failed', x=1)\n"
        "self.log.info('mqtt connected')\n"
        "self._log.debug(f'token for {serial}')\n"
        "(log.debug if quiet else log.info)('device disappeared; clearing')\n"
        "getattr(log, level)('control command')\n"
        "log.info('ok_event' if a else 'Not OK')\n"
        "logging.getLogger('mqtt').warning('paho says hello')\n"  # stdlib: not ours to rename
        "print('a printed line')\n"
    )
    tmp = ast.parse(source)
    bad = [
        event
        for node in ast.walk(tmp)
        if isinstance(node, ast.Call) and node.args and _is_logging_callee(node.func)
        for event in _events(node.args[0])
        if event is None or not EVENT.match(event)
    ]
    assert sorted(bad, key=str) == sorted(
        ["poll failed", "mqtt connected", None, "device disappeared; clearing", "control command", "Not OK"],
        key=str,
    )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_structlog_event_is_snake_case(path: Path) -> None:
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {event!r}"
        for line, event in logging_calls(path)
        if event is None or not EVENT.match(event)
    ]
    assert not bad, "log events are short snake_case names with key=value context:\n" + "\n".join(bad)
