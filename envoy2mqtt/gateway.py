"""The contract's `gateway` object: what the bridge knows about one Envoy and its polling, never a secret.

The daemon publishes it on `<base>/<serial>/gateway`; `envoy2mqtt check --json` prints it.
"""

from __future__ import annotations

from .clock import iso_utc
from .envoy.auth.status import AuthStatus
from .model import EnvoyInfo, Features, Payload


def build_gateway_payload(
    serial: str | None,
    info: EnvoyInfo | None,
    features: Features | None,
    status: AuthStatus,
    *,
    last_poll_ok: float | None,
    last_error: str | None,
    poll_duration: float | None,
    realtime: Payload | None = None,
    derived_daily: tuple[str, ...] = (),
) -> Payload:
    """The contract's `gateway` object. Never a secret. `realtime`: the real-time cadence's diagnostics
    (source, effective interval, state), present only while it runs on this Envoy."""
    payload: Payload = {
        "serial": serial,
        "part_number": info.part_number if info else None,
        "firmware": info.firmware if info else None,
        "metered": features.metered if features else None,
        "ct_meters": list(features.ct_meters) if features else [],
        "phase_count": features.phase_count if features else None,
        "auth_mode": info.auth_mode if info else None,
    }
    if info is not None and info.auth_mode == "token":
        payload["token_type"] = status.token_type
        payload["token_expires_at"] = (
            iso_utc(status.token_expires_at) if status.token_expires_at is not None else None
        )
    payload["last_poll_ok"] = iso_utc(last_poll_ok) if last_poll_ok is not None else None
    payload["last_error"] = last_error
    payload["poll_duration"] = poll_duration
    if realtime:
        payload.update(realtime)
    if derived_daily:  # only where the bridge derives a daily value the Envoy does not report
        payload["derived_daily"] = list(derived_daily)
    return payload
