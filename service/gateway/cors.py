"""CORS for the gateway, from configuration only.

Allowed origins are an exact list (`EXTGATE_GATEWAY_CORS_ORIGINS`); an origin not on it
gets no CORS headers (upstream reflected any `Origin`). `*` and `null` are refused at
startup: a wildcard would let any site drive a user's bearer token once a host product
stores it in the browser. Preflights are answered by the middleware, before and without
authentication; tenant headers are deliberately not in the allowed request headers.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from service.gateway.config import GatewaySettings

_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
ALLOW_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
ALLOW_HEADERS = ["authorization", "content-type", "accept", "x-request-id", "x-idempotency-key"]
EXPOSE_HEADERS = ["x-request-id", "retry-after", "etag", "x-ext-idempotent-replay"]


def validate_origins(origins: list[str]) -> list[str]:
    bad = [o for o in origins if not _ORIGIN_RE.fullmatch(o)]
    if bad:
        raise ValueError(
            "EXTGATE_GATEWAY_CORS_ORIGINS entries must be exact origins like https://app.example.com; "
            f"refused: {', '.join(bad)}"
        )
    return [o.lower() for o in origins]


def install_cors(app: FastAPI, settings: GatewaySettings) -> bool:
    origins = validate_origins(settings.cors_origin_list)
    if not origins:
        return False
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=ALLOW_METHODS,
        allow_headers=ALLOW_HEADERS,
        expose_headers=EXPOSE_HEADERS,
        allow_credentials=settings.cors_allow_credentials,
        max_age=settings.cors_max_age_seconds,
    )
    return True
