"""envoy2mqtt: read an Enphase Envoy / IQ Gateway locally and publish normalized readings to MQTT."""

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/envoy2mqtt/envoy2mqtt"
