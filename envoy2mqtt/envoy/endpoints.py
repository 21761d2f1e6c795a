"""The Envoy endpoint paths the bridge knows, and how capture files are named after them."""

from __future__ import annotations

INFO = "/info"
HOME = "/home.json"
PRODUCTION_JSON = "/production.json?details=1"
PRODUCTION_JSON_PLAIN = "/production.json"
API_V1_PRODUCTION = "/api/v1/production"
PRODUCTION_HTML = "/production"  # an HTML page; the only production source of firmware < 3.9
API_V1_INVERTERS = "/api/v1/production/inverters"
DEVICE_DATA = "/ivp/pdm/device_data"
INVENTORY = "/inventory.json"
METERS = "/ivp/meters"
METERS_READINGS = "/ivp/meters/readings"
ENSEMBLE_INVENTORY = "/ivp/ensemble/inventory"
ENSEMBLE_POWER = "/ivp/ensemble/power"
ENSEMBLE_SECCTRL = "/ivp/ensemble/secctrl"
CHECK_JWT = "/auth/check_jwt"

# Read once by the probe (per firmware); an endpoint that answers 401/404/HTML/{"error"} is absent.
PROBE_ENDPOINTS: tuple[str, ...] = (
    METERS,
    PRODUCTION_JSON,
    API_V1_PRODUCTION,
    API_V1_INVERTERS,
    DEVICE_DATA,
    INVENTORY,
    ENSEMBLE_INVENTORY,
    ENSEMBLE_POWER,
    ENSEMBLE_SECCTRL,
)

# Answered as text (an HTML page), not JSON: `EnvoyClient.get_body` reads them with `get_text`.
TEXT_ENDPOINTS: frozenset[str] = frozenset({PRODUCTION_HTML})

# Where production comes from on every firmware from 3.9 on; without either, the probe tries PRODUCTION_HTML.
JSON_PRODUCTION_ENDPOINTS: tuple[str, ...] = (PRODUCTION_JSON, API_V1_PRODUCTION)

# Every endpoint `envoy2mqtt capture` dumps (what the simulator can serve).
CAPTURE_ENDPOINTS: tuple[str, ...] = (
    INFO,
    HOME,
    PRODUCTION_JSON,
    PRODUCTION_JSON_PLAIN,
    PRODUCTION_HTML,
    API_V1_PRODUCTION,
    API_V1_INVERTERS,
    DEVICE_DATA,
    INVENTORY,
    "/inventory.json?deleted=1",
    METERS,
    METERS_READINGS,
    ENSEMBLE_INVENTORY,
    ENSEMBLE_POWER,
    ENSEMBLE_SECCTRL,
    "/ivp/ensemble/status",
    "/ivp/ensemble/dry_contacts",
    "/ivp/ss/dry_contact_settings",
    "/admin/lib/tariff",
    "/ivp/ensemble/generator",
    "/ivp/ss/gen_config",
    "/ivp/sc/pvlimit",
    "/ivp/ss/pel_settings",
)


def capture_file_name(path: str) -> str:
    """`/production.json?details=1` -> `production.json_details_1` (the shared capture layout)."""
    name = path.lstrip("/")
    for char in "/?=&":
        name = name.replace(char, "_")
    return name
