"""Service settings: `EXTGATE_*` environment variables with embedded defaults.

With nothing configured, everything lives under one data directory: the SQLite database,
the content-addressed bundle store, dev keys (created 0600 on first run). Setting
`EXTGATE_DATABASE_URL`, `EXTGATE_REDIS_URL` or `EXTGATE_RUNNER_URL` moves that concern
to a production backend.
"""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.contract.data_dir import default_data_dir
from runner.contract.envelope import Keyring, load_or_create_dev_keyring
from runner.contract.redis_url import check_redis_url
from runner.settings import DevKeysNotAllowed


def read_or_create_secret_file(path: Path, nbytes: int = 32) -> str:
    """A random url-safe token stored 0600; created once, then reused."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race; use its value
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


SHIPPED_POLICIES = Path(__file__).resolve().parents[1] / "policies"


def default_policy_dir() -> Path:
    """`EXTGATE_POLICY_DIR`'s default: this installation's `policies/` (a source checkout's), so
    a command run from an extension's directory bootstraps the same policies as `make run`;
    `./policies` when the installation ships none."""
    return SHIPPED_POLICIES if SHIPPED_POLICIES.is_dir() else Path("policies")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXTGATE_", extra="ignore")

    # Unset: one per-user store, whatever the working directory (runner/contract/data_dir.py).
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    redis_url: str | None = None
    runner_url: str | None = Field(default=None, description="comma-separated runner base URLs")
    runner_token: str | None = None

    host: str = "127.0.0.1"
    port: int = 8000
    forwarded_allow_ips: str | None = Field(
        default=None,
        description="comma-separated proxy addresses/CIDRs whose X-Forwarded-For `extgate serve` trusts",
    )

    @field_validator("redis_url")
    @classmethod
    def _supported_redis_url(cls, value: str | None) -> str | None:
        return check_redis_url(value)

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: str | None) -> str | None:
        # A typo must not quietly trust nobody (or someone else): every entry is an address or a network.
        import ipaddress

        entries = [p.strip() for p in (value or "").split(",") if p.strip()]
        for entry in entries:
            if entry == "*":
                continue
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"EXTGATE_FORWARDED_ALLOW_IPS: {entry!r} is not an IP address or CIDR network"
                ) from None
        return ",".join(entries) or None

    # Authentication
    jwt_hs256_secret: str | None = None
    jwt_public_keys: str | None = Field(
        default=None, description="comma-separated PEM files (EdDSA or RS256 public keys)"
    )
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = 30
    allow_hs256: bool | None = Field(
        default=None, description="accept HS256 tokens; default: only when no public keys are configured"
    )

    # None: generated development keys only on SQLite; see `dev_keys_allowed`.
    allow_dev_keys: bool | None = None

    # Secrets sealing
    secret_keys: str | None = Field(default=None, description="keyring: KEY_ID:BASE64,... first seals")

    # Bundles
    require_signed_bundles: bool = False
    trusted_publisher_keys: str | None = Field(default=None, description="KEY_ID:BASE64_ED25519_PUBKEY,...")
    max_bundle_bytes: int = 64 * 1024 * 1024

    # Policies
    # Unset: the policies shipped with this installation, whatever the working directory.
    policy_dir: Path = Field(default_factory=default_policy_dir)
    # Share of policies (0-1) that must determine at least one policy test before a reload
    # or rollback may activate a bundle (`--allow-untested` overrides, audited).
    policy_min_coverage: float = Field(default=1.0, ge=0.0, le=1.0)

    # Denial records (service.denials): per principal and window, the first N one by one,
    # the rest in one summary record per window.
    audit_denials_per_window: int = Field(default=10, ge=1, le=10_000)
    audit_denial_window_seconds: float = Field(default=60.0, gt=0, le=3600)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # Derived locations -------------------------------------------------------
    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def bundle_dir(self) -> Path:
        return self.data_dir / "bundles"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'extgate.db'}"

    @property
    def is_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def runner_urls(self) -> list[str]:
        return [u.strip().rstrip("/") for u in (self.runner_url or "").split(",") if u.strip()]

    # Dev keys: generated on first embedded run, never in production config ------
    def dev_keys_allowed(self) -> bool:
        """Generated key files stand in for missing keys on SQLite (one machine); with
        PostgreSQL (several replicas) keys must be configured, or EXTGATE_ALLOW_DEV_KEYS=1."""
        if self.allow_dev_keys is not None:
            return self.allow_dev_keys
        return self.effective_database_url.startswith("sqlite")

    def _require_dev_keys(self, variable: str) -> None:
        if not self.dev_keys_allowed():
            raise DevKeysNotAllowed(variable)

    @cached_property
    def keyring(self) -> Keyring:
        if self.secret_keys:
            return Keyring.from_spec(self.secret_keys)
        self._require_dev_keys("EXTGATE_SECRET_KEYS")
        return load_or_create_dev_keyring(self.keys_dir / "secret-keys")

    @cached_property
    def effective_jwt_hs256_secret(self) -> str | None:
        if self.jwt_hs256_secret:
            return self.jwt_hs256_secret
        if self.jwt_public_keys:
            return None
        self._require_dev_keys("EXTGATE_JWT_PUBLIC_KEYS (or EXTGATE_JWT_HS256_SECRET)")
        return read_or_create_secret_file(self.keys_dir / "jwt-hs256", 48)

    @cached_property
    def effective_runner_token(self) -> str:
        if self.runner_token:
            return self.runner_token.split(",")[0].strip()  # the first (newest) of a rotation list
        self._require_dev_keys("EXTGATE_RUNNER_TOKEN")
        return read_or_create_secret_file(self.keys_dir / "runner-token")


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
