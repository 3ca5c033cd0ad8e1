"""Bearer JWT verification and dev-token minting.

Only the algorithms configured are accepted (never `none`): HS256 with the shared secret
(the embedded default, generated on first run), EdDSA and RS256 with configured public
keys in production. `exp`, `sub` and `tenant` are required. Headers never select a
tenant: the tenant is the token's `tenant` claim.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from service.auth.principal import KNOWN_ROLES, Principal
from service.settings import Settings

TENANT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_TOKEN_BYTES = 8192
_MAX_ROLES = 32


class AuthenticationError(Exception):
    """The request carries no acceptable credential. `reason` is for logs, never for clients."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _load_public_keys(spec: str) -> list[tuple[str, Any]]:
    keys: list[tuple[str, Any]] = []
    for raw in spec.split(","):
        path = Path(raw.strip())
        if not raw.strip():
            continue
        key = load_pem_public_key(path.read_bytes())
        if isinstance(key, Ed25519PublicKey):
            keys.append(("EdDSA", key))
        elif isinstance(key, RSAPublicKey):
            keys.append(("RS256", key))
        else:
            raise ValueError(f"{path}: only Ed25519 and RSA public keys are supported")
    return keys


class _VerifiedTokens:
    """Tokens whose signature and claims already checked out, keyed by their SHA-256, until
    their `exp` (+ leeway). A token is immutable and its signature covers every claim, so
    the same bytes always verify to the same principal; only time can change the answer,
    and the expiry is checked on every hit. Bounded; failures are never cached."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._items: OrderedDict[bytes, tuple[Principal, float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: bytes, now: float) -> Principal | None:
        with self._lock:
            hit = self._items.get(digest)
            if hit is None:
                return None
            principal, not_before, expires = hit
            if not not_before <= now < expires:
                del self._items[digest]
                return None
            self._items.move_to_end(digest)
            return principal

    def put(self, digest: bytes, principal: Principal, not_before: float, expires: float) -> None:
        with self._lock:
            self._items[digest] = (principal, not_before, expires)
            self._items.move_to_end(digest)
            while len(self._items) > self._max:
                self._items.popitem(last=False)


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._verified = _VerifiedTokens()
        self._keys: list[tuple[str, Any]] = []
        if settings.jwt_public_keys:
            self._keys.extend(_load_public_keys(settings.jwt_public_keys))
        allow_hs = settings.allow_hs256 if settings.allow_hs256 is not None else not self._keys
        secret = settings.effective_jwt_hs256_secret if allow_hs else None
        if secret:
            self._keys.append(("HS256", secret))
        if not self._keys:
            raise ValueError("no JWT verification key configured")

    def verify(self, token: str) -> Principal:
        if not token or len(token) > MAX_TOKEN_BYTES:
            raise AuthenticationError("token missing or oversized")
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        cached = self._verified.get(digest, now)
        if cached is not None:
            return cached
        principal, claims = self._verify(token)
        leeway = self._settings.jwt_leeway_seconds
        nbf = claims.get("nbf")
        not_before = float(nbf) - leeway if isinstance(nbf, int | float) else float("-inf")
        self._verified.put(digest, principal, not_before, float(claims["exp"]) + leeway)
        return principal

    def _verify(self, token: str) -> tuple[Principal, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError("malformed token") from exc
        alg = str(header.get("alg"))
        candidates = [key for key_alg, key in self._keys if key_alg == alg]
        if not candidates:
            raise AuthenticationError(f"algorithm {alg!r} not accepted")
        options: Any = {"require": ["exp", "sub", "tenant"]}
        last: Exception | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    options=options,
                    audience=self._settings.jwt_audience,
                    issuer=self._settings.jwt_issuer,
                    leeway=self._settings.jwt_leeway_seconds,
                )
                return principal_from_claims(claims), claims
            except jwt.InvalidSignatureError as exc:
                last = exc
            except jwt.PyJWTError as exc:
                raise AuthenticationError(f"invalid token: {type(exc).__name__}") from exc
        raise AuthenticationError(f"invalid token: {type(last).__name__}")


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    tenant = claims.get("tenant")
    sub = claims.get("sub")
    if not isinstance(tenant, str) or not TENANT_ID_RE.fullmatch(tenant):
        raise AuthenticationError("tenant claim invalid")
    if not isinstance(sub, str) or not sub or len(sub) > 256:
        raise AuthenticationError("sub claim invalid")
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or len(roles) > _MAX_ROLES or not all(isinstance(r, str) for r in roles):
        raise AuthenticationError("roles claim invalid")
    # Unknown role names are dropped rather than trusted: policies only know the known set.
    known = frozenset(r for r in roles if r in KNOWN_ROLES)

    def _opt_str(name: str) -> str | None:
        value = claims.get(name)
        return value if isinstance(value, str) and len(value) <= 512 else None

    return Principal(
        subject=sub,
        tenant=tenant,
        roles=known,
        user_type=_opt_str("user_type") or "internal",
        name=_opt_str("name"),
        email=_opt_str("email"),
    )


def mint_dev_token(
    settings: Settings,
    *,
    tenant: str,
    subject: str,
    roles: list[str],
    ttl_seconds: int = 12 * 3600,
    name: str | None = None,
    email: str | None = None,
    user_type: str = "internal",
) -> str:
    """An HS256 token signed with the embedded secret (development and tests only)."""
    secret = settings.effective_jwt_hs256_secret
    if not secret:
        raise ValueError("HS256 is not enabled (public keys configured); mint tokens with your IdP")
    if not TENANT_ID_RE.fullmatch(tenant):
        raise ValueError("tenant id must match " + TENANT_ID_RE.pattern)
    unknown = sorted(set(roles) - KNOWN_ROLES)
    if unknown:
        raise ValueError("unknown roles: " + ", ".join(unknown))
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant": tenant,
        "roles": sorted(set(roles)),
        "user_type": user_type,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if name:
        claims["name"] = name
    if email:
        claims["email"] = email
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, secret, algorithm="HS256")
