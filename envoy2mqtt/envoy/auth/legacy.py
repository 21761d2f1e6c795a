"""Legacy (firmware < 7) HTTP digest credentials (envoy-local-api.md §2.1).

Defaults: user `envoy` with the last 6 characters of the serial. User `installer` without a password
gets the password computed from the serial. Endpoints that are open on legacy firmware work without
credentials: aiohttp's digest middleware only answers a challenge.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import DigestAuthMiddleware

from envoy2mqtt.config import EnvoySettings

from .passwords import envoy_user_password, installer_password

DEFAULT_USER = "envoy"
INSTALLER_USER = "installer"


@dataclass(frozen=True, slots=True)
class LegacyCredentials:
    username: str
    password: str  # a secret: never logged, never in a message
    derived: bool  # True when computed from the serial rather than configured

    def __repr__(self) -> str:
        return f"LegacyCredentials(username={self.username!r}, password=<hidden>, derived={self.derived})"

    def middleware(self) -> DigestAuthMiddleware:
        # preemptive: once challenged, later requests to the same origin carry the digest directly.
        return DigestAuthMiddleware(self.username, self.password, preemptive=True)


def legacy_credentials(settings: EnvoySettings, serial: str) -> LegacyCredentials:
    username = settings.username or DEFAULT_USER
    password = settings.password.get_secret_value()
    if password:
        return LegacyCredentials(username, password, derived=False)
    if username == INSTALLER_USER:
        return LegacyCredentials(username, installer_password(serial), derived=True)
    if username == DEFAULT_USER:
        return LegacyCredentials(username, envoy_user_password(serial), derived=True)
    return LegacyCredentials(username, "", derived=False)
