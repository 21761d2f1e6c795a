"""What a simulated Envoy answers, independent of the HTTP server: status, body, content type."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

JSON_TYPE = "application/json"
HTML_TYPE = "text/html"
XML_TYPE = "text/xml"

NOT_FOUND_HTML = """<!DOCTYPE html PUBLIC "-//IETF//DTD HTML 2.0//EN">
<html>
<head><title>Page Not Found</title></head>
<body>
<center>
<h2>Page Not Found</h2>
<p>The page you tried to view does not exist
 Try the <a href="/">home</a> page</p>
</center>
</body>
</html>
"""

# What openresty in front of a token-firmware Envoy answers without a valid token.
UNAUTHORIZED_HTML = """<html>
<head><title>401 Authorization Required</title></head>
<body>
<center><h1>401 Authorization Required</h1></center>
<hr><center>openresty/1.17.8.1</center>
</body>
</html>
"""

# What a legacy (digest) Envoy answers without valid credentials.
LEGACY_UNAUTHORIZED_JSON = {"status": 401, "error": "", "info": "Authentication required", "moreInfo": ""}

VALID_TOKEN_HTML = "<!DOCTYPE html><h2>Valid token.</h2>"

SERVER_ERROR_HTML = """<html>
<head><title>{status} Service Error</title></head>
<body>
<center><h1>{status} Service Error</h1></center>
<hr><center>openresty/1.17.8.1</center>
</body>
</html>
"""


@dataclass(frozen=True, slots=True)
class EnvoyResponse:
    status: int
    body: bytes
    content_type: str


def json_response(data: Any, status: int = 200) -> EnvoyResponse:
    return EnvoyResponse(status, json.dumps(data, indent=2).encode(), JSON_TYPE)


def xml_response(text: str, status: int = 200) -> EnvoyResponse:
    return EnvoyResponse(status, text.encode(), XML_TYPE)


def not_found() -> EnvoyResponse:
    return EnvoyResponse(404, NOT_FOUND_HTML.encode(), HTML_TYPE)


def guess_content_type(body: bytes) -> str:
    """JSON when the body parses as JSON, XML when it looks like XML, else HTML."""
    try:
        json.loads(body)
    except ValueError:
        head = body.lstrip()[:64].lower()
        if head.startswith((b"<?xml", b"<envoy_info")):
            return XML_TYPE
        return HTML_TYPE
    return JSON_TYPE


class EnvoySource(Protocol):
    """Where the simulated Envoy's answers come from: a capture folder or a generated site."""

    @property
    def serial(self) -> str: ...

    @property
    def firmware(self) -> str:
        """As /info shows it, with its letter prefix: "D8.2.4345"."""
        ...

    def respond(self, path: str, query: str) -> EnvoyResponse:
        """The answer for `path` (no query) with `query` ("" or "details=1") at the simulated now."""
        ...
