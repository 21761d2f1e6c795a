"""Configuration: a TOML file plus ENVOY2MQTT_* environment variables that override it.

Environment variables use pydantic-settings' nested form (``ENVOY2MQTT_MQTT__HOST``);
``ENVOY2MQTT_ENVOY`` takes the list of Envoys as JSON. Every secret is a ``SecretStr`` and can also
be read from a file (``password_file = "/run/secrets/..."``) for Docker secrets.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from .errors import ConfigError

ENV_PREFIX = "ENVOY2MQTT_"
SYSTEM_INTERVAL_FLOOR = 10
DEVICE_INTERVAL_FLOOR = 60
MQTT_STRING_LIMIT = 65535  # bytes: MQTT encodes every string with a 2-byte length
TOPIC_ROOT_LIMIT = 1024  # bytes: the roots leave room under MQTT's 65535-byte topic limit
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")  # underscores too: some local DNS allows them
REALTIME_INTERVAL_FLOOR = 1
REALTIME_INTERVAL_CAP = 60  # the adaptive interval never backs off beyond this
_CLOCK_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _read_secret_file(path: str, key: str) -> SecretStr:
    try:
        return SecretStr(Path(path).read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ValueError(f"cannot read the file given in {key}_file ({path}): {exc.strerror}") from None


def _mqtt_string(value: str, limit: int = MQTT_STRING_LIMIT) -> str:
    size = len(value.encode("utf-8"))
    if size > limit:
        raise ValueError(f"is {size} bytes long; MQTT allows at most {limit}")
    return value


def is_address(value: str) -> bool:
    """An IP address or a syntactically valid host name (nothing is resolved)."""
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return bool(_HOSTNAME.match(value)) and len(value) <= 253
    return True


def _state_dir_problem(path: Path) -> str | None:
    """Why `path` cannot be the state directory (it or a parent is a file), or None."""
    current = path
    while True:
        try:
            is_dir = current.is_dir()
            exists = is_dir or current.exists()
        except OSError:
            return None  # cannot tell (no permission to look): the daemon reports what happens
        if exists:
            if is_dir:
                return None
            if current == path:
                return f"{path} is a file, not a directory: give a directory (it is created if missing)"
            return f"{current} (a parent of {path}) is a file, not a directory"
        if current.parent == current:
            return None
        current = current.parent


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """`<secret>_file = "/path"` fills `<secret>` from that file (Docker secrets)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, field_info in cls.model_fields.items():
            if out.get(name) == "" and field_info.annotation == (Path | None):
                out[name] = None  # an empty path in TOML means "not set"

            file_key = f"{name}_file"
            if file_key in out:
                path = out.pop(file_key)
                if field_info.annotation is not SecretStr:
                    raise ValueError(f"{file_key} is only accepted for secrets")
                if path:
                    out[name] = _read_secret_file(str(path), name)
        return out


class MqttTls(_Section):
    enabled: bool = False
    ca_file: Path | None = None  # CA that signed the broker's certificate; system CAs when unset
    cert_file: Path | None = None  # client certificate, for brokers that require one
    key_file: Path | None = None
    insecure: bool = False  # accept any broker certificate (self-signed brokers); not recommended


class MqttSettings(_Section):
    host: str = "localhost"
    port: int = Field(1883, ge=1, le=65535)
    username: str = ""
    password: SecretStr = SecretStr("")
    client_id: str = ""  # empty: "envoy2mqtt-<random>"
    keepalive: int = Field(60, ge=5, le=3600)
    base_topic: str = "envoy2mqtt"
    discovery_prefix: str = "homeassistant"
    discovery: bool = True
    retain: bool = True
    qos: Literal[0, 1, 2] = 1
    # "auto": MQTT 5 (the broker then says when it refuses a message), 3.1.1 for brokers without it
    protocol: Literal["auto", "5", "3.1.1"] = "auto"
    tls: MqttTls = MqttTls()

    @field_validator("base_topic", "discovery_prefix")
    @classmethod
    def _topic_root(cls, value: str) -> str:
        value = value.strip()
        if not value or value.startswith("/") or value.endswith("/") or any(c in value for c in "+#\0"):
            raise ValueError("must be a topic without leading or trailing '/' and without '+' or '#'")
        return _mqtt_string(value, TOPIC_ROOT_LIMIT)

    @field_validator("client_id", "username")
    @classmethod
    def _mqtt_field(cls, value: str) -> str:
        return _mqtt_string(value)

    @field_validator("password")
    @classmethod
    def _mqtt_password(cls, value: SecretStr) -> SecretStr:
        _mqtt_string(value.get_secret_value())
        return value

    @field_validator("host")
    @classmethod
    def _broker_host(cls, value: str) -> str:
        value = value.strip()
        if not is_address(value):
            raise ValueError("must be the broker's host name or IP address, e.g. localhost or 192.168.1.10")
        return value


class PollingSettings(_Section):
    system_interval: float = Field(60, description="seconds between system polls")
    device_interval: float = Field(300, description="seconds between device polls")
    failures_before_offline: int = Field(3, ge=1, le=100)
    firmware_check_interval: float = Field(4 * 3600, ge=600)

    @field_validator("system_interval")
    @classmethod
    def _system_floor(cls, value: float) -> float:
        if value < SYSTEM_INTERVAL_FLOOR:
            raise ValueError(
                f"must be at least {SYSTEM_INTERVAL_FLOOR} seconds: faster polling freezes the Envoy"
            )
        return value

    @field_validator("device_interval")
    @classmethod
    def _device_floor(cls, value: float) -> float:
        if value < DEVICE_INTERVAL_FLOOR:
            raise ValueError(
                f"must be at least {DEVICE_INTERVAL_FLOOR} seconds: inverters report only every 5 minutes"
            )
        return value


def parse_window(value: str) -> tuple[int, int] | None:
    """`"22:55-23:10"` -> (start, end) in minutes after local midnight; "" -> None (no window)."""
    value = value.strip()
    if not value:
        return None
    start, sep, end = value.partition("-")
    first, last = _CLOCK_TIME.match(start.strip()), _CLOCK_TIME.match(end.strip())
    if not sep or first is None or last is None:
        raise ValueError(
            'must be "HH:MM-HH:MM" in the Envoy\'s local time (e.g. "22:55-23:10"), or "" for none'
        )
    begin = int(first[1]) * 60 + int(first[2])
    finish = int(last[1]) * 60 + int(last[2])
    if begin == finish:
        raise ValueError('start and end are the same time: give a window of at least one minute, or ""')
    return begin, finish


class RealtimeSettings(_Section):
    """The opt-in fast cadence of grid / solar / battery / house power (`<base>/<envoy>/live`)."""

    enabled: bool = False
    interval: float = Field(5, description="seconds between real-time reads")
    source: Literal["auto", "meters", "livedata"] = "auto"
    maintenance_window: str = "22:55-23:10"  # Envoy local time; real-time reads pause inside it
    calm_period: float = Field(120, ge=5, le=3600)  # fast and error-free this long: the interval steps down
    failure_pause: float = Field(300, ge=5, le=3600)  # after a burst of failures, pause this long

    @field_validator("interval")
    @classmethod
    def _interval_bounds(cls, value: float) -> float:
        if value < REALTIME_INTERVAL_FLOOR:
            raise ValueError(
                f"must be at least {REALTIME_INTERVAL_FLOOR} second: faster polling freezes the Envoy"
            )
        if value > REALTIME_INTERVAL_CAP:
            raise ValueError(
                f"must be at most {REALTIME_INTERVAL_CAP} seconds: slower than that, use polling.system_interval"
            )
        return value

    @field_validator("maintenance_window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window(value)
        return value.strip()

    @property
    def window(self) -> tuple[int, int] | None:
        return parse_window(self.maintenance_window)


class CloudSettings(_Section):
    """The Enphase cloud. Defaults are the real URLs; tests point them at the simulator."""

    login_url: str = "https://enlighten.enphaseenergy.com/login/login.json"
    token_url: str = "https://entrez.enphaseenergy.com/tokens"
    ca_file: Path | None = None  # extra CA to trust (tests); certificates are always verified
    timeout: float = Field(30, ge=1, le=300)

    @field_validator("login_url", "token_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("https", "http"):
            raise ValueError("must be an http(s) URL")
        return value


class TokenSettings(_Section):
    refresh_days_before_expiry: float = Field(30, ge=0, le=365)
    installer_refresh_minutes_before_expiry: float = Field(60, ge=1, le=600)
    max_backoff: float = Field(3600, ge=10)


class EnvoySettings(_Section):
    host: str
    name: str = ""
    serial: str = ""  # optional; read from /info
    username: str = ""  # pre-v7: "envoy" (default) or "installer"
    password: SecretStr = SecretStr("")  # pre-v7: default last 6 characters of the serial
    token: SecretStr = SecretStr("")  # v7+: a pasted token
    enlighten_username: str = ""
    enlighten_password: SecretStr = SecretStr("")
    cert_fingerprint: str = ""  # optional SHA-256 of the Envoy's certificate (hex, colons allowed)
    timezone: str = ""  # the Envoy's local timezone; read from /home when empty
    controls: bool = False  # accept commands from MQTT / Home Assistant (README "Controls")
    allow_grid_relay: bool = False  # also the grid relay (can take the house off grid); needs controls
    opt_schedules_off: bool = False  # a storage mode write also sets opt_schedules false (8.2.42xx+)
    realtime: bool = True  # false leaves this Envoy out of [realtime]

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_envoy_host(value)

    @field_validator("cert_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str) -> str:
        cleaned = value.replace(":", "").strip().lower()
        if cleaned and (len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned)):
            raise ValueError("must be the certificate's SHA-256 as 64 hex digits (colons allowed)")
        return cleaned

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _relay_needs_controls(self) -> EnvoySettings:
        if self.allow_grid_relay and not self.controls:
            raise ValueError("allow_grid_relay = true needs controls = true in the same [[envoy]] table")
        return self

    @property
    def base_urls(self) -> tuple[str, ...]:
        """URLs to try, in order: https first, then http for firmware before 7."""
        if "://" in self.host:
            return (self.host,)
        return (f"https://{self.host}", f"http://{self.host}")

    @property
    def has_cloud_credentials(self) -> bool:
        return bool(self.enlighten_username and self.enlighten_password.get_secret_value())

    @property
    def label(self) -> str:
        return self.name or self.serial or self.host


def check_envoy_host(value: str) -> str:
    """`host` as an address (`192.168.1.50`, `envoy.local:8443`) or a URL without path or credentials.

    Messages never repeat the value: it may hold a password."""
    value = value.strip()
    example = "e.g. 192.168.1.50, envoy.local or https://192.168.1.50"
    if "://" in value:
        scheme, _, rest = value.partition("://")
        value = f"{scheme}://{rest.rstrip('/')}"
        if not rest.strip("/"):
            raise ValueError(f"the URL has no address after {scheme}://, {example}")
    else:
        value = value.rstrip("/")
    if not value:
        raise ValueError(f"must be the Envoy's address, {example}")
    if ":" in value and "://" not in value and "[" not in value and value.count(":") > 1:
        raise ValueError("an IPv6 address must be written in brackets, e.g. [fd00::50]")
    if any(c.isspace() for c in value):
        raise ValueError(f"must not contain spaces: give only the Envoy's address, {example}")
    url = value if "://" in value else f"//{value}"
    parts = urlsplit(url)
    if "://" in value and parts.scheme not in ("http", "https"):
        raise ValueError("a URL must start with http:// or https://")
    if "@" in parts.netloc:
        raise ValueError(
            "must not contain a user name or password: put them into username / password "
            "(or enlighten_username / enlighten_password) and give only the address here"
        )
    if parts.path or parts.query or parts.fragment:
        raise ValueError(f"must be only the Envoy's address, without a path, {example}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a port outside 1-65535") from None
    if port == 0:
        raise ValueError("has a port outside 1-65535")
    hostname = parts.hostname or ""
    if not hostname or not is_address(hostname):
        raise ValueError(f"has no valid host name or IP address, {example}")
    return value


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"  # auto: console on a TTY, JSON lines otherwise


class HealthSettings(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)

    @field_validator("host")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.strip()
        if not is_address(value):
            raise ValueError("must be an IP address or host name to listen on, e.g. 127.0.0.1 or 0.0.0.0")
        return value


class ControlSettings(_Section):
    """Timing of the controls (README "Controls"); the same for every Envoy."""

    min_gap: float = Field(5, ge=0.2, le=600, description="seconds between two writes to one Envoy")
    readback_timeout: float = Field(60, ge=1, le=600, description="seconds to wait for a setting to show")
    relay_readback_timeout: float = Field(60, ge=1, le=600, description="the same for the grid relay")
    dry_contact_readback_timeout: float = Field(120, ge=1, le=600, description="dry contacts settle slowly")
    readback_interval: float = Field(3, ge=0.2, le=60, description="seconds between two read-backs")
    watch_duration: float = Field(300, ge=0, le=3600, description="seconds to watch for a revert")
    watch_interval: float = Field(30, ge=0.2, le=600, description="seconds between two revert checks")
    refresh_interval: float = Field(300, ge=1, le=86400, description="re-read every control this often")


class FleetSettings(_Section):
    """Fleet health: stale devices and underperforming microinverters (README "Fleet health")."""

    enabled: bool = True  # judge microinverters against their siblings (counts and stale devices always)
    report_period: float = Field(300, ge=60, le=3600)  # seconds between microinverter reports
    min_site_output: float = Field(10, ge=1, le=90)  # % of capacity below which nothing is judged
    threshold: float = Field(75, ge=10, le=99)  # % of the siblings' median output that counts as low
    window: int = Field(12, ge=1, le=288)  # judged reports averaged per microinverter
    consecutive: int = Field(3, ge=1, le=100)  # low reports in a row to flag (and good ones to clear)
    min_inverters: int = Field(4, ge=3, le=10000)  # siblings needed before anyone is judged


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )

    state_dir: Path = Path("/data")  # token store, counter offsets
    mqtt: MqttSettings = MqttSettings()
    polling: PollingSettings = PollingSettings()
    enphase_cloud: CloudSettings = CloudSettings()
    token: TokenSettings = TokenSettings()
    logging: LoggingSettings = LoggingSettings()
    health: HealthSettings = HealthSettings()
    controls: ControlSettings = ControlSettings()
    fleet: FleetSettings = FleetSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    envoy: list[EnvoySettings] = Field(default_factory=list)

    _toml_path: ClassVar[Path | None] = None

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: Path) -> Path:
        problem = _state_dir_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _envoys(self) -> Settings:
        if not self.envoy:
            raise ValueError(
                'no Envoy configured: add an [[envoy]] table with host = "<address>" '
                '(or set ENVOY2MQTT_ENVOY=\'[{"host": "<address>"}]\')'
            )
        names = [e.name or e.host for e in self.envoy]
        if len(set(names)) != len(names):
            raise ValueError("two [[envoy]] entries have the same name/host: give each a distinct name")
        return self


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("function-after", "function-before", "function-wrap"):
            continue
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(top level)"


def _env_name(loc: tuple[int | str, ...]) -> str:
    names = [str(x) for x in loc if isinstance(x, str)]
    if not names:
        return ""
    if names[0] == "envoy":
        return f"{ENV_PREFIX}ENVOY (JSON list)"
    return ENV_PREFIX + "__".join(n.upper() for n in names)


def format_validation_error(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err["loc"])
        where = _location(loc)
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against config.example.toml)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        env = _env_name(loc)
        hint = f" (environment: {env})" if env else ""
        lines.append(f"  - {where}: {msg}{hint}")
    return "\n".join(lines)


def load_settings(path: Path | str | None = None) -> Settings:
    """Read the TOML file (if any) and the environment; raise ConfigError naming the bad keys."""
    toml_path: Path | None = None
    if path is None and os.environ.get(f"{ENV_PREFIX}CONFIG"):
        path = os.environ[f"{ENV_PREFIX}CONFIG"]
    if path is not None:
        toml_path = Path(path)
        if not toml_path.is_file():
            raise ConfigError(f"configuration file not found: {toml_path} (give --config a TOML file)")
    Settings._toml_path = toml_path
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except SettingsError as exc:  # an environment variable that is not the JSON it must be
        raise ConfigError(_settings_error(exc)) from None
    except ValueError as exc:  # TOML syntax errors
        raise ConfigError(f"cannot read {toml_path}: {exc}") from None
    finally:
        Settings._toml_path = None


def _settings_error(exc: SettingsError) -> str:
    found = re.search(r'field "([^"]+)"', str(exc))
    field = found.group(1) if found else ""
    cause = exc.__cause__
    detail = f" ({cause})" if isinstance(cause, ValueError) and cause is not exc else ""
    if field == "envoy":
        return (
            f"invalid configuration:\n  - {ENV_PREFIX}ENVOY is not valid JSON{detail}: give a JSON list, "
            f'e.g. {ENV_PREFIX}ENVOY=\'[{{"host": "192.168.1.50"}}]\''
        )
    if field:
        return (
            f"invalid configuration:\n  - {ENV_PREFIX}{field.upper()} is not valid JSON{detail}: "
            f"set single keys instead, e.g. {ENV_PREFIX}{field.upper()}__HOST"
        )
    return f"invalid configuration: {exc}"


def config_file_warnings(path: Path | str | None, settings: Settings) -> list[str]:
    """Warn when a config file holding secrets can be read by other users."""
    if path is None:
        return []
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return []
    has_secret = settings.mqtt.password.get_secret_value() or any(
        e.password.get_secret_value() or e.token.get_secret_value() or e.enlighten_password.get_secret_value()
        for e in settings.envoy
    )
    if has_secret and mode & (stat.S_IRGRP | stat.S_IROTH):
        return [f"{path} contains secrets and is readable by other users: run chmod 600 {path}"]
    return []
