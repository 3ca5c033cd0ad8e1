"""Which Redis URLs extgate can use (shared by the service's and the runner's settings).

A URL with another scheme would only fail later, deep inside the Redis client, with a
traceback; settings refuse it at load time instead, naming the scheme but never echoing
the URL (it may carry a password).
"""

from __future__ import annotations

SUPPORTED_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(value: str | None, variable: str = "EXTGATE_REDIS_URL") -> str | None:
    if value is None or not value.strip():
        return None
    scheme, sep, rest = value.strip().partition("://")
    if not sep or scheme.lower() not in SUPPORTED_SCHEMES or not rest:
        shown = scheme.lower() if sep and scheme.isascii() and scheme.replace("+", "").isalnum() else "(none)"
        raise ValueError(f"{variable}: unsupported scheme {shown!s}; use "
                         + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES))
    return value.strip()
