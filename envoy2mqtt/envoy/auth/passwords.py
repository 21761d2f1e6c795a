"""Legacy (firmware < 7) Envoy passwords derived from the serial number.

The installer algorithm is public knowledge (envoy-local-api.md §2.2); this is our own implementation.
"""

from __future__ import annotations

import hashlib

REALM = "enphaseenergy.com"


def envoy_user_password(serial: str) -> str:
    """Default password of the `envoy` user: the last 6 characters of the serial."""
    return serial[-6:]


def installer_password(serial: str, user: str = "installer") -> str:
    digest = hashlib.md5(  # noqa: S324 - the Envoy's own scheme, not a security choice of ours
        f"[e]{user}@{REALM}#{serial} EnPhAsE eNeRgY ".encode()
    ).hexdigest()
    zeros = digest.count("0")
    ones = digest.count("1")
    out: list[str] = []
    for char in reversed(digest[-8:]):
        if zeros in (3, 6, 9):
            zeros -= 1
        zeros = min(max(zeros, 0), 20)
        if ones in (9, 15):
            ones -= 1
        ones = min(max(ones, 0), 26)
        if char == "0":
            out.append(chr(ord("f") + zeros))
            zeros -= 1
        elif char == "1":
            out.append(chr(ord("@") + ones))
            ones -= 1
        else:
            out.append(char)
    return "".join(out)
