"""One exception tree for the whole bridge.

Only the supervisor catches broadly; everything else raises one of these precise leaves.
Messages never contain a secret (password, token, cookie): callers pass descriptions, not values.
"""

from __future__ import annotations


class Envoy2MqttError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigError(Envoy2MqttError):
    """The configuration is wrong: the message names the key and the fix."""


class EnvoyError(Envoy2MqttError):
    """Anything about talking to one Envoy."""


class EnvoyUnreachable(EnvoyError):
    """Connection refused, timed out, reset, or TLS failure: the Envoy did not answer."""


class EnvoyHttpError(EnvoyError):
    """The Envoy answered with an HTTP status that is not success (and not an auth failure)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class EnvoyAuthError(EnvoyError):
    """The Envoy refused our credentials (401/403), or no usable credentials exist."""


class EnvoyPathRefused(EnvoyAuthError):
    """401/403 on one path during the feature probe: absent for these credentials (some firmware)."""


class EnvoyNotFound(EnvoyHttpError):
    """The endpoint does not exist on this firmware (404, HTML page-not-found, {"error": ...})."""


class EnvoyWriteRefused(EnvoyHttpError):
    """A write the Envoy answered with 4xx: not carried out (401/403: these credentials may not)."""


class BadEnvoyData(EnvoyError):
    """The Envoy answered 200 but the body is not the data we asked for (HTML, truncated JSON...)."""


class TokenError(Envoy2MqttError):
    """Base for the token lifecycle."""


class TokenRefreshError(TokenError):
    """The Enphase cloud did not give us a usable token (login failed, garbage token, cloud down)."""


class TokenRejected(TokenError):
    """A token is malformed, expired, or for another Envoy serial."""


class MfaRequired(TokenRefreshError):
    """Enlighten login returned no session_id: multi-factor authentication is on for the account."""


class MqttError(Envoy2MqttError):
    """The MQTT side failed in a way the reconnect loop could not repair."""


def short_error(exc: BaseException) -> str:
    """A one-line reason (`gateway.last_error`, log context); messages of our own errors never carry secrets."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
