"""Which headers cross the gateway, in each direction. Allowlists only.

Request → guest: `x-request-id`, `accept`, `content-type`, `accept-encoding`,
`user-agent` (the runner's own `GUEST_HEADER_ALLOWLIST`, enforced again there).
`authorization`, cookies and tenant headers never reach the guest.

Guest → client: `content-type`, `cache-control`, `etag` and `x-ext-*`. No `set-cookie`
(an extension must not plant cookies on the host product's origin), no hop-by-hop or
framing headers (the server computes `content-length`), no CORS headers (CORS is the
gateway's configuration, not the extension's).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from runner.contract.execute import GUEST_HEADER_ALLOWLIST

REQUEST_ALLOWLIST = GUEST_HEADER_ALLOWLIST
RESPONSE_ALLOWLIST = frozenset({"content-type", "cache-control", "etag"})
RESPONSE_PREFIX = "x-ext-"
MAX_HEADER_VALUE = 8192
MAX_RESPONSE_HEADERS = 64
_TOKEN_RE = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")  # RFC 9110 field-name


def _clean(value: str) -> str | None:
    # A CR/LF in a value would split the header (response splitting); drop such values.
    if "\r" in value or "\n" in value or len(value) > MAX_HEADER_VALUE:
        return None
    return value


def request_headers_for_guest(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """From the ASGI header list; a repeated header keeps its last value (as upstream)."""
    out: dict[str, str] = {}
    for name_b, value_b in raw:
        name = name_b.decode("latin-1").lower()
        if name in REQUEST_ALLOWLIST:
            value = _clean(value_b.decode("latin-1"))
            if value is not None:
                out[name] = value
    return out


def response_headers_for_client(guest: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in guest.items():
        key = name.strip().lower()
        allowed = key in RESPONSE_ALLOWLIST or (
            key.startswith(RESPONSE_PREFIX) and len(key) > len(RESPONSE_PREFIX) and _TOKEN_RE.match(key) is not None
        )
        if allowed:
            clean = _clean(str(value))
            if clean is not None and len(out) < MAX_RESPONSE_HEADERS:
                out[key] = clean
    return out
